package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/connectors"
)

// resetAfter is how long a task or connector must run before its restart
// backoff starts over.
const resetAfter = time.Minute

// Status is the state of an instance and its tasks, shaped like Kafka
// Connect's.
type Status struct {
	Name      string          `json:"name"`
	Connector UnitState       `json:"connector"`
	Tasks     []TaskState     `json:"tasks"`
	Type      connectors.Kind `json:"type"`
}

// UnitState is the state of a connector.
type UnitState struct {
	State    State  `json:"state"`
	WorkerID string `json:"worker_id"`
	// Trace is the error (and, for a panic, the stack) of a FAILED unit,
	// with secret config values masked.
	Trace string `json:"trace,omitempty"`
}

// TaskState is the state of a task.
type TaskState struct {
	ID       int    `json:"id"`
	State    State  `json:"state"`
	WorkerID string `json:"worker_id"`
	Trace    string `json:"trace,omitempty"`
	// Restarts counts restarts after failures since the instance started.
	Restarts int `json:"restarts"`
	// LastError is a running sink task's latest failed delivery (secrets
	// masked) and LastErrorAt its time; the task is DEGRADED while its
	// outside system is unavailable (events held) or no write succeeded
	// since that failure.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// probe reports a running sink task's delivery loop and when its last
// fully successful write was.
type probe func() (bridge.LoopStatus, time.Time)

// instance is one connector instance. name, spec, cfg, raw and invalid are
// set at creation and read-only; target, run, cfgRev and stateRev are
// guarded by Runtime.opMu; the status fields by mu.
type instance struct {
	name    string
	spec    connectors.Spec   // zero when the stored type is unknown
	cfg     connectors.Config // validated; nil when invalid
	raw     map[string]any    // the stored JSON form
	invalid error             // why a stored instance cannot run
	secrets []string          // secret values to mask in traces
	log     *slog.Logger

	target State
	run    *run
	// cfgRev and stateRev are the revisions of the stored config and
	// target state this instance is at (0: none stored); what the watch
	// reports at or below them was applied already (live.go).
	cfgRev, stateRev uint64

	mu       sync.Mutex
	conn     UnitState
	tasks    []TaskState
	probes   []probe // by task, set while a sink task's loop runs
	here     []bool  // task i runs on this sidecar
	taskCfgs []connectors.Config
	restarts map[int]context.CancelFunc // by task: ends its current run (tasks.go)
	loops    map[*bridge.Loop]struct{}  // the delivery loops of a sink's tasks (tasks.go)
}

type run struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *Runtime) newInstance(name string, raw map[string]any) *instance {
	inst := &instance{name: name, raw: raw, target: StateRunning, log: r.log.With("connector", name)}
	inst.conn.State = StateUnassigned
	spec, cfg, err := r.registry.Validate(raw)
	if typ, _ := raw[connectors.FieldConnectorType].(string); typ != "" {
		if s, ok := r.registry.Lookup(typ); ok {
			spec = s
		}
	}
	inst.spec = spec
	if err != nil {
		inst.invalid = fmt.Errorf("stored config cannot run: %w", err)
		inst.log.Error("not starting connector", "error", inst.redact(err.Error()))
	} else {
		inst.cfg = cfg
	}
	inst.secrets = spec.SecretValues(raw)
	return inst
}

// redact masks the instance's secret values in s.
func (inst *instance) redact(s string) string {
	for _, sec := range inst.secrets {
		if len(sec) >= 3 {
			s = strings.ReplaceAll(s, sec, connectors.Mask)
		}
	}
	return s
}

func (inst *instance) taskCount() int {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	return len(inst.taskCfgs)
}

func (inst *instance) info() Info {
	n := inst.taskCount()
	tasks := make([]TaskID, n)
	for i := range tasks {
		tasks[i] = TaskID{Connector: inst.name, Task: i}
	}
	return Info{Name: inst.name, Config: inst.spec.Masked(inst.raw), Tasks: tasks, Type: inst.spec.Kind}
}

func (inst *instance) taskInfos() []TaskInfo {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	out := make([]TaskInfo, len(inst.taskCfgs))
	for i, c := range inst.taskCfgs {
		out[i] = TaskInfo{ID: TaskID{Connector: inst.name, Task: i}, Config: inst.spec.Masked(c.JSON())}
	}
	return out
}

// status is the instance's state as this sidecar runs it: the worker of a
// task that runs elsewhere is left empty (group.view fills it in).
func (inst *instance) status(worker string) (Status, []bool) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	st := Status{Name: inst.name, Connector: inst.conn, Tasks: slices.Clone(inst.tasks), Type: inst.spec.Kind}
	st.Connector.WorkerID = worker
	for i := range st.Tasks {
		if inst.here[i] {
			st.Tasks[i].WorkerID = worker
		}
	}
	for i := range st.Tasks {
		if i >= len(inst.probes) || inst.probes[i] == nil {
			continue
		}
		ls, lastOK := inst.probes[i]()
		if ls.LastError == "" {
			continue
		}
		ts := &st.Tasks[i]
		ts.LastError, ts.LastErrorAt = inst.redact(ls.LastError), ls.LastErrorAt
		if ts.State == StateRunning && (ls.Holding || ls.LastErrorAt.After(lastOK)) {
			ts.State = StateDegraded
		}
	}
	if st.Tasks == nil {
		st.Tasks = []TaskState{}
	}
	return st, slices.Clone(inst.here)
}

// taskState is task id's state on this sidecar.
func (inst *instance) taskState(id int) TaskState {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if id >= len(inst.tasks) {
		return TaskState{ID: id, State: StateUnassigned}
	}
	return inst.tasks[id]
}

// setHere records that task id starts (true) or stopped (false) running on
// this sidecar; a task that left is UNASSIGNED here.
func (inst *instance) setHere(id int, here bool) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if id >= len(inst.tasks) {
		return
	}
	inst.here[id] = here
	if !here {
		inst.tasks[id].State, inst.tasks[id].Trace = StateUnassigned, ""
	}
}

// setProbe sets (nil: clears) the probe of a sink task.
func (inst *instance) setProbe(id int, p probe) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if id < len(inst.probes) {
		inst.probes[id] = p
	}
}

// connState is the state of the connector itself.
func (inst *instance) connState() State {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	return inst.conn.State
}

func (inst *instance) setConnector(s State, trace string) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	inst.conn = UnitState{State: s, Trace: trace}
}

func (inst *instance) setPaused() {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	inst.conn = UnitState{State: StatePaused}
	for i := range inst.tasks {
		inst.tasks[i].State, inst.tasks[i].Trace = StatePaused, ""
	}
}

func (inst *instance) setTasks(cfgs []connectors.Config) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	inst.conn = UnitState{State: StateRunning}
	inst.taskCfgs = cfgs
	inst.tasks = make([]TaskState, len(cfgs))
	inst.probes = make([]probe, len(cfgs))
	inst.here = make([]bool, len(cfgs))
	for i := range inst.tasks {
		inst.tasks[i] = TaskState{ID: i, State: StateUnassigned}
	}
}

func (inst *instance) setTask(id int, s State, trace string, restarted bool) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if id >= len(inst.tasks) {
		return
	}
	inst.tasks[id].State, inst.tasks[id].Trace = s, trace
	if restarted {
		inst.tasks[id].Restarts++
	}
}

// startRun starts the supervisor of inst. r.opMu must be held.
func (r *Runtime) startRun(inst *instance) {
	ctx, cancel := context.WithCancel(context.Background())
	rn := &run{cancel: cancel, done: make(chan struct{})}
	inst.run = rn
	g := r.group.Load()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(rn.done)
		r.supervise(ctx, inst, g)
	}()
}

// stopRun stops inst's supervisor and waits for it until ctx is done.
// Runtime.opMu must be held.
func (inst *instance) stopRun(ctx context.Context) error {
	rn := inst.run
	if rn == nil {
		return nil
	}
	inst.run = nil
	rn.cancel()
	select {
	case <-rn.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping connector %q: %w", inst.name, ctx.Err())
	}
}

// cancelRun tells inst's supervisor to stop without waiting.
func (inst *instance) cancelRun() {
	if rn := inst.run; rn != nil {
		inst.run = nil
		rn.cancel()
	}
}

// supervise runs the connector and its tasks until ctx is done, restarting
// the connector with backoff when it fails.
func (r *Runtime) supervise(ctx context.Context, inst *instance, g *group) {
	failures := 0
	for {
		started := time.Now()
		err := r.runConnector(ctx, inst, g)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("connector stopped by itself")
		}
		trace := inst.redact(traceOf(err))
		inst.setConnector(StateFailed, trace)
		if time.Since(started) > resetAfter {
			failures = 0
		}
		failures++
		wait := r.opts.RestartBackoff.Delay(failures)
		inst.log.Error("connector failed; restarting", "error", inst.redact(err.Error()), "retry_in", wait)
		if !bridge.Sleep(ctx, wait) {
			return
		}
	}
}

// runConnector starts the connector and splits its work into tasks. Tasks
// of every sidecar (connectors.EverySidecar) run here, one goroutine each;
// the others join the worker group g, which runs here those this sidecar
// holds the lease of. It returns once ctx is done and the tasks stopped.
func (r *Runtime) runConnector(ctx context.Context, inst *instance, g *group) (err error) {
	var conn connectors.Connector
	if err := safe("New", func() error { conn = inst.spec.New(); return nil }); err != nil {
		return err
	}
	if conn == nil {
		return fmt.Errorf("connector type %q: New returned nil", inst.spec.Name)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), r.opts.StopTimeout)
		defer cancel()
		if serr := safe("Stop", func() error { return conn.Stop(sctx) }); serr != nil {
			inst.log.Warn("stopping connector", "error", inst.redact(serr.Error()))
		}
	}()
	if err := safe("Start", func() error { return conn.Start(ctx, inst.cfg.Clone()) }); err != nil {
		return fmt.Errorf("starting connector: %w", err)
	}
	maxTasks := int(inst.cfg.Int(connectors.FieldTasksMax))
	var cfgs []connectors.Config
	if err := safe("TaskConfigs", func() (err error) { cfgs, err = conn.TaskConfigs(maxTasks); return err }); err != nil {
		return fmt.Errorf("splitting work into tasks: %w", err)
	}
	if len(cfgs) == 0 {
		return errors.New("splitting work into tasks: the connector returned no task config")
	}
	if len(cfgs) > maxTasks {
		cfgs = cfgs[:maxTasks]
	}
	for i := range cfgs {
		cfgs[i] = cfgs[i].Clone()
	}
	inst.setTasks(cfgs)
	var everySidecar bool
	if err := safe("NewTask", func() error { _, everySidecar = conn.NewTask().(connectors.EverySidecar); return nil }); err != nil {
		return err
	}
	if everySidecar || g == nil {
		var wg sync.WaitGroup
		for i, tc := range cfgs {
			inst.setHere(i, true)
			wg.Go(func() { r.runTask(ctx, inst, conn, i, tc, nil) })
		}
		wg.Wait()
		return nil
	}
	u := g.join(inst, len(cfgs), func(tctx context.Context, l *lease, id int) { r.runTask(tctx, inst, conn, id, cfgs[id], l) })
	<-ctx.Done()
	g.leave(u)
	return nil
}

// runTask runs one task until ctx is done, restarting it with backoff. l
// is the task's lease (nil for a task of every sidecar).
func (r *Runtime) runTask(ctx context.Context, inst *instance, conn connectors.Connector, id int, cfg connectors.Config, l *lease) {
	log := inst.log.With("task", id)
	failures := 0
	for {
		started := time.Now()
		tctx, restart := context.WithCancel(ctx) // RestartTask cancels it
		inst.setRestart(id, restart)
		err := r.runTaskOnce(tctx, inst, conn, id, cfg, l, log)
		if ctx.Err() != nil {
			restart()
			return
		}
		if tctx.Err() != nil { // restarted on request: at once, not a failure
			inst.setTask(id, StateUnassigned, "", false)
			continue
		}
		if err == nil {
			err = errors.New("task stopped by itself")
		}
		if time.Since(started) > resetAfter {
			failures = 0
		}
		failures++
		inst.setTask(id, StateFailed, inst.redact(traceOf(err)), false)
		l.changed()
		r.metrics.taskFailed(inst.name)
		wait := r.opts.RestartBackoff.Delay(failures)
		log.Error("task failed; restarting", "error", inst.redact(err.Error()), "retry_in", wait)
		if !bridge.Sleep(tctx, wait) && ctx.Err() != nil { // a restart request cuts the wait
			return
		}
		restart()
		inst.setTask(id, StateUnassigned, "", true)
	}
}

func (r *Runtime) runTaskOnce(ctx context.Context, inst *instance, conn connectors.Connector, id int, cfg connectors.Config, l *lease, log *slog.Logger) error {
	var task connectors.Task
	if err := safe("NewTask", func() error { task = conn.NewTask(); return nil }); err != nil {
		return err
	}
	if task == nil {
		return errors.New("NewTask returned nil")
	}
	tc := &taskContext{name: inst.name, id: id, log: log, webhooks: r.webhooks.For(inst.name), maxEvent: r.opts.Engine.MaxEventBytes(), guard: r.opts.Guard, lease: l}
	if inst.spec.Kind == connectors.KindSource {
		offs, err := r.loadOffsets(ctx, inst.name)
		if err != nil {
			return err
		}
		tc.offsets = offs
	}
	if in, ok := task.(connectors.Initializer); ok {
		if err := safe("Init", func() error { in.Init(tc); return nil }); err != nil {
			return err
		}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), r.opts.StopTimeout)
		defer cancel()
		if f, ok := task.(connectors.Flusher); ok {
			if err := safe("Flush", func() error { return f.Flush(sctx) }); err != nil {
				log.Warn("flushing task before stop", "error", inst.redact(err.Error()))
			}
		}
		if err := safe("Stop", func() error { return task.Stop(sctx) }); err != nil {
			log.Warn("stopping task", "error", inst.redact(err.Error()))
		}
	}()
	if err := safe("Start", func() error { return task.Start(ctx, cfg.Clone()) }); err != nil {
		return fmt.Errorf("starting task: %w", err)
	}
	running := func() { inst.setTask(id, StateRunning, "", false); l.changed() }
	switch t := task.(type) {
	case connectors.SourceTask:
		if inst.spec.Kind != connectors.KindSource {
			break
		}
		running()
		return r.pollLoop(ctx, inst, tc, t)
	case connectors.SinkTask:
		if inst.spec.Kind != connectors.KindSink {
			break
		}
		return r.sinkLoop(ctx, inst, id, t, l, log, running)
	}
	return fmt.Errorf("task of connector type %q (%s) is a %T, which is not a %s task", inst.spec.Name, inst.spec.Kind, task, inst.spec.Kind)
}

// taskContext implements connectors.TaskContext.
type taskContext struct {
	name     string
	id       int
	log      *slog.Logger
	webhooks connectors.Webhooks
	offsets  map[string]string // read-only after Init
	maxEvent int64
	guard    *cehttp.Guard
	lease    *lease // nil for a task of every sidecar
}

func (tc *taskContext) Connector() string             { return tc.name }
func (tc *taskContext) TaskID() int                   { return tc.id }
func (tc *taskContext) Logger() *slog.Logger          { return tc.log }
func (tc *taskContext) Offsets() map[string]string    { return maps.Clone(tc.offsets) }
func (tc *taskContext) Webhooks() connectors.Webhooks { return tc.webhooks }
func (tc *taskContext) MaxEventBytes() int64          { return tc.maxEvent }
func (tc *taskContext) Guard() *cehttp.Guard          { return tc.guard }
func stack() []byte                                   { return debug.Stack() }
func jsonEqual(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// traceOf is the status trace of err: its text, and the stack of a panic.
func traceOf(err error) string {
	var p *PanicError
	if errors.As(err, &p) {
		return err.Error() + "\n\n" + string(p.Stack)
	}
	return err.Error()
}

// sleep waits d or until ctx is done; it reports whether d passed.
