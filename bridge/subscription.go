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

// storedSubscription is the value of a subscription's key: the
// subscription, and the last replay asked for. A replay changes the value
// so that every sidecar of the app starts its loop of the subscription
// again (see ReplaySubscription).
type storedSubscription struct {
	Subscription
	Replay *replayMark `json:"replay,omitempty"`
}

type replayMark struct {
	From string    `json:"from"`
	At   time.Time `json:"at"`
}

// loadSubscription reads id's stored value and its revision (also when
// the value does not decode).
func (b *Bridge) loadSubscription(ctx context.Context, kv mesh.KV, id string) (storedSubscription, uint64, error) {
	ent, err := kv.Get(ctx, id)
	if errors.Is(err, mesh.ErrKeyNotFound) {
		return storedSubscription{}, 0, fmt.Errorf("%w: %q", ErrSubscriptionNotFound, id)
	}
	if err != nil {
		return storedSubscription{}, 0, fmt.Errorf("reading subscription %q: %w", id, err)
	}
	st, err := decodeSubscription(id, ent.Value)
	return st, ent.Revision, err
}

func decodeSubscription(id string, value []byte) (storedSubscription, error) {
	var st storedSubscription
	if err := json.Unmarshal(value, &st); err != nil {
		return storedSubscription{}, fmt.Errorf("decoding subscription %q: %w", id, err)
	}
	return st, nil
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
	data, err := json.Marshal(storedSubscription{Subscription: sub})
	if err != nil {
		return Subscription{}, nil, nil, fmt.Errorf("%w: %w", ErrInvalidSubscription, err)
	}
	return sub, f, data, nil
}

// CreateSubscription validates, persists and starts sub. Errors wrap
// ErrInvalidSubscription (naming the field) or ErrSubscriptionExists.
// The returned subscription has its defaults filled in. While the bridge
// is not started, sub is only persisted; Start runs it. The other sidecars
// of the app start it too (they watch the bucket).
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
	rev, err := kv.Create(ctx, sub.ID, data)
	if err != nil {
		if errors.Is(err, mesh.ErrConflict) {
			return Subscription{}, fmt.Errorf("%w: %q", ErrSubscriptionExists, sub.ID)
		}
		return Subscription{}, fmt.Errorf("storing subscription %q: %w", sub.ID, err)
	}
	if b.running {
		if err := b.startRunner(ctx, sub, f, rev, data); err != nil {
			if derr := kv.Delete(context.WithoutCancel(ctx), sub.ID); derr != nil {
				b.logger.Error("removing subscription that failed to start", "subscription", sub.ID, "error", derr)
			}
			return Subscription{}, err
		}
	}
	return sub, nil
}

// maxPutRetries bounds how often PutSubscription reads and writes again
// after another sidecar changed the subscription between the two.
const maxPutRetries = 5

// PutSubscription creates sub or replaces the one with its id (used for
// subscriptions declared in the config file, which every sidecar of an app
// applies as it starts). A running subscription whose settings changed is
// restarted: its in-flight deliveries finish (up to ctx's deadline) before
// the new settings take over. When the topic or group changed, the old
// consumer group is deleted. A change by another sidecar between reading
// and writing makes it read and write again.
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
	for attempt := 1; ; attempt++ {
		_, _, err := b.replaceSubscription(ctx, kv, sub, f, data, 0, true)
		if errors.Is(err, ErrSubscriptionChanged) && attempt < maxPutRetries {
			continue
		}
		if err != nil {
			return Subscription{}, err
		}
		return sub, nil
	}
}

// UpdateSubscription replaces the subscription with sub's id, which must
// exist, and returns it with its defaults and its new revision. With a
// revision (from LookupSubscription, an HTTP ETag), the subscription must
// still be at it. Either way, a change by anyone else between reading and
// writing fails with ErrSubscriptionChanged: nothing is overwritten
// unseen. A paused subscription stays paused (and a running one running):
// PauseSubscription and ResumeSubscription change that.
func (b *Bridge) UpdateSubscription(ctx context.Context, sub Subscription, revision uint64) (Subscription, uint64, error) {
	sub, f, data, err := b.prepareSubscription(ctx, sub)
	if err != nil {
		return Subscription{}, 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	kv, err := b.kvStore(ctx)
	if err != nil {
		return Subscription{}, 0, err
	}
	sub, rev, err := b.replaceSubscription(ctx, kv, sub, f, data, revision, false)
	if err != nil {
		return Subscription{}, 0, err
	}
	return sub, rev, nil
}

// replaceSubscription stores sub with compare-and-set on the revision it
// read (which must be expect, unless 0) and restarts its runner. With
// create, sub is stored also when it does not exist, as given; without,
// it must exist and keeps its paused flag. It returns sub as stored and
// its revision. b.mu must be held.
func (b *Bridge) replaceSubscription(ctx context.Context, kv mesh.KV, sub Subscription, f Filter, data []byte, expect uint64, create bool) (Subscription, uint64, error) {
	old, oldRev, err := b.loadSubscription(ctx, kv, sub.ID)
	exists := oldRev != 0
	switch {
	case errors.Is(err, ErrSubscriptionNotFound):
		if !create || expect != 0 {
			return Subscription{}, 0, err
		}
	case err != nil && !exists:
		return Subscription{}, 0, err
	case err != nil:
		// Unreadable old value: overwrite it, but do not guess its group.
		b.logger.Warn("replacing unreadable subscription", "subscription", sub.ID, "error", err)
	}
	if expect != 0 && oldRev != expect {
		return Subscription{}, 0, fmt.Errorf("%w: %q is at revision %d, not %d", ErrSubscriptionChanged, sub.ID, oldRev, expect)
	}
	if !create && err == nil && sub.Paused != old.Paused {
		sub.Paused = old.Paused
		if data, err = json.Marshal(storedSubscription{Subscription: sub}); err != nil {
			return Subscription{}, 0, err
		}
	}
	oldData, _ := json.Marshal(storedSubscription{Subscription: old.Subscription})
	changed := err != nil || !exists || string(oldData) != string(data)
	rev := oldRev
	if changed {
		if exists {
			rev, err = kv.Update(ctx, sub.ID, data, oldRev)
		} else {
			rev, err = kv.Create(ctx, sub.ID, data)
		}
		if errors.Is(err, mesh.ErrConflict) {
			return Subscription{}, 0, fmt.Errorf("%w: %q was changed by another request meanwhile", ErrSubscriptionChanged, sub.ID)
		}
		if err != nil {
			return Subscription{}, 0, fmt.Errorf("storing subscription %q: %w", sub.ID, err)
		}
	}
	if b.runners[sub.ID] != nil && !changed {
		return sub, rev, nil
	}
	b.stopRunner(ctx, sub.ID)
	if exists && old.ID != "" && (old.Topic != sub.Topic || old.Group != sub.Group) {
		b.deleteGroupIfUnused(ctx, kv, old.Subscription)
	}
	if b.running {
		if err := b.startRunner(ctx, sub, f, rev, data); err != nil {
			return Subscription{}, 0, err
		}
	}
	return sub, rev, nil
}

// GetSubscription returns ErrSubscriptionNotFound for an unknown id.
func (b *Bridge) GetSubscription(ctx context.Context, id string) (Subscription, error) {
	sub, _, err := b.LookupSubscription(ctx, id)
	return sub, err
}

// LookupSubscription is GetSubscription with the subscription's revision,
// which changes with every change of it (UpdateSubscription takes it).
func (b *Bridge) LookupSubscription(ctx context.Context, id string) (Subscription, uint64, error) {
	if checkName(id) != nil {
		return Subscription{}, 0, fmt.Errorf("%w: %s", ErrSubscriptionNotFound, quote(id))
	}
	kv, err := b.kvStore(ctx)
	if err != nil {
		return Subscription{}, 0, err
	}
	st, rev, err := b.loadSubscription(ctx, kv, id)
	if err != nil {
		return Subscription{}, 0, err
	}
	return st.Subscription, rev, nil
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
		st, _, err := b.loadSubscription(ctx, kv, k)
		if errors.Is(err, ErrSubscriptionNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		subs = append(subs, st.Subscription)
	}
	return subs, nil
}

// DeleteSubscription stops and removes a subscription and its consumer group.
// The group is kept when another subscription shares it. The other
// sidecars of the app stop it too.
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
	st, _, err := b.loadSubscription(ctx, kv, id)
	if err != nil {
		return err
	}
	b.stopRunner(ctx, id)
	if err := kv.Delete(ctx, id); err != nil {
		return fmt.Errorf("deleting subscription %q: %w", id, err)
	}
	return b.deleteGroupIfUnused(ctx, kv, st.Subscription)
}

// groupSharer returns the id of a stored subscription other than sub that
// consumes sub's topic in sub's group, or "". b.mu must be held.
func (b *Bridge) groupSharer(ctx context.Context, kv mesh.KV, sub Subscription) (string, error) {
	if b.running {
		// Every stored subscription runs: ask the runners, not the store
		// (reading every subscription made deleting a thousand take 82 s).
		for id, r := range b.runners {
			if id != sub.ID && r.sub.Topic == sub.Topic && r.sub.Group == sub.Group {
				return id, nil
			}
		}
		return "", nil
	}
	subs, err := b.listSubscriptions(ctx, kv)
	if err != nil {
		return "", err
	}
	for _, s := range subs {
		if s.ID != sub.ID && s.Topic == sub.Topic && s.Group == sub.Group {
			return s.ID, nil
		}
	}
	return "", nil
}

// stopRunner stops and forgets the runner of id, if any, and returns it.
// b.mu must be held.
func (b *Bridge) stopRunner(ctx context.Context, id string) *runner {
	r := b.runners[id]
	if r != nil {
		delete(b.runners, id)
		r.stop(ctx)
	}
	return r
}

// deleteGroupIfUnused deletes old's consumer group unless another stored
// subscription (other than old itself) consumes with it.
func (b *Bridge) deleteGroupIfUnused(ctx context.Context, kv mesh.KV, old Subscription) error {
	if other, err := b.groupSharer(ctx, kv, old); err != nil || other != "" {
		return err
	}
	// The subscription itself may still be stored under its new settings.
	if err := b.opts.Engine.DeleteGroup(ctx, old.Topic, old.Group); err != nil {
		err = fmt.Errorf("deleting consumer group %q of topic %q: %w", old.Group, old.Topic, err)
		b.logger.Warn("subscription removed but its consumer group remains", "subscription", old.ID, "error", err)
		return err
	}
	return nil
}

// Start restores the persisted subscriptions, starts their delivery loops
// and follows the subscription bucket: what another sidecar of the app
// creates, changes or deletes there is applied here within moments (see
// live.go). On error nothing keeps running. Start on a started bridge does
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
	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	changes, err := kv.Watch(wctx, "")
	if err != nil {
		stopWatch()
		return fmt.Errorf("watching subscriptions: %w", err)
	}
	current, err := currentValues(ctx, changes)
	if err != nil {
		stopWatch()
		return fmt.Errorf("reading subscriptions: %w", err)
	}
	if len(current) > 0 && b.opts.Sender == nil {
		stopWatch()
		return ErrNoSender
	}
	b.running = true
	for _, c := range current {
		sub, f, ok := b.compileStored(c)
		if !ok {
			continue
		}
		if err := b.startRunner(ctx, sub, f, c.Revision, c.Value); err != nil {
			b.stopRunners(context.WithoutCancel(ctx))
			b.running = false
			stopWatch()
			return err
		}
	}
	b.watchStop, b.watchDone = stopWatch, make(chan struct{})
	go b.follow(wctx, changes, b.watchDone)
	return nil
}

// Stop ends delivery loops; in-flight deliveries finish or are naked. Stop
// waits for in-flight deliveries until ctx is done, then cancels them and
// naks their events; it then returns ctx's error. It is idempotent.
func (b *Bridge) Stop(ctx context.Context) error {
	b.mu.Lock()
	b.running = false
	stopWatch, watchDone := b.watchStop, b.watchDone
	b.watchStop, b.watchDone = nil, nil
	b.mu.Unlock()
	if stopWatch != nil {
		// Without b.mu: the watch may be waiting for it to apply a change
		// (which it then skips, the bridge no longer running).
		stopWatch()
		<-watchDone
	}
	b.mu.Lock()
	defer b.mu.Unlock()
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
