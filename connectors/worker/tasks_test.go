package worker_test

import (
	"context"
	"strconv"
	"sync/atomic"
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

// offsetSource polls one record per partition it has no offset for, and
// records the offsets its tasks were started with.
type offsetSource struct {
	starts *atomic.Int32
	seen   chan map[string]string
}

func (s *offsetSource) Start(context.Context, connectors.Config) error { return nil }
func (s *offsetSource) Stop(context.Context) error                     { return nil }
func (s *offsetSource) NewTask() connectors.Task                       { return &offsetTask{src: s} }
func (s *offsetSource) TaskConfigs(int) ([]connectors.Config, error) {
	return []connectors.Config{{}, {}}, nil
}

type offsetTask struct {
	src  *offsetSource
	offs map[string]string
	done bool
}

func (t *offsetTask) Init(tc connectors.TaskContext) { t.offs = tc.Offsets() }
func (t *offsetTask) Start(context.Context, connectors.Config) error {
	t.src.starts.Add(1)
	select {
	case t.src.seen <- t.offs:
	default:
	}
	return nil
}
func (t *offsetTask) Stop(context.Context) error { return nil }
func (t *offsetTask) Poll(ctx context.Context) ([]connectors.Record, error) {
	if t.done {
		<-ctx.Done()
		return nil, nil
	}
	t.done = true
	if _, ok := t.offs["p"]; ok {
		return nil, nil
	}
	e := event.New()
	e.SetID("r1")
	e.SetSource("/offset-source")
	e.SetType("t")
	return []connectors.Record{{Event: e, Partition: "p", Offset: "41"}}, nil
}

// countingSink counts what its tasks are given.
type countingSink struct{ got *atomic.Int64 }

func (s countingSink) Start(context.Context, connectors.Config) error { return nil }
func (s countingSink) Stop(context.Context) error                     { return nil }
func (s countingSink) NewTask() connectors.Task                       { return &countingTask{got: s.got} }
func (s countingSink) TaskConfigs(int) ([]connectors.Config, error) {
	return []connectors.Config{{}}, nil
}

type countingTask struct{ got *atomic.Int64 }

func (t *countingTask) Start(context.Context, connectors.Config) error { return nil }
func (t *countingTask) Stop(context.Context) error                     { return nil }
func (t *countingTask) Put(_ context.Context, evs []event.Event) error {
	t.got.Add(int64(len(evs)))
	return nil
}

func setupOps(t *testing.T) (*worker.Runtime, mesh.Engine, *offsetSource, *atomic.Int64) {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	src := &offsetSource{starts: &atomic.Int32{}, seen: make(chan map[string]string, 16)}
	got := &atomic.Int64{}
	reg := connectors.NewRegistry()
	reg.Register(connectors.Spec{Name: "offset-source", Kind: connectors.KindSource, New: func() connectors.Connector { return src }})
	reg.Register(connectors.Spec{Name: "counting-sink", Kind: connectors.KindSink, New: func() connectors.Connector { return countingSink{got: got} }})
	fast := bridge.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	rt, err := worker.New(worker.Options{Engine: eng, Registry: reg, Backoff: fast, RestartBackoff: fast, WebhookListen: "127.0.0.1:0", WorkerID: "member-1"})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() { _ = rt.Stop(context.Background()) })
	return rt, eng, src, got
}

// A task restarts alone; STOPPED drops the tasks; offsets change only on
// a stopped source, and the tasks start with them after resume.
func TestTaskRestartStopAndSourceOffsets(t *testing.T) {
	rt, _, src, _ := setupOps(t)
	ctx := t.Context()
	_, err := rt.Create(ctx, "src", map[string]any{"connector.type": "offset-source", "topic": "in", "tasks.max": 2})
	require.NoError(t, err)
	waitAllTasks(t, rt, "src")
	require.Eventually(t, func() bool {
		offs, err := rt.Offsets(ctx, "src")
		return err == nil && len(offs) == 1 && offs[0].Offset == "41"
	}, 10*time.Second, 10*time.Millisecond)

	ts, err := rt.TaskStatus("src", 1)
	require.NoError(t, err)
	require.Equal(t, worker.StateRunning, ts.State)
	require.Equal(t, "member-1", ts.WorkerID)
	_, err = rt.TaskStatus("src", 2)
	require.ErrorIs(t, err, worker.ErrTaskNotFound)

	starts := src.starts.Load()
	require.NoError(t, rt.RestartTask(ctx, "src", 1))
	require.Eventually(t, func() bool { return src.starts.Load() == starts+1 }, 10*time.Second, 10*time.Millisecond)
	waitAllTasks(t, rt, "src")
	require.Equal(t, starts+1, src.starts.Load(), "only the one task restarted")
	require.ErrorIs(t, rt.RestartTask(ctx, "src", 9), worker.ErrTaskNotFound)

	// Offsets change only while stopped.
	val := "7"
	require.ErrorIs(t, rt.AlterOffsets(ctx, "src", []worker.OffsetChange{{Partition: "p", Offset: &val}}), worker.ErrNotStopped)
	require.ErrorIs(t, rt.ResetOffsets(ctx, "src"), worker.ErrNotStopped)
	require.NoError(t, rt.StopConnector(ctx, "src"))
	st, err := rt.Status("src")
	require.NoError(t, err)
	require.Equal(t, worker.StateStopped, st.Connector.State)
	require.Empty(t, st.Tasks)
	require.ErrorIs(t, rt.RestartTask(ctx, "src", 0), worker.ErrNotRunningState)

	require.NoError(t, rt.AlterOffsets(ctx, "src", []worker.OffsetChange{{Partition: "p", Offset: &val}, {Partition: "q", Offset: &val}}))
	require.NoError(t, rt.AlterOffsets(ctx, "src", []worker.OffsetChange{{Partition: "q"}}))
	offs, err := rt.Offsets(ctx, "src")
	require.NoError(t, err)
	require.Equal(t, []worker.Offset{{Partition: "p", Offset: "7"}}, offs)

	for len(src.seen) > 0 {
		<-src.seen
	}
	require.NoError(t, rt.Resume(ctx, "src"))
	waitAllTasks(t, rt, "src")
	require.Equal(t, map[string]string{"p": "7"}, <-src.seen)

	require.NoError(t, rt.StopConnector(ctx, "src"))
	require.NoError(t, rt.ResetOffsets(ctx, "src"))
	offs, err = rt.Offsets(ctx, "src")
	require.NoError(t, err)
	require.Empty(t, offs)
	topics, err := rt.Topics("src")
	require.NoError(t, err)
	require.Equal(t, []string{"in"}, topics)
}

// A stopped sink's position on a topic is set to a stream sequence: it
// resumes after it, delivering the later events again.
func TestSinkPositions(t *testing.T) {
	rt, eng, _, got := setupOps(t)
	ctx := t.Context()
	_, err := rt.Create(ctx, "snk", map[string]any{"connector.type": "counting-sink", "topic": "orders", "dead.letter.topic": "orders-dead"})
	require.NoError(t, err)
	waitTasks(t, rt, "snk", worker.StateRunning)
	for i := range 5 {
		publish(t, eng, "orders", "o"+strconv.Itoa(i))
	}
	require.Eventually(t, func() bool { return got.Load() == 5 }, 10*time.Second, 10*time.Millisecond)
	var offs []worker.Offset
	require.Eventually(t, func() bool {
		offs, err = rt.Offsets(ctx, "snk")
		// The five events are the stream's first: its ack floor reaches 5
		// once all are settled (acks land after the count above moves).
		return err == nil && len(offs) == 1 && offs[0].Offset == "5"
	}, 10*time.Second, 10*time.Millisecond)
	last, err := strconv.ParseUint(offs[0].Offset, 10, 64)
	require.NoError(t, err)

	require.NoError(t, rt.StopConnector(ctx, "snk"))
	back := strconv.FormatUint(last-3, 10)
	bad := "x"
	require.Error(t, rt.AlterOffsets(ctx, "snk", []worker.OffsetChange{{Partition: "orders", Offset: &bad}}))
	require.Error(t, rt.AlterOffsets(ctx, "snk", []worker.OffsetChange{{Partition: "other", Offset: &back}}))
	require.NoError(t, rt.AlterOffsets(ctx, "snk", []worker.OffsetChange{{Partition: "orders", Offset: &back}}))
	require.NoError(t, rt.Resume(ctx, "snk"))
	require.Eventually(t, func() bool { return got.Load() == 8 }, 10*time.Second, 10*time.Millisecond)

	topics, err := rt.Topics("snk")
	require.NoError(t, err)
	require.Equal(t, []string{"orders", "orders-dead"}, topics)
	st, err := rt.DeliveryStatus("snk")
	require.NoError(t, err)
	require.False(t, st.Holding)
}

// waitAllTasks waits until the instance has tasks and every one runs.
func waitAllTasks(t *testing.T, rt *worker.Runtime, name string) {
	t.Helper()
	require.Eventually(t, func() bool {
		st, err := rt.Status(name)
		if err != nil || len(st.Tasks) == 0 {
			return false
		}
		for _, ts := range st.Tasks {
			if ts.State != worker.StateRunning {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "every task of %s should run", name)
}
