package bridge

import (
	"fmt"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Dead letters are listed with who gave up, why and after how many
// attempts, and re-driven to the topic they came from without the delivery
// extensions; the copies leave the dead-letter topic, and a re-drive of a
// kept copy inside the duplicate window is stored once.
func TestDeadLettersListAndRedrive(t *testing.T) {
	eng := openEngine(t)
	rec := &recorder{reply: func(int, *event.Event) error {
		return fmt.Errorf("%w: sink said <b>no</b>", ErrPermanent)
	}}
	b := newTestBridge(t, eng, rec)
	ctx := t.Context()
	require.NoError(t, b.Start(ctx))
	_, err := b.CreateSubscription(ctx, Subscription{ID: "billing", Topic: "orders", Sink: "http://127.0.0.1:1/x", MaxAttempts: 3, DeadLetterTopic: "orders-dead",
		MaxInFlight: 1}) // dead letters in the order published
	require.NoError(t, err)
	for i := range 4 {
		e := mkEvent(t, fmt.Sprint("o", i), "order.created")
		e.SetData("text/plain", fmt.Sprintf("<script>%d</script>", i))
		require.NoError(t, b.Publish(ctx, "orders", []*event.Event{e}))
	}
	var dls []DeadLetterEntry
	require.Eventually(t, func() bool {
		dls, _, err = b.ListDeadLetters(ctx, "orders-dead", 0, 0)
		return err == nil && len(dls) == 4
	}, waitFor, tick)
	d := dls[0]
	require.Equal(t, "subscription/billing", d.By)
	require.Equal(t, "orders", d.Topic)
	require.Equal(t, 1, d.Attempts)
	require.Contains(t, d.Error, "<b>no</b>")
	require.Equal(t, "o0", d.ID)
	require.Equal(t, "<script>0</script>", d.Data)
	require.False(t, d.DataBase64)

	// Pages.
	page, next, err := b.ListDeadLetters(ctx, "orders-dead", 0, 3)
	require.NoError(t, err)
	require.Len(t, page, 3)
	require.Equal(t, dls[3].Seq, next)
	page, next, err = b.ListDeadLetters(ctx, "orders-dead", next, 3)
	require.NoError(t, err)
	require.Len(t, page, 1)
	require.Zero(t, next)

	// Stop the subscription so the re-driven events stay on "orders".
	_, err = b.PauseSubscription(ctx, "billing")
	require.NoError(t, err)
	onOrders := readTopic(t, eng, "orders")
	require.Eventually(t, func() bool { return len(onOrders()) == 4 }, waitFor, tick)

	res, err := b.Redrive(ctx, "orders-dead", RedriveRequest{Seqs: []uint64{dls[0].Seq, dls[0].Seq + 1000}})
	require.NoError(t, err)
	require.Equal(t, 1, res.Redriven)
	require.Equal(t, 1, res.Deleted)
	require.Len(t, res.Skipped, 1)
	require.Eventually(t, func() bool { return len(onOrders()) == 5 }, waitFor, tick)
	again := onOrders()[4]
	require.Equal(t, "o0", again.ID())
	for _, x := range []string{ExtDeliveryError, ExtDeliveryAttempts, ExtDeliveryBy, ExtDeliveryTopic} {
		require.NotContains(t, again.Extensions(), x)
	}
	left, _, err := b.ListDeadLetters(ctx, "orders-dead", 0, 0)
	require.NoError(t, err)
	require.Len(t, left, 3)

	// All, kept, twice: stored once (the dedup key), copies stay.
	res, err = b.Redrive(ctx, "orders-dead", RedriveRequest{All: true, Keep: true, By: "subscription/billing"})
	require.NoError(t, err)
	require.Equal(t, RedriveResult{Redriven: 3, Skipped: []RedriveSkip{}}, res)
	res, err = b.Redrive(ctx, "orders-dead", RedriveRequest{All: true, Keep: true})
	require.NoError(t, err)
	require.Equal(t, 3, res.Redriven)
	require.Eventually(t, func() bool { return len(onOrders()) == 8 }, waitFor, tick)
	dups := eng.Duplicates()["orders"]
	require.EqualValues(t, 3, dups)
	left, _, err = b.ListDeadLetters(ctx, "orders-dead", 0, 0)
	require.NoError(t, err)
	require.Len(t, left, 3)

	// By someone else: nothing.
	res, err = b.Redrive(ctx, "orders-dead", RedriveRequest{All: true, By: "connector/x"})
	require.NoError(t, err)
	require.Zero(t, res.Redriven)

	// A copy whose deliverytopic is missing needs "to".
	plain := mkEvent(t, "p", "x")
	require.NoError(t, b.Publish(ctx, "orders-dead", []*event.Event{plain}))
	all, _, err := b.ListDeadLetters(ctx, "orders-dead", 0, 0)
	require.NoError(t, err)
	last := all[len(all)-1].Seq
	res, err = b.Redrive(ctx, "orders-dead", RedriveRequest{Seqs: []uint64{last}})
	require.NoError(t, err)
	require.Len(t, res.Skipped, 1)
	require.Contains(t, res.Skipped[0].Reason, "deliverytopic")
	res, err = b.Redrive(ctx, "orders-dead", RedriveRequest{Seqs: []uint64{last}, To: "elsewhere"})
	require.NoError(t, err)
	require.Equal(t, 1, res.Redriven)

	// Re-driven events that fail again are dead-lettered again: their
	// copies are not taken for the first ones (the same event, inside the
	// duplicate window).
	before, _, err := b.ListDeadLetters(ctx, "orders-dead", 0, 0)
	require.NoError(t, err)
	_, err = b.ResumeSubscription(ctx, "billing")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		now, _, err := b.ListDeadLetters(ctx, "orders-dead", 0, 0)
		return err == nil && len(now) == len(before)+4 // o0, and o1..o3 re-driven once
	}, waitFor, tick)

	_, err = b.Redrive(ctx, "orders-dead", RedriveRequest{})
	require.ErrorIs(t, err, ErrInvalidRedrive)
	_, err = b.Redrive(ctx, "orders-dead", RedriveRequest{All: true, Seqs: []uint64{1}})
	require.ErrorIs(t, err, ErrInvalidRedrive)
}

// Settlements close in time share one context; each still has at least
// half of settleTimeout left, and a spent one is replaced.
func TestSettleContextsAreSharedWhileFresh(t *testing.T) {
	var s settleContexts
	a := s.get()
	require.Same(t, a, s.get(), "a fresh context is shared")
	dl, ok := a.Deadline()
	require.True(t, ok)
	assert.Greater(t, time.Until(dl), settleTimeout/2)

	s.renewAt = time.Now().Add(-time.Millisecond) // half spent
	b := s.get()
	require.NotSame(t, a, b)
	dl, _ = b.Deadline()
	assert.Greater(t, time.Until(dl), settleTimeout/2)
	assert.NoError(t, a.Err(), "the old one is not cancelled: others may hold it")
}
