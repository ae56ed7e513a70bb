// Package runtime runs connector instances: it starts each instance's
// connector and tasks, publishes what source tasks poll and commits their
// offsets once the mesh stored the records, feeds sink tasks from durable
// consumer groups with retry, backoff and dead-lettering, restarts failed
// tasks with backoff, and keeps instance configs, target states and offsets
// in the mesh KV (layout in store.go) so a restarted meshd resumes them.
// The runtimes of one app's sidecars form a worker group (group.go): each
// task runs on one of them at a time, under a lease in the mesh KV, and
// moves to another when its sidecar stops or dies.
//
// Lock order: Runtime.opMu (serialises changes to instances; held while
// they stop and start), then Runtime.mu (the instance map), then
// instance.mu (an instance's status). Task goroutines take only instance.mu.
// group.mu may be taken before instance.mu, never after; see group.go.
// The goroutine that follows the config bucket (live.go) takes opMu for
// each change; Stop waits for it without holding opMu.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/mesh"
)

// Defaults of Options.
const (
	DefaultWebhookListen = ":10107"
	DefaultStopTimeout   = 30 * time.Second
)

// DefaultRestartBackoff is the schedule of task and connector restarts.
var DefaultRestartBackoff = bridge.Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2, Jitter: 0.2}

// Options configures a Runtime.
type Options struct {
	Engine mesh.Engine // required
	// Bridge publishes what sources poll (validation, metrics). nil: a
	// bridge without subscriptions is made on Engine.
	Bridge   *bridge.Bridge
	Registry *connectors.Registry // nil: connectors.Default()
	Logger   *slog.Logger         // nil: discard
	Meter    metric.Meter         // nil: no metrics
	// Tracer makes a span "poll <connector>" per poll that returned records
	// and "put <connector>" per sink batch, linked through the events'
	// distributed-tracing extension. nil: no spans.
	Tracer trace.Tracer
	// WorkerID names this sidecar among the sidecars of its app (the
	// members of the worker group sharing ConfigBucket) and in statuses.
	// It must differ between live sidecars (default: random per Start).
	WorkerID string
	// ConfigBucket, OffsetBucket and GroupBucket are the mesh KV buckets
	// (defaults DefaultConfigBucket, DefaultOffsetBucket,
	// DefaultGroupBucket; layouts in store.go and group.go).
	ConfigBucket, OffsetBucket, GroupBucket string
	// LeaseTime is how long a sidecar of the worker group may go silent
	// before the others take its tasks over (default DefaultLeaseTime, at
	// least MinLeaseTime). Every sidecar of an app should use the same.
	LeaseTime time.Duration
	// Backoff is the retry schedule of sink deliveries and of publishing
	// polled records (zero: bridge.DefaultBackoff).
	Backoff bridge.Backoff
	// RestartBackoff is the schedule of task restarts after a failure
	// (zero: DefaultRestartBackoff).
	RestartBackoff bridge.Backoff
	// AckWait is how long a sink batch may take before the mesh redelivers
	// it (default 30s).
	AckWait time.Duration
	// StopTimeout bounds each Stop and Flush call into connector code
	// (default 30s).
	StopTimeout time.Duration
	// WebhookListen is the public listener of webhook sources, opened when
	// the first one starts and closed when the last is gone (default
	// ":10107").
	WebhookListen string
	// Webhook configures that listener: TLS, timeouts, connection limit.
	Webhook WebhookOptions
	// SecretsKey returns the 32-byte AES key that encrypts the secret
	// fields of connector configs in the mesh KV (layout in store.go). It
	// is called once, when a secret is first stored or read. nil: secrets
	// are stored in clear (tests; meshd always sets one).
	SecretsKey func() ([]byte, error)
	// Guard is given to tasks (TaskContext.Guard) for their HTTP clients:
	// which addresses they may dial. nil: every address but link-local and
	// cloud metadata ones.
	Guard *cehttp.Guard
}

// State is the state of a connector or task.
type State string

// States, as Kafka Connect names them.
const (
	StateRunning    State = "RUNNING"
	StatePaused     State = "PAUSED"
	StateFailed     State = "FAILED"
	StateUnassigned State = "UNASSIGNED"

	// StateStopped is PAUSED without tasks: their configs are dropped, and
	// offsets may be changed (tasks.go).
	StateStopped State = "STOPPED"
	// StateDegraded is a running sink task whose writes fail: its outside
	// system is unavailable (events are held, none taken) or no write
	// succeeded since the last failure (TaskState.LastError says why).
	StateDegraded State = "DEGRADED"
)

// Runtime runs connector instances. All methods are safe for concurrent use.
type Runtime struct {
	opts     Options
	log      *slog.Logger
	registry *connectors.Registry
	bridge   *bridge.Bridge
	metrics  *metrics
	webhooks *webhookServer
	secrets  *secretBox

	opMu      sync.Mutex            // serialises changes; taken before mu
	running   bool                  // between Start and Stop; guarded by opMu
	configs   mesh.KV               // set by Start
	offsets   mesh.KV               // set by Start
	group     atomic.Pointer[group] // set by Start, cleared by Stop
	watchStop func()                // ends following the config bucket; guarded by opMu
	watchDone chan struct{}         // closed when following has ended

	mu        sync.RWMutex // guards instances
	instances map[string]*instance

	wg sync.WaitGroup // instance supervisors
}

// New returns a Runtime; Start restores and runs the stored instances.
func New(opts Options) (*Runtime, error) {
	if opts.Engine == nil {
		return nil, errors.New("connector runtime: Options.Engine is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = connectors.Default()
	}
	if opts.ConfigBucket == "" {
		opts.ConfigBucket = DefaultConfigBucket
	}
	if opts.OffsetBucket == "" {
		opts.OffsetBucket = DefaultOffsetBucket
	}
	if opts.GroupBucket == "" {
		opts.GroupBucket = DefaultGroupBucket
	}
	if opts.LeaseTime == 0 {
		opts.LeaseTime = DefaultLeaseTime
	}
	if opts.LeaseTime < MinLeaseTime {
		return nil, fmt.Errorf("connector runtime: LeaseTime %s is below the minimum %s", opts.LeaseTime, MinLeaseTime)
	}
	if opts.Backoff == (bridge.Backoff{}) {
		opts.Backoff = bridge.DefaultBackoff
	}
	if opts.RestartBackoff == (bridge.Backoff{}) {
		opts.RestartBackoff = DefaultRestartBackoff
	}
	if opts.AckWait <= 0 {
		opts.AckWait = mesh.DefaultAckWait
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	if opts.WebhookListen == "" {
		opts.WebhookListen = DefaultWebhookListen
	}
	r := &Runtime{
		opts:      opts,
		log:       opts.Logger,
		registry:  opts.Registry,
		bridge:    opts.Bridge,
		instances: map[string]*instance{},
		secrets:   &secretBox{keyFn: opts.SecretsKey},
	}
	if r.bridge == nil {
		b, err := bridge.New(bridge.Options{Engine: opts.Engine, Logger: opts.Logger, Meter: opts.Meter, Tracer: opts.Tracer})
		if err != nil {
			return nil, err
		}
		r.bridge = b
	}
	if opts.Meter != nil {
		m, err := newMetrics(opts.Meter)
		if err != nil {
			return nil, fmt.Errorf("creating connector metrics: %w", err)
		}
		r.metrics = m
	}
	r.webhooks = newWebhookServer(opts.WebhookListen, opts.Webhook, opts.Logger)
	return r, nil
}

// Registry is the registry of connector types this runtime runs.
func (r *Runtime) Registry() *connectors.Registry { return r.registry }

// WebhookAddr is the address of the public webhook listener, "" while it
// is not open.
func (r *Runtime) WebhookAddr() string { return r.webhooks.addr() }

// Start opens the KV buckets and starts every stored instance whose target
// state is RUNNING. Start on a started runtime does nothing.
func (r *Runtime) Start(ctx context.Context) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	if r.running {
		return nil
	}
	var err error
	if r.configs, err = r.opts.Engine.KV(ctx, r.opts.ConfigBucket); err != nil {
		return fmt.Errorf("opening connector bucket: %w", err)
	}
	if r.offsets, err = r.opts.Engine.KV(ctx, r.opts.OffsetBucket); err != nil {
		return fmt.Errorf("opening offset bucket: %w", err)
	}
	groupKV, err := r.opts.Engine.KV(ctx, r.opts.GroupBucket)
	if err != nil {
		return fmt.Errorf("opening worker group bucket: %w", err)
	}
	// Watch before reading: what changes from here on is applied after.
	changes, stopWatch, err := r.watchConfigs(ctx)
	if err != nil {
		return err
	}
	stored, states, err := r.loadAll(ctx)
	if err != nil {
		stopWatch()
		return err
	}
	r.webhooks.reopen()
	id := r.opts.WorkerID
	if id == "" {
		id = "worker-" + randomID()[:8]
	}
	g := newGroup(groupKV, id, r.opts.LeaseTime, r.log)
	g.start()
	r.group.Store(g)
	r.running = true
	for _, sc := range stored {
		inst := r.storedInstance(sc) // live.go
		if st, ok := states[sc.Name]; ok {
			if st.State == StatePaused || st.State == StateStopped {
				inst.target = st.State
			}
			inst.stateRev = st.rev
		}
		if err := r.openGroups(ctx, inst); err != nil {
			r.log.Warn("creating the consumer groups of a restored connector; its tasks create them", "connector", sc.Name, "error", err)
		}
		inst.cfgRev = sc.rev
		r.mu.Lock()
		r.instances[sc.Name] = inst
		r.mu.Unlock()
		r.apply(inst)
	}
	if len(stored) > 0 {
		r.log.Info("connectors restored", "count", len(stored))
	}
	r.follow(changes, stopWatch)
	return nil
}

// Stop stops every instance (their tasks flush and stop) and the webhook
// listener, waiting until ctx is done. Stored states are kept, so Start
// resumes them. Idempotent.
func (r *Runtime) Stop(ctx context.Context) error {
	r.stopFollowing()
	r.opMu.Lock()
	defer r.opMu.Unlock()
	r.running = false
	r.mu.RLock()
	insts := slices.Collect(maps.Values(r.instances))
	r.mu.RUnlock()
	for _, inst := range insts {
		inst.cancelRun()
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	var err error
	g := r.group.Swap(nil)
	select {
	case <-done:
		// Every task stopped and freed its lease: leaving the group now
		// lets the other sidecars take them over at their next heartbeat.
		if g != nil {
			err = g.close(ctx)
		}
	case <-ctx.Done():
		err = fmt.Errorf("stopping connectors: %w", ctx.Err())
		if g != nil {
			g.stopLoop() // tasks still running stop renewing and fence themselves
		}
	}
	return errors.Join(err, r.webhooks.close(ctx))
}

func checkName(name string) error {
	if !mesh.IsToken(name, 100) || name[0] == '-' || name[0] == '_' {
		return &connectors.ValidationError{Fields: []connectors.FieldError{{Field: "name",
			Reason: fmt.Sprintf("%q: want 1 to 100 letters, digits, '-' and '_', starting with a letter or digit", name)}}}
	}
	return nil
}

// Info describes an instance; its config is masked.
type Info struct {
	Name   string          `json:"name"`
	Config map[string]any  `json:"config"`
	Tasks  []TaskID        `json:"tasks"`
	Type   connectors.Kind `json:"type"`
}

// TaskID names a task.
type TaskID struct {
	Connector string `json:"connector"`
	Task      int    `json:"task"`
}

// TaskInfo is a task and its masked config.
type TaskInfo struct {
	ID     TaskID         `json:"id"`
	Config map[string]any `json:"config"`
}

// Validate checks raw against its connector.type without creating anything.
func (r *Runtime) Validate(raw map[string]any) (connectors.Spec, connectors.Config, error) {
	return r.registry.Validate(raw)
}

// Create validates, stores and starts a new instance.
func (r *Runtime) Create(ctx context.Context, name string, raw map[string]any) (Info, error) {
	if err := checkName(name); err != nil {
		return Info{}, err
	}
	_, cfg, err := r.registry.Validate(raw)
	if err != nil {
		return Info{}, err
	}
	r.opMu.Lock()
	defer r.opMu.Unlock()
	if !r.running {
		return Info{}, ErrNotRunning
	}
	if r.lookup(name) != nil {
		return Info{}, fmt.Errorf("%w: %q", ErrExists, name)
	}
	cfgRev, err := r.storeConfig(ctx, name, cfg.JSON(), true, 0)
	if err != nil {
		return Info{}, err
	}
	stateRev, err := r.storeState(ctx, name, StateRunning, 0)
	if err != nil {
		_ = r.configs.Delete(context.WithoutCancel(ctx), keyConfig+name)
		return Info{}, err
	}
	inst := r.newInstance(name, cfg.JSON())
	if err := r.openGroups(ctx, inst); err != nil {
		_ = r.deleteStored(context.WithoutCancel(ctx), name)
		return Info{}, err
	}
	inst.cfgRev, inst.stateRev = cfgRev, stateRev
	r.mu.Lock()
	r.instances[name] = inst
	r.mu.Unlock()
	r.apply(inst)
	r.log.Info("connector created", "connector", name, "type", inst.spec.Name)
	return inst.info(), nil
}

// Put creates the instance or replaces its config (fields given as the
// mask keep their stored secret). The store is changed with compare-and-set:
// when another sidecar of the app changed the instance since this one saw
// it, Put fails with ErrConflict (and this one catches up). A changed
// config restarts the instance:
// its tasks stop, the config is stored, they start again with it (offsets
// kept; a sink's groups on topics it no longer consumes are deleted). An
// unchanged one does nothing. It reports whether the instance was created.
func (r *Runtime) Put(ctx context.Context, name string, raw map[string]any) (Info, bool, error) {
	if err := checkName(name); err != nil {
		return Info{}, false, err
	}
	r.opMu.Lock()
	defer r.opMu.Unlock()
	if !r.running {
		return Info{}, false, ErrNotRunning
	}
	old := r.lookup(name)
	if old == nil {
		_, cfg, err := r.registry.Validate(raw)
		if err != nil {
			return Info{}, false, err
		}
		cfgRev, err := r.storeConfig(ctx, name, cfg.JSON(), true, 0)
		if errors.Is(err, ErrExists) {
			// Created through another sidecar, not applied here yet.
			return Info{}, false, r.lostRace(ctx, name, fmt.Errorf("%w: %q was created meanwhile", ErrConflict, name))
		}
		if err != nil {
			return Info{}, false, err
		}
		stateRev, err := r.storeState(ctx, name, StateRunning, 0)
		if err != nil {
			return Info{}, false, err
		}
		inst := r.newInstance(name, cfg.JSON())
		if err := r.openGroups(ctx, inst); err != nil {
			_ = r.deleteStored(context.WithoutCancel(ctx), name)
			return Info{}, false, err
		}
		inst.cfgRev, inst.stateRev = cfgRev, stateRev
		r.mu.Lock()
		r.instances[name] = inst
		r.mu.Unlock()
		r.apply(inst)
		r.log.Info("connector created", "connector", name, "type", inst.spec.Name)
		return inst.info(), true, nil
	}
	if old.spec.New != nil {
		raw = old.spec.Unmask(raw, old.raw)
	}
	spec, cfg, err := r.registry.Validate(raw)
	if err != nil {
		return Info{}, false, err
	}
	if old.spec.New != nil && spec.Name != old.spec.Name {
		return Info{}, false, &connectors.ValidationError{Fields: []connectors.FieldError{{Field: connectors.FieldConnectorType,
			Reason: fmt.Sprintf("cannot change from %q to %q; delete the connector and create it again", old.spec.Name, spec.Name)}}}
	}
	if old.invalid == nil && jsonEqual(old.cfg.JSON(), cfg.JSON()) {
		return old.info(), false, nil
	}
	cfgRev, err := r.storeConfig(ctx, name, cfg.JSON(), false, old.cfgRev)
	if err != nil {
		return Info{}, false, r.lostRace(ctx, name, err)
	}
	if err := old.stopRun(ctx); err != nil {
		return Info{}, false, err
	}
	r.webhooks.release(name) // the new config may serve other paths
	if old.spec.Kind == connectors.KindSink && old.invalid == nil {
		for _, t := range old.cfg.Strings(connectors.FieldTopic) {
			if !slices.Contains(cfg.Strings(connectors.FieldTopic), t) {
				if err := r.opts.Engine.DeleteGroup(ctx, t, GroupName(name)); err != nil {
					r.log.Warn("deleting consumer group of a topic the connector no longer consumes", "connector", name, "topic", t, "error", err)
				}
			}
		}
	}
	inst := r.newInstance(name, cfg.JSON())
	inst.target, inst.cfgRev, inst.stateRev = old.target, cfgRev, old.stateRev
	if err := r.openGroups(ctx, inst); err != nil {
		r.log.Warn("creating the consumer groups of a reconfigured connector; its tasks create them", "connector", name, "error", err)
	}
	r.mu.Lock()
	r.instances[name] = inst
	r.mu.Unlock()
	r.apply(inst)
	r.log.Info("connector reconfigured", "connector", name)
	return inst.info(), false, nil
}

// lostRace brings instance name up to date with the store when err is a
// lost race (ErrConflict), so that a retry starts from what won; it
// returns err. r.opMu must be held.
func (r *Runtime) lostRace(ctx context.Context, name string, err error) error {
	if errors.Is(err, ErrConflict) {
		if serr := r.syncInstance(ctx, name); serr != nil {
			r.log.Warn("reading a connector changed elsewhere", "connector", name, "error", serr)
		}
	}
	return err
}

// Delete stops an instance and removes its config, state, offsets and (for
// a sink) its consumer groups.
func (r *Runtime) Delete(ctx context.Context, name string) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	inst := r.lookup(name)
	if inst == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err := inst.stopRun(ctx); err != nil {
		return err
	}
	r.webhooks.release(name)
	if err := r.deleteStored(ctx, name); err != nil {
		return err
	}
	if err := r.group.Load().forget(ctx, name); err != nil {
		r.log.Warn("deleting the task leases of a deleted connector", "connector", name, "error", err)
	}
	r.mu.Lock()
	delete(r.instances, name)
	r.mu.Unlock()
	var errs []error
	if inst.spec.Kind == connectors.KindSink && inst.invalid == nil {
		for _, t := range inst.cfg.Strings(connectors.FieldTopic) {
			if err := r.opts.Engine.DeleteGroup(ctx, t, GroupName(name)); err != nil {
				errs = append(errs, fmt.Errorf("deleting consumer group of %q on %q: %w", name, t, err))
			}
		}
	}
	r.log.Info("connector deleted", "connector", name)
	return errors.Join(errs...)
}

// Pause stops an instance's tasks and stores PAUSED: a paused source does
// not poll, a paused sink does not consume (its group keeps its position,
// so Resume delivers the backlog).
func (r *Runtime) Pause(ctx context.Context, name string) error {
	return r.setTarget(ctx, name, StatePaused)
}

// Resume starts a paused instance again.
func (r *Runtime) Resume(ctx context.Context, name string) error {
	return r.setTarget(ctx, name, StateRunning)
}

func (r *Runtime) setTarget(ctx context.Context, name string, target State) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	inst := r.lookup(name)
	if inst == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if inst.target == target {
		return nil
	}
	rev, err := r.storeState(ctx, name, target, inst.stateRev)
	if err != nil {
		return r.lostRace(ctx, name, err)
	}
	inst.target, inst.stateRev = target, rev
	if target != StateRunning {
		r.webhooks.hold(name) // its webhook paths answer 503 while it is paused
	}
	if err := inst.stopRun(ctx); err != nil {
		return err
	}
	if target == StateRunning {
		r.webhooks.unhold(name) // its tasks take their paths back as they start
	}
	r.apply(inst)
	r.log.Info("connector "+map[State]string{StatePaused: "paused", StateStopped: "stopped", StateRunning: "resumed"}[target], "connector", name)
	return nil
}

// Restart stops and starts a running instance (and its failed tasks) at
// once, without backoff. A paused instance stays paused.
func (r *Runtime) Restart(ctx context.Context, name string) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	inst := r.lookup(name)
	if inst == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err := inst.stopRun(ctx); err != nil {
		return err
	}
	r.apply(inst)
	return nil
}

// apply starts inst if the runtime runs and inst's target is RUNNING, or
// sets its statuses for a paused or invalid instance. r.opMu must be held.
func (r *Runtime) apply(inst *instance) {
	switch {
	case inst.invalid != nil:
		inst.setConnector(StateFailed, inst.redact(inst.invalid.Error()))
	case inst.target == StatePaused:
		inst.setPaused()
		r.reserveWebhook(inst)
	case inst.target == StateStopped:
		inst.setStopped() // tasks.go
		r.reserveWebhook(inst)
	case r.running:
		r.startRun(inst)
	}
}

// reserveWebhook keeps the webhook path of a paused or stopped source
// answering 503 (connectors.Spec.WebhookPath).
func (r *Runtime) reserveWebhook(inst *instance) {
	if inst.spec.WebhookPath == nil || inst.cfg == nil || !r.running {
		return
	}
	path := inst.spec.WebhookPath(inst.cfg, inst.name)
	if err := r.webhooks.reserve(inst.name, path); err != nil {
		r.log.Warn("keeping the webhook path of a paused connector", "connector", inst.name, "path", path, "error", err)
	}
}

func (r *Runtime) lookup(name string) *instance {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.instances[name]
}

// List returns the instance names, sorted.
func (r *Runtime) List() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.instances))
}

// Get describes an instance.
func (r *Runtime) Get(name string) (Info, error) {
	inst := r.lookup(name)
	if inst == nil {
		return Info{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return inst.info(), nil
}

// Status reports the state of an instance and its tasks.
func (r *Runtime) Status(name string) (Status, error) {
	inst := r.lookup(name)
	if inst == nil {
		return Status{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	g := r.group.Load()
	self := r.opts.WorkerID
	if g != nil {
		self = g.self
	}
	st, here := inst.status(self)
	if g != nil {
		g.view(name, st.Tasks, here)
	}
	return st, nil
}

// Tasks lists an instance's tasks with their masked configs.
func (r *Runtime) Tasks(name string) ([]TaskInfo, error) {
	inst := r.lookup(name)
	if inst == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return inst.taskInfos(), nil
}

// Offsets lists the committed offsets of an instance, by partition.
func (r *Runtime) Offsets(ctx context.Context, name string) ([]Offset, error) {
	inst := r.lookup(name)
	if inst == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if inst.spec.Kind == connectors.KindSink {
		return r.sinkOffsets(ctx, inst) // tasks.go
	}
	m, err := r.loadOffsets(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make([]Offset, 0, len(m))
	for _, p := range slices.Sorted(maps.Keys(m)) {
		out = append(out, Offset{Partition: p, Offset: m[p]})
	}
	return out, nil
}

// GroupName is the consumer group of a sink instance.
func GroupName(name string) string { return "connector-" + name }
