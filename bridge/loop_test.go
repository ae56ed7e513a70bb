package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/mesh"
)

// startTestLoop opens a consumer of group on topic and runs a loop on it.
func startTestLoop(t *testing.T, eng mesh.Engine, topic string, cfg LoopConfig) *Loop {
	t.Helper()
	c, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: topic, Group: "loop", AckWait: cfg.AckWait})
	require.NoError(t, err)
	cfg.Engine = eng
	cfg.Consumers = []mesh.Consumer{c}
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = fastBackoff
	}
	cfg.Logger = testLogger(t)
	l := StartLoop(context.Background(), cfg)
	t.Cleanup(func() { l.Stop(context.Background()) })
	return l
}

func publishIDs(t *testing.T, eng mesh.Engine, topic string, ids ...string) {
	t.Helper()
	evs := make([]*event.Event, len(ids))
	for i, id := range ids {
		evs[i] = mkEvent(t, id, "t")
	}
	require.NoError(t, eng.Publish(t.Context(), topic, evs))
}

// An unavailable target holds the events: no attempt is spent, nothing is
// naked or dead-lettered, the mesh is kept from redelivering them past the
// ack wait, and they are delivered once the target is back.
func TestLoopHoldsEventsWhileTargetUnavailable(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	attempts := map[string][]int{}
	l := startTestLoop(t, eng, "hold", LoopConfig{
		Name:        "hold",
		MaxAttempts: 2, // a retried failure would dead-letter after two
		AckWait:     time.Second,
		Backoff:     Backoff{Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond},
		Handler: func(_ context.Context, batch []mesh.Message) error {
			mu.Lock()
			attempts[batch[0].Event().ID()] = append(attempts[batch[0].Event().ID()], batch[0].Attempt())
			mu.Unlock()
			if down.Load() {
				return UnavailableError(errors.New("connection refused"), 0)
			}
			return nil
		},
	})
	publishIDs(t, eng, "hold", "h1")
	require.Eventually(t, func() bool { return l.Status().Holding }, waitFor, tick)
	time.Sleep(2500 * time.Millisecond) // well past the ack wait of 1s
	assert.True(t, l.Status().Holding)
	assert.Contains(t, l.Status().LastError, "connection refused")
	down.Store(false)
	require.Eventually(t, func() bool {
		s := eng.settlements()
		return len(s) == 1 && s[0].op == "ack"
	}, waitFor, tick, "delivered once the target is back, with no nak or term before")
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(attempts["h1"]), 3)
	for _, a := range attempts["h1"] {
		assert.Equal(t, 1, a, "holding spends no attempt and the mesh does not redeliver")
	}
	require.Eventually(t, func() bool { return !l.Status().Holding }, waitFor, tick)
}

// A batch handler's partial failure acks the delivered events, retries the
// failed one and dead-letters the permanent one alone.
func TestLoopBatchPartialFailure(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	dead := readTopic(t, eng, "partial-dead")
	var calls atomic.Int32
	startTestLoop(t, eng, "partial", LoopConfig{
		Name:            "connector-x",
		BatchSize:       3,
		BatchWait:       time.Second,
		DeadLetterTopic: "partial-dead",
		Handler: func(_ context.Context, batch []mesh.Message) error {
			if calls.Add(1) > 1 {
				return nil
			}
			require.Len(t, batch, 3)
			return &PartialError{Failed: map[int]error{
				1: errors.New("busy"),
				2: PermanentError(errors.New("bad row")),
			}}
		},
	})
	publishIDs(t, eng, "partial", "p0", "p1", "p2")
	require.Eventually(t, func() bool { return len(dead()) == 1 }, waitFor, tick)
	assert.Equal(t, "p2", dead()[0].ID())
	assert.Equal(t, "bad row", dead()[0].Extensions()[ExtDeliveryError])
	require.Eventually(t, func() bool {
		acked := map[string]int{}
		for _, s := range eng.settlements() {
			if s.op == "ack" {
				acked[s.id]++
			}
		}
		return acked["p0"] == 1 && acked["p1"] == 1
	}, waitFor, tick, "p0 acked at once, p1 after its retry")
}

// A handler error wrapping ErrAbort ends the loop and hands its events
// back.
func TestLoopAbort(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	l := startTestLoop(t, eng, "abort", LoopConfig{
		Handler: func(context.Context, []mesh.Message) error {
			return fmt.Errorf("%w: the task panicked", ErrAbort)
		},
	})
	publishIDs(t, eng, "abort", "a1")
	select {
	case <-l.Done():
	case <-time.After(waitFor):
		t.Fatal("the loop did not end")
	}
	require.ErrorIs(t, l.Err(), ErrAbort)
	s := eng.settlements()
	require.Len(t, s, 1)
	assert.Equal(t, "nak", s[0].op)
}

// Start mode starts events in arrival order while their outcomes overlap.
func TestLoopStartKeepsOrder(t *testing.T) {
	eng := openEngine(t)
	var mu sync.Mutex
	var order []string
	release := make(chan struct{})
	startTestLoop(t, eng, "order", LoopConfig{
		Workers: 8,
		Start: func(ctx context.Context, m mesh.Message) func() error {
			mu.Lock()
			order = append(order, m.Event().ID())
			mu.Unlock()
			return func() error {
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		},
	})
	ids := []string{"o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7"}
	publishIDs(t, eng, "order", ids...)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 8 },
		waitFor, tick, "eight starts in flight at once, none confirmed yet")
	close(release)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, ids, order)
}

// De-duplication is by stored event: two stored events with one source and
// id are both delivered; only a redelivery of one stored event is not.
func TestLoopDedupIsByStoredEvent(t *testing.T) {
	eng := openEngine(t)
	var got atomic.Int32
	startTestLoop(t, eng, "dedup", LoopConfig{
		DedupSize: 100,
		Handler: func(context.Context, []mesh.Message) error {
			got.Add(1)
			return nil
		},
	})
	// Two copies stored apart (a dead-letter copy of each of two
	// subscriptions, say).
	e := mkEvent(t, "same", "t")
	require.NoError(t, eng.Publish(t.Context(), "dedup", []*event.Event{e}, mesh.WithDedupKey("sub-a")))
	require.NoError(t, eng.Publish(t.Context(), "dedup", []*event.Event{e}, mesh.WithDedupKey("sub-b")))
	require.Eventually(t, func() bool { return got.Load() == 2 }, waitFor, tick)
}

// Events are read ahead of the deliveries, a batch per worker; when the
// loop stops, those not handed to the handler yet go back to the mesh at
// once (naked), and the handler never sees them.
func TestLoopStopHandsBackReadAhead(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	entered := make(chan struct{})
	release := make(chan struct{})
	var delivered atomic.Int32
	l := startTestLoop(t, eng, "ahead", LoopConfig{
		BatchSize: 2,
		// Long enough that each batch fills on a busy machine: with 1 ms
		// the first batch was sometimes a0 alone (2 runs in 19 while a
		// benchmark ran).
		BatchWait: 5 * time.Second,
		Handler: func(_ context.Context, batch []mesh.Message) error {
			if delivered.Add(int32(len(batch))) == int32(len(batch)) {
				close(entered)
				<-release
			}
			return nil
		},
	})
	publishIDs(t, eng, "ahead", "a0", "a1", "a2", "a3")
	<-entered
	require.Eventually(t, func() bool { return len(l.msgs) == 2 }, waitFor, tick, "the next batch is read ahead while the first is delivered")
	stopped := make(chan bool)
	go func() { stopped <- l.Stop(context.Background()) }()
	require.Eventually(t, func() bool {
		select {
		case <-l.stopping:
			return true
		default:
			return false
		}
	}, waitFor, tick)
	close(release)
	assert.False(t, <-stopped, "the batch in flight finished")
	assert.EqualValues(t, 2, delivered.Load(), "only the batch in flight was delivered")
	ops := map[string]string{}
	for _, s := range eng.settlements() {
		ops[s.id] = s.op
	}
	assert.Equal(t, map[string]string{"a0": "ack", "a1": "ack", "a2": "nak", "a3": "nak"}, ops)
}

// An abort (ErrAbort) with events read ahead: the handler never sees them,
// and they go back to the mesh at once (naked), not after their ack wait: a
// new member of the group gets all of them well within it.
func TestLoopAbortHandsBackReadAhead(t *testing.T) {
	const ackWait = 30 * time.Second
	eng := openEngine(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	l := startTestLoop(t, eng, "abort-ahead", LoopConfig{
		BatchSize: 2,
		BatchWait: time.Millisecond,
		AckWait:   ackWait,
		Handler: func(context.Context, []mesh.Message) error {
			if calls.Add(1) == 1 {
				close(entered)
				<-release
			}
			return fmt.Errorf("%w: the task panicked", ErrAbort)
		},
	})
	ids := []string{"b0", "b1", "b2", "b3", "b4", "b5"}
	publishIDs(t, eng, "abort-ahead", ids...)
	<-entered
	require.Eventually(t, func() bool { return len(l.msgs) == 2 }, waitFor, tick, "the next batch is read ahead")
	close(release)
	select {
	case <-l.Done():
	case <-time.After(waitFor):
		t.Fatal("the loop did not end")
	}
	require.ErrorIs(t, l.Err(), ErrAbort)
	assert.EqualValues(t, 1, calls.Load(), "events read ahead are not delivered after an abort")

	for _, m := range takeBack(t, eng, "abort-ahead", len(ids), ackWait) {
		assert.Contains(t, ids, m.Event().ID())
	}
}

// takeBack opens a member of the loop's group on topic and takes n events
// from it, each within a few seconds: events handed back, not waiting out
// their ack wait.
func takeBack(t *testing.T, eng mesh.Engine, topic string, n int, ackWait time.Duration) []mesh.Message {
	t.Helper()
	c, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: topic, Group: "loop", AckWait: ackWait})
	require.NoError(t, err)
	defer c.Close()
	got := map[string]mesh.Message{}
	var out []mesh.Message
	for len(got) < n {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		m, err := c.Next(ctx)
		cancel()
		require.NoError(t, err, "after %d of %d: the rest waits out the ack wait of %v", len(got), n, ackWait)
		require.NoError(t, m.Ack(t.Context()))
		if got[m.Event().ID()] == nil {
			out = append(out, m)
		}
		got[m.Event().ID()] = m
	}
	return out
}

// Holding for longer than the ack wait with events read ahead (by the loop
// and by the consumer's prefetch): they are not kept in progress, so the
// mesh redelivers them meanwhile; with DedupSize each event is still
// delivered exactly once when the target is back. (Without DedupSize, as a
// sink's loop runs, they are delivered once per ack wait held.)
func TestLoopHoldPastAckWaitDeliversReadAheadOnceWithDedup(t *testing.T) {
	eng := openEngine(t)
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	delivered := map[string]int{}
	l := startTestLoop(t, eng, "hold-ahead", LoopConfig{
		BatchSize: 2,
		BatchWait: time.Millisecond,
		AckWait:   time.Second,
		DedupSize: 100,
		Backoff:   Backoff{Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond},
		Handler: func(_ context.Context, batch []mesh.Message) error {
			if down.Load() {
				return UnavailableError(errors.New("connection refused"), 0)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, m := range batch {
				delivered[m.Event().ID()]++
			}
			return nil
		},
	})
	ids := []string{"h0", "h1", "h2", "h3", "h4", "h5"}
	publishIDs(t, eng, "hold-ahead", ids...)
	require.Eventually(t, func() bool { return l.Status().Holding && len(l.msgs) == 2 }, waitFor, tick)
	time.Sleep(3500 * time.Millisecond) // held past the ack wait of 1s, three times over
	down.Store(false)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) == len(ids)
	}, waitFor, tick)
	time.Sleep(2 * time.Second) // quiet: redeliveries would come now
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		assert.Equal(t, 1, delivered[id], "deliveries of %s: %v", id, delivered)
	}
}

// Stop whose deadline passes while a handler blocks: the delivery is
// cancelled, and its batch and the events read ahead go back at once; a
// new member gets all of them well within the ack wait, none delivered.
func TestLoopForcedStopHandsBackBatchAndReadAhead(t *testing.T) {
	const ackWait = 30 * time.Second
	eng := openEngine(t)
	entered := make(chan struct{})
	var calls atomic.Int32
	l := startTestLoop(t, eng, "forced", LoopConfig{
		BatchSize: 2,
		BatchWait: time.Millisecond,
		AckWait:   ackWait,
		Handler: func(ctx context.Context, _ []mesh.Message) error {
			if calls.Add(1) == 1 {
				close(entered)
			}
			<-ctx.Done()
			return ctx.Err()
		},
	})
	ids := []string{"f0", "f1", "f2", "f3", "f4", "f5"}
	publishIDs(t, eng, "forced", ids...)
	<-entered
	require.Eventually(t, func() bool { return len(l.msgs) == 2 }, waitFor, tick)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	assert.True(t, l.Stop(ctx), "the delivery in flight was cancelled")
	assert.EqualValues(t, 1, calls.Load())

	for _, m := range takeBack(t, eng, "forced", len(ids), ackWait) {
		assert.Contains(t, ids, m.Event().ID())
		assert.Equal(t, 2, m.Attempt(), "%s was handed back, not delivered twice", m.Event().ID())
	}
}

// listMessage is a delivery of a stream sequence that records how it was
// settled.
type listMessage struct {
	e       *event.Event
	seq     uint64
	attempt int
	settled *sync.Map // "seq/attempt" → ack, nak
}

func (m *listMessage) Event() *event.Event { return m.e }
func (m *listMessage) Topic() string       { return "list" }
func (m *listMessage) Seq() uint64         { return m.seq }
func (m *listMessage) Attempt() int        { return m.attempt }
func (m *listMessage) mark(op string) error {
	m.settled.Store(fmt.Sprintf("%d/%d", m.seq, m.attempt), op)
	return nil
}
func (m *listMessage) Ack(context.Context) error                { return m.mark("ack") }
func (m *listMessage) Nak(context.Context, time.Duration) error { return m.mark("nak") }
func (m *listMessage) Term(context.Context) error               { return m.mark("term") }
func (m *listMessage) InProgress(context.Context) error         { return nil }

// listConsumer hands out its messages, then blocks.
type listConsumer struct{ ms chan mesh.Message }

func (c listConsumer) Next(ctx context.Context) (mesh.Message, error) {
	select {
	case m := <-c.ms:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
func (c listConsumer) Close() error { return nil }

// A redelivery of an event that waits in the same batch as its first
// delivery (its ack wait ran out while the loop held events) is not
// delivered beside it, nor settled: the first delivery's ack settles the
// event.
func TestLoopDeliversNoSecondCopyBesideTheFirst(t *testing.T) {
	settled := &sync.Map{}
	msg := func(id string, seq uint64, attempt int) mesh.Message {
		return &listMessage{e: mkEvent(t, id, "t"), seq: seq, attempt: attempt, settled: settled}
	}
	c := listConsumer{ms: make(chan mesh.Message, 3)}
	c.ms <- msg("a", 1, 1)
	c.ms <- msg("a", 1, 2)
	c.ms <- msg("b", 2, 1)
	got := make(chan []string, 1)
	l := StartLoop(context.Background(), LoopConfig{
		Name: "copies", Consumers: []mesh.Consumer{c}, BatchSize: 3, BatchWait: time.Second, Logger: testLogger(t),
		Handler: func(_ context.Context, batch []mesh.Message) error {
			var ids []string
			for _, m := range batch {
				ids = append(ids, m.Event().ID())
			}
			got <- ids
			return nil
		},
	})
	defer l.Stop(context.Background())
	assert.Equal(t, []string{"a", "b"}, <-got)
	require.Eventually(t, func() bool { _, ok := settled.Load("2/1"); return ok }, waitFor, tick)
	ops := map[string]any{}
	settled.Range(func(k, v any) bool { ops[k.(string)] = v; return true })
	assert.Equal(t, map[string]any{"1/1": "ack", "2/1": "ack"}, ops)
}

// Stopping a loop that holds events for an unavailable target does not
// wait for the stop's deadline: the held events are handed back at once,
// unattempted, and the loop ends.
func TestLoopStopDuringHoldHandsBackAtOnce(t *testing.T) {
	eng := &spyEngine{Engine: openEngine(t)}
	l := startTestLoop(t, eng, "stophold", LoopConfig{
		Name:    "stophold",
		AckWait: 30 * time.Second,
		Backoff: Backoff{Initial: 10 * time.Second, Max: 10 * time.Second},
		Handler: func(context.Context, []mesh.Message) error {
			return UnavailableError(errors.New("connection refused"), 0)
		},
	})
	publishIDs(t, eng, "stophold", "s1")
	require.Eventually(t, func() bool { return l.Status().Holding }, waitFor, tick)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	assert.False(t, l.Stop(ctx), "the stop waited out the hold until its deadline and cancelled it")
	require.Len(t, eng.settlements(), 1)
	assert.Equal(t, "nak", eng.settlements()[0].op)
}
