// Package connectortest is the suite every connector passes: RunSource and
// RunSink run a connector type through the real runtime on an embedded mesh
// against the connector's real outside system, which the caller starts and
// drives through the Source or Sink description.
package connectortest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
)

// wait bounds every condition the suite waits for.
const wait = 30 * time.Second

const tick = 20 * time.Millisecond

// Source describes a source connector under test.
type Source struct {
	Spec connectors.Spec
	// Config holds the connector's own fields; the suite sets
	// connector.type and topic.
	Config map[string]any
	// Options, if set, adjusts the runtime options (e.g. WebhookListen).
	Options func(*worker.Options)
	// Produce makes the outside system offer one item per key and returns
	// once the system accepted them. A system that accepts only once the
	// mesh stored the items (a webhook) blocks, retrying while it is
	// refused, until then or until ctx is done.
	Produce func(ctx context.Context, keys []string) error
	// Key returns the key of the item an event was made from (default: the
	// event id).
	Key func(e *event.Event) string
	// AcksAfterStore says Produce returns only once the mesh stored the
	// items.
	AcksAfterStore bool
}

// Sink describes a sink connector under test.
type Sink struct {
	Spec connectors.Spec
	// Config holds the connector's own fields; the suite sets
	// connector.type, topic, maxAttempts and batch settings.
	Config  map[string]any
	Options func(*worker.Options)
	// Received returns the ids of the events the outside system holds.
	Received func() []string
	// SetFailing makes the outside system refuse writes, or accept them
	// again.
	SetFailing func(failing bool)
}

// env is one embedded mesh and a runtime on it.
type env struct {
	t      *testing.T
	engine *faultyEngine
	opts   worker.Options
	rt     *worker.Runtime
}

func newEnv(t *testing.T, spec connectors.Spec, adjust func(*worker.Options)) *env {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	reg := connectors.NewRegistry()
	reg.Register(spec)
	fe := newFaultyEngine(eng)
	fast := bridge.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	e := &env{t: t, engine: fe, opts: worker.Options{
		Engine:         fe,
		Registry:       reg,
		Backoff:        fast,
		RestartBackoff: fast,
		AckWait:        5 * time.Second,
		StopTimeout:    10 * time.Second,
		WebhookListen:  "127.0.0.1:0",
		WorkerID:       "connectortest",
	}}
	if adjust != nil {
		adjust(&e.opts)
	}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *env) start() {
	e.t.Helper()
	rt, err := worker.New(e.opts)
	require.NoError(e.t, err)
	require.NoError(e.t, rt.Start(e.t.Context()))
	e.rt = rt
}

func (e *env) stop() {
	if e.rt == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	assert.NoError(e.t, e.rt.Stop(ctx), "runtime stops cleanly")
	e.rt = nil
}

func (e *env) restart() {
	e.t.Helper()
	e.stop()
	e.start()
}

// waitRunning waits until the instance and all its tasks run.
func (e *env) waitRunning(name string) {
	e.t.Helper()
	waitRunning(e.t, e.rt, name)
}

// waitRunning waits until instance name of rt and all its tasks run.
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
	}, wait, tick, "connector %s should be RUNNING", name)
}

// collector reads every event of a topic from its start.
type collector struct {
	mu     sync.Mutex
	events map[string]*event.Event // by key
	count  int
}

func (e *env) collect(topic string, key func(*event.Event) string) *collector {
	e.t.Helper()
	c := &collector{events: map[string]*event.Event{}}
	cons, err := e.engine.Engine.Consume(e.t.Context(), mesh.ConsumerConfig{Topic: topic, Group: "connectortest-reader"})
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			m, err := cons.Next(ctx)
			if err != nil {
				return
			}
			ev := m.Event()
			c.mu.Lock()
			c.events[key(ev)] = ev
			c.count++
			c.mu.Unlock()
			_ = m.Ack(ctx)
		}
	})
	e.t.Cleanup(func() { cancel(); wg.Wait(); _ = cons.Close() })
	return c
}

func (c *collector) has(keys []string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if c.events[k] == nil {
			return false
		}
	}
	return true
}

func (c *collector) all() []*event.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Values(c.events))
}

func keys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// produceAsync runs Produce in the background and returns its result
// channel.
func produceAsync(ctx context.Context, s Source, ks []string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Produce(ctx, ks) }()
	return done
}
