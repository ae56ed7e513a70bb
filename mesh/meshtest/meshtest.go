// Package meshtest is the conformance suite every mesh.Engine passes.
//
//	func TestConformance(t *testing.T) {
//		meshtest.Run(t, func(t *testing.T) meshtest.Instance { ... })
//	}
package meshtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/mesh"
)

// Instance is an engine on fresh storage, with the controls the suite
// needs. The opener registers its own cleanup with t.
type Instance struct {
	Engine mesh.Engine
	// Restart closes Engine and returns a new engine on the same storage.
	Restart func(t *testing.T) mesh.Engine
	// StopServer makes the storage unreachable (stops the server) while
	// Engine stays open.
	StopServer func(t *testing.T)
}

// Opener opens an Instance on fresh storage.
type Opener func(t *testing.T) Instance

// Timing knobs: short enough to keep the suite fast, long enough for -race
// on a loaded 2-core machine.
const (
	waitFor   = 10 * time.Second       // an expected delivery arrives within
	quiet     = 700 * time.Millisecond // no delivery is expected within
	shortAck  = 400 * time.Millisecond // AckWait of tests that wait for redelivery
	nakDelay  = 800 * time.Millisecond
	pollEvery = 20 * time.Millisecond
)

// Run runs the conformance suite against the engines open makes. Subtests
// that need no fresh storage share one instance, each on its own topics.
func Run(t *testing.T, open Opener) {
	t.Run("shared", func(t *testing.T) {
		shared := open(t)
		eng := shared.Engine
		tests := []struct {
			name string
			fn   func(*testing.T, mesh.Engine)
		}{
			{"RoundTrip", testRoundTrip},
			{"BatchPublish", testBatchPublish},
			{"BadBatchPublishesNothing", testBadBatch},
			{"DuplicateStoredOnce", testDuplicate},
			{"GroupSplits", testGroupSplits},
			{"GroupsFanOut", testGroupsFanOut},
			{"StartAtNew", testStartAtNew},
			{"StartAt", testStartAt},
			{"AckStopsRedelivery", testAckStopsRedelivery},
			{"NakRedelivers", testNakRedelivers},
			{"Sequence", testSequence},
			{"NakDelay", testNakDelay},
			{"AckTimeoutRedelivers", testAckTimeout},
			{"RedeliverFirst", testRedeliverFirst},
			{"OpenedMemberTakesNothing", testOpenedMemberTakesNothing},
			{"RedeliverFirstCloseWhileWaiting", testRedeliverFirstCloseWhileWaiting},
			{"RedeliverFirstShortNexts", testRedeliverFirstShortNexts},
			{"InProgressExtends", testInProgress},
			{"TermStopsDelivery", testTerm},
			{"MaxDeliver", testMaxDeliver},
			{"MaxInFlight", testMaxInFlight},
			{"ReconfigureGroup", testReconfigure},
			{"DeleteGroup", testDeleteGroup},
			{"ResetGroup", testResetGroup},
			{"ConsumerClose", testConsumerClose},
			{"InvalidTopic", testInvalidTopic},
			{"ValuesRoundTrip", testValuesRoundTrip},
			{"Ephemeral", testEphemeral},
			{"KV", testKV},
			{"KVEmptyBucket", testKVEmpty},
			{"KVWatch", testKVWatch},
			{"Ready", testReady},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.fn(t, eng)
			})
		}
	})
	t.Run("SurvivesRestart", func(t *testing.T) {
		t.Parallel()
		testRestart(t, open(t))
	})
	t.Run("EngineClose", func(t *testing.T) {
		t.Parallel()
		testEngineClose(t, open(t))
	})
	t.Run("UnavailableFailsFast", func(t *testing.T) {
		t.Parallel()
		testUnavailable(t, open(t))
	})
}

var nonTopic = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// topic returns a topic unique to the running subtest.
func topic(t *testing.T, suffix ...string) string {
	parts := strings.Split(t.Name(), "/")
	name := "mt." + nonTopic.ReplaceAllString(parts[len(parts)-1], "_")
	for _, s := range suffix {
		name += "." + s
	}
	return name
}

func newEvent(t *testing.T, id string) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource("/meshtest")
	e.SetType("meshtest.event")
	require.NoError(t, e.SetData("text/plain", []byte("payload "+id)))
	return &e
}

func newEvents(t *testing.T, prefix string, n int) []*event.Event {
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = newEvent(t, fmt.Sprintf("%s-%d", prefix, i))
	}
	return evs
}

func consume(t *testing.T, eng mesh.Engine, cfg mesh.ConsumerConfig) mesh.Consumer {
	t.Helper()
	c, err := eng.Consume(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// next returns the next delivery, failing the test after waitFor.
func next(t *testing.T, c mesh.Consumer) mesh.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	m, err := c.Next(ctx)
	require.NoError(t, err, "waiting for a delivery")
	return m
}

// nextOf waits for the next event of any of cs (members of one group:
// which one gets it is the engine's choice).
func nextOf(t *testing.T, cs ...mesh.Consumer) mesh.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	got := make(chan mesh.Message, len(cs))
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			if m, err := c.Next(ctx); err == nil {
				got <- m
				cancel()
			}
		})
	}
	wg.Wait()
	close(got)
	m, ok := <-got
	require.True(t, ok, "waiting for a delivery")
	require.Empty(t, got, "more delivered than the limit allows")
	return m
}

// noNext checks that nothing is delivered within quiet.
func noNext(t *testing.T, c mesh.Consumer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), quiet)
	defer cancel()
	m, err := c.Next(ctx)
	if err == nil {
		t.Fatalf("unexpected delivery of %q (attempt %d)", m.Event().ID(), m.Attempt())
	}
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func ack(t *testing.T, m mesh.Message) {
	t.Helper()
	require.NoError(t, m.Ack(t.Context()))
}

func testRoundTrip(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	ts := time.Date(2024, 2, 29, 23, 59, 58, 123456789, time.UTC)

	full := event.New(event.CloudEventsVersionV1)
	full.SetID("full-1")
	full.SetSource("https://example.com/src?x=1#frag")
	full.SetType("com.example.full")
	full.SetSubject("subject with spaces/é")
	full.SetTime(ts)
	full.SetDataSchema("https://example.com/schema.json")
	require.NoError(t, full.SetData("application/octet-stream", []byte{0, 1, 2, 0xfe, 0xff, '\r', '\n'}))
	u, _ := url.Parse("https://example.com/u")
	exts := map[string]any{
		"strext":    "a string",
		"intext":    int32(-42),
		"boolext":   true,
		"uriext":    types.URI{URL: *u},
		"urirefext": types.URIRef{URL: url.URL{Path: "/rel/ref"}},
		"timeext":   types.Timestamp{Time: ts},
		"binext":    []byte{0, 0xff, 7},
	}
	for k, v := range exts {
		full.SetExtension(k, v)
	}

	empty := event.New()
	empty.SetID("empty-1")
	empty.SetSource("urn:meshtest")
	empty.SetType("com.example.empty")

	jsonEv := event.New()
	jsonEv.SetID("json-1")
	jsonEv.SetSource("/meshtest")
	jsonEv.SetType("com.example.json")
	require.NoError(t, jsonEv.SetData(event.ApplicationJSON, map[string]any{"k": "v", "n": 1}))

	v03 := event.New(event.CloudEventsVersionV03)
	v03.SetID("v03-1")
	v03.SetSource("/meshtest/v03")
	v03.SetType("com.example.v03")
	v03.SetSubject("old")
	v03.SetTime(ts)
	v03.SetDataSchema("https://example.com/v03-schema")
	require.NoError(t, v03.SetData("text/plain", "hello 0.3"))
	v03.SetExtension("ext03", "x")

	sent := []*event.Event{&full, &empty, &jsonEv, &v03}
	for _, e := range sent {
		require.NoError(t, e.Validate())
		require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{e}))
	}

	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g"})
	for _, want := range sent {
		m := next(t, c)
		got := m.Event()
		require.Equal(t, tp, m.Topic())
		require.Equal(t, 1, m.Attempt())
		require.NoError(t, got.Validate())
		assert.Equal(t, want.SpecVersion(), got.SpecVersion(), "specversion")
		assert.Equal(t, want.ID(), got.ID(), "id")
		assert.Equal(t, want.Source(), got.Source(), "source")
		assert.Equal(t, want.Type(), got.Type(), "type")
		assert.Equal(t, want.Subject(), got.Subject(), "subject")
		assert.True(t, want.Time().Equal(got.Time()), "time %s != %s", want.Time(), got.Time())
		assert.Equal(t, want.DataSchema(), got.DataSchema(), "dataschema")
		assert.Equal(t, want.DataContentType(), got.DataContentType(), "datacontenttype")
		assert.Equal(t, want.Data(), got.Data(), "data")
		require.Len(t, got.Extensions(), len(want.Extensions()), "extensions: %v", got.Extensions())
		for name, wv := range want.Extensions() {
			gv, ok := got.Extensions()[name]
			require.True(t, ok, "extension %q missing", name)
			ws, err := types.Format(wv)
			require.NoError(t, err)
			gs, err := types.Format(gv)
			require.NoError(t, err)
			assert.Equal(t, ws, gs, "extension %q", name)
		}
		// The event still has a valid JSON form.
		b, err := got.MarshalJSON()
		require.NoError(t, err)
		require.True(t, json.Valid(b), "JSON form: %s", b)
		ack(t, m)
	}
	noNext(t, c)
}

func testBatchPublish(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	const n = 1500 // more than one async window
	evs := newEvents(t, "b", n)
	require.NoError(t, eng.Publish(t.Context(), tp, evs))
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g", MaxInFlight: 500})
	seen := map[string]bool{}
	for range n {
		m := next(t, c)
		require.False(t, seen[m.Event().ID()], "duplicate %q", m.Event().ID())
		seen[m.Event().ID()] = true
		ack(t, m)
	}
	noNext(t, c)
}

func testBadBatch(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	evs := newEvents(t, "bad", 3)
	bad := event.New()
	bad.SetSource("/meshtest") // no id, no type
	evs = append(evs, &bad)
	err := eng.Publish(t.Context(), tp, evs)
	require.Error(t, err)
	require.NotErrorIs(t, err, mesh.ErrUnavailable)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g"})
	noNext(t, c)
}

func testDuplicate(t *testing.T, eng mesh.Engine) {
	tp, dlq := topic(t), topic(t, "dlq")
	e := newEvent(t, "dup-1")
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{e}))
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{e}))
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{e, newEvent(t, "dup-2"), e}))
	// The same event on another topic (a dead-letter copy) is kept; so is
	// a copy from another publisher (dedup key), once per publisher.
	require.NoError(t, eng.Publish(t.Context(), dlq, []*event.Event{e}))
	for range 2 {
		require.NoError(t, eng.Publish(t.Context(), dlq, []*event.Event{e}, mesh.WithDedupKey("sub-a")))
		require.NoError(t, eng.Publish(t.Context(), dlq, []*event.Event{e, newEvent(t, "dup-3")}, mesh.WithDedupKey("sub-b")))
	}

	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g"})
	var ids []string
	for range 2 {
		m := next(t, c)
		ids = append(ids, m.Event().ID())
		ack(t, m)
	}
	require.ElementsMatch(t, []string{"dup-1", "dup-2"}, ids)
	noNext(t, c)

	d := consume(t, eng, mesh.ConsumerConfig{Topic: dlq, Group: "g"})
	ids = nil
	for range 4 {
		m := next(t, d)
		ids = append(ids, m.Event().ID())
		ack(t, m)
	}
	require.ElementsMatch(t, []string{"dup-1", "dup-1", "dup-1", "dup-3"}, ids)
	noNext(t, d)
}

// collect runs Next on each consumer until total deliveries were made,
// acking each, and returns the ids each consumer received.
func collect(t *testing.T, total int, cs ...mesh.Consumer) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	var (
		mu  sync.Mutex
		n   int
		got = make([][]string, len(cs))
		wg  sync.WaitGroup
	)
	errs := make(chan error, len(cs))
	for i, c := range cs {
		wg.Go(func() {
			for {
				m, err := c.Next(ctx)
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						errs <- err
					}
					return
				}
				if err := m.Ack(ctx); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				got[i] = append(got[i], m.Event().ID())
				n++
				if n == total {
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err, "consuming")
	}
	return got
}

func testGroupSplits(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	const n = 40
	cfg := mesh.ConsumerConfig{Topic: tp, Group: "workers", MaxInFlight: 4}
	a, b := consume(t, eng, cfg), consume(t, eng, cfg)
	require.NoError(t, eng.Publish(t.Context(), tp, newEvents(t, "s", n)))
	got := collect(t, n, a, b)
	all := append(slices.Clone(got[0]), got[1]...)
	require.Len(t, all, n)
	slices.Sort(all)
	require.Len(t, slices.Compact(all), n, "an event was delivered to two members")
	noNext(t, a)
	noNext(t, b)
}

func testGroupsFanOut(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	const n = 10
	a := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "a"})
	b := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "b"})
	require.NoError(t, eng.Publish(t.Context(), tp, newEvents(t, "f", n)))
	ga := collect(t, n, a)[0]
	gb := collect(t, n, b)[0]
	require.ElementsMatch(t, ga, gb)
	require.Len(t, ga, n)
}

// A new group can start at a stream sequence or a time; an existing one
// keeps its position.
func testStartAt(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	require.NoError(t, eng.Publish(t.Context(), tp, newEvents(t, "at", 4)))
	all := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "all"})
	var seqs []uint64
	for range 4 {
		m := next(t, all)
		seqs = append(seqs, m.Seq())
		ack(t, m)
	}
	bySeq := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "by-seq", StartSeq: seqs[2], StartAtNew: true})
	m := next(t, bySeq)
	assert.Equal(t, seqs[2], m.Seq(), "starts at the given sequence")
	ack(t, m)

	mid := time.Now()
	time.Sleep(10 * time.Millisecond) // stored times are the server's clock; keep them apart
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "late")}))
	byTime := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "by-time", StartTime: mid})
	m = next(t, byTime)
	assert.Equal(t, "late", m.Event().ID(), "starts at the first event stored at or after the time")
	ack(t, m)
	noNext(t, byTime)
}

func testStartAtNew(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "old")}))
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "new", StartAtNew: true})
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "new-1")}))
	m := next(t, c)
	require.Equal(t, "new-1", m.Event().ID())
	ack(t, m)
	require.NoError(t, c.Close())

	// An existing group resumes where it was, StartAtNew or not.
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "new-2")}))
	c = consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "new", StartAtNew: true})
	m = next(t, c)
	require.Equal(t, "new-2", m.Event().ID())
	ack(t, m)

	// A group without StartAtNew starts at the oldest event.
	all := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "all"})
	require.Equal(t, []string{"old", "new-1", "new-2"}, collect(t, 3, all)[0])
}

func testAckStopsRedelivery(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g", AckWait: shortAck})
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "a-1")}))
	m := next(t, c)
	ack(t, m)
	noNext(t, c)
}

// Ephemeral consumers are each their own: two with one group label both
// receive every new event, and neither sees what was stored before it.
func testEphemeral(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "before")}))
	a := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "ws", Ephemeral: true})
	b := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "ws", Ephemeral: true})
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "after")}))
	for _, c := range []mesh.Consumer{a, b} {
		m := next(t, c)
		assert.Equal(t, "after", m.Event().ID())
		ack(t, m)
		noNext(t, c)
	}
}

// Extension values travel byte for byte, spaces at their ends and percent
// signs included (NATS headers would trim the spaces).
func testValuesRoundTrip(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g"})
	spaced := newEvent(t, "spaced")
	spaced.SetExtension("note", " a b %zz ")
	spaced.SetExtension("other", "  ")
	plain := newEvent(t, "plain")
	plain.SetExtension("note", "50%20")
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{spaced, plain}))
	got := next(t, c)
	ack(t, got)
	assert.Equal(t, "spaced", got.Event().ID())
	assert.Equal(t, " a b %zz ", got.Event().Extensions()["note"])
	assert.Equal(t, "  ", got.Event().Extensions()["other"])
	got = next(t, c)
	ack(t, got)
	assert.Equal(t, "plain", got.Event().ID())
	assert.Equal(t, "50%20", got.Event().Extensions()["note"], "a plain value is not unescaped")
}

func testNakRedelivers(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g"})
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "n-0"), newEvent(t, "n-1")}))
	first := next(t, c)
	require.Equal(t, "n-0", first.Event().ID())
	ack(t, first)
	var seq uint64
	for attempt := 1; attempt <= 3; attempt++ {
		m := next(t, c)
		require.Equal(t, "n-1", m.Event().ID())
		require.Equal(t, attempt, m.Attempt())
		if attempt == 1 {
			seq = m.Seq()
			require.NotEqual(t, first.Seq(), seq, "two stored events have two sequences")
		}
		require.Equal(t, seq, m.Seq(), "every delivery of one stored event has its sequence")
		if attempt < 3 {
			require.NoError(t, m.Nak(t.Context(), 0))
		} else {
			ack(t, m)
		}
	}
	noNext(t, c)
}

// Sequences are unique across topics, grow in publish order and stay the
// same when an event is delivered again.
func testSequence(t *testing.T, eng mesh.Engine) {
	tp, other := topic(t), topic(t, "other")
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g"})
	o := consume(t, eng, mesh.ConsumerConfig{Topic: other, Group: "g"})
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "q-1")}))
	require.NoError(t, eng.Publish(t.Context(), other, []*event.Event{newEvent(t, "q-2")}))
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "q-3")}))
	m1, m2, m3 := next(t, c), next(t, o), next(t, c)
	require.Equal(t, []string{"q-1", "q-2", "q-3"}, []string{m1.Event().ID(), m2.Event().ID(), m3.Event().ID()})
	assert.Less(t, m1.Seq(), m2.Seq(), "sequences grow in publish order, across topics")
	assert.Less(t, m2.Seq(), m3.Seq(), "sequences grow in publish order, across topics")
	seq := m1.Seq()
	require.NoError(t, m1.Nak(t.Context(), 0))
	again := next(t, c)
	require.Equal(t, "q-1", again.Event().ID())
	assert.Equal(t, seq, again.Seq(), "a redelivery keeps the sequence")
	ack(t, again)
	ack(t, m2)
	ack(t, m3)
}

func testNakDelay(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g"})
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "d-1")}))
	m := next(t, c)
	start := time.Now()
	require.NoError(t, m.Nak(t.Context(), nakDelay))
	m = next(t, c)
	elapsed := time.Since(start)
	require.Equal(t, 2, m.Attempt())
	require.GreaterOrEqual(t, elapsed, nakDelay*8/10, "redelivered before the nak delay")
	require.Less(t, elapsed, nakDelay+5*time.Second, "redelivered far after the nak delay")
	ack(t, m)
}

func testAckTimeout(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g", AckWait: shortAck})
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "t-1")}))
	m := next(t, c)
	require.Equal(t, 1, m.Attempt())
	start := time.Now()
	m = next(t, c) // not acked: comes back after AckWait
	require.Equal(t, "t-1", m.Event().ID())
	require.Equal(t, 2, m.Attempt())
	require.GreaterOrEqual(t, time.Since(start), shortAck/2)
	ack(t, m)
	noNext(t, c)
}

// A member stops holding events: three taken (and handed back: naked)
// and three fetched ahead (Close hands those back). The next member, with
// RedeliverFirst, gets all six in stream order before the events published
// since, at once: it waits only for events a dead member left (see the
// natsjs tests for a member that dies).
func testRedeliverFirst(t *testing.T, eng mesh.Engine) {
	const ackWait = 3 * time.Second
	tp := topic(t)
	cfg := mesh.ConsumerConfig{Topic: tp, Group: "g", AckWait: ackWait, MaxInFlight: 100}
	prev, err := eng.Consume(t.Context(), cfg)
	require.NoError(t, err)
	require.NoError(t, eng.Publish(t.Context(), tp, newEvents(t, "old", 6)))
	var taken []mesh.Message
	for range 3 {
		taken = append(taken, next(t, prev))
	}
	require.NoError(t, prev.Close())
	for _, m := range taken {
		require.NoError(t, m.Nak(t.Context(), 0))
	}
	require.NoError(t, eng.Publish(t.Context(), tp, newEvents(t, "new", 3)))
	start := time.Now()
	cfg.RedeliverFirst = true
	c := consume(t, eng, cfg)
	var got []string
	for range 9 {
		m := next(t, c)
		got = append(got, m.Event().ID())
		ack(t, m)
	}
	assert.Equal(t, []string{"old-0", "old-1", "old-2", "old-3", "old-4", "old-5", "new-0", "new-1", "new-2"}, got)
	assert.Less(t, time.Since(start), ackWait, "events handed back come at once, not after their ack wait")
	noNext(t, c)
}

// A member opened and closed without Next (a group made ready before its
// tasks run) takes no events: the next member gets them first-hand.
func testOpenedMemberTakesNothing(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	cfg := mesh.ConsumerConfig{Topic: tp, Group: "g", AckWait: time.Minute}
	opened, err := eng.Consume(t.Context(), cfg)
	require.NoError(t, err)
	require.NoError(t, eng.Publish(t.Context(), tp, newEvents(t, "e", 3)))
	time.Sleep(quiet) // a member that pulled would have taken them by now
	require.NoError(t, opened.Close())
	c := consume(t, eng, cfg)
	for i := range 3 {
		m := next(t, c)
		assert.Equal(t, fmt.Sprintf("e-%d", i), m.Event().ID())
		assert.Equal(t, 1, m.Attempt(), "delivered before")
		ack(t, m)
	}
}

func testInProgress(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g", AckWait: time.Second})
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "p-1")}))
	m := next(t, c)
	// Keep extending for 2 AckWaits: no redelivery meanwhile.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		require.NoError(t, m.InProgress(t.Context()))
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		r, err := c.Next(ctx)
		cancel()
		if err == nil {
			t.Fatalf("redelivered %q (attempt %d) while in progress", r.Event().ID(), r.Attempt())
		}
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	ack(t, m)
}

func testTerm(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g", AckWait: shortAck})
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "x-1")}))
	m := next(t, c)
	require.NoError(t, m.Term(t.Context()))
	noNext(t, c)
}

func testMaxDeliver(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g", MaxDeliver: 2, AckWait: shortAck})
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "m-1"), newEvent(t, "m-2")}))
	for range 2 {
		m := next(t, c)
		if m.Event().ID() == "m-2" {
			ack(t, m)
			m = next(t, c)
		}
		require.Equal(t, "m-1", m.Event().ID())
		require.NoError(t, m.Nak(t.Context(), 0))
	}
	// Attempt 2 was the last: m-2 may still be due if it was not yet seen.
	for {
		ctx, cancel := context.WithTimeout(t.Context(), quiet)
		m, err := c.Next(ctx)
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			return
		}
		require.Equal(t, "m-2", m.Event().ID(), "delivered past MaxDeliver")
		ack(t, m)
	}
}

func testMaxInFlight(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g", MaxInFlight: 3})
	require.NoError(t, eng.Publish(t.Context(), tp, newEvents(t, "i", 6)))
	var held []mesh.Message
	for range 3 {
		held = append(held, next(t, c))
	}
	// A second member of the group is bound by the same limit.
	other := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g", MaxInFlight: 3})
	noNext(t, other)
	noNext(t, c)
	ack(t, held[0])
	m := nextOf(t, c, other) // either member may get the freed slot
	held = append(held[1:], m)
	for _, m := range held {
		ack(t, m)
	}
	got := collect(t, 2, c, other)
	require.Len(t, append(got[0], got[1]...), 2)
}

func testReconfigure(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g", MaxInFlight: 1})
	require.NoError(t, eng.Publish(t.Context(), tp, newEvents(t, "r", 3)))
	m1 := next(t, c)
	noNext(t, c)
	require.NoError(t, c.Close())
	// Reopening with other settings updates the existing group.
	c = consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g", MaxInFlight: 10, AckWait: shortAck})
	got := map[string]bool{}
	for len(got) < 3 {
		m := next(t, c)
		got[m.Event().ID()] = true
		ack(t, m)
	}
	require.True(t, got[m1.Event().ID()], "the event held by the closed member came back")
}

func testDeleteGroup(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	require.NoError(t, eng.Publish(t.Context(), tp, newEvents(t, "del", 2)))
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g"})
	require.Len(t, collect(t, 2, c)[0], 2)
	require.NoError(t, c.Close())
	require.NoError(t, eng.DeleteGroup(t.Context(), tp, "g"))
	require.NoError(t, eng.DeleteGroup(t.Context(), tp, "g"), "deleting a missing group")
	require.NoError(t, eng.DeleteGroup(t.Context(), tp, "never-existed"))
	// Recreated, the group starts over.
	c = consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g"})
	require.Len(t, collect(t, 2, c)[0], 2)
}

// A reset group starts over at the position given, whatever it had
// delivered and acked.
func testResetGroup(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	require.NoError(t, eng.Publish(t.Context(), tp, newEvents(t, "r", 4)))
	cfg := mesh.ConsumerConfig{Topic: tp, Group: "g", StartAtNew: true}
	c := consume(t, eng, cfg)
	require.NoError(t, eng.Publish(t.Context(), tp, newEvents(t, "n", 3)))
	var seqs []uint64
	for _, want := range []string{"n-0", "n-1", "n-2"} {
		m := next(t, c)
		require.Equal(t, want, m.Event().ID())
		seqs = append(seqs, m.Seq())
		ack(t, m)
	}
	require.NoError(t, c.Close())

	reset := cfg
	reset.StartSeq = seqs[1]
	require.NoError(t, eng.ResetGroup(t.Context(), reset))
	// A member opened afterwards with the group's usual settings (a
	// sidecar that did not reset it) joins the reset group.
	c = consume(t, eng, cfg)
	got := collect(t, 2, c)[0]
	require.Equal(t, []string{"n-1", "n-2"}, got, "delivered again from the sequence, in order")
	noNext(t, c)
	require.NoError(t, c.Close())

	// From the oldest event, and a missing group is created.
	require.NoError(t, eng.ResetGroup(t.Context(), mesh.ConsumerConfig{Topic: tp, Group: "g"}))
	require.NoError(t, eng.ResetGroup(t.Context(), mesh.ConsumerConfig{Topic: tp, Group: "fresh", StartSeq: seqs[2]}))
	c = consume(t, eng, cfg)
	require.Equal(t, []string{"r-0", "r-1", "r-2", "r-3", "n-0", "n-1", "n-2"}, collect(t, 7, c)[0])
	fresh := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "fresh", StartAtNew: true})
	m := next(t, fresh)
	require.Equal(t, "n-2", m.Event().ID())
	ack(t, m)

	// A member open while its group is reset carries on with the reset
	// group.
	reset.StartSeq = seqs[2]
	require.NoError(t, eng.ResetGroup(t.Context(), reset))
	m = next(t, c)
	require.Equal(t, "n-2", m.Event().ID())
	ack(t, m)
	noNext(t, c)
}

func testConsumerClose(t *testing.T, eng mesh.Engine) {
	tp := topic(t)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g"})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Next(t.Context())
		errc <- err
	}()
	// Close a member blocked in Next: Next returns ErrClosed.
	require.Eventually(t, func() bool {
		require.NoError(t, c.Close())
		select {
		case err := <-errc:
			require.ErrorIs(t, err, mesh.ErrClosed)
			return true
		default:
			return false
		}
	}, waitFor, pollEvery)
	require.NoError(t, c.Close(), "second Close")
	_, err := c.Next(t.Context())
	require.ErrorIs(t, err, mesh.ErrClosed)

	// ctx ends a blocked Next with ctx.Err().
	c2 := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g"})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = c2.Next(ctx)
	require.ErrorIs(t, err, context.Canceled)
}

func testInvalidTopic(t *testing.T, eng mesh.Engine) {
	for _, bad := range []string{"", "a b", "a..b", ".a", "a.", "a.*", "a.>", "ü", strings.Repeat("x", mesh.MaxTopicLen+1)} {
		err := eng.Publish(t.Context(), bad, []*event.Event{newEvent(t, "bad")})
		require.ErrorIs(t, err, mesh.ErrInvalidTopic, "publish %q", bad)
		_, err = eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: bad, Group: "g"})
		require.ErrorIs(t, err, mesh.ErrInvalidTopic, "consume %q", bad)
	}
	// Groups may hold any characters, and distinct groups stay distinct.
	tp := topic(t)
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "g-1")}))
	for _, g := range []string{"a.b", "a_b", "a b", "a*>", strings.Repeat("long", 40)} {
		c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: g})
		m := next(t, c)
		require.Equal(t, "g-1", m.Event().ID(), "group %q", g)
		ack(t, m)
	}
}

func testKV(t *testing.T, eng mesh.Engine) {
	ctx := t.Context()
	kv, err := eng.KV(ctx, "meshtest-kv")
	require.NoError(t, err)
	kv2, err := eng.KV(ctx, "meshtest-kv")
	require.NoError(t, err)

	_, err = kv.Get(ctx, "missing")
	require.ErrorIs(t, err, mesh.ErrKeyNotFound)

	r1, err := kv.Put(ctx, "conn/a.offset", []byte("1"))
	require.NoError(t, err)
	e, err := kv2.Get(ctx, "conn/a.offset")
	require.NoError(t, err)
	require.Equal(t, mesh.Entry{Key: "conn/a.offset", Value: []byte("1"), Revision: r1}, e)

	_, err = kv.Create(ctx, "conn/a.offset", []byte("x"))
	require.ErrorIs(t, err, mesh.ErrConflict)

	r2, err := kv.Update(ctx, "conn/a.offset", []byte("2"), r1)
	require.NoError(t, err)
	require.Greater(t, r2, r1)
	_, err = kv.Update(ctx, "conn/a.offset", []byte("stale"), r1)
	require.ErrorIs(t, err, mesh.ErrConflict)
	e, err = kv.Get(ctx, "conn/a.offset")
	require.NoError(t, err)
	require.Equal(t, []byte("2"), e.Value)

	r3, err := kv.Create(ctx, "conn/b.offset", []byte("b"))
	require.NoError(t, err)
	require.Greater(t, r3, r2)
	_, err = kv.Put(ctx, "other.x", []byte("o"))
	require.NoError(t, err)
	_, err = kv.Put(ctx, "conn.dot.key", []byte("d"))
	require.NoError(t, err)

	keys, err := kv.Keys(ctx, "conn/")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"conn/a.offset", "conn/b.offset"}, keys)
	keys, err = kv.Keys(ctx, "conn.")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"conn.dot.key"}, keys)
	keys, err = kv.Keys(ctx, "")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"conn/a.offset", "conn/b.offset", "other.x", "conn.dot.key"}, keys)
	keys, err = kv.Keys(ctx, "nothing")
	require.NoError(t, err)
	require.Empty(t, keys)

	require.NoError(t, kv.Delete(ctx, "conn/a.offset"))
	require.NoError(t, kv.Delete(ctx, "conn/a.offset"), "deleting a deleted key")
	require.NoError(t, kv.Delete(ctx, "never-set"), "deleting a missing key")
	_, err = kv.Get(ctx, "conn/a.offset")
	require.ErrorIs(t, err, mesh.ErrKeyNotFound)
	keys, err = kv.Keys(ctx, "conn/")
	require.NoError(t, err)
	require.Equal(t, []string{"conn/b.offset"}, keys)
	// A deleted key can be created again.
	_, err = kv.Create(ctx, "conn/a.offset", []byte("again"))
	require.NoError(t, err)

	// Buckets are separate.
	other, err := eng.KV(ctx, "meshtest-other")
	require.NoError(t, err)
	_, err = other.Get(ctx, "conn/b.offset")
	require.ErrorIs(t, err, mesh.ErrKeyNotFound)
}

func testKVWatch(t *testing.T, eng mesh.Engine) {
	ctx := t.Context()
	kv, err := eng.KV(ctx, "meshtest-watch")
	require.NoError(t, err)
	ra, err := kv.Put(ctx, "sub.a", []byte("a1"))
	require.NoError(t, err)
	_, err = kv.Put(ctx, "other.x", []byte("x"))
	require.NoError(t, err)
	rb, err := kv.Put(ctx, "sub.b", []byte("b1"))
	require.NoError(t, err)
	_, err = kv.Put(ctx, "sub.gone", []byte("g"))
	require.NoError(t, err)
	require.NoError(t, kv.Delete(ctx, "sub.gone"))

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes, err := kv.Watch(wctx, "sub.")
	require.NoError(t, err)
	all, err := kv.Watch(wctx, "")
	require.NoError(t, err)
	recv := func(ch <-chan mesh.Change) mesh.Change {
		t.Helper()
		for {
			select {
			case c, ok := <-ch:
				require.True(t, ok, "watch channel closed")
				if c.Deleted && c.Key == "sub.gone" {
					continue // a deletion before the watch: it may be reported
				}
				return c
			case <-time.After(waitFor):
				t.Fatal("no change reported")
			}
		}
	}

	// The current values, in revision order, then the marker.
	require.Equal(t, mesh.Change{Key: "sub.a", Value: []byte("a1"), Revision: ra}, recv(changes))
	require.Equal(t, mesh.Change{Key: "sub.b", Value: []byte("b1"), Revision: rb}, recv(changes))
	require.Equal(t, mesh.Change{}, recv(changes), "the end of the current values")
	var keys []string
	for c := recv(all); c.Key != ""; c = recv(all) {
		keys = append(keys, c.Key)
	}
	require.Equal(t, []string{"sub.a", "other.x", "sub.b"}, keys)

	// Then every change, as it happens, of the watched keys only.
	ra2, err := kv.Update(ctx, "sub.a", []byte("a2"), ra)
	require.NoError(t, err)
	require.Equal(t, mesh.Change{Key: "sub.a", Value: []byte("a2"), Revision: ra2}, recv(changes))
	_, err = kv.Put(ctx, "other.y", []byte("y"))
	require.NoError(t, err)
	require.NoError(t, kv.Delete(ctx, "sub.b"))
	del := recv(changes)
	require.Equal(t, "sub.b", del.Key)
	require.True(t, del.Deleted)
	require.Nil(t, del.Value)
	require.Greater(t, del.Revision, ra2)
	rc, err := kv.Create(ctx, "sub.c", []byte("c"))
	require.NoError(t, err)
	require.Equal(t, mesh.Change{Key: "sub.c", Value: []byte("c"), Revision: rc}, recv(changes))
	for _, want := range []string{"sub.a", "other.y", "sub.b", "sub.c"} {
		require.Equal(t, want, recv(all).Key)
	}

	// Ending ctx closes the channel.
	cancel()
	require.Eventually(t, func() bool {
		select {
		case _, ok := <-changes:
			return !ok
		default:
			return false
		}
	}, waitFor, pollEvery, "the channel is closed once ctx is done")
}

func testKVEmpty(t *testing.T, eng mesh.Engine) {
	kv, err := eng.KV(t.Context(), "meshtest-empty")
	require.NoError(t, err)
	keys, err := kv.Keys(t.Context(), "")
	require.NoError(t, err)
	require.Empty(t, keys)
}

func testReady(t *testing.T, eng mesh.Engine) {
	require.NoError(t, eng.Ready(t.Context()))
}

func testRestart(t *testing.T, inst Instance) {
	eng := inst.Engine
	tp := topic(t)
	cfg := mesh.ConsumerConfig{Topic: tp, Group: "g", AckWait: time.Second}
	c := consume(t, eng, cfg)
	require.NoError(t, eng.Publish(t.Context(), tp, newEvents(t, "s", 4)))
	m := next(t, c)
	require.Equal(t, "s-0", m.Event().ID())
	ack(t, m)
	m = next(t, c) // s-1 delivered, never acked
	require.Equal(t, "s-1", m.Event().ID())

	kv, err := eng.KV(t.Context(), "restart")
	require.NoError(t, err)
	rev, err := kv.Put(t.Context(), "k", []byte("v"))
	require.NoError(t, err)

	eng = inst.Restart(t)
	require.Eventually(t, func() bool { return eng.Ready(t.Context()) == nil }, waitFor, pollEvery)
	c = consume(t, eng, cfg)
	got := collect(t, 3, c)[0]
	require.ElementsMatch(t, []string{"s-1", "s-2", "s-3"}, got)
	noNext(t, c)

	kv, err = eng.KV(t.Context(), "restart")
	require.NoError(t, err)
	e, err := kv.Get(t.Context(), "k")
	require.NoError(t, err)
	require.Equal(t, rev, e.Revision)

	// The duplicate window survives too.
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "s-0")}))
	noNext(t, c)
}

func testEngineClose(t *testing.T, inst Instance) {
	eng := inst.Engine
	tp := topic(t)
	c := consume(t, eng, mesh.ConsumerConfig{Topic: tp, Group: "g"})
	kv, err := eng.KV(t.Context(), "close")
	require.NoError(t, err)
	changes, err := kv.Watch(t.Context(), "")
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Next(t.Context())
		errc <- err
	}()
	require.NoError(t, eng.Close())
	require.NoError(t, eng.Close(), "second Close")
	select {
	case err := <-errc:
		require.ErrorIs(t, err, mesh.ErrClosed)
	case <-time.After(waitFor):
		t.Fatal("Next still blocked after engine Close")
	}
	_, err = c.Next(t.Context())
	require.ErrorIs(t, err, mesh.ErrClosed)
	require.ErrorIs(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "late")}), mesh.ErrClosed)
	require.Eventually(t, func() bool {
		for {
			select {
			case _, ok := <-changes:
				if !ok {
					return true
				}
			default:
				return false
			}
		}
	}, waitFor, pollEvery, "a watch ends when its engine is closed")
	_, err = eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: tp, Group: "g"})
	require.ErrorIs(t, err, mesh.ErrClosed)
	require.Error(t, eng.Ready(t.Context()))
}

func testUnavailable(t *testing.T, inst Instance) {
	eng := inst.Engine
	tp := topic(t)
	require.NoError(t, eng.Publish(t.Context(), tp, []*event.Event{newEvent(t, "before")}))
	inst.StopServer(t)

	for _, evs := range [][]*event.Event{{newEvent(t, "after")}, newEvents(t, "batch", 5)} {
		const deadline = 3 * time.Second
		ctx, cancel := context.WithTimeout(t.Context(), deadline)
		start := time.Now()
		err := eng.Publish(ctx, tp, evs)
		cancel()
		require.ErrorIs(t, err, mesh.ErrUnavailable)
		require.Less(t, time.Since(start), deadline+time.Second, "Publish outlived its ctx deadline")
	}
	require.ErrorIs(t, eng.Ready(t.Context()), mesh.ErrUnavailable)
}

// dieHolding makes a member of cfg take three of six events and end
// without settling them (as if it died holding them: they come back after
// the ack wait); then three newer events are published.
func dieHolding(t *testing.T, eng mesh.Engine, cfg mesh.ConsumerConfig) {
	t.Helper()
	cfg.RedeliverFirst = false
	prev, err := eng.Consume(t.Context(), cfg)
	require.NoError(t, err)
	require.NoError(t, eng.Publish(t.Context(), cfg.Topic, newEvents(t, "old", 6)))
	for range 3 {
		next(t, prev)
	}
	require.NoError(t, prev.Close())
	require.NoError(t, eng.Publish(t.Context(), cfg.Topic, newEvents(t, "new", 3)))
}

var oldThenNew = []string{"old-0", "old-1", "old-2", "old-3", "old-4", "old-5", "new-0", "new-1", "new-2"}

// Close while a RedeliverFirst member's Next waits for a previous member's
// events: Close returns well within the ack wait, Next ends with
// ErrClosed, and the next RedeliverFirst member still gets every event, in
// order.
func testRedeliverFirstCloseWhileWaiting(t *testing.T, eng mesh.Engine) {
	const ackWait = 3 * time.Second
	cfg := mesh.ConsumerConfig{Topic: topic(t), Group: "g", AckWait: ackWait, MaxInFlight: 100, RedeliverFirst: true}
	dieHolding(t, eng, cfg)
	waiting, err := eng.Consume(t.Context(), cfg)
	require.NoError(t, err)
	nextErr := make(chan error, 1)
	go func() {
		_, err := waiting.Next(t.Context())
		nextErr <- err
	}()
	time.Sleep(quiet) // the newer events reach the waiting member meanwhile
	start := time.Now()
	require.NoError(t, waiting.Close())
	assert.Less(t, time.Since(start), ackWait/2, "Close waited for the previous member's events")
	select {
	case err := <-nextErr:
		require.ErrorIs(t, err, mesh.ErrClosed)
	case <-time.After(waitFor):
		t.Fatal("Next still blocked after Close")
	}
	c := consume(t, eng, cfg)
	var got []string
	for range oldThenNew {
		m := next(t, c)
		got = append(got, m.Event().ID())
		ack(t, m)
	}
	assert.Equal(t, oldThenNew, got)
	noNext(t, c)
}

// A RedeliverFirst member whose Next calls end (ctx) while it waits for a
// previous member's events loses nothing and keeps the order: the events
// it holds meanwhile are delivered by later Next calls.
func testRedeliverFirstShortNexts(t *testing.T, eng mesh.Engine) {
	const ackWait = 2 * time.Second
	cfg := mesh.ConsumerConfig{Topic: topic(t), Group: "g", AckWait: ackWait, MaxInFlight: 100, RedeliverFirst: true}
	dieHolding(t, eng, cfg)
	c := consume(t, eng, cfg)
	var got []string
	deadline := time.Now().Add(waitFor)
	for len(got) < len(oldThenNew) && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		m, err := c.Next(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			continue
		}
		require.NoError(t, err)
		got = append(got, m.Event().ID())
		ack(t, m)
	}
	assert.Equal(t, oldThenNew, got)
	noNext(t, c)
}
