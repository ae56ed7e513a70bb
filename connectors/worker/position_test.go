package worker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh/embedded"
)

// seqTask records the mesh sequences Put receives for topic seq, by event id.
type seqTask struct {
	mu   *sync.Mutex
	seqs map[string]uint64
}

func (s seqTask) Start(context.Context, connectors.Config) error { return nil }
func (s seqTask) Stop(context.Context) error                     { return nil }
func (s seqTask) Put(context.Context, []event.Event) error {
	return errors.New("the runtime calls PutPositions of a PositionedSink")
}

func (s seqTask) PutPositions(_ context.Context, evs []event.Event, pos []connectors.Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range evs {
		if i < len(pos) && pos[i].Topic == "seq" {
			s.seqs[e.ID()] = pos[i].Sequence
		}
	}
	return nil
}

// A PositionedSink gets the topic and mesh sequence of each event, by index.
func TestPutGetsMeshPositions(t *testing.T) {
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	task := seqTask{mu: &sync.Mutex{}, seqs: map[string]uint64{}}
	reg := connectors.NewRegistry()
	reg.Register(connectors.Spec{Name: "seq-sink", Kind: connectors.KindSink, New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return task }, connectors.EveryTask)
	}})
	rt, err := worker.New(worker.Options{Engine: eng, Registry: reg, WebhookListen: "127.0.0.1:0"})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() { _ = rt.Stop(context.Background()) })
	_, err = rt.Create(t.Context(), "s", map[string]any{"connector.type": "seq-sink", "topic": "seq"})
	require.NoError(t, err)
	waitTasks(t, rt, "s", worker.StateRunning)
	publish(t, eng, "other", "x")
	publish(t, eng, "seq", "a", "b")
	publish(t, eng, "other", "y")
	publish(t, eng, "seq", "c")
	require.Eventually(t, func() bool { task.mu.Lock(); defer task.mu.Unlock(); return len(task.seqs) == 3 }, 10*time.Second, 10*time.Millisecond)
	task.mu.Lock()
	defer task.mu.Unlock()
	assert.Positive(t, task.seqs["a"])
	assert.Less(t, task.seqs["a"], task.seqs["b"])
	assert.Greater(t, task.seqs["c"], task.seqs["b"]+1, "sequences count the events of every topic")
}
