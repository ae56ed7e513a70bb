package rocketmq_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
)

func newEngine(t testing.TB, dir string) mesh.Engine {
	t.Helper()
	e, err := embedded.Open(t.Context(), embedded.Config{DataDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// newRuntime runs a connector runtime with specs on an embedded mesh. It
// returns the runtime, a collector of a mesh topic's events (from its
// start), and a publisher to the mesh.
func newRuntime(t *testing.T, specs ...connectors.Spec) (*worker.Runtime, func(topic string) *collected, func(topic string, evs ...*event.Event) error) {
	t.Helper()
	e := newEngine(t, t.TempDir())
	rt := startRuntime(t, e, specs...)
	return rt, func(topic string) *collected { return collect(t, e, topic) },
		func(topic string, evs ...*event.Event) error { return e.Publish(t.Context(), topic, evs) }
}

var fast = bridge.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}

func runtimeOptions(e mesh.Engine, specs ...connectors.Spec) worker.Options {
	reg := connectors.NewRegistry()
	for _, s := range specs {
		reg.Register(s)
	}
	return worker.Options{Engine: e, Registry: reg, Backoff: fast, RestartBackoff: fast,
		AckWait: 5 * time.Second, StopTimeout: 10 * time.Second, WebhookListen: "127.0.0.1:0", WorkerID: "test"}
}

func startRuntime(t *testing.T, e mesh.Engine, specs ...connectors.Spec) *worker.Runtime {
	t.Helper()
	rt, err := worker.New(runtimeOptions(e, specs...))
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = rt.Stop(ctx)
	})
	return rt
}

func waitRunning(t *testing.T, rt *worker.Runtime, name string) {
	t.Helper()
	require.Eventually(t, func() bool {
		st, err := rt.Status(name)
		if err != nil || st.Connector.State != worker.StateRunning || len(st.Tasks) == 0 {
			return false
		}
		for _, ts := range st.Tasks {
			if ts.State != worker.StateRunning {
				return false
			}
		}
		return true
	}, wait, 10*time.Millisecond, "connector %s runs", name)
}

// collected is every event of a mesh topic, as it arrives.
type collected struct {
	mu     sync.Mutex
	events []*event.Event
}

func collect(t *testing.T, e mesh.Engine, topic string) *collected {
	t.Helper()
	c := &collected{}
	cons, err := e.Consume(t.Context(), mesh.ConsumerConfig{Topic: topic, Group: "test-reader"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			m, err := cons.Next(ctx)
			if err != nil {
				return
			}
			c.mu.Lock()
			c.events = append(c.events, m.Event())
			c.mu.Unlock()
			_ = m.Ack(ctx)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait(); _ = cons.Close() })
	return c
}

func (c *collected) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// count is len: events, duplicates included.
func (c *collected) count() int { return c.len() }

func (c *collected) byID(id string) *event.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if e.ID() == id {
			return e
		}
	}
	return nil
}

// hasKeys reports whether an event of each key (rocketmqkeys) arrived.
func (c *collected) hasKeys(keys []string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, e := range c.events {
		if k, ok := e.Extensions()["rocketmqkeys"].(string); ok {
			seen[k] = true
		}
	}
	for _, k := range keys {
		if !seen[k] {
			return false
		}
	}
	return true
}
