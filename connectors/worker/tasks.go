package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/mesh"
)

// Task-level control and offsets, as Kafka Connect offers them: a task's
// status and restart, STOPPED (no tasks at all), the topics a connector
// uses, and offsets changed or reset while it is stopped.

var (
	// ErrTaskNotFound is returned for a task id the instance does not have.
	ErrTaskNotFound = errors.New("task not found")
	// ErrNotStopped is returned when offsets are changed on an instance
	// that is not STOPPED.
	ErrNotStopped = errors.New("connector is not stopped")
	// ErrNotRunningState is returned when a task is restarted on an
	// instance that is paused, stopped or cannot run.
	ErrNotRunningState = errors.New("connector is not running")
)

// StopConnector stops an instance's tasks and stores STOPPED: unlike PAUSED, it
// keeps no task configs, and its offsets may be reset (ResetOffsets) or
// changed (AlterOffsets). Resume starts it again.
func (r *Runtime) StopConnector(ctx context.Context, name string) error {
	return r.setTarget(ctx, name, StateStopped)
}

// TaskStatus reports one task of an instance.
func (r *Runtime) TaskStatus(name string, id int) (TaskState, error) {
	st, err := r.Status(name)
	if err != nil {
		return TaskState{}, err
	}
	for _, t := range st.Tasks {
		if t.ID == id {
			return t, nil
		}
	}
	return TaskState{}, fmt.Errorf("%w: %q has no task %d", ErrTaskNotFound, name, id)
}

// RestartTask ends the current run of one task and starts it again at
// once (a failed task waiting for its backoff starts now). The other tasks
// are not touched.
func (r *Runtime) RestartTask(ctx context.Context, name string, id int) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	inst := r.lookup(name)
	if inst == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if inst.run == nil || inst.target != StateRunning {
		return fmt.Errorf("%w: %q is %s; resume it first", ErrNotRunningState, name, inst.connState())
	}
	inst.mu.Lock()
	restart := inst.restarts[id]
	n := len(inst.tasks)
	elsewhere := id >= 0 && id < n && id < len(inst.here) && !inst.here[id]
	inst.mu.Unlock()
	if elsewhere {
		return fmt.Errorf("%w: task %d of %q runs on another sidecar of the app (its worker_id in the status); restart it there", ErrNotRunningState, id, name)
	}
	if id < 0 || id >= n || restart == nil {
		return fmt.Errorf("%w: %q has no task %d", ErrTaskNotFound, name, id)
	}
	restart()
	inst.log.Info("task restarted on request", "task", id)
	return nil
}

// Topics lists the topics an instance uses: a source's topic; a sink's
// topics and its dead-letter topic.
func (r *Runtime) Topics(name string) ([]string, error) {
	inst := r.lookup(name)
	if inst == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if inst.cfg == nil {
		return []string{}, nil
	}
	if inst.spec.Kind == connectors.KindSource {
		return []string{inst.cfg.String(connectors.FieldTopic)}, nil
	}
	topics := slices.Clone(inst.cfg.Strings(connectors.FieldTopic))
	if dl := inst.cfg.String(connectors.FieldDeadLetter); dl != "" && !slices.Contains(topics, dl) {
		topics = append(topics, dl)
	}
	return topics, nil
}

// sinkOffsets are a sink's positions: per topic, the stream sequence up
// to which its consumer group has settled every event ("0": none yet, or
// no group).
func (r *Runtime) sinkOffsets(ctx context.Context, inst *instance) ([]Offset, error) {
	gs, ok := r.opts.Engine.(mesh.GroupStats)
	out := []Offset{}
	if inst.cfg == nil {
		return out, nil
	}
	for _, t := range inst.cfg.Strings(connectors.FieldTopic) {
		off := Offset{Partition: t, Offset: "0"}
		if ok {
			gi, err := gs.GroupInfo(ctx, t, GroupName(inst.name))
			switch {
			case err == nil:
				off.Offset = strconv.FormatUint(gi.AckFloor, 10)
			case !errors.Is(err, mesh.ErrGroupNotFound):
				return nil, fmt.Errorf("reading the position of %q on %q: %w", inst.name, t, err)
			}
		}
		out = append(out, off)
	}
	return out, nil
}

// stoppedInstance returns the instance name if it is STOPPED. r.opMu
// must be held.
func (r *Runtime) stoppedInstance(name string) (*instance, error) {
	inst := r.lookup(name)
	if inst == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if inst.target != StateStopped {
		return nil, fmt.Errorf("%w: %q is %s; stop it first (PUT /v1/connectors/%s/stop)", ErrNotStopped, name, inst.connState(), name)
	}
	return inst, nil
}

// ResetOffsets forgets where a STOPPED instance was: a source's committed
// offsets are deleted (its tasks start from the beginning of what they
// read), a sink's consumer groups are deleted (it starts at the events
// published after it resumes).
func (r *Runtime) ResetOffsets(ctx context.Context, name string) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	inst, err := r.stoppedInstance(name)
	if err != nil {
		return err
	}
	if inst.spec.Kind == connectors.KindSink {
		if inst.cfg == nil {
			return nil
		}
		for _, t := range inst.cfg.Strings(connectors.FieldTopic) {
			if err := r.opts.Engine.DeleteGroup(ctx, t, GroupName(name)); err != nil {
				return fmt.Errorf("resetting %q on %q: %w", name, t, err)
			}
		}
		r.log.Info("connector positions reset", "connector", name)
		return nil
	}
	keys, err := r.offsets.Keys(ctx, name+".")
	if err != nil {
		return fmt.Errorf("listing offsets of %q: %w", name, err)
	}
	for _, k := range keys {
		if err := r.offsets.Delete(ctx, k); err != nil {
			return fmt.Errorf("deleting offset of %q: %w", name, err)
		}
	}
	r.log.Info("connector offsets reset", "connector", name, "partitions", len(keys))
	return nil
}

// OffsetChange sets (Offset) or removes (Offset nil) the offset of one
// partition; for a sink the partition is a topic and the offset the stream
// sequence after which it resumes.
type OffsetChange struct {
	Partition string  `json:"partition"`
	Offset    *string `json:"offset"`
}

// AlterOffsets changes the offsets of a STOPPED instance.
func (r *Runtime) AlterOffsets(ctx context.Context, name string, changes []OffsetChange) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	inst, err := r.stoppedInstance(name)
	if err != nil {
		return err
	}
	bad := func(i int, reason string) error {
		return &connectors.ValidationError{Fields: []connectors.FieldError{{Field: fmt.Sprintf("offsets[%d]", i), Reason: reason}}}
	}
	if inst.spec.Kind == connectors.KindSink {
		if inst.cfg == nil {
			return fmt.Errorf("%w: %q cannot run", ErrNotRunningState, name)
		}
		topics := inst.cfg.Strings(connectors.FieldTopic)
		seqs := make([]uint64, len(changes))
		for i, c := range changes {
			if !slices.Contains(topics, c.Partition) {
				return bad(i, fmt.Sprintf("partition %q: a sink's partitions are its topics %q", c.Partition, topics))
			}
			if c.Offset != nil {
				if seqs[i], err = strconv.ParseUint(*c.Offset, 10, 64); err != nil {
					return bad(i, fmt.Sprintf("offset %q: want the stream sequence to resume after", *c.Offset))
				}
			}
		}
		for i, c := range changes {
			if err := r.positionSink(ctx, inst, c.Partition, c.Offset != nil, seqs[i]); err != nil {
				return err
			}
		}
		r.log.Info("connector positions changed", "connector", name, "topics", len(changes))
		return nil
	}
	for i, c := range changes {
		if c.Partition == "" {
			return bad(i, "partition: required")
		}
	}
	for _, c := range changes {
		if c.Offset == nil {
			if err := r.offsets.Delete(ctx, offsetKey(name, c.Partition)); err != nil {
				return fmt.Errorf("deleting offset of %q partition %q: %w", name, c.Partition, err)
			}
			continue
		}
		if err := r.commitOffsets(ctx, name, map[string]string{c.Partition: *c.Offset}); err != nil {
			return err
		}
	}
	r.log.Info("connector offsets changed", "connector", name, "partitions", len(changes))
	return nil
}

// positionSink re-creates a sink's group on topic to resume after stream
// sequence after (set), or deletes it (it then starts at new events).
func (r *Runtime) positionSink(ctx context.Context, inst *instance, topic string, set bool, after uint64) error {
	group := GroupName(inst.name)
	if err := r.opts.Engine.DeleteGroup(ctx, topic, group); err != nil {
		return fmt.Errorf("positioning %q on %q: %w", inst.name, topic, err)
	}
	if !set {
		return nil
	}
	c, err := r.opts.Engine.Consume(ctx, mesh.ConsumerConfig{Topic: topic, Group: group, StartSeq: after + 1, AckWait: r.opts.AckWait})
	if err != nil {
		return fmt.Errorf("positioning %q on %q: %w", inst.name, topic, err)
	}
	return c.Close()
}

// DeliveryStatus is the status of a sink's delivery loops taken together:
// holding when one holds, and the latest failure of any. Zero for a source.
func (r *Runtime) DeliveryStatus(name string) (bridge.LoopStatus, error) {
	inst := r.lookup(name)
	if inst == nil {
		return bridge.LoopStatus{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	inst.mu.Lock()
	defer inst.mu.Unlock()
	var st bridge.LoopStatus
	for l := range inst.loops {
		ls := l.Status()
		st.Holding = st.Holding || ls.Holding
		if ls.LastErrorAt.After(st.LastErrorAt) {
			st.LastError, st.LastErrorAt = ls.LastError, ls.LastErrorAt
		}
	}
	return st, nil
}

func (inst *instance) setStopped() {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	inst.conn = UnitState{State: StateStopped}
	inst.tasks, inst.taskCfgs = nil, nil
}

func (inst *instance) setRestart(id int, cancel context.CancelFunc) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if inst.restarts == nil {
		inst.restarts = map[int]context.CancelFunc{}
	}
	inst.restarts[id] = cancel
}

func (inst *instance) addLoop(l *bridge.Loop) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if inst.loops == nil {
		inst.loops = map[*bridge.Loop]struct{}{}
	}
	inst.loops[l] = struct{}{}
}

func (inst *instance) removeLoop(l *bridge.Loop) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	delete(inst.loops, l)
}
