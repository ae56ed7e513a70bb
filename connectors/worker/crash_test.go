package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
		Name: "order-sink", Kind: connectors.KindSink, InOrder: true,
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

// The outside system is down for longer than the ack wait while a sink's
// loop holds a batch and has more read ahead and fetched: once it is
// back, every event is written once, and none is dead-lettered (an
// unreachable target spends no attempts).
func TestSinkHoldPastAckWaitWritesOnceAndDeadLettersNothing(t *testing.T) {
	srv, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	puts := map[string]int{}
	rt := orderRuntime(t, srv, "a", func(evs []event.Event) error {
		if down.Load() {
			return bridge.UnavailableError(errors.New("connection refused"), 0)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			puts[e.ID()]++
		}
		return nil
	})
	_, err = rt.Create(t.Context(), "h", map[string]any{"connector.type": "order-sink", "topic": "held",
		"batch.size": 2, "batch.wait": "1ms", "max.attempts": 2, "dead.letter.topic": "held.dead"})
	require.NoError(t, err)
	waitTasks(t, rt, "h", worker.StateRunning)
	dead, err := srv.Consume(t.Context(), mesh.ConsumerConfig{Topic: "held.dead", Group: "check"})
	require.NoError(t, err)
	defer dead.Close()
	ids := make([]string, 8)
	for i := range ids {
		ids[i] = fmt.Sprintf("h-%d", i)
		publish(t, srv, "held", ids[i])
	}
	require.Eventually(t, func() bool {
		st, err := rt.DeliveryStatus("h")
		return err == nil && st.Holding
	}, 10*time.Second, 20*time.Millisecond)
	time.Sleep(3 * 2 * time.Second) // held for three ack waits
	down.Store(false)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(puts) == len(ids)
	}, 20*time.Second, 20*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second) // quiet: late copies would come now
	defer cancel()
	if m, err := dead.Next(ctx); err == nil {
		t.Errorf("dead-lettered %s (attempts %v) though the target was only unreachable", m.Event().ID(), m.Event().Extensions()[bridge.ExtDeliveryAttempts])
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		assert.Equal(t, 1, puts[id], "puts of %s: %v", id, puts)
	}
}
