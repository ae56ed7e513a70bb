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
		stored, err := decodeSubscription(id, ent.Value)
		if err != nil {
			return Subscription{}, err
		}
		stored.Paused = paused
		sub, f, err := compileSubscription(stored.Subscription)
		if err != nil {
			return Subscription{}, fmt.Errorf("subscription %q as stored: %w", id, err)
		}
		if r := b.runners[id]; r != nil && (r.loop == nil) == paused {
			return sub, nil // already so
		}
		stored.Subscription = sub
		data, err := json.Marshal(stored)
		if err != nil {
			return Subscription{}, err
		}
		rev, err := kv.Update(ctx, id, data, ent.Revision)
		if err != nil {
			if errors.Is(err, mesh.ErrConflict) && attempt < maxCASAttempts {
				continue // changed meanwhile: apply the flag to the new value
			}
			return Subscription{}, fmt.Errorf("storing subscription %q: %w", id, err)
		}
		b.stopRunner(ctx, id)
		if b.running {
			if err := b.startRunner(ctx, sub, f, rev, data); err != nil {
				return Subscription{}, fmt.Errorf("resuming subscription %q (stored as running; a restart retries): %w", id, err)
			}
		}
		return sub, nil
	}
}

// pausedRunner stands for a paused subscription among the runners, so
// that its consumer group counts as used (deleteGroupIfUnused). b.mu must
// be held.
func pausedRunner(b *Bridge, sub Subscription, rev uint64, data []byte) *runner {
	return &runner{b: b, sub: sub, log: b.logger.With("subscription", sub.ID, "topic", sub.Topic), rev: rev, data: data}
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
