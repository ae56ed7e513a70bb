package natsjs

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/test/infra"
)

// stallingIterator is a pull iterator whose first Next waits like one
// with nothing to come (that of an idle group), whatever is there: what
// nats.go's does when it lost its pull request (see consumer.pull).
type stallingIterator struct {
	jetstream.MessagesContext
	idle  jetstream.MessagesContext
	calls atomic.Int32
}

func (s *stallingIterator) Next(opts ...jetstream.NextOpt) (jetstream.Msg, error) {
	if s.calls.Add(1) == 1 {
		return s.idle.Next(opts...)
	}
	return s.MessagesContext.Next(opts...)
}

// A member whose pull iterator waits with nothing asked of the server is
// asked again within moments, not after the missed heartbeats.
func TestPullAsksAgainAfterABoundedWait(t *testing.T) {
	url, _, _ := infra.StartNATS(t)
	ctx := t.Context()
	eng, err := Connect(ctx, Config{URLs: []string{url}, Name: "recheck"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	mc, err := eng.Consume(ctx, mesh.ConsumerConfig{Topic: "orders", Group: "g"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = mc.Close() })
	idle, err := eng.Consume(ctx, mesh.ConsumerConfig{Topic: "idle", Group: "g"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = idle.Close() })
	c := mc.(*consumer)
	stall := &stallingIterator{MessagesContext: c.it, idle: idle.(*consumer).it}
	c.itMu.Lock()
	c.it = stall
	c.itMu.Unlock()

	ev := event.New()
	ev.SetID("e1")
	ev.SetSource("/t")
	ev.SetType("t")
	require.NoError(t, eng.Publish(ctx, "orders", []*event.Event{&ev}))
	nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	m, err := c.Next(nctx)
	require.NoError(t, err, "the stalled Next was not asked again")
	require.Equal(t, "e1", m.Event().ID())
	require.Less(t, time.Since(start), 3*time.Second)
	require.GreaterOrEqual(t, stall.calls.Load(), int32(2))
}
