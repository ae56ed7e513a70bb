package natsjs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/mesh"
)

// Consumer defaults.
const (
	DefaultMaxInFlight = 256
	// maxPrefetch bounds how many delivered events one member buffers
	// ahead of Next: buffered events age towards AckWait unseen.
	maxPrefetch = 128
	// pullExpiry is how long a pull request lives on the server.
	pullExpiry = 5 * time.Second
	// closeWait bounds how long Close waits for the pull subscription to end.
	closeWait = time.Second
	// rebindTries and rebindWait: how often, and how far apart, a member
	// whose group was deleted looks for it again before it ends.
	rebindTries = 5
	rebindWait  = 100 * time.Millisecond
	// gateSlack is how long after its ack wait ran out an unacknowledged
	// event is surely redelivered (the server's timer, the pull request).
	gateSlack = 2 * time.Second
)

// rechecks are how long the Nexts of the pull iterator after an event
// wait before it is asked again (see consumer.pull); after them a Next
// waits as long as it takes, so that nats.go's heartbeat check (which
// needs one Next to wait 2 heartbeats) finds pull requests the server lost.
var rechecks = [...]time.Duration{20 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond}

var _ mesh.Consumer = (*consumer)(nil)

type consumer struct {
	eng       *Engine
	topic     string
	group     string
	durable   string // the server's name of a durable group's consumer
	ephemeral string // the server's name of an ephemeral consumer, deleted at Close
	prefetch  int
	ackWait   time.Duration
	log       *slog.Logger
	closed    atomic.Bool

	gateMu sync.Mutex // guards gate: Next uses it, Close hands its held events back
	gate   *gate      // nil unless newer events wait for a dead member's (RedeliverFirst)

	itMu sync.Mutex // guards it: Next replaces it, Close stops it
	it   jetstream.MessagesContext

	rechecked atomic.Int32 // the Nexts that ran out of a recheck since the last event
}

// Consume opens the durable pull consumer of cfg.Group on cfg.Topic,
// creating it, or updating MaxInFlight, AckWait and MaxDeliver of an
// existing one.
func (e *Engine) Consume(ctx context.Context, cfg mesh.ConsumerConfig) (mesh.Consumer, error) {
	if e.closed.Load() {
		return nil, mesh.ErrClosed
	}
	subject, err := e.subject(cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("consuming: %w", err)
	}
	if cfg.Group == "" {
		return nil, fmt.Errorf("consuming %q: empty group name", cfg.Topic)
	}
	if cfg.MaxInFlight < 0 || cfg.AckWait < 0 || cfg.MaxDeliver < 0 {
		return nil, fmt.Errorf("consuming %q as %q: maxInFlight, ackWait and maxDeliver must not be negative", cfg.Topic, cfg.Group)
	}
	create := e.consumerConfig(cfg, subject)
	maxInFlight, ackWait, maxDeliver := create.MaxAckPending, create.AckWait, create.MaxDeliver

	callerCtx := ctx // the waits of RedeliverFirst outlast one request's timeout
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	var c jetstream.Consumer
	if cfg.Ephemeral {
		// A consumer of its own, named by the server, gone when closed or
		// idle for ephemeralIdle (its process died).
		create.DeliverPolicy = jetstream.DeliverNewPolicy
		create.InactiveThreshold = ephemeralIdle
		c, err = e.cjs.CreateConsumer(ctx, e.cfg.Stream, create)
	} else {
		if create.Durable, err = e.durable(ctx, cfg.Group, cfg.Topic); err != nil {
			return nil, fmt.Errorf("consuming %q as %q: %w", cfg.Topic, cfg.Group, e.classify(ctx, err))
		}
		c, err = e.openConsumer(ctx, create.Durable, func(cc *jetstream.ConsumerConfig) bool {
			changed := cc.MaxAckPending != maxInFlight || cc.AckWait != ackWait || cc.MaxDeliver != maxDeliver
			cc.MaxAckPending, cc.AckWait, cc.MaxDeliver = maxInFlight, ackWait, maxDeliver
			if filters := create.FilterSubjects; len(filters) > 1 && !slices.Equal(cc.FilterSubjects, filters) { // a group made before edge mode
				cc.FilterSubject, cc.FilterSubjects, changed = "", filters, true
			}
			return changed
		}, create)
	}
	if err != nil {
		return nil, fmt.Errorf("consuming %q as %q: %w", cfg.Topic, cfg.Group, e.classify(ctx, err))
	}
	prefetch := min(maxInFlight, maxPrefetch)
	it, err := messages(c, prefetch)
	if err != nil {
		return nil, fmt.Errorf("consuming %q as %q: %w", cfg.Topic, cfg.Group, e.classify(ctx, err))
	}
	cons := &consumer{
		eng:      e,
		topic:    cfg.Topic,
		group:    cfg.Group,
		durable:  create.Durable,
		prefetch: prefetch,
		ackWait:  ackWait,
		log:      e.log.With("topic", cfg.Topic, "group", cfg.Group),
		it:       it,
	}
	if cfg.RedeliverFirst && !cfg.Ephemeral {
		info := c.CachedInfo()
		if info.NumWaiting > 0 {
			info = e.withoutPullRequests(callerCtx, c, cfg)
		}
		if info.NumAckPending > 0 {
			cons.gate = &gate{
				top:      info.Delivered.Stream,
				want:     info.NumAckPending,
				seen:     map[uint64]int{},
				deadline: time.Now().Add(ackWait + gateSlack),
				kept:     time.Now(),
			}
			cons.log.Info("waiting for the events a previous member left unacknowledged, to deliver them before newer ones",
				"unacknowledged", info.NumAckPending, "wait_at_most", ackWait+gateSlack)
		}
	}
	if cfg.Ephemeral {
		cons.ephemeral = c.CachedInfo().Name
	}
	e.consumerMu.Lock()
	e.consumers[cons] = struct{}{}
	e.consumerMu.Unlock()
	if e.closed.Load() { // Close ran while we were registering
		_ = cons.Close()
		return nil, mesh.ErrClosed
	}
	return cons, nil
}

// messages starts pulling from c, prefetch events at most.
func messages(c jetstream.Consumer, prefetch int) (jetstream.MessagesContext, error) {
	return c.Messages(
		jetstream.PullMaxMessages(prefetch),
		// Short-lived pull requests, renewed often: after the server lost
		// them (a restart of its store, a leader change) delivery resumes
		// within seconds instead of the default 30.
		jetstream.PullExpiry(pullExpiry),
		jetstream.WithMessagesErrOnMissingHeartbeat(false),
	)
}

// consumerConfig is the JetStream consumer that cfg creates on subject.
func (e *Engine) consumerConfig(cfg mesh.ConsumerConfig, subject string) jetstream.ConsumerConfig {
	maxInFlight := cfg.MaxInFlight
	if maxInFlight == 0 {
		maxInFlight = DefaultMaxInFlight
	}
	ackWait := cfg.AckWait
	if ackWait == 0 {
		ackWait = mesh.DefaultAckWait
	}
	maxDeliver := cfg.MaxDeliver
	if maxDeliver == 0 {
		maxDeliver = -1
	}
	deliver := jetstream.DeliverAllPolicy // all of these apply only to a new group
	switch {
	case cfg.StartSeq > 0:
		deliver = jetstream.DeliverByStartSequencePolicy
	case !cfg.StartTime.IsZero():
		deliver = jetstream.DeliverByStartTimePolicy
	case cfg.StartAtNew:
		deliver = jetstream.DeliverNewPolicy
	}
	create := jetstream.ConsumerConfig{
		Description:   fmt.Sprintf("meshd group %q on topic %q of %q", cfg.Group, cfg.Topic, e.cfg.GroupScope),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    maxDeliver,
		MaxAckPending: maxInFlight,
		DeliverPolicy: deliver,
	}
	if filters := e.filterSubjects(subject); len(filters) == 1 {
		create.FilterSubject = subject
	} else {
		create.FilterSubjects = filters
	}
	switch deliver {
	case jetstream.DeliverByStartSequencePolicy:
		create.OptStartSeq = cfg.StartSeq
	case jetstream.DeliverByStartTimePolicy:
		t := cfg.StartTime
		create.OptStartTime = &t
	}
	return create
}

// ResetGroup deletes the durable and creates it again at cfg's start. A
// member that re-creates it meanwhile (with its own start) makes the
// creation fail: then it is deleted and made again.
func (e *Engine) ResetGroup(ctx context.Context, cfg mesh.ConsumerConfig) error {
	if e.closed.Load() {
		return mesh.ErrClosed
	}
	subject, err := e.subject(cfg.Topic)
	if err != nil {
		return fmt.Errorf("resetting group: %w", err)
	}
	if cfg.Group == "" || cfg.Ephemeral {
		return fmt.Errorf("resetting group on %q: want a durable group name", cfg.Topic)
	}
	if cfg.MaxInFlight < 0 || cfg.AckWait < 0 || cfg.MaxDeliver < 0 {
		return fmt.Errorf("resetting %q on %q: maxInFlight, ackWait and maxDeliver must not be negative", cfg.Group, cfg.Topic)
	}
	create := e.consumerConfig(cfg, subject)
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	if create.Durable, err = e.durable(ctx, cfg.Group, cfg.Topic); err != nil {
		return fmt.Errorf("resetting group %q on %q: %w", cfg.Group, cfg.Topic, e.classify(ctx, err))
	}
	for attempt := 0; ; attempt++ {
		err := e.js.DeleteConsumer(ctx, e.cfg.Stream, create.Durable)
		if err == nil || errors.Is(err, jetstream.ErrConsumerNotFound) {
			_, err = e.js.CreateConsumer(ctx, e.cfg.Stream, create)
			if errors.Is(err, jetstream.ErrConsumerExists) && attempt < 3 {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("resetting group %q on %q: %w", cfg.Group, cfg.Topic, e.classify(ctx, err))
		}
		return nil
	}
}

// openConsumer looks the durable up and updates it if update says so, or
// creates it from create.
func (e *Engine) openConsumer(ctx context.Context, name string, update func(*jetstream.ConsumerConfig) bool, create jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	for range 2 {
		c, err := e.cjs.Consumer(ctx, e.cfg.Stream, name)
		if err == nil {
			cc := c.CachedInfo().Config
			if !update(&cc) {
				return c, nil
			}
			return e.cjs.UpdateConsumer(ctx, e.cfg.Stream, cc)
		}
		if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, err
		}
		c, err = e.cjs.CreateConsumer(ctx, e.cfg.Stream, create)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			continue // another member created it with other settings: update it
		}
		return c, err
	}
	return nil, jetstream.ErrConsumerExists
}

// durableName is the NATS consumer name of group on topic in scope: the
// three joined with characters NATS names cannot carry replaced, plus a
// hash of the exact triple so that distinct ones never share a consumer.
// Without a scope it is the name groups had before scopes (group and topic
// only), so those groups keep their consumers.
func durableName(scope, group, topic string) string {
	const maxReadable = 48
	key, readable := group+"\x00"+topic, group+"__"+topic
	if scope != "" {
		key, readable = scope+"\x00"+key, scope+"__"+readable
	}
	sum := sha256.Sum256([]byte(key))
	readable = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		default:
			return '_'
		}
	}, readable)
	if len(readable) > maxReadable {
		readable = readable[:maxReadable]
	}
	return readable + "_" + hex.EncodeToString(sum[:6])
}

// durable is the consumer of group on topic: the one of this engine's
// GroupScope, unless only a group made before scopes exists (a meshd
// before scopes made it, and its position and backlog are there), then
// that one. Without a scope, the unscoped one.
func (e *Engine) durable(ctx context.Context, group, topic string) (string, error) {
	name := durableName(e.cfg.GroupScope, group, topic)
	if e.cfg.GroupScope == "" {
		return name, nil
	}
	_, err := e.cjs.Consumer(ctx, e.cfg.Stream, name)
	if err == nil || !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return name, err
	}
	legacy := durableName("", group, topic)
	_, err = e.cjs.Consumer(ctx, e.cfg.Stream, legacy)
	switch {
	case err == nil:
		return legacy, nil
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return name, nil
	default:
		return "", err
	}
}

// Next returns the next decodable event. A message whose headers do not
// decode is terminated and logged, and Next goes on.
func (c *consumer) Next(ctx context.Context) (mesh.Message, error) {
	m, err := c.next(ctx)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (c *consumer) next(ctx context.Context) (*message, error) {
	c.gateMu.Lock()
	if c.gate == nil {
		c.gateMu.Unlock()
		return c.pull(ctx)
	}
	defer c.gateMu.Unlock()
	m, err := c.gate.next(ctx, c)
	if m == nil && err == nil {
		c.gate = nil
		return c.pull(ctx)
	}
	return m, err
}

// withoutPullRequests waits until no pull request of an earlier member is
// registered with the group, at most until such a request expired (a
// RedeliverFirst member pulls nothing before its first Next), and returns
// the group's state then. A member that died without the server noticing
// yet (a frozen process, a cut network) keeps its request until then: an
// event delivered to it would come back after its ack wait, behind newer
// ones. Requests of members that closed or whose connection ended are gone
// at once.
func (e *Engine) withoutPullRequests(ctx context.Context, c jetstream.Consumer, cfg mesh.ConsumerConfig) *jetstream.ConsumerInfo {
	info := c.CachedInfo()
	deadline := time.Now().Add(pullExpiry + time.Second)
	e.log.Info("waiting for the pull requests of an earlier member of the group to expire",
		"topic", cfg.Topic, "group", cfg.Group, "requests", info.NumWaiting, "wait_at_most", pullExpiry+time.Second)
	for info.NumWaiting > 0 && time.Now().Before(deadline) {
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return info
		}
		ictx, cancel := e.withTimeout(ctx)
		if fresh, err := c.Info(ictx); err == nil {
			info = fresh
		}
		cancel()
	}
	return info
}

// gate keeps the order of a group across the crash of its member
// (ConsumerConfig.RedeliverFirst). The events the previous member held were
// delivered before this member opened, so their stream sequences are at
// most top; JetStream delivers them again once they are handed back or
// their ack wait runs out. Until all want of them came back (or surely
// would have: deadline) nothing is handed out; then they go first, in
// stream order, and the newer events held meanwhile after them, in the
// order they came. Held events are kept from redelivery meanwhile.
type gate struct {
	top      uint64 // the last stream sequence delivered before this member
	want     int    // events unacknowledged then
	deadline time.Time
	seen     map[uint64]int // stream sequence → index in old
	old      []*message     // the previous member's events, delivered again
	held     []*message     // newer events
	kept     time.Time      // when old and held were last reported in progress
	open     bool
}

// next returns the next event of a gated consumer; nil, nil once the gate
// has handed out everything it held: the consumer goes on without it.
func (g *gate) next(ctx context.Context, c *consumer) (*message, error) {
	keepEvery := c.ackWait / 3
	for !g.open && len(g.seen) < g.want && time.Now().Before(g.deadline) {
		if time.Since(g.kept) >= keepEvery {
			for _, q := range [][]*message{g.old, g.held} {
				for _, m := range q {
					_ = m.m.InProgress()
				}
			}
			g.kept = time.Now()
		}
		wait := min(time.Until(g.deadline), keepEvery-time.Since(g.kept))
		pctx, cancel := context.WithTimeout(ctx, max(wait, time.Millisecond))
		m, err := c.pull(pctx)
		expired := pctx.Err() != nil // before cancel, which sets it always
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil && expired:
			continue // time to look at the deadline and the held events
		case err != nil:
			return nil, err
		case m.seq > g.top:
			g.held = append(g.held, m)
		default:
			if i, again := g.seen[m.seq]; again {
				g.old[i] = m // its latest delivery is the one to settle
				continue
			}
			g.seen[m.seq] = len(g.old)
			g.old = append(g.old, m)
		}
	}
	if !g.open {
		g.open = true
		slices.SortFunc(g.old, func(a, b *message) int { return cmp.Compare(a.seq, b.seq) })
		c.log.Info("the events a previous member left unacknowledged are delivered first",
			"delivered_again", len(g.old), "unacknowledged", g.want, "newer_held", len(g.held))
	}
	for _, q := range []*[]*message{&g.old, &g.held} {
		if len(*q) > 0 {
			m := (*q)[0]
			*q = (*q)[1:]
			return m, nil
		}
	}
	return nil, nil
}

// pull returns the next decodable event of the pull subscription.
func (c *consumer) pull(ctx context.Context) (*message, error) {
	for {
		if c.closed.Load() {
			return nil, mesh.ErrClosed
		}
		c.itMu.Lock()
		it := c.it
		c.itMu.Unlock()
		// The first waits after an event are short, and Next asked again:
		// nats.go (1.55) skips asking the server for more while its last
		// pull request is still being sent, and when the events of that
		// request are all taken before the send is marked done, Next waits
		// with no request on the server until it misses two heartbeats (5
		// s here). Asked again, it asks the server. Seen under load as 5 s
		// stalls in one jdbc-sink bench run in six or seven.
		wctx, cancel := ctx, context.CancelFunc(nil)
		if n := c.rechecked.Load(); int(n) < len(rechecks) {
			wctx, cancel = context.WithTimeout(ctx, rechecks[n])
		}
		m, err := it.Next(jetstream.NextContext(wctx))
		if cancel != nil {
			cancel()
		}
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			if wctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
				c.rechecked.Add(1)
				continue
			}
			if c.closed.Load() || c.eng.closed.Load() {
				return nil, mesh.ErrClosed
			}
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				// The group was deleted. Started over (ResetGroup), it is
				// there again: carry on with it; gone, this member ends.
				ok, err := c.rebind(ctx, it)
				if ok {
					continue
				}
				if err != nil { // not known yet: the next Next asks again
					return nil, fmt.Errorf("consuming %q as %q: %w", c.topic, c.group, c.eng.classify(ctx, err))
				}
				return nil, mesh.ErrClosed
			}
			return nil, fmt.Errorf("consuming %q as %q: %w", c.topic, c.group, c.eng.classify(ctx, err))
		}
		if c.rechecked.Load() != 0 {
			c.rechecked.Store(0)
		}
		md, err := m.Metadata()
		if err != nil {
			c.log.Warn("terminating message without metadata", "subject", m.Subject(), "error", err)
			_ = m.Term()
			continue
		}
		if c.eng.echo(m) {
			_ = m.Ack()
			continue
		}
		ev, err := decode(m.Headers(), m.Data())
		if err != nil {
			c.log.Warn("terminating undecodable message", "stream_seq", md.Sequence.Stream, "error", err)
			_ = m.Term()
			continue
		}
		return &message{c: c, m: m, ev: ev, attempt: int(md.NumDelivered), seq: md.Sequence.Stream}, nil
	}
}

// rebind starts pulling from the group's consumer again after its
// iterator old ended, when the consumer exists (it is not created). It
// reports whether it does; false with an error when that cannot be known
// now.
func (c *consumer) rebind(ctx context.Context, old jetstream.MessagesContext) (bool, error) {
	if c.durable == "" {
		return false, nil
	}
	old.Stop()
	lctx, cancel := c.eng.withTimeout(ctx)
	defer cancel()
	var jc jetstream.Consumer
	var err error
	for range rebindTries {
		// A reset deletes the consumer and creates it again at once: give
		// it those moments.
		if jc, err = c.eng.cjs.Consumer(lctx, c.eng.cfg.Stream, c.durable); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			break
		}
		select {
		case <-time.After(rebindWait):
		case <-lctx.Done():
		}
	}
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	it, err := messages(jc, c.prefetch)
	if err != nil {
		return false, err
	}
	c.itMu.Lock()
	defer c.itMu.Unlock()
	if c.closed.Load() {
		it.Stop()
		return false, nil
	}
	c.it = it
	c.log.Info("the group was started over; consuming it again")
	return true, nil
}

// Close stops this member; unacked events it holds go back to the group
// after AckWait.
func (c *consumer) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.itMu.Lock()
	it := c.it
	c.itMu.Unlock()
	// Events fetched ahead and not taken by Next go back to the group
	// (below), not waiting out their ack wait: the next member gets them
	// at once, and a RedeliverFirst member does not wait for them.
	it.Drain()
	var back []jetstream.Msg
	for {
		m, err := it.Next(jetstream.NextMaxWait(closeWait))
		if err != nil {
			break
		}
		back = append(back, m)
	}
	// Draining unsubscribes in the background. Wait for it, then flush, so
	// that once Close returns the server no longer routes events to this
	// member's pull request (they would wait AckWait there).
	if it, ok := it.(interface{ Closed() <-chan struct{} }); ok {
		deadline := time.Now().Add(closeWait)
		for time.Now().Before(deadline) {
			select {
			case <-it.Closed(): // closed at once if already unsubscribed
				deadline = time.Time{}
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	c.gateMu.Lock()
	if c.gate != nil {
		for _, m := range append(c.gate.old, c.gate.held...) {
			back = append(back, m.m)
		}
		c.gate = nil
	}
	c.gateMu.Unlock()
	for _, m := range back { // after the unsubscribe: not back to this member
		_ = m.Nak()
	}
	if c.eng.cnc.IsConnected() {
		_ = c.eng.cnc.FlushTimeout(closeWait)
	}
	c.eng.consumerMu.Lock()
	delete(c.eng.consumers, c)
	c.eng.consumerMu.Unlock()
	if c.ephemeral != "" && !c.eng.closed.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), closeWait)
		defer cancel()
		if err := c.eng.js.DeleteConsumer(ctx, c.eng.cfg.Stream, c.ephemeral); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			c.log.Debug("deleting an ephemeral consumer; the server removes it when idle", "error", err)
		}
	}
	return nil
}

var _ mesh.Message = (*message)(nil)

type message struct {
	c       *consumer
	m       jetstream.Msg
	ev      *event.Event
	attempt int
	seq     uint64
}

func (m *message) Event() *event.Event { return m.ev }
func (m *message) Topic() string       { return m.c.topic }
func (m *message) Attempt() int        { return m.attempt }
func (m *message) Seq() uint64         { return m.seq }

// Ack sends the ack without waiting for the server to confirm it: a
// confirmed ack cost a request and reply per event (an eighth of a
// delivery's CPU) and still did not survive a crash of the server before
// it wrote the consumer's state. An ack that is lost means a redelivery,
// which the delivery loop recognises by the event's sequence.
func (m *message) Ack(ctx context.Context) error {
	if err := m.m.Ack(); err != nil {
		return m.wrap(ctx, "acking", err)
	}
	return nil
}

func (m *message) Nak(ctx context.Context, delay time.Duration) error {
	var err error
	if delay > 0 {
		err = m.m.NakWithDelay(delay)
	} else {
		err = m.m.Nak()
	}
	if err != nil {
		return m.wrap(ctx, "naking", err)
	}
	return nil
}

func (m *message) Term(ctx context.Context) error {
	if err := m.m.Term(); err != nil {
		return m.wrap(ctx, "terminating", err)
	}
	return nil
}

func (m *message) InProgress(ctx context.Context) error {
	if err := m.m.InProgress(); err != nil {
		return m.wrap(ctx, "extending", err)
	}
	return nil
}

func (m *message) wrap(ctx context.Context, what string, err error) error {
	return fmt.Errorf("%s event %q on %q: %w", what, m.ev.ID(), m.c.topic, m.c.eng.classify(ctx, err))
}
