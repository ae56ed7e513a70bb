package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd/mesh"
)

// Defaults and limits of Subscription fields.
const (
	// DefaultMaxAttempts is 0: an event is retried for as long as the mesh
	// keeps it (mesh.maxAge), so a subscriber that restarts slowly loses
	// nothing; set maxAttempts (with a deadLetterTopic) to give up sooner.
	DefaultMaxAttempts = 0
	DefaultMaxInFlight = 32
	MaxMaxInFlight     = 1024
	maxIDLen           = 200
)

// ValidateSubscription checks sub and returns it with defaults filled in
// (group, protocol, contentMode, maxAttempts, maxInFlight). Errors wrap
// ErrInvalidSubscription and name the field.
func ValidateSubscription(sub Subscription) (Subscription, error) {
	sub, _, err := compileSubscription(sub)
	return sub, err
}

func compileSubscription(sub Subscription) (Subscription, Filter, error) {
	bad := func(field, format string, args ...any) (Subscription, Filter, error) {
		return Subscription{}, nil, fmt.Errorf("%w: %s: %s", ErrInvalidSubscription, field, fmt.Sprintf(format, args...))
	}
	if err := checkName(sub.ID); err != nil {
		return bad("id", "%v", err)
	}
	if err := mesh.ValidateTopic(sub.Topic); err != nil {
		return bad("topic", "%v", err)
	}
	if sub.Group == "" {
		sub.Group = sub.ID
	} else if err := checkName(sub.Group); err != nil {
		return bad("group", "%v", err)
	}
	if err := checkSink(sub.Sink); err != nil {
		return bad("sink", "%v", err)
	}
	switch {
	case sub.Protocol == "" || strings.EqualFold(sub.Protocol, "HTTP"):
		sub.Protocol = "HTTP"
	default:
		return bad("protocol", "%s is not supported, want \"HTTP\"", quote(sub.Protocol))
	}
	switch sub.ContentMode {
	case "":
		sub.ContentMode = "binary"
	case "binary", "structured":
	default:
		return bad("contentMode", "%s, want \"binary\" or \"structured\"", quote(sub.ContentMode))
	}
	f, err := CompileFilters(sub.Filters)
	if err != nil {
		return Subscription{}, nil, fmt.Errorf("%w: %w", ErrInvalidSubscription, err)
	}
	if _, err := startPosition(sub.StartAt); err != nil {
		return bad("startAt", "%v", err)
	}
	if sub.MaxAttempts < 0 {
		return bad("maxAttempts", "must not be negative (0: retry for as long as the mesh keeps the event)")
	}
	switch {
	case sub.MaxInFlight < 0 || sub.MaxInFlight > MaxMaxInFlight:
		return bad("maxInFlight", "must be between 1 and %d", MaxMaxInFlight)
	case sub.MaxInFlight == 0:
		sub.MaxInFlight = DefaultMaxInFlight
	}
	if sub.DeadLetterTopic != "" {
		if err := mesh.ValidateTopic(sub.DeadLetterTopic); err != nil {
			return bad("deadLetterTopic", "%v", err)
		}
		if sub.DeadLetterTopic == sub.Topic {
			return bad("deadLetterTopic", "must differ from topic")
		}
	}
	return sub, f, nil
}

// checkName accepts ids and group names: letters, digits, '_', '-' and '.',
// where dots separate non-empty parts (ids are mesh KV keys).
func checkName(s string) error {
	if s == "" {
		return errors.New("required")
	}
	if len(s) > maxIDLen {
		return fmt.Errorf("longer than %d characters", maxIDLen)
	}
	if !mesh.IsName(s, maxIDLen) {
		return fmt.Errorf("%s: want letters, digits, '_', '-' and single inner dots", quote(s))
	}
	return nil
}

// checkSink wants an absolute http or https URL. The message does not echo
// the URL: it may carry credentials.
func checkSink(sink string) error {
	if sink == "" {
		return errors.New("required")
	}
	if isAppPath(sink) {
		if u, err := url.Parse(sink); err != nil || u.Host != "" || u.Fragment != "" || strings.ContainsAny(sink, " \t\r\n") {
			return errors.New("a path sink must be an absolute path such as /events")
		}
		return nil
	}
	u, err := url.Parse(sink)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("want an absolute http or https URL")
	}
	if u.Host == "" || u.Opaque != "" {
		return errors.New("want an absolute http or https URL with a host")
	}
	return nil
}

// isAppPath says whether a sink is a path on the app next to the sidecar
// ("/events"), delivered to http://127.0.0.1:<Options.AppPort><path>.
func isAppPath(sink string) bool {
	return strings.HasPrefix(sink, "/") && !strings.HasPrefix(sink, "//")
}

// sinkURL is where deliveries of sub go: its sink, or for a path sink the
// app's port on loopback.
func (b *Bridge) sinkURL(sink string) string {
	if isAppPath(sink) {
		return "http://127.0.0.1:" + strconv.Itoa(b.opts.AppPort) + sink
	}
	return sink
}

// kvStore opens the subscription bucket once.
func (b *Bridge) kvStore(ctx context.Context) (mesh.KV, error) {
	b.kvMu.Lock()
	defer b.kvMu.Unlock()
	if b.kv != nil {
		return b.kv, nil
	}
	kv, err := b.opts.Engine.KV(ctx, b.opts.SubscriptionBucket)
	if err != nil {
		return nil, fmt.Errorf("opening subscription bucket %q: %w", b.opts.SubscriptionBucket, err)
	}
	b.kv = kv
	return kv, nil
}

func (b *Bridge) loadSubscription(ctx context.Context, kv mesh.KV, id string) (Subscription, error) {
	ent, err := kv.Get(ctx, id)
	if errors.Is(err, mesh.ErrKeyNotFound) {
		return Subscription{}, fmt.Errorf("%w: %q", ErrSubscriptionNotFound, id)
	}
	if err != nil {
		return Subscription{}, fmt.Errorf("reading subscription %q: %w", id, err)
	}
	var sub Subscription
	if err := json.Unmarshal(ent.Value, &sub); err != nil {
		return Subscription{}, fmt.Errorf("decoding subscription %q: %w", id, err)
	}
	return sub, nil
}

// prepareSubscription validates sub and fills its defaults, and returns
// its filter and its stored form.
func (b *Bridge) prepareSubscription(ctx context.Context, sub Subscription) (Subscription, Filter, []byte, error) {
	sub, f, err := compileSubscription(sub)
	if err != nil {
		return Subscription{}, nil, nil, err
	}
	if b.opts.Sender == nil {
		return Subscription{}, nil, nil, ErrNoSender
	}
	if isAppPath(sub.Sink) && b.opts.AppPort == 0 {
		return Subscription{}, nil, nil, fmt.Errorf("%w: sink: a path is delivered to the app's port; set app.port (MESHD_APP_PORT) or give a URL", ErrInvalidSubscription)
	}
	if c, ok := b.opts.Sender.(SinkChecker); ok {
		if err := c.CheckSink(ctx, b.sinkURL(sub.Sink)); err != nil {
			return Subscription{}, nil, nil, fmt.Errorf("%w: sink: %w", ErrInvalidSubscription, err)
		}
	}
	data, err := json.Marshal(sub)
	if err != nil {
		return Subscription{}, nil, nil, fmt.Errorf("%w: %w", ErrInvalidSubscription, err)
	}
	return sub, f, data, nil
}

// CreateSubscription validates, persists and starts sub. Errors wrap
// ErrInvalidSubscription (naming the field) or ErrSubscriptionExists.
// The returned subscription has its defaults filled in. While the bridge
// is not started, sub is only persisted; Start runs it.
func (b *Bridge) CreateSubscription(ctx context.Context, sub Subscription) (Subscription, error) {
	sub, f, data, err := b.prepareSubscription(ctx, sub)
	if err != nil {
		return Subscription{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	kv, err := b.kvStore(ctx)
	if err != nil {
		return Subscription{}, err
	}
	if _, err := kv.Create(ctx, sub.ID, data); err != nil {
		if errors.Is(err, mesh.ErrConflict) {
			return Subscription{}, fmt.Errorf("%w: %q", ErrSubscriptionExists, sub.ID)
		}
		return Subscription{}, fmt.Errorf("storing subscription %q: %w", sub.ID, err)
	}
	if b.running {
		if err := b.startRunner(ctx, sub, f); err != nil {
			if derr := kv.Delete(context.WithoutCancel(ctx), sub.ID); derr != nil {
				b.logger.Error("removing subscription that failed to start", "subscription", sub.ID, "error", derr)
			}
			return Subscription{}, err
		}
	}
	return sub, nil
}

// PutSubscription creates sub or replaces the one with its id (used for
// subscriptions declared in the config file). A running subscription whose
// settings changed is restarted: its in-flight deliveries finish (up to
// ctx's deadline) before the new settings take over. When the topic or group
// changed, the old consumer group is deleted.
func (b *Bridge) PutSubscription(ctx context.Context, sub Subscription) (Subscription, error) {
	sub, f, data, err := b.prepareSubscription(ctx, sub)
	if err != nil {
		return Subscription{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	kv, err := b.kvStore(ctx)
	if err != nil {
		return Subscription{}, err
	}
	old, err := b.loadSubscription(ctx, kv, sub.ID)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrSubscriptionNotFound) {
		// Unreadable old value: overwrite it, but do not guess its group.
		b.logger.Warn("replacing unreadable subscription", "subscription", sub.ID, "error", err)
	}
	oldData, _ := json.Marshal(old)
	changed := !exists || string(oldData) != string(data)
	if changed {
		if _, err := kv.Put(ctx, sub.ID, data); err != nil {
			return Subscription{}, fmt.Errorf("storing subscription %q: %w", sub.ID, err)
		}
	}
	r := b.runners[sub.ID]
	if r != nil && !changed {
		return sub, nil
	}
	if r != nil {
		delete(b.runners, sub.ID)
		r.stop(ctx)
	}
	if exists && (old.Topic != sub.Topic || old.Group != sub.Group) {
		b.deleteGroupIfUnused(ctx, kv, old)
	}
	if b.running {
		if err := b.startRunner(ctx, sub, f); err != nil {
			return Subscription{}, err
		}
	}
	return sub, nil
}

// GetSubscription returns ErrSubscriptionNotFound for an unknown id.
func (b *Bridge) GetSubscription(ctx context.Context, id string) (Subscription, error) {
	if checkName(id) != nil {
		return Subscription{}, fmt.Errorf("%w: %s", ErrSubscriptionNotFound, quote(id))
	}
	kv, err := b.kvStore(ctx)
	if err != nil {
		return Subscription{}, err
	}
	return b.loadSubscription(ctx, kv, id)
}

// ListSubscriptions returns every subscription, ordered by id.
func (b *Bridge) ListSubscriptions(ctx context.Context) ([]Subscription, error) {
	kv, err := b.kvStore(ctx)
	if err != nil {
		return nil, err
	}
	return b.listSubscriptions(ctx, kv)
}

func (b *Bridge) listSubscriptions(ctx context.Context, kv mesh.KV) ([]Subscription, error) {
	keys, err := kv.Keys(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("listing subscriptions: %w", err)
	}
	slices.Sort(keys)
	subs := make([]Subscription, 0, len(keys))
	for _, k := range keys {
		sub, err := b.loadSubscription(ctx, kv, k)
		if errors.Is(err, ErrSubscriptionNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// DeleteSubscription stops and removes a subscription and its consumer group.
// The group is kept when another subscription shares it.
func (b *Bridge) DeleteSubscription(ctx context.Context, id string) error {
	if checkName(id) != nil {
		return fmt.Errorf("%w: %s", ErrSubscriptionNotFound, quote(id))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	kv, err := b.kvStore(ctx)
	if err != nil {
		return err
	}
	sub, err := b.loadSubscription(ctx, kv, id)
	if err != nil {
		return err
	}
	if r := b.runners[id]; r != nil {
		delete(b.runners, id)
		r.stop(ctx)
	}
	if err := kv.Delete(ctx, id); err != nil {
		return fmt.Errorf("deleting subscription %q: %w", id, err)
	}
	return b.deleteGroupIfUnused(ctx, kv, sub)
}

// deleteGroupIfUnused deletes old's consumer group unless another stored
// subscription (other than old itself) consumes with it.
func (b *Bridge) deleteGroupIfUnused(ctx context.Context, kv mesh.KV, old Subscription) error {
	if b.running {
		// Every stored subscription runs: ask the runners, not the store
		// (reading every subscription made deleting a thousand take 82 s).
		for id, r := range b.runners {
			if id != old.ID && r.sub.Topic == old.Topic && r.sub.Group == old.Group {
				return nil
			}
		}
	} else {
		subs, err := b.listSubscriptions(ctx, kv)
		if err != nil {
			return err
		}
		for _, s := range subs {
			if s.ID != old.ID && s.Topic == old.Topic && s.Group == old.Group {
				return nil
			}
		}
	}
	// The subscription itself may still be stored under its new settings.
	if err := b.opts.Engine.DeleteGroup(ctx, old.Topic, old.Group); err != nil {
		err = fmt.Errorf("deleting consumer group %q of topic %q: %w", old.Group, old.Topic, err)
		b.logger.Warn("subscription removed but its consumer group remains", "subscription", old.ID, "error", err)
		return err
	}
	return nil
}

// Start restores the persisted subscriptions and starts their delivery
// loops. On error nothing keeps running. Start on a started bridge does
// nothing; a stopped bridge may be started again.
func (b *Bridge) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running {
		return nil
	}
	kv, err := b.kvStore(ctx)
	if err != nil {
		return err
	}
	subs, err := b.listSubscriptions(ctx, kv)
	if err != nil {
		return err
	}
	if len(subs) > 0 && b.opts.Sender == nil {
		return ErrNoSender
	}
	b.running = true
	for _, stored := range subs {
		sub, f, err := compileSubscription(stored)
		if err != nil {
			// Stored by an older meshd with looser rules: keep it, report it.
			b.logger.Error("not starting invalid stored subscription", "subscription", stored.ID, "error", err)
			continue
		}
		if err := b.startRunner(ctx, sub, f); err != nil {
			b.stopRunners(context.WithoutCancel(ctx))
			b.running = false
			return err
		}
	}
	return nil
}

// Stop ends delivery loops; in-flight deliveries finish or are naked. Stop
// waits for in-flight deliveries until ctx is done, then cancels them and
// naks their events; it then returns ctx's error. It is idempotent.
func (b *Bridge) Stop(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.running = false
	return b.stopRunners(ctx)
}

// stopRunners stops every runner concurrently. b.mu must be held.
func (b *Bridge) stopRunners(ctx context.Context) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	forced := false
	for id, r := range b.runners {
		delete(b.runners, id)
		wg.Go(func() {
			if r.stop(ctx) {
				mu.Lock()
				forced = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if forced {
		return fmt.Errorf("stopping subscriptions: in-flight deliveries cancelled: %w", ctx.Err())
	}
	return nil
}

// startPosition reads a subscription's startAt into the start of a new
// consumer group.
func startPosition(at string) (mesh.ConsumerConfig, error) {
	switch at {
	case "", "new":
		return mesh.ConsumerConfig{StartAtNew: true}, nil
	case "earliest":
		return mesh.ConsumerConfig{}, nil
	}
	if seq, err := strconv.ParseUint(at, 10, 64); err == nil && seq > 0 {
		return mesh.ConsumerConfig{StartSeq: seq}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
		return mesh.ConsumerConfig{StartTime: t}, nil
	}
	return mesh.ConsumerConfig{}, fmt.Errorf("%s: want \"new\", \"earliest\", an RFC 3339 time or a stream sequence", quote(at))
}
