package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/meshd/meshd/mesh"
)

// Pausing, updating in place, and what a running subscription says about
// itself: the operator's side of subscriptions.

// maxCASAttempts bounds the compare-and-set retries of a paused flag that
// another writer changed meanwhile.
const maxCASAttempts = 5

// PauseSubscription stops delivering subscription id and stores it
// paused: it delivers nothing, here or after a restart, until
// ResumeSubscription. Its consumer group stays, keeping its position and
// collecting what is published meanwhile. In-flight deliveries finish (up
// to ctx's deadline) before it returns.
func (b *Bridge) PauseSubscription(ctx context.Context, id string) (Subscription, error) {
	return b.setPaused(ctx, id, true)
}

// ResumeSubscription stores subscription id running again and starts it
// where its group stopped.
func (b *Bridge) ResumeSubscription(ctx context.Context, id string) (Subscription, error) {
	return b.setPaused(ctx, id, false)
}

func (b *Bridge) setPaused(ctx context.Context, id string, paused bool) (Subscription, error) {
	if checkName(id) != nil {
		return Subscription{}, fmt.Errorf("%w: %s", ErrSubscriptionNotFound, quote(id))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	kv, err := b.kvStore(ctx)
	if err != nil {
		return Subscription{}, err
	}
	for attempt := 1; ; attempt++ {
		ent, err := kv.Get(ctx, id)
		if errors.Is(err, mesh.ErrKeyNotFound) {
			return Subscription{}, fmt.Errorf("%w: %q", ErrSubscriptionNotFound, id)
		}
		if err != nil {
			return Subscription{}, fmt.Errorf("reading subscription %q: %w", id, err)
		}
		var stored Subscription
		if err := json.Unmarshal(ent.Value, &stored); err != nil {
			return Subscription{}, fmt.Errorf("decoding subscription %q: %w", id, err)
		}
		stored.Paused = paused
		sub, f, err := compileSubscription(stored)
		if err != nil {
			return Subscription{}, fmt.Errorf("subscription %q as stored: %w", id, err)
		}
		if r := b.runners[id]; r != nil && (r.loop == nil) == paused {
			return sub, nil // already so
		}
		data, err := json.Marshal(sub)
		if err != nil {
			return Subscription{}, err
		}
		if _, err := kv.Update(ctx, id, data, ent.Revision); err != nil {
			if errors.Is(err, mesh.ErrConflict) && attempt < maxCASAttempts {
				continue // changed meanwhile: apply the flag to the new value
			}
			return Subscription{}, fmt.Errorf("storing subscription %q: %w", id, err)
		}
		if r := b.runners[id]; r != nil {
			delete(b.runners, id)
			r.stop(ctx)
		}
		if b.running {
			if err := b.startRunner(ctx, sub, f); err != nil {
				return Subscription{}, fmt.Errorf("resuming subscription %q (stored as running; a restart retries): %w", id, err)
			}
		}
		return sub, nil
	}
}

// pausedRunner stands for a paused subscription among the runners, so
// that its consumer group counts as used (deleteGroupIfUnused). b.mu must
// be held.
func pausedRunner(b *Bridge, sub Subscription) *runner {
	return &runner{b: b, sub: sub, log: b.logger.With("subscription", sub.ID, "topic", sub.Topic)}
}

// UpdateSubscription replaces the settings of an existing subscription in
// place (PutSubscription), keeping whether it is paused. Its group keeps
// its position unless the topic or group changed. ErrSubscriptionNotFound
// when there is none to update.
func (b *Bridge) UpdateSubscription(ctx context.Context, sub Subscription) (Subscription, error) {
	stored, err := b.GetSubscription(ctx, sub.ID)
	if err != nil {
		return Subscription{}, err
	}
	sub.Paused = stored.Paused
	return b.PutSubscription(ctx, sub)
}

// SubscriptionState is what this sidecar knows of a subscription's
// delivery: whether its loop runs, and the loop's Status.
type SubscriptionState struct {
	// Running says a delivery loop of it runs in this sidecar.
	Running bool `json:"running"`
	Paused  bool `json:"paused"`
	LoopStatus
}

// SubscriptionState reports the delivery of subscription id in this
// sidecar; false when it has no runner here (unknown, invalid as stored,
// or the bridge is stopped).
func (b *Bridge) SubscriptionState(id string) (SubscriptionState, bool) {
	b.mu.Lock()
	r := b.runners[id]
	b.mu.Unlock()
	if r == nil {
		return SubscriptionState{}, false
	}
	if r.loop == nil {
		return SubscriptionState{Paused: true}, true
	}
	select {
	case <-r.loop.Done():
		return SubscriptionState{LoopStatus: r.loop.Status()}, true
	default:
		return SubscriptionState{Running: true, LoopStatus: r.loop.Status()}, true
	}
}
