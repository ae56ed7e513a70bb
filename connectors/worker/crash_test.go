package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/mesh/natsjs"
)

// orderSink is a one-task sink type whose Put is put of the member that
// runs it.
func orderRuntime(t *testing.T, eng mesh.Engine, id string, put func(evs []event.Event) error) *worker.Runtime {
	t.Helper()
	reg := connectors.NewRegistry()
	reg.Register(connectors.Spec{
		Name: "order-sink", Kind: connectors.KindSink,
		New: func() connectors.Connector {
			return connectors.NewConnector(func() connectors.Task { return &testSinkTask{put: put} }, connectors.OneTask)
		},
	})
	fast := bridge.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	rt, err := worker.New(worker.Options{Engine: eng, Registry: reg, WorkerID: id, LeaseTime: groupLease,
		AckWait: 2 * time.Second, Backoff: fast, RestartBackoff: fast, WebhookListen: "127.0.0.1:0", StopTimeout: 2 * time.Second})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rt.Stop(ctx)
	})
	return rt
}

// The sidecar running a sink's only task dies (its mesh connection cut)
// while a batch is in Put, more read ahead and fetched: the member that
// takes the task over writes every event not written before, in the order
// published, the ones the dead member held first.
func TestSinkTakeoverAfterACrashKeepsOrder(t *testing.T) {
	for _, topics := range [][]string{{"ord"}, {"ord.x", "ord.y"}} {
		t.Run(strings.Join(topics, ","), func(t *testing.T) { testTakeoverAfterACrash(t, topics) })
	}
}

func testTakeoverAfterACrash(t *testing.T, topics []string) {
	srv, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", NoAuth: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	dying, err := natsjs.New(t.Context(), nc, natsjs.Config{Name: "a"})
	require.NoError(t, err)

	var mu sync.Mutex
	var wrote, wroteA, wroteB []string // what Put returned nil for
	blocked := make(chan struct{})
	cut := make(chan struct{})
	var once sync.Once
	a := orderRuntime(t, dying, "a", func(evs []event.Event) error {
		if evs[len(evs)-1].ID() >= "e-010" {
			once.Do(func() { close(blocked) })
			<-cut
			return bridge.UnavailableError(errors.New("the process is gone"), 0)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			wrote, wroteA = append(wrote, e.ID()), append(wroteA, e.ID())
		}
		return nil
	})
	_, err = a.Create(t.Context(), "o", map[string]any{"connector.type": "order-sink", "topic": strings.Join(topics, ","), "batch.size": 5, "batch.wait": "1ms"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := a.Status("o")
		return err == nil && len(st.Tasks) == 1 && st.Tasks[0].State == worker.StateRunning && st.Tasks[0].WorkerID == "a"
	}, 30*time.Second, 20*time.Millisecond, "a runs the task")
	// b joins once a runs the task: it takes it over when a dies.
	orderRuntime(t, srv, "b", func(evs []event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			wrote, wroteB = append(wrote, e.ID()), append(wroteB, e.ID())
		}
		return nil
	})

	id := func(i int) string { return fmt.Sprintf("e-%03d", i) }
	topicOf := map[string]string{}
	for i := range 50 {
		topicOf[id(i)] = topics[i%len(topics)]
	}
	for i := range 40 {
		publish(t, srv, topicOf[id(i)], id(i))
	}
	select {
	case <-blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("the task never reached e-010")
	}
	nc.Close() // kill -9: nothing acked or handed back from now on
	close(cut)
	for i := 40; i < 50; i++ {
		publish(t, srv, topicOf[id(i)], id(i))
	}
	all := make([]string, 50)
	for i := range all {
		all[i] = id(i)
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range all {
			if !slices.Contains(wrote, s) {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "every event is written")
	mu.Lock()
	defer mu.Unlock()
	t.Logf("a wrote %v; b wrote %v", wroteA, wroteB)
	on := func(topic string, ids []string) []string {
		return slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return topicOf[id] != topic })
	}
	for _, topic := range topics { // the order is per topic
		all, wroteA, wroteB := on(topic, all), on(topic, wroteA), on(topic, wroteB)
		require.Equal(t, all[:len(wroteA)], wroteA, "a wrote a prefix of %s", topic)
		assert.True(t, slices.IsSorted(wroteB), "b writes %s in the order published: %v", topic, wroteB)
		// From where a stopped (or earlier, if a's last acks were lost), once.
		b := slices.Compact(slices.Clone(wroteB))
		require.NotEmpty(t, b)
		assert.LessOrEqual(t, slices.Index(all, b[0]), len(wroteA), "b starts where a stopped: %v", wroteB)
		assert.Equal(t, all[slices.Index(all, b[0]):], b, "b writes what a did not: %v", wroteB)
		assert.Equal(t, len(b), len(wroteB), "b writes each event once: %v", wroteB)
	}
}
