package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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

// gate pauses a member: while closed, its group bucket and its sources'
// Polls block, as in a process stopped with SIGSTOP.
type gate struct {
	mu     sync.Mutex
	open   chan struct{} // closed while the gate is open
	resume atomic.Int64  // resumes so far
	reads  atomic.Int64  // Gets and Keys of the group bucket so far
}

func newGate() *gate {
	g := &gate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gate) pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
}

func (g *gate) unpause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.resume.Add(1)
	close(g.open)
}

func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gatedEngine gates the worker group bucket of a member.
type gatedEngine struct {
	mesh.Engine
	g *gate
}

func (e gatedEngine) KV(ctx context.Context, bucket string) (mesh.KV, error) {
	kv, err := e.Engine.KV(ctx, bucket)
	if err != nil || bucket != worker.DefaultGroupBucket {
		return kv, err
	}
	return gatedKV{KV: kv, g: e.g}, nil
}

type gatedKV struct {
	mesh.KV
	g *gate
}

func (k gatedKV) Get(ctx context.Context, key string) (mesh.Entry, error) {
	k.g.reads.Add(1)
	if err := k.g.wait(ctx); err != nil {
		return mesh.Entry{}, err
	}
	return k.KV.Get(ctx, key)
}

func (k gatedKV) Put(ctx context.Context, key string, v []byte) (uint64, error) {
	if err := k.g.wait(ctx); err != nil {
		return 0, err
	}
	return k.KV.Put(ctx, key, v)
}

func (k gatedKV) Create(ctx context.Context, key string, v []byte) (uint64, error) {
	if err := k.g.wait(ctx); err != nil {
		return 0, err
	}
	return k.KV.Create(ctx, key, v)
}

func (k gatedKV) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if err := k.g.wait(ctx); err != nil {
		return 0, err
	}
	return k.KV.Update(ctx, key, v, rev)
}

func (k gatedKV) Keys(ctx context.Context, prefix string) ([]string, error) {
	k.g.reads.Add(1)
	if err := k.g.wait(ctx); err != nil {
		return nil, err
	}
	return k.KV.Keys(ctx, prefix)
}

// Watch forwards the changes only while the gate is open: a stopped
// process takes none.
func (k gatedKV) Watch(ctx context.Context, prefix string) (<-chan mesh.Change, error) {
	if err := k.g.wait(ctx); err != nil {
		return nil, err
	}
	in, err := k.KV.Watch(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make(chan mesh.Change)
	go func() {
		defer close(out)
		for c := range in {
			if k.g.wait(ctx) != nil {
				return
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// counterSource is a source whose task i polls partition p<i>, one record
// per poll with the next offset, its event naming the member that polled
// it and how often that member was resumed before.
type counterSource struct {
	worker string
	g      *gate
}

func (s *counterSource) Start(context.Context, connectors.Config) error { return nil }
func (s *counterSource) Stop(context.Context) error                     { return nil }
func (s *counterSource) NewTask() connectors.Task                       { return &counterTask{src: s} }
func (s *counterSource) TaskConfigs(n int) ([]connectors.Config, error) {
	out := make([]connectors.Config, n)
	for i := range out {
		out[i] = connectors.Config{"part": "p" + strconv.Itoa(i)}
	}
	return out, nil
}

type counterTask struct {
	src  *counterSource
	tc   connectors.TaskContext
	part string
	next int
	// started is how often the member was resumed before this task
	// started: a record polled after a resume by a task started before it
	// is a paused task's.
	started int64
}

func (t *counterTask) Init(tc connectors.TaskContext) { t.tc = tc }
func (t *counterTask) Start(_ context.Context, cfg connectors.Config) error {
	t.part = cfg["part"].(string)
	t.next = 1
	t.started = t.src.g.resume.Load()
	if off, ok := t.tc.Offsets()[t.part]; ok {
		n, err := strconv.Atoi(off)
		if err != nil {
			return err
		}
		t.next = n + 1
	}
	return nil
}
func (t *counterTask) Stop(context.Context) error { return nil }

func (t *counterTask) Poll(ctx context.Context) ([]connectors.Record, error) {
	if !bridge.Sleep(ctx, 20*time.Millisecond) {
		return nil, ctx.Err()
	}
	// A paused process returns the poll it was in the middle of as soon as
	// it resumes, racing the heartbeat that would find its lease taken.
	if err := t.src.g.wait(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	off := t.next
	t.next++
	e := event.New()
	resumes := t.src.g.resume.Load()
	e.SetID(fmt.Sprintf("%s-%d-%s-%d", t.part, off, t.src.worker, resumes))
	e.SetSource("/counter")
	e.SetType("counter")
	_ = e.SetData(event.ApplicationJSON, map[string]any{"part": t.part, "offset": off, "worker": t.src.worker, "resumes": resumes, "started": t.started})
	return []connectors.Record{{Event: e, Partition: t.part, Offset: strconv.Itoa(off)}}, nil
}

type member struct {
	id   string
	eng  mesh.Engine
	rt   *worker.Runtime
	gate *gate
}

const groupLease = time.Second

// newMember connects a runtime named id to the mesh at url with its own
// connection, so that closing it cuts the member off like kill -9.
func newMember(t *testing.T, url, id string) *member {
	t.Helper()
	js, err := natsjs.Connect(t.Context(), natsjs.Config{URLs: []string{url}, Name: id})
	require.NoError(t, err)
	t.Cleanup(func() { _ = js.Close() })
	m := &member{id: id, gate: newGate()}
	m.eng = gatedEngine{Engine: js, g: m.gate}
	reg := connectors.NewRegistry()
	reg.Register(connectors.Spec{Name: "counter-source", Kind: connectors.KindSource,
		New: func() connectors.Connector { return &counterSource{worker: id, g: m.gate} }})
	fast := bridge.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	m.rt, err = worker.New(worker.Options{Engine: m.eng, Registry: reg, WorkerID: id, LeaseTime: groupLease,
		Backoff: fast, RestartBackoff: fast, WebhookListen: "127.0.0.1:0", StopTimeout: 5 * time.Second})
	require.NoError(t, err)
	require.NoError(t, m.rt.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.rt.Stop(ctx)
	})
	return m
}

// placement returns the worker of each task as m reports it, "" for a task
// that is not RUNNING.
func placement(t *testing.T, m *member, name string) []string {
	t.Helper()
	st, err := m.rt.Status(name)
	require.NoError(t, err)
	out := make([]string, len(st.Tasks))
	for i, ts := range st.Tasks {
		if ts.State == worker.StateRunning {
			out[i] = ts.WorkerID
		}
	}
	return out
}

// waitPlacement waits until m reports every task RUNNING on members whose
// task counts are want (worker id -> count).
func waitPlacement(t *testing.T, m *member, name string, want map[string]int, msg string) time.Duration {
	t.Helper()
	start := time.Now()
	var last []string
	require.Eventually(t, func() bool {
		last = placement(t, m, name)
		got := map[string]int{}
		for _, w := range last {
			got[w]++
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	}, 30*time.Second, 20*time.Millisecond, "%s: tasks placed %q, want %v", msg, &last, want)
	return time.Since(start)
}

type counted struct {
	Part    string `json:"part"`
	Offset  int    `json:"offset"`
	Worker  string `json:"worker"`
	Resumes int64  `json:"resumes"`
	Started int64  `json:"started"`
}

// The tasks of a source spread over the members of the group, move to a
// new member, move off a member cut from the mesh within the lease time,
// and a paused member whose tasks were taken over publishes nothing of what
// it polls when it resumes. Every offset reaches the mesh.
func TestWorkerGroupSpreadsTasksAndFailsOver(t *testing.T) {
	srv, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", NoAuth: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	url := srv.ClientURL()

	a := newMember(t, url, "a")
	_, err = a.rt.Create(t.Context(), "count", map[string]any{"connector.type": "counter-source", "topic": "counts", "tasks.max": 3})
	require.NoError(t, err)
	waitPlacement(t, a, "count", map[string]int{"a": 3}, "one member runs every task")

	// Members that start later load the stored connector and share it.
	b := newMember(t, url, "b")
	c := newMember(t, url, "c")
	took := waitPlacement(t, a, "count", map[string]int{"a": 1, "b": 1, "c": 1}, "three members run one task each")
	t.Logf("rebalanced onto two new members in %s", took.Round(time.Millisecond))
	for _, m := range []*member{b, c} {
		waitPlacement(t, m, "count", map[string]int{"a": 1, "b": 1, "c": 1}, "every member reports the same placement")
	}
	// The members see each other's writes through a watch of the bucket,
	// not by reading it every heartbeat (a request per key and member).
	reads := a.gate.reads.Load() + b.gate.reads.Load() + c.gate.reads.Load()
	time.Sleep(5 * groupLease / 5) // five heartbeats
	assert.Equal(t, reads, a.gate.reads.Load()+b.gate.reads.Load()+c.gate.reads.Load(), "the group bucket was read during heartbeats")

	// b is cut off from the mesh: its tasks go to a and c within the lease.
	cut := time.Now()
	require.NoError(t, b.eng.(gatedEngine).Engine.Close())
	waitPlacement(t, a, "count", map[string]int{"a": 2, "c": 1}, "b's task moves")
	failover := time.Since(cut)
	t.Logf("failover after the member was cut off: %s (lease %s)", failover.Round(time.Millisecond), groupLease)
	assert.Less(t, failover, groupLease+2*groupLease, "a task moves within the lease time plus a heartbeat (and scheduling slack)")

	// c is paused; a takes everything; c resumes, finds its lease taken and
	// publishes nothing it polled after the pause.
	c.gate.pause()
	waitPlacement(t, a, "count", map[string]int{"a": 3}, "a paused member's task moves")
	c.gate.unpause()
	waitPlacement(t, a, "count", map[string]int{"a": 2, "c": 1}, "the resumed member gets a task again")

	// Every offset of every partition reached the mesh; count duplicates.
	cons, err := srv.Consume(t.Context(), mesh.ConsumerConfig{Topic: "counts", Group: "check"})
	require.NoError(t, err)
	defer cons.Close()
	seen := map[string]map[int]int{}
	var zombie []counted
	highest := func() map[string]int {
		offs, err := a.rt.Offsets(t.Context(), "count")
		require.NoError(t, err)
		out := map[string]int{}
		for _, o := range offs {
			out[o.Partition], _ = strconv.Atoi(o.Offset)
		}
		return out
	}
	target := highest()
	require.Len(t, target, 3)
	complete := func() bool {
		for p, hi := range target {
			for off := 1; off <= hi; off++ {
				if seen[p][off] == 0 {
					return false
				}
			}
		}
		return true
	}
	for !complete() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		msg, err := cons.Next(ctx)
		cancel()
		require.NoError(t, err, "waiting for offsets up to %v; seen %v", target, seen)
		var rec counted
		require.NoError(t, json.Unmarshal(msg.Event().Data(), &rec))
		if seen[rec.Part] == nil {
			seen[rec.Part] = map[int]int{}
		}
		seen[rec.Part][rec.Offset]++
		if rec.Worker == "c" && rec.Resumes > rec.Started {
			zombie = append(zombie, rec)
		}
		require.NoError(t, msg.Ack(t.Context()))
	}
	dups := 0
	for _, offs := range seen {
		for _, n := range offs {
			dups += n - 1
		}
	}
	t.Logf("offsets committed %v all published; %d published twice (at-least-once across handovers)", target, dups)
	assert.Empty(t, zombie, "the paused member published records of a task it had lost")
}
