package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/mesh"
)

const (
	waitFor = 15 * time.Second
	tick    = 10 * time.Millisecond
)

func TestPublishStoresEvents(t *testing.T) {
	eng := openEngine(t)
	b := newTestBridge(t, eng, &recorder{})
	read := readTopic(t, eng, "orders")

	e1, e2 := mkEvent(t, "1", "com.example.a"), mkEvent(t, "2", "com.example.b")
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{e1, e2}))
	require.Eventually(t, func() bool { return len(read()) == 2 }, waitFor, tick)
	got := read()
	assert.Equal(t, "1", got[0].ID())
	assert.Equal(t, "com.example.b", got[1].Type())
	assert.Equal(t, e1.Data(), got[0].Data())
}

func TestPublishErrors(t *testing.T) {
	eng := openEngine(t)
	b := newTestBridge(t, eng, &recorder{})
	read := readTopic(t, eng, "orders")

	bad := mkEvent(t, "2", "")
	err := b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "t"), bad})
	var ie *InvalidEventError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, 1, ie.Index)
	assert.Equal(t, "type", ie.Attribute)
	assert.Equal(t, `event 1: attribute "type": missing`, err.Error())

	err = b.Publish(t.Context(), "bad topic", []*event.Event{mkEvent(t, "1", "t")})
	assert.ErrorIs(t, err, mesh.ErrInvalidTopic)

	// A bad batch published nothing.
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "3", "t")}))
	require.Eventually(t, func() bool { return len(read()) == 1 }, waitFor, tick)
	assert.Equal(t, "3", read()[0].ID())

	require.NoError(t, eng.Close())
	err = b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "4", "t")})
	assert.ErrorIs(t, err, mesh.ErrUnavailable)
}

func TestDeliveryWithFilter(t *testing.T) {
	eng := openEngine(t)
	rec := &recorder{}
	b := newTestBridge(t, eng, rec)
	require.NoError(t, b.Start(t.Context()))
	sub, err := b.CreateSubscription(t.Context(), Subscription{
		ID: "audit", Topic: "orders", Sink: "http://127.0.0.1:1/x",
		Filters: []map[string]any{{"prefix": map[string]any{"type": "com.example."}}},
	})
	require.NoError(t, err)

	skipped := mkEvent(t, "1", "org.other.created")
	wanted := mkEvent(t, "2", "com.example.created")
	wanted.SetExtension("region", "eu")
	wanted.SetExtension("priority", 7)
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{skipped, wanted}))

	require.Eventually(t, func() bool { return rec.count() == 1 }, waitFor, tick)
	c := rec.snapshot()[0]
	assert.Equal(t, sub, c.sub)
	assert.Equal(t, wanted.ID(), c.e.ID())
	assert.Equal(t, wanted.Source(), c.e.Source())
	assert.Equal(t, wanted.Type(), c.e.Type())
	assert.Equal(t, wanted.Subject(), c.e.Subject())
	assert.True(t, wanted.Time().Equal(c.e.Time()))
	assert.Equal(t, wanted.DataContentType(), c.e.DataContentType())
	assert.Equal(t, wanted.Data(), c.e.Data())
	assert.Equal(t, "eu", c.e.Extensions()["region"])
	assert.EqualValues(t, "7", fmt.Sprint(c.e.Extensions()["priority"]))
	assert.NotContains(t, c.e.Extensions(), ExtDeliveryError)

	// The filtered-out event was acked, not retried: a later event arrives
	// and the skipped one never does.
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "3", "com.example.x")}))
	require.Eventually(t, func() bool { return rec.count() == 2 }, waitFor, tick)
	for _, c := range rec.snapshot() {
		assert.NotEqual(t, "1", c.e.ID())
	}
}

func TestRetryThenSuccess(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	rec := &recorder{reply: func(n int, e *event.Event) error {
		if n < 3 {
			return errors.New("connection refused")
		}
		return nil
	}}
	b := newTestBridge(t, eng, rec, func(o *Options) {
		o.Backoff = Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 3, Jitter: -1}
	})
	require.NoError(t, b.Start(t.Context()))
	_, err := b.CreateSubscription(t.Context(), Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x", MaxAttempts: 5})
	require.NoError(t, err)
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "t")}))

	require.Eventually(t, func() bool {
		s := eng.settlements()
		return len(s) == 3 && s[2].op == "ack"
	}, waitFor, tick)
	s := eng.settlements()
	assert.Equal(t, []settlement{
		{op: "nak", id: "1", attempt: 1, delay: 100 * time.Millisecond},
		{op: "nak", id: "1", attempt: 2, delay: 300 * time.Millisecond},
		{op: "ack", id: "1", attempt: 3},
	}, s)
	calls := rec.snapshot()
	require.Len(t, calls, 3)
	assert.GreaterOrEqual(t, calls[1].at.Sub(calls[0].at), 100*time.Millisecond)
	assert.GreaterOrEqual(t, calls[2].at.Sub(calls[1].at), 300*time.Millisecond)
}

func TestRetryAfterIsHonoured(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	rec := &recorder{reply: func(n int, e *event.Event) error {
		if n == 1 {
			return &DeliveryError{StatusCode: 429, RetryAfter: 700 * time.Millisecond, Err: errors.New("slow down")}
		}
		return nil
	}}
	b := newTestBridge(t, eng, rec)
	require.NoError(t, b.Start(t.Context()))
	_, err := b.CreateSubscription(t.Context(), Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x"})
	require.NoError(t, err)
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "t")}))
	require.Eventually(t, func() bool { return rec.count() == 2 }, waitFor, tick)
	s := eng.settlements()
	require.NotEmpty(t, s)
	assert.Equal(t, settlement{op: "nak", id: "1", attempt: 1, delay: 700 * time.Millisecond}, s[0])
}

func TestPermanentErrorDeadLetters(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	rec := &recorder{reply: func(int, *event.Event) error {
		return &DeliveryError{Class: Permanent, StatusCode: 400, Err: errors.New("bad request from http://127.0.0.1:1/x?token=hunter2")}
	}}
	b := newTestBridge(t, eng, rec)
	dead := readTopic(t, eng, "orders.dead")
	require.NoError(t, b.Start(t.Context()))
	_, err := b.CreateSubscription(t.Context(), Subscription{
		ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x?token=hunter2", DeadLetterTopic: "orders.dead",
	})
	require.NoError(t, err)
	orig := mkEvent(t, "1", "com.example.created")
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{orig}))

	require.Eventually(t, func() bool { return len(dead()) == 1 }, waitFor, tick, "settled %v, sent %d", eng.settlements(), rec.count())
	dl := dead()[0]
	assert.Equal(t, orig.ID(), dl.ID())
	assert.Equal(t, orig.Source(), dl.Source())
	assert.Equal(t, orig.Type(), dl.Type())
	assert.Equal(t, orig.Data(), dl.Data())
	reason := fmt.Sprint(dl.Extensions()[ExtDeliveryError])
	assert.Contains(t, reason, "sink answered 400: bad request")
	assert.NotContains(t, reason, "hunter2")
	assert.Equal(t, "1", fmt.Sprint(dl.Extensions()[ExtDeliveryAttempts]))

	require.Eventually(t, func() bool {
		s := eng.settlements()
		return len(s) == 1 && s[0].op == "term"
	}, waitFor, tick)
	assert.Equal(t, 1, rec.count())
}

func TestMaxAttemptsDeadLetters(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	rec := &recorder{reply: func(int, *event.Event) error {
		return &DeliveryError{StatusCode: 503, Err: errors.New("unavailable")}
	}}
	b := newTestBridge(t, eng, rec)
	dead := readTopic(t, eng, "orders.dead")
	require.NoError(t, b.Start(t.Context()))
	_, err := b.CreateSubscription(t.Context(), Subscription{
		ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x", DeadLetterTopic: "orders.dead", MaxAttempts: 3,
	})
	require.NoError(t, err)
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "t")}))

	require.Eventually(t, func() bool { return len(dead()) == 1 }, waitFor, tick)
	dl := dead()[0]
	assert.Equal(t, "3", fmt.Sprint(dl.Extensions()[ExtDeliveryAttempts]))
	assert.Equal(t, "sink answered 503: unavailable", dl.Extensions()[ExtDeliveryError])
	require.Eventually(t, func() bool {
		s := eng.settlements()
		return len(s) == 3 && s[2].op == "term"
	}, waitFor, tick)
	assert.Equal(t, 3, rec.count())
	s := eng.settlements()
	assert.Equal(t, []string{"nak", "nak", "term"}, []string{s[0].op, s[1].op, s[2].op})
	assert.Equal(t, []int{1, 2, 3}, []int{s[0].attempt, s[1].attempt, s[2].attempt})
}

// Two subscriptions giving up on one event each put their copy on a shared
// dead-letter topic (the mesh's duplicate window used to drop the second).
func TestDeadLetterCopiesOfTwoSubscriptions(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	rec := &recorder{reply: func(int, *event.Event) error {
		return &DeliveryError{Class: Permanent, StatusCode: 400, Err: errors.New("no")}
	}}
	b := newTestBridge(t, eng, rec)
	dead := readTopic(t, eng, "orders.dead")
	require.NoError(t, b.Start(t.Context()))
	for _, id := range []string{"a", "b"} {
		_, err := b.CreateSubscription(t.Context(), Subscription{
			ID: id, Topic: "orders", Sink: "http://127.0.0.1:1/" + id, DeadLetterTopic: "orders.dead",
		})
		require.NoError(t, err)
	}
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "t")}))
	require.Eventually(t, func() bool {
		s := eng.settlements()
		return len(s) == 2 && s[0].op == "term" && s[1].op == "term"
	}, waitFor, tick, "both subscriptions give up")
	require.Eventually(t, func() bool { return len(dead()) == 2 }, waitFor, tick, "one copy per subscription; got %d", len(dead()))
}

func TestNoDeadLetterTopicDrops(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	rec := &recorder{reply: func(int, *event.Event) error {
		return &DeliveryError{Class: Permanent, StatusCode: 404, Err: errors.New("not found")}
	}}
	b := newTestBridge(t, eng, rec)
	require.NoError(t, b.Start(t.Context()))
	_, err := b.CreateSubscription(t.Context(), Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x"})
	require.NoError(t, err)
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "t")}))
	require.Eventually(t, func() bool {
		s := eng.settlements()
		return len(s) == 1 && s[0].op == "term"
	}, waitFor, tick)
	assert.Never(t, func() bool { return rec.count() > 1 }, 300*time.Millisecond, tick)
}

func TestDedupAfterLostAck(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t), dropAcks: 1}
	rec := &recorder{}
	b := newTestBridge(t, eng, rec, func(o *Options) { o.AckWait = time.Second })
	require.NoError(t, b.Start(t.Context()))
	_, err := b.CreateSubscription(t.Context(), Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x"})
	require.NoError(t, err)
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "t")}))

	// The first ack is lost, so the mesh redelivers after AckWait; the
	// bridge remembers the event and acks without a second delivery.
	require.Eventually(t, func() bool {
		s := eng.settlements()
		return len(s) == 2 && s[1].op == "ack" && s[1].attempt == 2
	}, waitFor, tick)
	assert.Equal(t, 1, rec.count())
}

func TestSubscriptionsPersistAcrossRestart(t *testing.T) {
	eng := openEngine(t)
	rec1 := &recorder{}
	b1 := newTestBridge(t, eng, rec1)
	require.NoError(t, b1.Start(t.Context()))
	want, err := b1.CreateSubscription(t.Context(), Subscription{
		ID: "s1", Topic: "orders", Sink: "http://127.0.0.1:1/x",
		Filters: []map[string]any{{"exact": map[string]any{"priority": 5}}},
	})
	require.NoError(t, err)
	_, err = b1.CreateSubscription(t.Context(), Subscription{ID: "s0", Topic: "other", Sink: "https://example.com/y"})
	require.NoError(t, err)
	require.NoError(t, b1.Stop(t.Context()))
	require.NoError(t, b1.Stop(t.Context()), "Stop is idempotent")

	// Published while no bridge runs: the group exists, so it is kept.
	e := mkEvent(t, "1", "t")
	e.SetExtension("priority", 5)
	require.NoError(t, b1.Publish(t.Context(), "orders", []*event.Event{e}))

	rec2 := &recorder{}
	b2 := newTestBridge(t, eng, rec2)
	require.NoError(t, b2.Start(t.Context()))
	subs, err := b2.ListSubscriptions(t.Context())
	require.NoError(t, err)
	require.Len(t, subs, 2)
	assert.Equal(t, []string{"s0", "s1"}, []string{subs[0].ID, subs[1].ID})
	got, err := b2.GetSubscription(t.Context(), "s1")
	require.NoError(t, err)
	assert.Equal(t, want.ID, got.ID)
	assert.Equal(t, want.Sink, got.Sink)
	assert.Equal(t, want.MaxAttempts, got.MaxAttempts)

	require.Eventually(t, func() bool { return rec2.count() == 1 }, waitFor, tick)
	assert.Equal(t, "1", rec2.snapshot()[0].e.ID())
	assert.Zero(t, rec1.count())
}

func TestCreateSubscriptionErrors(t *testing.T) {
	eng := openEngine(t)
	b := newTestBridge(t, eng, &recorder{})
	sub := Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x"}
	_, err := b.CreateSubscription(t.Context(), sub)
	require.NoError(t, err)
	_, err = b.CreateSubscription(t.Context(), sub)
	assert.ErrorIs(t, err, ErrSubscriptionExists)

	bad := sub
	bad.ID, bad.Sink = "t", "mailto:x@example.com"
	_, err = b.CreateSubscription(t.Context(), bad)
	assert.ErrorIs(t, err, ErrInvalidSubscription)
	assert.Contains(t, err.Error(), "sink")
	_, err = b.GetSubscription(t.Context(), "t")
	assert.ErrorIs(t, err, ErrSubscriptionNotFound)
	_, err = b.GetSubscription(t.Context(), "bad/id")
	assert.ErrorIs(t, err, ErrSubscriptionNotFound)
	assert.ErrorIs(t, b.DeleteSubscription(t.Context(), "nope"), ErrSubscriptionNotFound)

	noSender, err := New(Options{Engine: eng})
	require.NoError(t, err)
	_, err = noSender.CreateSubscription(t.Context(), Subscription{ID: "u", Topic: "orders", Sink: "http://h/"})
	assert.ErrorIs(t, err, ErrNoSender)
	assert.ErrorIs(t, noSender.Start(t.Context()), ErrNoSender, "stored subscriptions need a sender")

	_, err = New(Options{})
	assert.Error(t, err)
}

func TestDeleteStopsDelivery(t *testing.T) {
	eng := openEngine(t)
	rec := &recorder{}
	b := newTestBridge(t, eng, rec)
	require.NoError(t, b.Start(t.Context()))
	_, err := b.CreateSubscription(t.Context(), Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x"})
	require.NoError(t, err)
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "t")}))
	require.Eventually(t, func() bool { return rec.count() == 1 }, waitFor, tick)

	require.NoError(t, b.DeleteSubscription(t.Context(), "s"))
	_, err = b.GetSubscription(t.Context(), "s")
	assert.ErrorIs(t, err, ErrSubscriptionNotFound)
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "2", "t")}))
	assert.Never(t, func() bool { return rec.count() > 1 }, 500*time.Millisecond, tick)

	// The id can be used again; the new group starts at new events.
	_, err = b.CreateSubscription(t.Context(), Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x"})
	require.NoError(t, err)
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "3", "t")}))
	require.Eventually(t, func() bool { return rec.count() == 2 }, waitFor, tick)
	assert.Equal(t, "3", rec.snapshot()[1].e.ID())
}

func TestPutSubscriptionReplaces(t *testing.T) {
	eng := openEngine(t)
	rec := &recorder{}
	b := newTestBridge(t, eng, rec)
	require.NoError(t, b.Start(t.Context()))
	sub := Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x",
		Filters: []map[string]any{{"exact": map[string]any{"type": "a"}}}}
	_, err := b.PutSubscription(t.Context(), sub)
	require.NoError(t, err)
	r1 := b.runners["s"]
	_, err = b.PutSubscription(t.Context(), sub)
	require.NoError(t, err)
	assert.Same(t, r1, b.runners["s"], "an unchanged Put keeps the loop")

	sub.Filters = []map[string]any{{"exact": map[string]any{"type": "b"}}}
	_, err = b.PutSubscription(t.Context(), sub)
	require.NoError(t, err)
	assert.NotSame(t, r1, b.runners["s"], "a changed Put restarts the loop")

	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "a"), mkEvent(t, "2", "b")}))
	require.Eventually(t, func() bool { return rec.count() == 1 }, waitFor, tick)
	assert.Equal(t, "2", rec.snapshot()[0].e.ID())
	got, err := b.GetSubscription(t.Context(), "s")
	require.NoError(t, err)
	assert.Equal(t, "b", got.Filters[0]["exact"].(map[string]any)["type"])
}

func TestStopNaksInFlightAtDeadline(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	started := make(chan struct{}, 1)
	rec := &recorder{reply: func(n int, e *event.Event) error {
		return nil
	}}
	blocking := senderFunc(func(ctx context.Context, sub *Subscription, e *event.Event) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	b := newTestBridge(t, eng, blocking)
	require.NoError(t, b.Start(t.Context()))
	_, err := b.CreateSubscription(t.Context(), Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x"})
	require.NoError(t, err)
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "t")}))
	select {
	case <-started:
	case <-time.After(waitFor):
		t.Fatal("no delivery started")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, b.Stop(ctx), context.DeadlineExceeded)
	s := eng.settlements()
	require.Len(t, s, 1)
	assert.Equal(t, settlement{op: "nak", id: "1", attempt: 1}, s[0])

	// A new bridge delivers the event.
	b2 := newTestBridge(t, eng, rec)
	require.NoError(t, b2.Start(t.Context()))
	require.Eventually(t, func() bool { return rec.count() == 1 }, waitFor, tick)
}

type senderFunc func(ctx context.Context, sub *Subscription, e *event.Event) error

func (f senderFunc) Send(ctx context.Context, sub *Subscription, e *event.Event) error {
	return f(ctx, sub, e)
}

// A sink given as a path goes to the app's port on loopback, and is refused
// when the app's port is not known.
func TestPathSinkGoesToTheAppPort(t *testing.T) {
	var got atomic.Value
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.URL.Path)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer app.Close()
	port, _ := strconv.Atoi(app.URL[strings.LastIndex(app.URL, ":")+1:])
	eng := openEngine(t)

	noPort := newTestBridge(t, eng, cehttpSender{})
	_, err := noPort.CreateSubscription(t.Context(), Subscription{ID: "p0", Topic: "paths", Sink: "/events"})
	require.ErrorIs(t, err, ErrInvalidSubscription)
	assert.Contains(t, err.Error(), "app.port")

	b := newTestBridge(t, eng, cehttpSender{}, func(o *Options) { o.AppPort = port })
	require.NoError(t, b.Start(t.Context()))
	sub, err := b.CreateSubscription(t.Context(), Subscription{ID: "p1", Topic: "paths", Sink: "/events"})
	require.NoError(t, err)
	assert.Equal(t, "/events", sub.Sink, "stored as given")
	require.NoError(t, b.Publish(t.Context(), "paths", []*event.Event{mkEvent(t, "1", "t")}))
	require.Eventually(t, func() bool { return got.Load() == "/events" }, waitFor, tick)
	for _, bad := range []string{"//evil/x", "/a#frag", "/a b"} {
		_, err := b.CreateSubscription(t.Context(), Subscription{ID: "p2", Topic: "paths", Sink: bad})
		require.ErrorIs(t, err, ErrInvalidSubscription, bad)
	}
}

// cehttpSender posts binary-mode events with net/http (bridge cannot import
// bridge/cehttp, which imports it).
type cehttpSender struct{}

func (cehttpSender) Send(ctx context.Context, sub *Subscription, e *event.Event) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.Sink, strings.NewReader(string(e.Data())))
	if err != nil {
		return PermanentError(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return UnavailableError(err, 0)
	}
	resp.Body.Close()
	return nil
}

// An event larger than the mesh carries fails the publish with
// mesh.ErrTooLarge (an endpoint's 413), and a batch holding one stores
// nothing.
func TestPublishTooLargeStoresNothing(t *testing.T) {
	eng := openEngine(t)
	b := newTestBridge(t, eng, &recorder{})
	stored := readTopic(t, eng, "big")
	small := mkEvent(t, "small", "t")
	big := mkEvent(t, "big", "t")
	require.NoError(t, big.SetData("application/octet-stream", make([]byte, eng.MaxEventBytes())))
	err := b.Publish(t.Context(), "big", []*event.Event{small, mkEvent(t, "small-2", "t"), big})
	require.ErrorIs(t, err, mesh.ErrTooLarge)
	require.NotErrorIs(t, err, mesh.ErrUnavailable, "a client error, not a retryable one")
	var tl *mesh.TooLargeError
	require.ErrorAs(t, err, &tl)
	assert.Equal(t, 2, tl.Index)
	require.NoError(t, b.Publish(t.Context(), "big", []*event.Event{mkEvent(t, "after", "t")}))
	require.Eventually(t, func() bool { return len(stored()) == 1 }, waitFor, tick)
	assert.Equal(t, "after", stored()[0].ID(), "nothing of the refused batch was stored")
}

// Four subscriptions dead-lettering the same events to one topic store a
// copy each, and a subscriber of that topic receives every copy (its
// de-duplication is by stored event, not source+id), each saying which
// subscription gave up and where the event came from.
func TestEveryDeadLetterCopyIsDelivered(t *testing.T) {
	eng := openEngine(t)
	const n = 25
	var mu sync.Mutex
	got := map[string]int{} // deliveryby → copies received
	rec := &recorder{reply: func(_ int, e *event.Event) error {
		if by, ok := e.Extensions()[ExtDeliveryBy].(string); ok {
			mu.Lock()
			got[by]++
			mu.Unlock()
			assert.Equal(t, "orders", e.Extensions()[ExtDeliveryTopic])
			return nil
		}
		return &DeliveryError{Class: Permanent, StatusCode: 400, Err: errors.New("no")}
	}}
	b := newTestBridge(t, eng, rec)
	require.NoError(t, b.Start(t.Context()))
	for i := range 4 {
		_, err := b.CreateSubscription(t.Context(), Subscription{ID: fmt.Sprintf("s%d", i), Topic: "orders", Sink: "http://127.0.0.1:1/x", DeadLetterTopic: "dead"})
		require.NoError(t, err)
	}
	_, err := b.CreateSubscription(t.Context(), Subscription{ID: "dlq-reader", Topic: "dead", Sink: "http://127.0.0.1:1/y"})
	require.NoError(t, err)
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = mkEvent(t, fmt.Sprintf("e%d", i), "t")
	}
	require.NoError(t, b.Publish(t.Context(), "orders", evs))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, c := range got {
			total += c
		}
		return total == 4*n
	}, waitFor, tick, "every copy reaches the dead-letter subscriber")
	mu.Lock()
	defer mu.Unlock()
	for i := range 4 {
		assert.Equal(t, n, got[fmt.Sprintf("subscription/s%d", i)])
	}
}

// With the defaults, a subscriber that fails for longer than the old limit
// of ten attempts still gets every event once it is back: nothing is
// dropped.
func TestDefaultsRetryUntilTheSubscriberIsBack(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	var down atomic.Bool
	down.Store(true)
	rec := &recorder{reply: func(int, *event.Event) error {
		if down.Load() {
			return &DeliveryError{StatusCode: 503, Err: errors.New("starting up")}
		}
		return nil
	}}
	b := newTestBridge(t, eng, rec)
	require.NoError(t, b.Start(t.Context()))
	sub, err := b.CreateSubscription(t.Context(), Subscription{ID: "slow-app", Topic: "orders", Sink: "http://127.0.0.1:1/x"})
	require.NoError(t, err)
	assert.Zero(t, sub.MaxAttempts, "the default retries for as long as the mesh keeps the event")
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "t")}))
	require.Eventually(t, func() bool { return rec.count() >= 15 }, waitFor, tick, "more failures than the old limit of 10")
	down.Store(false)
	require.Eventually(t, func() bool {
		for _, s := range eng.settlements() {
			if s.op == "ack" && s.id == "1" {
				return true
			}
		}
		return false
	}, waitFor, tick, "delivered once the subscriber is back")
	for _, s := range eng.settlements() {
		assert.NotEqual(t, "term", s.op, "never given up")
	}
}

// countingKV counts the values read from a bucket.
type countingKV struct {
	mesh.KV
	gets *atomic.Int64
}

func (c countingKV) Get(ctx context.Context, key string) (mesh.Entry, error) {
	c.gets.Add(1)
	return c.KV.Get(ctx, key)
}

type countingEngine struct {
	mesh.Engine
	gets atomic.Int64
}

func (c *countingEngine) KV(ctx context.Context, bucket string) (mesh.KV, error) {
	kv, err := c.Engine.KV(ctx, bucket)
	if err != nil {
		return nil, err
	}
	return countingKV{KV: kv, gets: &c.gets}, nil
}

// Deleting a subscription keeps a group another subscription shares, and
// does not read every stored subscription to find out.
func TestDeleteSubscriptionKeepsASharedGroup(t *testing.T) {
	eng := &countingEngine{Engine: openEngine(t)}
	rec := &recorder{}
	b := newTestBridge(t, eng, rec)
	require.NoError(t, b.Start(t.Context()))
	for i := range 40 {
		_, err := b.CreateSubscription(t.Context(), Subscription{ID: fmt.Sprintf("other-%d", i), Topic: "elsewhere", Sink: "http://127.0.0.1:1/x"})
		require.NoError(t, err)
	}
	for _, id := range []string{"a", "b"} {
		_, err := b.CreateSubscription(t.Context(), Subscription{ID: id, Topic: "orders", Group: "shared", Sink: "http://127.0.0.1:1/" + id})
		require.NoError(t, err)
	}
	before := eng.gets.Load()
	require.NoError(t, b.DeleteSubscription(t.Context(), "a"))
	assert.Less(t, eng.gets.Load()-before, int64(5), "a delete reads the deleted subscription, not all 42")
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "t")}))
	require.Eventually(t, func() bool { return rec.count() == 1 }, waitFor, tick, "b still gets the shared group's events")
	assert.Equal(t, "http://127.0.0.1:1/b", rec.snapshot()[0].sub.Sink)
}

// maxInFlight 1 is the ordered mode: events reach the sink in the order
// they were stored, even when one fails and is retried (the mesh delivers
// nothing else while it waits).
func TestMaxInFlightOneKeepsOrder(t *testing.T) {
	eng := openEngine(t)
	var mu sync.Mutex
	var order []string
	failures := map[string]int{"e03": 2, "e11": 1}
	rec := &recorder{reply: func(_ int, e *event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if failures[e.ID()] > 0 {
			failures[e.ID()]--
			return &DeliveryError{StatusCode: 503, Err: errors.New("busy")}
		}
		order = append(order, e.ID())
		return nil
	}}
	b := newTestBridge(t, eng, rec)
	require.NoError(t, b.Start(t.Context()))
	_, err := b.CreateSubscription(t.Context(), Subscription{ID: "ordered", Topic: "orders", Sink: "http://127.0.0.1:1/x", MaxInFlight: 1})
	require.NoError(t, err)
	var want []string
	for i := range 20 {
		id := fmt.Sprintf("e%02d", i)
		want = append(want, id)
		require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, id, "t")}))
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 20 }, waitFor, tick)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, want, order)
}

// Attributes over the mesh's 64 KiB header limit are a 413-class error
// naming that limit, not a retryable one.
func TestAttributesTooLarge(t *testing.T) {
	eng := openEngine(t)
	b := newTestBridge(t, eng, &recorder{})
	e := mkEvent(t, "big-attrs", "t")
	e.SetExtension("big", strings.Repeat("a", 70<<10))
	err := b.Publish(t.Context(), "attrs", []*event.Event{e})
	var tl *mesh.TooLargeError
	require.ErrorAs(t, err, &tl)
	assert.True(t, tl.Attributes)
	assert.Contains(t, err.Error(), "bytes of attributes")
	require.NotErrorIs(t, err, mesh.ErrUnavailable)
}

// startAt "earliest" delivers what the topic held before the subscription
// existed; a sequence starts there; a bad value is refused naming the field.
func TestSubscriptionStartAt(t *testing.T) {
	eng := openEngine(t)
	rec := &recorder{}
	b := newTestBridge(t, eng, rec)
	require.NoError(t, b.Start(t.Context()))
	require.NoError(t, b.Publish(t.Context(), "history", []*event.Event{mkEvent(t, "old-1", "t"), mkEvent(t, "old-2", "t")}))
	_, err := b.CreateSubscription(t.Context(), Subscription{ID: "from-start", Topic: "history", Sink: "http://127.0.0.1:1/x", StartAt: "earliest"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return rec.count() == 2 }, waitFor, tick)
	_, err = b.CreateSubscription(t.Context(), Subscription{ID: "bad", Topic: "history", Sink: "http://127.0.0.1:1/x", StartAt: "yesterday"})
	require.ErrorIs(t, err, ErrInvalidSubscription)
	assert.Contains(t, err.Error(), "startAt")
}
