package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/meshd/meshd/mesh"
)

// ReplaySubscription delivers the events of subscription id again, from
// from on: "earliest" (every event the mesh keeps), an RFC 3339 time (the
// first event stored at or after it) or a stream sequence. Its consumer
// group is started over there, on every sidecar of the app, and with a
// fresh memory of delivered events, so the replay reaches the sink
// whatever it received before. Events keep their order per topic as a
// first delivery does.
//
// A subscription whose group other subscriptions share cannot be replayed
// (ErrSharedGroup): they would get the replay too.
func (b *Bridge) ReplaySubscription(ctx context.Context, id, from string) error {
	start, err := replayStart(from)
	if err != nil {
		return err
	}
	if checkName(id) != nil {
		return fmt.Errorf("%w: %s", ErrSubscriptionNotFound, quote(id))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	kv, err := b.kvStore(ctx)
	if err != nil {
		return err
	}
	st, rev, err := b.loadSubscription(ctx, kv, id)
	if err != nil {
		return err
	}
	sub, f, err := compileSubscription(st.Subscription)
	if err != nil {
		return fmt.Errorf("replaying a stored subscription that is no longer valid: %w", err)
	}
	other, err := b.groupSharer(ctx, kv, sub)
	if err != nil {
		return err
	}
	if other != "" {
		return fmt.Errorf("%w: subscription %q consumes topic %q in group %q too; give it a group of its own to replay it alone",
			ErrSharedGroup, other, sub.Topic, sub.Group)
	}

	// Stop delivering first: nothing of the old position is acked into
	// the group once it started over.
	r := b.stopRunner(ctx, id)
	cc := start
	cc.Topic, cc.Group, cc.MaxInFlight, cc.AckWait = sub.Topic, sub.Group, sub.MaxInFlight, b.opts.AckWait
	if err := b.opts.Engine.ResetGroup(ctx, cc); err != nil {
		b.restartAfterFailedReplay(ctx, r, sub, f)
		return fmt.Errorf("replaying subscription %q: %w", id, err)
	}
	// The other sidecars' loops lost their consumer with the reset: the
	// changed value makes them start again, each with a fresh memory of
	// delivered events (which would otherwise take the replayed events for
	// redeliveries and skip them).
	st, rev, data, err := b.markReplay(ctx, kv, sub, &replayMark{From: from, At: time.Now().UTC()}, st, rev)
	if err != nil {
		b.restartAfterFailedReplay(ctx, r, sub, f)
		return err
	}
	b.logger.Info("subscription replaying", "subscription", id, "from", from)
	if !b.running {
		return nil
	}
	// Another change may have come first: run what is stored.
	if sub, f, err = compileSubscription(st.Subscription); err != nil {
		return fmt.Errorf("replaying a stored subscription that is no longer valid: %w", err)
	}
	return b.startRunner(ctx, sub, f, rev, data)
}

// restartAfterFailedReplay starts the runner stopped for a replay that
// failed, at the revision it had.
func (b *Bridge) restartAfterFailedReplay(ctx context.Context, r *runner, sub Subscription, f Filter) {
	if r == nil || !b.running {
		return
	}
	if err := b.startRunner(context.WithoutCancel(ctx), sub, f, r.rev, r.data); err != nil {
		b.logger.Error("restarting subscription after a failed replay", "subscription", sub.ID, "error", err)
	}
}

// markReplay stores mark with the subscription, compare-and-set on rev.
// When another change came first, the mark is put on top of it unless the
// topic or group changed (the replay is then moot: ErrSubscriptionChanged).
// It returns what it stored.
func (b *Bridge) markReplay(ctx context.Context, kv mesh.KV, sub Subscription, mark *replayMark, st storedSubscription, rev uint64) (storedSubscription, uint64, []byte, error) {
	for attempt := 1; ; attempt++ {
		st.Replay = mark
		data, err := json.Marshal(st)
		if err != nil {
			return st, 0, nil, fmt.Errorf("encoding subscription %q: %w", sub.ID, err)
		}
		newRev, err := kv.Update(ctx, sub.ID, data, rev)
		if err == nil {
			return st, newRev, data, nil
		}
		if !errors.Is(err, mesh.ErrConflict) || attempt == maxPutRetries {
			return st, 0, nil, fmt.Errorf("storing the replay of subscription %q: %w", sub.ID, err)
		}
		if st, rev, err = b.loadSubscription(ctx, kv, sub.ID); err != nil {
			return st, 0, nil, err
		}
		if st.Topic != sub.Topic || st.Group != sub.Group {
			return st, 0, nil, fmt.Errorf("%w: %q now consumes topic %q in group %q", ErrSubscriptionChanged, sub.ID, st.Topic, st.Group)
		}
	}
}

// replayStart reads a replay's from into the start of a consumer group.
func replayStart(from string) (mesh.ConsumerConfig, error) {
	if from == "" || from == "new" {
		return mesh.ConsumerConfig{}, fmt.Errorf("%w: from: want \"earliest\", an RFC 3339 time or a stream sequence", ErrInvalidReplay)
	}
	cc, err := startPosition(from)
	if err != nil {
		return mesh.ConsumerConfig{}, fmt.Errorf("%w: from: %v", ErrInvalidReplay, err)
	}
	return cc, nil
}
