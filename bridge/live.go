package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshd/meshd/mesh"
)

// Live subscriptions. Every sidecar of an app keeps its subscriptions in
// the same bucket and watches it: what one sidecar creates, changes,
// replays or deletes, every other applies within moments. A change is
// applied by reading the key again and making the runner match what is
// stored now (level, not edge: a late or repeated report cannot start a
// deleted subscription). A sidecar sees its own writes come back: a runner
// already at the stored revision is left alone.

// retryEvery is how often changes whose runner could not start (the mesh
// was unavailable) are applied again.
const retryEvery = time.Second

// applyTimeout bounds applying one change: reading the key, stopping the
// old runner (its in-flight deliveries finish until then) and starting the
// new one.
const applyTimeout = 30 * time.Second

// currentValues reads a new watch up to its end-of-current-values marker
// and returns the stored subscriptions (puts whose key was not deleted
// later).
func currentValues(ctx context.Context, changes <-chan mesh.Change) ([]mesh.Change, error) {
	var order []string
	latest := map[string]mesh.Change{}
	for {
		select {
		case c, ok := <-changes:
			if !ok {
				return nil, mesh.ErrClosed
			}
			if c.Key == "" {
				out := make([]mesh.Change, 0, len(latest))
				for _, k := range order {
					if c, ok := latest[k]; ok && !c.Deleted {
						out = append(out, c)
					}
				}
				return out, nil
			}
			if _, seen := latest[c.Key]; !seen {
				order = append(order, c.Key)
			}
			latest[c.Key] = c
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// compileStored decodes and checks a stored subscription; one that does
// not pass (stored by a meshd with other rules) is logged and skipped.
func (b *Bridge) compileStored(c mesh.Change) (Subscription, Filter, bool) {
	st, err := decodeSubscription(c.Key, c.Value)
	if err == nil {
		var sub Subscription
		var f Filter
		if sub, f, err = compileSubscription(st.Subscription); err == nil {
			return sub, f, true
		}
	}
	b.logger.Error("not running invalid stored subscription", "subscription", c.Key, "revision", c.Revision, "error", err)
	return Subscription{}, nil, false
}

// follow applies the changes of the subscription bucket until the watch
// ends (Stop, or the engine closed).
func (b *Bridge) follow(ctx context.Context, changes <-chan mesh.Change, done chan struct{}) {
	defer close(done)
	retry := time.NewTicker(retryEvery)
	defer retry.Stop()
	pending := map[string]bool{} // keys to apply again
	for {
		select {
		case c, ok := <-changes:
			if !ok {
				return
			}
			if c.Key == "" {
				continue
			}
			if err := b.apply(ctx, c.Key); err != nil {
				b.logger.Warn("applying a change of a subscription; retrying", "subscription", c.Key, "error", err)
				pending[c.Key] = true
			} else {
				delete(pending, c.Key)
			}
		case <-retry.C:
			for id := range pending {
				if err := b.apply(ctx, id); err == nil {
					delete(pending, id)
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// apply makes the runner of subscription id match its stored value.
func (b *Bridge) apply(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.running {
		return nil
	}
	kv, err := b.kvStore(ctx)
	if err != nil {
		return err
	}
	r := b.runners[id]
	ent, err := kv.Get(ctx, id)
	switch {
	case errors.Is(err, mesh.ErrKeyNotFound):
		if b.stopRunner(ctx, id) != nil {
			// Deleted by another sidecar, which deletes the group too.
			b.logger.Info("subscription deleted elsewhere; stopped", "subscription", id)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading subscription %q: %w", id, err)
	}
	if r != nil && (r.rev >= ent.Revision || string(r.data) == string(ent.Value)) {
		r.rev = max(r.rev, ent.Revision)
		return nil // this sidecar's own write, or nothing changed
	}
	if b.opts.Sender == nil {
		return ErrNoSender
	}
	sub, f, ok := b.compileStored(mesh.Change{Key: id, Value: ent.Value, Revision: ent.Revision})
	b.stopRunner(ctx, id)
	if !ok {
		return nil
	}
	if err := b.startRunner(ctx, sub, f, ent.Revision, ent.Value); err != nil {
		return err
	}
	if r != nil {
		b.logger.Info("subscription changed elsewhere; restarted", "subscription", id, "revision", ent.Revision)
	} else {
		b.logger.Info("subscription created elsewhere; started", "subscription", id, "revision", ent.Revision)
	}
	return nil
}
