package bridge

import (
	"context"
	"strconv"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"
)

// A paused subscription delivers nothing, here or after a restart of the
// bridge; its group keeps the events, which resume delivers. An update in
// place keeps it paused, and the group of a paused subscription survives
// the deletion of another subscription sharing it.
func TestPauseSurvivesRestartAndKeepsTheGroup(t *testing.T) {
	eng := openEngine(t)
	rec := &recorder{}
	b := newTestBridge(t, eng, rec)
	ctx := t.Context()
	require.NoError(t, b.Start(ctx))
	_, err := b.CreateSubscription(ctx, Subscription{ID: "s", Topic: "orders", Group: "shared", Sink: "http://127.0.0.1:1/x"})
	require.NoError(t, err)
	_, err = b.CreateSubscription(ctx, Subscription{ID: "other", Topic: "orders", Group: "shared", Sink: "http://127.0.0.1:1/y"})
	require.NoError(t, err)
	publish := func(n int, prefix string) {
		for i := range n {
			require.NoError(t, b.Publish(ctx, "orders", []*event.Event{mkEvent(t, prefix+strconv.Itoa(i), "t")}))
		}
	}
	publish(3, "a")
	require.Eventually(t, func() bool { return rec.count() == 3 }, waitFor, tick)

	_, err = b.PauseSubscription(ctx, "other")
	require.NoError(t, err)
	sub, err := b.PauseSubscription(ctx, "s")
	require.NoError(t, err)
	require.True(t, sub.Paused)
	st, ok := b.SubscriptionState("s")
	require.True(t, ok)
	require.Equal(t, SubscriptionState{Paused: true}, st)
	// Pausing twice is no change.
	_, err = b.PauseSubscription(ctx, "s")
	require.NoError(t, err)

	// Deleting the other member keeps the group: the paused one uses it.
	require.NoError(t, b.DeleteSubscription(ctx, "other"))
	publish(4, "b")
	gs := eng.Engine // natsjs: the group's position
	require.Eventually(t, func() bool {
		gi, err := gs.GroupInfo(ctx, "orders", "shared")
		return err == nil && gi.Pending == 4
	}, waitFor, tick)
	require.Equal(t, 3, rec.count())

	// An update in place keeps it paused.
	upd, _, err := b.UpdateSubscription(ctx, Subscription{ID: "s", Topic: "orders", Group: "shared", Sink: "http://127.0.0.1:1/z", MaxInFlight: 1}, 0)
	require.NoError(t, err)
	require.True(t, upd.Paused)
	_, _, err = b.UpdateSubscription(ctx, Subscription{ID: "missing", Topic: "orders", Sink: "http://127.0.0.1:1/z"}, 0)
	require.ErrorIs(t, err, ErrSubscriptionNotFound)

	// Paused after a restart of the bridge, then resumed: the backlog comes.
	require.NoError(t, b.Stop(ctx))
	b2 := newTestBridge(t, eng, rec)
	require.NoError(t, b2.Start(ctx))
	got, err := b2.GetSubscription(ctx, "s")
	require.NoError(t, err)
	require.True(t, got.Paused)
	st, _ = b2.SubscriptionState("s")
	require.True(t, st.Paused)
	require.False(t, st.Running)
	require.Equal(t, 3, rec.count())

	res, err := b2.ResumeSubscription(ctx, "s")
	require.NoError(t, err)
	require.False(t, res.Paused)
	require.Eventually(t, func() bool { return rec.count() == 7 }, waitFor, tick)
	st, _ = b2.SubscriptionState("s")
	require.True(t, st.Running)
	require.Equal(t, "http://127.0.0.1:1/z", rec.snapshot()[6].sub.Sink)

	_, err = b2.PauseSubscription(ctx, "nope")
	require.ErrorIs(t, err, ErrSubscriptionNotFound)
	_, err = b2.PauseSubscription(ctx, "bad id!")
	require.ErrorIs(t, err, ErrSubscriptionNotFound)
}

// A pause written by another sidecar between our read and write is not
// lost: the flag is set with compare-and-set.
func TestPauseIsCompareAndSet(t *testing.T) {
	eng := openEngine(t)
	b := newTestBridge(t, eng, &recorder{})
	ctx := t.Context()
	_, err := b.CreateSubscription(ctx, Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x"})
	require.NoError(t, err)
	kv, err := eng.KV(ctx, DefaultSubscriptionBucket)
	require.NoError(t, err)
	b.kv = &racingKV{KV: kv, before: func() { // live_test.go
		// Another writer changes maxInFlight before our update lands.
		ent, err := kv.Get(context.Background(), "s")
		require.NoError(t, err)
		_, err = kv.Put(context.Background(), "s", []byte(string(ent.Value[:len(ent.Value)-1])+`,"maxInFlight":7}`))
		require.NoError(t, err)
	}}
	sub, err := b.PauseSubscription(ctx, "s")
	require.NoError(t, err)
	require.True(t, sub.Paused)
	require.Equal(t, 7, sub.MaxInFlight)
}
