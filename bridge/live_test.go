package bridge

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/mesh/natsjs"
)

// twoSidecars opens an embedded mesh and a second client of it: the mesh
// connections of two sidecars of one app.
func twoSidecars(t *testing.T) (mesh.Engine, mesh.Engine) {
	t.Helper()
	e, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Token: "live-test-token"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	other, err := natsjs.Connect(t.Context(), natsjs.Config{URLs: []string{e.ClientURL()}, Name: "other", Token: "live-test-token"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	return e, other
}

// runnerOf returns b's runner of id, or nil.
func runnerOf(b *Bridge, id string) *runner {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.runners[id]
}

func runnerSub(b *Bridge, id string) (Subscription, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.runners[id]; r != nil {
		return r.sub, true
	}
	return Subscription{}, false
}

// What one sidecar creates, changes and deletes, the other applies within
// a second, without a restart; its own writes coming back through the
// watch do not restart its loops.
func TestSubscriptionsAreLiveAcrossSidecars(t *testing.T) {
	e1, e2 := twoSidecars(t)
	rec1, rec2 := &recorder{}, &recorder{}
	b1, b2 := newTestBridge(t, e1, rec1), newTestBridge(t, e2, rec2)
	require.NoError(t, b1.Start(t.Context()))
	require.NoError(t, b2.Start(t.Context()))
	const within = time.Second

	began := time.Now()
	_, err := b1.CreateSubscription(t.Context(), Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x", MaxInFlight: 1})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return runnerOf(b2, "s") != nil }, within, tick, "created on one sidecar, running on the other")
	t.Logf("created: applied by the other sidecar after %s", time.Since(began).Round(time.Millisecond))
	own := runnerOf(b1, "s")
	require.NotNil(t, own)

	began = time.Now()
	_, rev, err := b2.LookupSubscription(t.Context(), "s")
	require.NoError(t, err)
	_, _, err = b2.UpdateSubscription(t.Context(), Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:2/y", MaxInFlight: 1}, rev)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		sub, ok := runnerSub(b1, "s")
		return ok && sub.Sink == "http://127.0.0.1:2/y"
	}, within, tick, "changed on one sidecar, changed on the other")
	t.Logf("changed: applied by the other sidecar after %s", time.Since(began).Round(time.Millisecond))
	mine := runnerOf(b2, "s")
	assert.Never(t, func() bool { return runnerOf(b2, "s") != mine }, 300*time.Millisecond, tick,
		"a sidecar's own write, seen again through the watch, does not restart its loop")

	// Both deliver: one group, two members.
	var evs []*event.Event
	for i := range 20 {
		evs = append(evs, mkEvent(t, string(rune('a'+i)), "t"))
	}
	require.NoError(t, b1.Publish(t.Context(), "orders", evs))
	require.Eventually(t, func() bool { return rec1.count()+rec2.count() == 20 }, waitFor, tick)
	for _, c := range append(rec1.snapshot(), rec2.snapshot()...) {
		assert.Equal(t, "http://127.0.0.1:2/y", c.sub.Sink)
	}

	began = time.Now()
	require.NoError(t, b2.DeleteSubscription(t.Context(), "s"))
	require.Eventually(t, func() bool { return runnerOf(b1, "s") == nil }, within, tick, "deleted on one sidecar, stopped on the other")
	t.Logf("deleted: applied by the other sidecar after %s", time.Since(began).Round(time.Millisecond))
	subs, err := b1.ListSubscriptions(t.Context())
	require.NoError(t, err)
	assert.Empty(t, subs)
	// A deletion followed by a late report of the older value must not
	// bring the subscription back.
	assert.Never(t, func() bool { return runnerOf(b1, "s") != nil || runnerOf(b2, "s") != nil }, 300*time.Millisecond, tick)
}

// racingKV lets another writer change a key between a read and the
// compare-and-set that follows it.
type racingKV struct {
	mesh.KV
	before func() // runs before the first Update, once
	once   sync.Once
}

func (k *racingKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	k.once.Do(k.before)
	return k.KV.Update(ctx, key, value, revision)
}

type racingEngine struct {
	mesh.Engine
	kv *racingKV
}

func (e *racingEngine) KV(ctx context.Context, bucket string) (mesh.KV, error) {
	kv, err := e.Engine.KV(ctx, bucket)
	if err != nil {
		return nil, err
	}
	e.kv.KV = kv
	return e.kv, nil
}

// A change that lands between reading a subscription and writing it is
// not overwritten: an update loses the race with ErrSubscriptionChanged;
// the declared-config put reads again and applies its settings on top.
func TestSubscriptionUpdatesCompareAndSet(t *testing.T) {
	e1, e2 := twoSidecars(t)
	other := newTestBridge(t, e2, &recorder{})
	var raced atomic.Int32
	race := &racingKV{before: func() {
		raced.Add(1)
		_, _, err := other.UpdateSubscription(context.Background(), Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:9/other"}, 0)
		require.NoError(t, err)
	}}
	b := newTestBridge(t, &racingEngine{Engine: e1, kv: race}, &recorder{})
	require.NoError(t, b.Start(t.Context()))
	created, err := b.CreateSubscription(t.Context(), Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x"})
	require.NoError(t, err)

	mine := created
	mine.Sink = "http://127.0.0.1:2/mine"
	_, _, err = b.UpdateSubscription(t.Context(), mine, 0)
	require.ErrorIs(t, err, ErrSubscriptionChanged)
	require.EqualValues(t, 1, raced.Load())
	got, rev, err := b.LookupSubscription(t.Context(), "s")
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:9/other", got.Sink, "the other writer's change is kept")

	// A stale revision loses too; the current one wins.
	_, _, err = b.UpdateSubscription(t.Context(), mine, rev-1)
	require.ErrorIs(t, err, ErrSubscriptionChanged)
	_, rev2, err := b.UpdateSubscription(t.Context(), mine, rev)
	require.NoError(t, err)
	assert.Greater(t, rev2, rev)
	_, _, err = b.UpdateSubscription(t.Context(), Subscription{ID: "missing", Topic: "orders", Sink: "http://127.0.0.1:1/x"}, 0)
	require.ErrorIs(t, err, ErrSubscriptionNotFound)

	// The declared config's put retries on a lost race.
	race.once = sync.Once{}
	declared := mine
	declared.Sink = "http://127.0.0.1:3/declared"
	_, err = b.PutSubscription(t.Context(), declared)
	require.NoError(t, err)
	require.EqualValues(t, 2, raced.Load())
	got, err = b.GetSubscription(t.Context(), "s")
	require.NoError(t, err)
	assert.Equal(t, declared.Sink, got.Sink)
	require.Eventually(t, func() bool {
		sub, ok := runnerSub(b, "s")
		return ok && sub.Sink == declared.Sink
	}, waitFor, tick)
}

// After the subscriber lost what it received, a replay from a sequence or
// a time delivers every event from there again, in order, on every sidecar
// of the app: the loops' memory of delivered events does not swallow it.
func TestReplayDeliversAgain(t *testing.T) {
	e1, e2 := twoSidecars(t)
	var mu sync.Mutex
	var got []string
	var seqs = map[string]uint64{}
	rec := func(n int, e *event.Event) error {
		mu.Lock()
		got = append(got, e.ID())
		mu.Unlock()
		return nil
	}
	rec1, rec2 := &recorder{reply: rec}, &recorder{reply: rec}
	b1, b2 := newTestBridge(t, e1, rec1), newTestBridge(t, e2, rec2)
	require.NoError(t, b1.Start(t.Context()))
	require.NoError(t, b2.Start(t.Context()))
	_, err := b1.CreateSubscription(t.Context(), Subscription{ID: "s", Topic: "replay", Sink: "http://127.0.0.1:1/x", MaxInFlight: 1})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return runnerOf(b2, "s") != nil }, waitFor, tick)

	// Read each event's sequence with a group of the test's own.
	probe, err := e1.Consume(t.Context(), mesh.ConsumerConfig{Topic: "replay", Group: "probe", StartAtNew: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = probe.Close() })
	ids := []string{"e0", "e1", "e2", "e3", "e4", "e5"}
	var mid time.Time
	for i, id := range ids {
		if i == 4 {
			mid = time.Now()
			time.Sleep(20 * time.Millisecond) // stored times are the server's clock; keep them apart
		}
		require.NoError(t, b1.Publish(t.Context(), "replay", []*event.Event{mkEvent(t, id, "t")}))
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		m, err := probe.Next(ctx)
		cancel()
		require.NoError(t, err)
		seqs[m.Event().ID()] = m.Seq()
		require.NoError(t, m.Ack(t.Context()))
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 6 }, waitFor, tick)
	require.Positive(t, rec1.count()*rec2.count(), "both sidecars delivered some (their memories hold those)")

	lose := func() {
		mu.Lock()
		got = nil
		mu.Unlock()
	}
	// exactly waits for want, in order, and nothing more.
	exactly := func(want ...string) {
		t.Helper()
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= len(want) }, waitFor, tick)
		assert.Never(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) > len(want) }, 300*time.Millisecond, tick)
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, want, got)
	}

	lose()
	require.NoError(t, b2.ReplaySubscription(t.Context(), "s", strconv.FormatUint(seqs["e2"], 10)))
	exactly("e2", "e3", "e4", "e5")

	lose()
	require.NoError(t, b1.ReplaySubscription(t.Context(), "s", mid.Format(time.RFC3339Nano)))
	exactly("e4", "e5")

	lose()
	require.NoError(t, b1.ReplaySubscription(t.Context(), "s", "earliest"))
	exactly(ids...)
	require.Positive(t, rec1.count()*rec2.count())

	// Delivery goes on after a replay.
	lose()
	require.NoError(t, b2.Publish(t.Context(), "replay", []*event.Event{mkEvent(t, "e6", "t")}))
	exactly("e6")

	for _, from := range []string{"", "new", "yesterday", "-1", "0"} {
		assert.ErrorIs(t, b1.ReplaySubscription(t.Context(), "s", from), ErrInvalidReplay, "from %q", from)
	}
	assert.ErrorIs(t, b1.ReplaySubscription(t.Context(), "missing", "earliest"), ErrSubscriptionNotFound)
	_, err = b1.CreateSubscription(t.Context(), Subscription{ID: "t", Topic: "replay", Group: "s", Sink: "http://127.0.0.1:1/x"})
	require.NoError(t, err)
	assert.ErrorIs(t, b1.ReplaySubscription(t.Context(), "s", "earliest"), ErrSharedGroup)
}

// A sidecar that dies between starting a group over and telling the
// others leaves their loops running on their old memory of delivered
// events: they carry on with the reset group, and deliver the replay.
func TestGroupResetBehindTheLoopsIsDelivered(t *testing.T) {
	e1, e2 := twoSidecars(t)
	var mu sync.Mutex
	var got []string
	rec := &recorder{reply: func(_ int, e *event.Event) error {
		mu.Lock()
		got = append(got, e.ID())
		mu.Unlock()
		return nil
	}}
	b := newTestBridge(t, e2, rec)
	require.NoError(t, b.Start(t.Context()))
	_, err := b.CreateSubscription(t.Context(), Subscription{ID: "s", Topic: "behind", Sink: "http://127.0.0.1:1/x", MaxInFlight: 1})
	require.NoError(t, err)
	var evs []*event.Event
	for _, id := range []string{"a", "b", "c"} {
		evs = append(evs, mkEvent(t, id, "t"))
	}
	require.NoError(t, b.Publish(t.Context(), "behind", evs))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 }, waitFor, tick)

	// Through the other client, without a word to this bridge.
	require.NoError(t, e1.ResetGroup(t.Context(), mesh.ConsumerConfig{Topic: "behind", Group: "s", MaxInFlight: 1}))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 6 }, waitFor, tick)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"a", "b", "c", "a", "b", "c"}, got)
}
