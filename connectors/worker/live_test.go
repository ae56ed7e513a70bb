package worker_test

import (
	"context"
	"strings"
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
	"github.com/meshd/meshd/mesh/natsjs"
)

// twoMeshClients opens an embedded mesh and a second client of it: the
// mesh connections of two sidecars of one app.
func twoMeshClients(t *testing.T) (mesh.Engine, mesh.Engine) {
	t.Helper()
	e, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Token: "live-token"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	other, err := natsjs.Connect(t.Context(), natsjs.Config{URLs: []string{e.ClientURL()}, Name: "other", Token: "live-token"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	return e, other
}

// startLabelRuntime starts a runtime named workerID on eng whose one
// connector type, label-sink, hands what its tasks are given to put with
// the label of their config.
func startLabelRuntime(t *testing.T, eng mesh.Engine, workerID string, put func(label string, evs []event.Event)) *worker.Runtime {
	t.Helper()
	reg := connectors.NewRegistry()
	reg.Register(connectors.Spec{
		Name: "label-sink", Kind: connectors.KindSink,
		Fields: []connectors.Field{{Name: "label", Type: connectors.TypeString}},
		New: func() connectors.Connector {
			return connectors.NewConnector(func() connectors.Task { return &labelTask{put: put} }, connectors.OneTask)
		},
	})
	fast := bridge.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	rt, err := worker.New(worker.Options{Engine: eng, Registry: reg, Backoff: fast, RestartBackoff: fast, WebhookListen: "127.0.0.1:0", WorkerID: workerID})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() { _ = rt.Stop(context.Background()) })
	return rt
}

// twoRuntimes starts the connector runtimes of two sidecars of one app.
// got returns what their sinks were given, by the label of the config
// they ran with.
func twoRuntimes(t *testing.T) (a, b *worker.Runtime, eng mesh.Engine, got func() map[string][]string) {
	t.Helper()
	e, other := twoMeshClients(t)
	var mu sync.Mutex
	byLabel := map[string][]string{}
	record := func(workerID string) func(string, []event.Event) {
		return func(label string, evs []event.Event) {
			mu.Lock()
			defer mu.Unlock()
			for _, e := range evs {
				byLabel[label] = append(byLabel[label], workerID+":"+e.ID())
			}
		}
	}
	a, b = startLabelRuntime(t, e, "a", record("a")), startLabelRuntime(t, other, "b", record("b"))
	return a, b, e, func() map[string][]string {
		mu.Lock()
		defer mu.Unlock()
		out := map[string][]string{}
		for k, v := range byLabel {
			out[k] = append([]string(nil), v...)
		}
		return out
	}
}

// labelTask is a sink task that hands what it is given on with the label
// of its config.
type labelTask struct {
	label string
	put   func(label string, evs []event.Event)
}

func (t *labelTask) Start(_ context.Context, cfg connectors.Config) error {
	t.label = cfg.String("label")
	return nil
}
func (t *labelTask) Stop(context.Context) error { return nil }
func (t *labelTask) Put(_ context.Context, evs []event.Event) error {
	t.put(t.label, evs)
	return nil
}

// An instance created, reconfigured, paused, resumed or deleted through
// one sidecar is applied by the other within a second, without a restart.
func TestConnectorsAreLiveAcrossSidecars(t *testing.T) {
	a, b, eng, got := twoRuntimes(t)
	const within = time.Second
	state := func(rt *worker.Runtime) worker.State {
		st, err := rt.Status("s")
		if err != nil {
			return ""
		}
		return st.Connector.State
	}

	began := time.Now()
	_, err := a.Create(t.Context(), "s", map[string]any{"connector.type": "label-sink", "topic": "live", "label": "one"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return state(b) == worker.StateRunning }, within, 5*time.Millisecond, "created through a, running on b")
	t.Logf("created: applied by the other sidecar after %s", time.Since(began).Round(time.Millisecond))
	info, err := b.Get("s")
	require.NoError(t, err)
	assert.Equal(t, "one", info.Config["label"])

	began = time.Now()
	_, created, err := b.Put(t.Context(), "s", map[string]any{"connector.type": "label-sink", "topic": "live", "label": "two"})
	require.NoError(t, err)
	require.False(t, created)
	require.Eventually(t, func() bool {
		info, err := a.Get("s")
		return err == nil && info.Config["label"] == "two" && state(a) == worker.StateRunning
	}, within, 5*time.Millisecond, "reconfigured through b, reconfigured on a")
	t.Logf("reconfigured: applied by the other sidecar after %s", time.Since(began).Round(time.Millisecond))
	waitTasks(t, a, "s", worker.StateRunning)
	waitTasks(t, b, "s", worker.StateRunning)
	publish(t, eng, "live", "e1", "e2", "e3", "e4")
	require.Eventually(t, func() bool { return len(got()["two"]) == 4 }, 10*time.Second, 10*time.Millisecond)
	assert.Empty(t, got()["one"], "nothing runs with the old config")

	began = time.Now()
	require.NoError(t, a.Pause(t.Context(), "s"))
	require.Eventually(t, func() bool { return state(b) == worker.StatePaused }, within, 5*time.Millisecond, "paused through a, paused on b")
	t.Logf("paused: applied by the other sidecar after %s", time.Since(began).Round(time.Millisecond))
	publish(t, eng, "live", "p1")
	assert.Never(t, func() bool { return len(got()["two"]) > 4 }, 300*time.Millisecond, 10*time.Millisecond, "a paused sink takes nothing, on either sidecar")

	began = time.Now()
	require.NoError(t, b.Resume(t.Context(), "s"))
	require.Eventually(t, func() bool { return state(a) == worker.StateRunning }, within, 5*time.Millisecond, "resumed through b, resumed on a")
	t.Logf("resumed: applied by the other sidecar after %s", time.Since(began).Round(time.Millisecond))
	require.Eventually(t, func() bool { return len(got()["two"]) == 5 }, 10*time.Second, 10*time.Millisecond)

	began = time.Now()
	require.NoError(t, b.Delete(t.Context(), "s"))
	require.Eventually(t, func() bool { _, err := a.Status("s"); return err != nil }, within, 5*time.Millisecond, "deleted through b, gone from a")
	t.Logf("deleted: applied by the other sidecar after %s", time.Since(began).Round(time.Millisecond))
	assert.Empty(t, a.List())
	assert.Never(t, func() bool { return len(a.List())+len(b.List()) > 0 }, 300*time.Millisecond, 10*time.Millisecond,
		"a late report of an older value does not bring it back")
}

// racingEngine runs before, once, ahead of the first compare-and-set
// update of a key with prefix: another sidecar's change landing between
// what this one saw and its write.
type racingEngine struct {
	mesh.Engine
	prefix string
	before func()
	once   *sync.Once
}

func (e racingEngine) KV(ctx context.Context, bucket string) (mesh.KV, error) {
	kv, err := e.Engine.KV(ctx, bucket)
	return racingKV{KV: kv, e: e}, err
}

type racingKV struct {
	mesh.KV
	e racingEngine
}

func (k racingKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if strings.HasPrefix(key, k.e.prefix) {
		k.e.once.Do(k.e.before)
	}
	return k.KV.Update(ctx, key, value, rev)
}

// A change through another sidecar between what this one saw and its write
// is not overwritten: the write fails with ErrConflict (409 in the API),
// this sidecar catches up, and a retry goes on top of the winner.
func TestConnectorUpdatesCompareAndSet(t *testing.T) {
	e, other := twoMeshClients(t)
	discard := func(string, []event.Event) {}
	start := func(eng mesh.Engine) *worker.Runtime { return startLabelRuntime(t, eng, "", discard) }
	winner := start(other)
	cfg := func(label string) map[string]any {
		return map[string]any{"connector.type": "label-sink", "topic": "cas", "label": label}
	}
	once := &sync.Once{}
	var raced error
	loser := start(racingEngine{Engine: e, prefix: "config.", once: once, before: func() {
		_, _, raced = winner.Put(context.Background(), "c", cfg("winner"))
	}})
	_, err := loser.Create(t.Context(), "c", cfg("first"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, err := winner.Get("c"); return err == nil }, time.Second, 5*time.Millisecond)

	_, _, err = loser.Put(t.Context(), "c", cfg("loser"))
	require.NoError(t, raced)
	require.ErrorIs(t, err, worker.ErrConflict)
	info, err := loser.Get("c")
	require.NoError(t, err)
	assert.Equal(t, "winner", info.Config["label"], "the loser caught up with the winner at once")
	_, _, err = loser.Put(t.Context(), "c", cfg("loser"))
	require.NoError(t, err, "a retry goes on top")
	require.Eventually(t, func() bool {
		info, err := winner.Get("c")
		return err == nil && info.Config["label"] == "loser"
	}, time.Second, 5*time.Millisecond)

	// Pause and resume race the same way.
	*once = sync.Once{}
	loser2 := start(racingEngine{Engine: e, prefix: "state.", once: once, before: func() {
		raced = winner.Pause(context.Background(), "c")
	}})
	require.Eventually(t, func() bool { _, err := loser2.Get("c"); return err == nil }, time.Second, 5*time.Millisecond)
	err = loser2.Pause(t.Context(), "c")
	require.NoError(t, raced)
	require.ErrorIs(t, err, worker.ErrConflict)
	st, err := loser2.Status("c")
	require.NoError(t, err)
	assert.Equal(t, worker.StatePaused, st.Connector.State, "caught up: paused by the winner")
	require.NoError(t, loser2.Resume(t.Context(), "c"))
	require.Eventually(t, func() bool {
		st, err := winner.Status("c")
		return err == nil && st.Connector.State == worker.StateRunning
	}, time.Second, 5*time.Millisecond)
}
