package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshd/meshd/mesh"
)

// Live connector instances. The sidecars of an app keep their connector
// instances in one bucket, and each watches it: an instance created,
// reconfigured, paused, resumed or deleted through one sidecar is applied
// by every other within moments. A change is applied by reading the
// instance's config and state again and making the local instance match
// them (level, not edge: a late or repeated report changes nothing). Its
// own writes come back through the watch too; an instance already at a
// revision skips it. What a sidecar applies is only the instance's config
// and target state: which tasks run where is the task assignment's.

// retryEvery is how often changes that could not be applied (the mesh was
// unavailable) are applied again.
const retryEvery = time.Second

// applyTimeout bounds applying one change, stopping the old tasks included.
const applyTimeout = 30 * time.Second

// watchConfigs opens the watch of the config bucket; stop ends it.
func (r *Runtime) watchConfigs(ctx context.Context) (<-chan mesh.Change, func(), error) {
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	changes, err := r.configs.Watch(wctx, "")
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("watching connector configs: %w", err)
	}
	return changes, stop, nil
}

// follow applies the changes of the config bucket in a goroutine until
// stopFollowing. r.opMu must be held.
func (r *Runtime) follow(changes <-chan mesh.Change, stop func()) {
	done := make(chan struct{})
	r.watchStop, r.watchDone = stop, done
	go func() {
		defer close(done)
		retry := time.NewTicker(retryEvery)
		defer retry.Stop()
		pending := map[string]bool{} // instance names to apply again
		for {
			select {
			case c, ok := <-changes:
				if !ok {
					return
				}
				name, ok := instanceOfKey(c.Key)
				if !ok {
					continue
				}
				if err := r.applyStored(name); err != nil {
					r.log.Warn("applying a change of a connector; retrying", "connector", name, "error", err)
					pending[name] = true
				} else {
					delete(pending, name)
				}
			case <-retry.C:
				for name := range pending {
					if r.applyStored(name) == nil {
						delete(pending, name)
					}
				}
			}
		}
	}()
}

// stopFollowing ends the goroutine of follow and waits for it, without
// holding r.opMu (it takes opMu for each change).
func (r *Runtime) stopFollowing() {
	r.opMu.Lock()
	stop, done := r.watchStop, r.watchDone
	r.watchStop, r.watchDone = nil, nil
	r.running = false // what the goroutine still applies, it skips
	r.opMu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// instanceOfKey is the instance a key of the config bucket belongs to.
func instanceOfKey(key string) (string, bool) {
	for _, p := range []string{keyConfig, keyState} {
		if name, ok := strings.CutPrefix(key, p); ok && name != "" {
			return name, true
		}
	}
	return "", false
}

// applyStored makes the local instance name match its stored config and
// target state: created, reconfigured, paused or resumed, or stopped when
// deleted. What the writer does besides (offsets, consumer groups of a
// deleted sink) is not done again here.
func (r *Runtime) applyStored(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	r.opMu.Lock()
	defer r.opMu.Unlock()
	if !r.running {
		return nil
	}
	return r.syncInstance(ctx, name)
}

// syncInstance is applyStored with r.opMu held.
func (r *Runtime) syncInstance(ctx context.Context, name string) error {
	inst := r.lookup(name)
	cfgEnt, err := r.configs.Get(ctx, keyConfig+name)
	if errors.Is(err, mesh.ErrKeyNotFound) {
		if inst != nil {
			if err := inst.stopRun(ctx); err != nil {
				return err
			}
			r.webhooks.release(name)
			r.mu.Lock()
			delete(r.instances, name)
			r.mu.Unlock()
			r.log.Info("connector deleted elsewhere; stopped", "connector", name)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading config of %q: %w", name, err)
	}
	target, stateRev := StateRunning, uint64(0)
	stEnt, err := r.configs.Get(ctx, keyState+name)
	switch {
	case err == nil:
		var ss storedState
		if json.Unmarshal(stEnt.Value, &ss) == nil && (ss.State == StatePaused || ss.State == StateStopped) {
			target = ss.State
		}
		stateRev = stEnt.Revision
	case !errors.Is(err, mesh.ErrKeyNotFound):
		return fmt.Errorf("reading state of %q: %w", name, err)
	}

	if inst == nil || cfgEnt.Revision > inst.cfgRev {
		sc, _, err := r.decodeConfig(name, cfgEnt.Value)
		if err != nil {
			r.log.Error("not applying undecodable stored connector config", "connector", name, "error", err)
			return nil
		}
		switch {
		case inst == nil:
			inst = r.storedInstance(sc)
			inst.target, inst.cfgRev, inst.stateRev = target, cfgEnt.Revision, stateRev
			r.mu.Lock()
			r.instances[name] = inst
			r.mu.Unlock()
			r.apply(inst)
			r.log.Info("connector created elsewhere; started", "connector", name, "type", inst.spec.Name)
			return nil
		case sc.unreadable == nil && inst.invalid == nil && jsonEqual(inst.raw, sc.Config):
			inst.cfgRev = cfgEnt.Revision // re-stored as it was (its secrets sealed)
		default:
			if err := inst.stopRun(ctx); err != nil {
				return err
			}
			r.webhooks.release(name) // the new config may serve other paths
			old := inst
			inst = r.storedInstance(sc)
			inst.target, inst.cfgRev, inst.stateRev = old.target, cfgEnt.Revision, old.stateRev
			r.mu.Lock()
			r.instances[name] = inst
			r.mu.Unlock()
			r.apply(inst)
			r.log.Info("connector reconfigured elsewhere; restarted", "connector", name)
		}
	}
	if stateRev > inst.stateRev {
		inst.stateRev = stateRev
		if target != inst.target {
			inst.target = target
			if target != StateRunning {
				r.webhooks.hold(name)
			}
			if err := inst.stopRun(ctx); err != nil {
				return err
			}
			if target == StateRunning {
				r.webhooks.unhold(name)
			}
			r.apply(inst)
			r.log.Info("connector "+map[State]string{StatePaused: "paused", StateStopped: "stopped", StateRunning: "resumed"}[target]+" elsewhere", "connector", name)
		}
	}
	return nil
}

// storedInstance is the instance of a stored config.
func (r *Runtime) storedInstance(sc storedConfig) *instance {
	if sc.unreadable != nil {
		return r.unreadableInstance(sc)
	}
	return r.newInstance(sc.Name, sc.Config)
}
