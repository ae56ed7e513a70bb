package natsjs_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/test/infra"
)

// The operator's extensions against a nats-server process: topics with
// their counts and times, a group's position, reading and deleting stored
// events without a consumer.
func TestOperatorExtensions(t *testing.T) {
	url, _, _ := infra.StartNATS(t)
	eng := connect(t, url)
	ctx := t.Context()
	for i := range 5 {
		require.NoError(t, eng.Publish(ctx, "stats.a", []*event.Event{newEvent("a" + strconv.Itoa(i))}))
	}
	require.NoError(t, eng.Publish(ctx, "stats.b", []*event.Event{newEvent("b0")}))

	topics, err := eng.Topics(ctx)
	require.NoError(t, err)
	require.Len(t, topics, 2)
	require.Equal(t, "stats.a", topics[0].Name)
	require.EqualValues(t, 5, topics[0].Events)
	require.EqualValues(t, 1, topics[1].Events)
	require.Greater(t, topics[0].Bytes, topics[1].Bytes)
	require.False(t, topics[0].First.IsZero())
	require.False(t, topics[0].Last.Before(topics[0].First))
	require.Less(t, topics[0].FirstSeq, topics[0].LastSeq)

	_, err = eng.GroupInfo(ctx, "stats.a", "g")
	require.ErrorIs(t, err, mesh.ErrGroupNotFound)
	c, err := eng.Consume(ctx, mesh.ConsumerConfig{Topic: "stats.a", Group: "g"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	m, err := c.Next(ctx)
	require.NoError(t, err)
	// Delivered ahead of Next (prefetch) or not yet, 5 are unsettled.
	gi, err := eng.GroupInfo(ctx, "stats.a", "g")
	require.NoError(t, err)
	require.EqualValues(t, 5, gi.Pending+uint64(gi.Unacked))
	require.GreaterOrEqual(t, gi.Unacked, 1)
	require.NoError(t, m.Ack(ctx))
	require.Eventually(t, func() bool {
		gi, err := eng.GroupInfo(ctx, "stats.a", "g")
		return err == nil && gi.Pending+uint64(gi.Unacked) == 4 && gi.AckFloor == m.Seq()
	}, 10*time.Second, 20*time.Millisecond)

	evs, err := eng.ReadEvents(ctx, "stats.a", 0, 3)
	require.NoError(t, err)
	require.Len(t, evs, 3)
	require.Equal(t, "a0", evs[0].Event.ID())
	rest, err := eng.ReadEvents(ctx, "stats.a", evs[2].Seq+1, 10)
	require.NoError(t, err)
	require.Len(t, rest, 2)
	require.Equal(t, "a4", rest[1].Event.ID())
	none, err := eng.ReadEvents(ctx, "stats.a", rest[1].Seq+1, 10)
	require.NoError(t, err)
	require.Empty(t, none)

	// A sequence of another topic is not deleted through this one.
	b, err := eng.ReadEvents(ctx, "stats.b", 0, 1)
	require.NoError(t, err)
	require.ErrorIs(t, eng.DeleteEvent(ctx, "stats.a", b[0].Seq), mesh.ErrEventNotFound)
	require.NoError(t, eng.DeleteEvent(ctx, "stats.a", evs[1].Seq))
	left, err := eng.ReadEvents(ctx, "stats.a", 0, 10)
	require.NoError(t, err)
	require.Len(t, left, 4)
	require.NotEqual(t, "a1", left[1].Event.ID())
	require.ErrorIs(t, eng.DeleteEvent(ctx, "stats.a", evs[1].Seq), mesh.ErrEventNotFound)
}
