package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/meshd/meshd/mesh"
)

// The one delivery loop. Subscriptions, sink connectors, MQTT outbound and
// WebSocket subscribers are handlers of it: the loop takes events from the
// mesh, filters and de-duplicates them, hands them to the handler singly or
// in batches with a bounded number in flight, and settles each event with
// the mesh by the outcome rules of outcome.go — ack, retry with backoff
// (nak with delay), hold while the target is unavailable, dead-letter after
// MaxAttempts or a permanent failure.

// Handler delivers a batch of events (one event unless BatchSize > 1). It
// returns nil when every event was delivered, a *PartialError naming the
// events that failed (the others were delivered), or one error for all.
// Errors are classified by Classify; one that wraps ErrAbort stops the loop
// (the events are handed back), e.g. a panic in a connector. The handler
// must not settle the messages: the loop does.
type Handler func(ctx context.Context, batch []mesh.Message) error

// StartFunc begins delivering one event and returns a function that waits
// for its outcome (nil or an error, as a Handler's). The loop calls it in
// the order events arrive, from one goroutine, and waits for outcomes
// concurrently, at most Workers at once: for targets that must see events
// in order while their confirmations overlap (MQTT publishes, a WebSocket
// client's acks). A retry starts the event again out of that order.
type StartFunc func(ctx context.Context, m mesh.Message) (wait func() error)

// Finished is the wait of a StartFunc that knows its outcome at once.
func Finished(err error) func() error { return func() error { return err } }

// ErrAbort, wrapped by a handler's error, ends the loop: its events go back
// to the mesh and Loop.Err reports the error.
var ErrAbort = errors.New("delivery aborted")

// PartialError is returned by a handler (or a sink's Put) when only some
// events of a batch failed. Failed maps the index of each failed event in
// the batch to its error.
type PartialError struct {
	Failed map[int]error
}

func (e *PartialError) Error() string { return partialErrorText(e.Failed) }

// Observer counts what a loop does, for metrics. Every method must be
// cheap and safe for concurrent use.
type Observer interface {
	Delivered(n int, took time.Duration)
	Retried(n int)
	DeadLettered(n int) // copies stored on the dead-letter topic
	Dropped(n int)      // given up without a dead-letter topic
	Filtered(n int)
}

// LoopConfig configures a delivery loop.
type LoopConfig struct {
	// Name says who delivers ("subscription orders-to-billing",
	// "connector-pg"): in logs, and as the dedup key of dead-letter copies
	// so that copies of one event from two loops are both kept.
	Name string
	// Engine stores dead-letter copies.
	Engine mesh.Engine
	// Consumers are read together; Stop closes them.
	Consumers []mesh.Consumer
	// Handler delivers batches, or Start delivers single events in order;
	// set exactly one.
	Handler Handler
	Start   StartFunc
	// Filter, if set, skips (acks) events that do not match.
	Filter Filter
	// Workers is how many deliveries run at once (default 1).
	Workers int
	// BatchSize is the most events per handler call (default 1); a batch
	// waits at most BatchWait after its first event to fill up.
	BatchSize int
	BatchWait time.Duration
	// MaxAttempts is the most deliveries of an event before it is
	// dead-lettered; 0 retries for as long as the mesh keeps the event.
	MaxAttempts int
	// DeadLetterTopic receives events given up on; none: they are dropped
	// (counted, logged).
	DeadLetterTopic string
	// DedupSize is how many delivered events (by stream sequence) are
	// remembered so a redelivery after a lost ack (an attempt after the
	// first) is not delivered twice; 0: none.
	DedupSize int
	// Backoff spaces retries and holds (zero: DefaultBackoff).
	Backoff Backoff
	// AckWait is the consumers' ack wait: events held while the target is
	// unavailable are kept from redelivery by telling the mesh they are in
	// progress well within it (default mesh.DefaultAckWait).
	AckWait time.Duration
	Logger  *slog.Logger
	// Redact cleans error texts before they reach logs and the
	// deliveryerror extension (e.g. removes a sink's credentials).
	Redact   func(string) string
	Observer Observer
}

// LoopStatus is what a loop can tell about itself.
type LoopStatus struct {
	// Holding is set while events wait for an unavailable target.
	Holding bool `json:"holding"`
	// LastError is the latest failure (redacted), LastErrorAt its time.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// Loop is a running delivery loop.
type Loop struct {
	cfg   LoopConfig
	log   *slog.Logger
	dedup *lru.Cache[uint64, struct{}] // nil without DedupSize
	// delivering holds the stream sequences of the events admitted and not
	// settled yet: another delivery of one of them (its ack wait ran out
	// while it waited in the loop) is not delivered beside it.
	deliveringMu sync.Mutex
	delivering   map[uint64]struct{}
	msgs         chan mesh.Message
	holds        atomic.Int32
	warn         Throttle
	settling     settleContexts
	status       sync.Mutex // guards last, lastAt
	last         string
	lastAt       time.Time

	stopping   <-chan struct{}    // closed when fetching ends
	stopFetch  context.CancelFunc // ends fetching; workers then drain
	abort      context.CancelFunc // cancels deliveries in flight
	fetchWG    sync.WaitGroup
	workWG     sync.WaitGroup
	stopOnce   sync.Once
	backMu     sync.Mutex     // guards handedBack
	handedBack []mesh.Message // events to return to the mesh once the consumers are closed
	done       chan struct{}
	errOnce    sync.Once
	err        error
}

// StartLoop starts delivering. ctx bounds the deliveries: when it is done
// they are cancelled and their events handed back (Stop ends the loop
// gracefully).
func StartLoop(ctx context.Context, cfg LoopConfig) *Loop {
	cfg.Workers = max(cfg.Workers, 1)
	cfg.BatchSize = max(cfg.BatchSize, 1)
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = mesh.DefaultAckWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Redact == nil {
		cfg.Redact = func(s string) string { return s }
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	// Events are taken from the mesh and decoded ahead of the deliveries,
	// up to a batch per worker: the next batch is ready when a handler
	// returns instead of being pulled then.
	ahead := min(cfg.BatchSize*cfg.Workers, maxReadAhead)
	l := &Loop{cfg: cfg, log: cfg.Logger, msgs: make(chan mesh.Message, ahead), done: make(chan struct{}), delivering: map[uint64]struct{}{}}
	l.warn.Every = warnEvery
	if cfg.DedupSize > 0 {
		l.dedup, _ = lru.New[uint64, struct{}](cfg.DedupSize)
	}
	fetchCtx, stopFetch := context.WithCancel(ctx)
	workCtx, abort := context.WithCancel(ctx)
	l.stopping, l.stopFetch, l.abort = fetchCtx.Done(), stopFetch, abort
	for _, c := range cfg.Consumers {
		l.fetchWG.Go(func() { l.fetch(fetchCtx, c) })
	}
	go func() { l.fetchWG.Wait(); close(l.msgs) }()
	if cfg.Start != nil {
		l.workWG.Go(func() { l.dispatch(workCtx) })
	} else {
		for range cfg.Workers {
			l.workWG.Go(func() { l.work(workCtx) })
		}
	}
	go func() {
		l.workWG.Wait()
		stopFetch()
		abort()
		l.fetchWG.Wait()
		// Events read ahead that no worker took (a worker that aborted
		// the loop returns without draining them) go back too.
		for m := range l.msgs {
			l.handBack([]mesh.Message{m})
		}
		for _, c := range cfg.Consumers {
			if err := c.Close(); err != nil {
				l.log.Warn("closing consumer", "error", err)
			}
		}
		// Only now: a nak before the close could be redelivered to this
		// loop's own pull request and sit there until the ack wait.
		l.nakAll(l.handedBack, 0)
		close(l.done)
	}()
	return l
}

// Stop ends the loop: no new events are taken, deliveries in flight may
// finish until ctx is done, then they are cancelled and their events
// handed back. It reports whether deliveries had to be cancelled.
func (l *Loop) Stop(ctx context.Context) (forced bool) {
	l.stopOnce.Do(func() {
		l.stopFetch()
		select {
		case <-l.done:
		case <-ctx.Done():
			forced = true
			l.abort()
			<-l.done
		}
	})
	<-l.done
	return forced
}

// Done is closed when the loop has ended (Stop, its ctx, or an abort).
func (l *Loop) Done() <-chan struct{} { return l.done }

// Err is the error that aborted the loop, if any (see ErrAbort).
func (l *Loop) Err() error {
	select {
	case <-l.done:
		return l.err
	default:
		return nil
	}
}

// Status reports whether the loop holds events for an unavailable target,
// and its last failure.
func (l *Loop) Status() LoopStatus {
	l.status.Lock()
	defer l.status.Unlock()
	return LoopStatus{Holding: l.holds.Load() > 0, LastError: l.last, LastErrorAt: l.lastAt}
}

// maxReadAhead bounds the events a loop holds taken but not yet handed to
// a delivery.
const maxReadAhead = 1000

// warnEvery bounds the failure warnings of one loop: a target that fails
// every delivery must not flood the log.
const warnEvery = 10 * time.Second

func (l *Loop) noteError(text string) {
	l.status.Lock()
	l.last, l.lastAt = text, time.Now()
	l.status.Unlock()
}

// fetch hands the events of one consumer to the workers.
func (l *Loop) fetch(ctx context.Context, c mesh.Consumer) {
	failures := 0
	for {
		m, err := c.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, mesh.ErrClosed) {
				l.log.Warn("consumer closed; no more deliveries from it", "error", err)
				return
			}
			failures++
			wait := l.cfg.Backoff.Delay(failures)
			l.log.Warn("receiving from the mesh", "error", err, "retry_in", wait)
			if !Sleep(ctx, wait) {
				return
			}
			continue
		}
		failures = 0
		select {
		case l.msgs <- m:
		case <-ctx.Done():
			l.handBack([]mesh.Message{m})
			return
		}
	}
}

// work takes batches and delivers them until the events run out or ctx is
// done.
func (l *Loop) work(ctx context.Context) {
	batch := make([]mesh.Message, 0, l.cfg.BatchSize)
	for {
		batch = batch[:0]
		m, ok := <-l.msgs
		if !ok {
			return
		}
		if l.admit(m) {
			batch = append(batch, m)
		}
		if l.cfg.BatchSize > 1 {
			batch = l.fill(ctx, batch)
		}
		if len(batch) == 0 {
			continue
		}
		if l.stopped(ctx) {
			l.handBack(batch)
			l.settled(batch)
			continue
		}
		err := l.deliver(ctx, batch, l.cfg.Handler)
		l.settled(batch)
		if err != nil {
			l.fatal(err)
			return
		}
	}
}

// fatal ends the loop with err.
func (l *Loop) fatal(err error) {
	l.errOnce.Do(func() { l.err = err })
	l.stopFetch()
	l.abort()
}

// dispatch starts single events in arrival order and waits for their
// outcomes concurrently, at most Workers at once (see StartFunc).
func (l *Loop) dispatch(ctx context.Context) {
	slots := make(chan struct{}, l.cfg.Workers)
	var waiters sync.WaitGroup
	defer waiters.Wait()
	for m := range l.msgs {
		if !l.admit(m) {
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if l.stopped(ctx) {
			l.handBack([]mesh.Message{m})
			l.settled([]mesh.Message{m})
			continue
		}
		wait := l.cfg.Start(ctx, m)
		waiters.Go(func() {
			defer func() { <-slots }()
			defer l.settled([]mesh.Message{m})
			first := true
			err := l.deliver(ctx, []mesh.Message{m}, func(ctx context.Context, batch []mesh.Message) error {
				if first {
					first = false
					return wait()
				}
				return l.cfg.Start(ctx, batch[0])()
			})
			if err != nil {
				l.fatal(err)
			}
		})
	}
}

// stopped reports whether events read ahead are to be handed back instead
// of delivered: the loop is stopping (no new deliveries start) or ctx is
// done.
func (l *Loop) stopped(ctx context.Context) bool {
	select {
	case <-l.stopping:
		return true
	default:
		return ctx.Err() != nil
	}
}

// fill adds events to batch until it is full, BatchWait passed since its
// first event, or the events run out.
func (l *Loop) fill(ctx context.Context, batch []mesh.Message) []mesh.Message {
	var timer *time.Timer
	var expired <-chan time.Time
	for len(batch) < l.cfg.BatchSize {
		if len(batch) > 0 && timer == nil {
			timer = time.NewTimer(l.cfg.BatchWait)
			defer timer.Stop()
			expired = timer.C
		}
		select {
		case m, ok := <-l.msgs:
			if !ok {
				return batch
			}
			if l.admit(m) {
				batch = append(batch, m)
			}
		case <-expired:
			return batch
		case <-l.stopping:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// admit settles what needs no delivery — events the filter skips, events
// delivered before (a redelivery after a lost ack), events past their
// attempts — and says whether m is to be delivered.
func (l *Loop) admit(m mesh.Message) bool {
	e := m.Event()
	switch {
	case e == nil || l.cfg.Filter != nil && !l.cfg.Filter.Match(e):
		l.settle("ack", m.Ack)
		l.cfg.Observer.Filtered(1)
		return false
	case !l.claim(m):
		// Another delivery of an event being delivered now: left as it
		// is. The first delivery's outcome settles the event (an ack or a
		// nak is by stream sequence), or the mesh gives it again.
		return false
	case l.dedup != nil && m.Attempt() > 1 && l.dedup.Contains(m.Seq()):
		// A redelivery of an event delivered before: its ack was lost. A
		// first delivery of a sequence already seen is a deliberate replay
		// (the group was started over) and is delivered.
		l.settle("ack", m.Ack)
		l.settled([]mesh.Message{m})
		return false
	case l.cfg.MaxAttempts > 0 && m.Attempt() > l.cfg.MaxAttempts:
		// Redelivered past MaxAttempts (its delivery crashed or timed out):
		// give up without delivering it again.
		l.giveUp(m, fmt.Errorf("delivered %d times without success", m.Attempt()-1))
		l.settled([]mesh.Message{m})
		return false
	}
	return true
}

// claim marks m's event as being delivered; false when it is already (m
// is a redelivery of it). In one step, so that two workers taking two
// deliveries of an event at once do not both deliver it.
func (l *Loop) claim(m mesh.Message) bool {
	l.deliveringMu.Lock()
	defer l.deliveringMu.Unlock()
	if _, ok := l.delivering[m.Seq()]; ok && m.Attempt() > 1 {
		return false
	}
	l.delivering[m.Seq()] = struct{}{}
	return true
}

// settled forgets ms as being delivered: they are settled or handed back.
func (l *Loop) settled(ms []mesh.Message) {
	l.deliveringMu.Lock()
	defer l.deliveringMu.Unlock()
	for _, m := range ms {
		delete(l.delivering, m.Seq())
	}
}

// deliver hands batch to the handler and settles every event by its
// outcome. Events whose target is unavailable are held and delivered again
// after a backoff, without counting attempts, until they succeed, fail
// otherwise, or the loop stops (they are handed back). A non-nil error
// aborts the loop.
func (l *Loop) deliver(ctx context.Context, batch []mesh.Message, handler Handler) error {
	var keepAlive time.Time
	for hold := 0; ; hold++ {
		start := time.Now()
		err := handler(ctx, batch)
		if err == nil {
			l.ackAll(batch)
			l.cfg.Observer.Delivered(len(batch), time.Since(start))
			return nil
		}
		if ctx.Err() != nil {
			l.handBack(batch)
			return nil
		}
		if errors.Is(err, ErrAbort) {
			l.nakAll(batch, l.cfg.Backoff.Delay(1))
			return err
		}
		var held []mesh.Message
		var holdFor time.Duration
		var ok []mesh.Message
		var partial *PartialError
		isPartial := errors.As(err, &partial)
		failed := 0
		for i, m := range batch {
			merr := err
			if isPartial {
				if merr = partial.Failed[i]; merr == nil {
					ok = append(ok, m)
					continue
				}
			}
			failed++
			class, after := Classify(merr)
			if class == Unavailable {
				held = append(held, m)
				holdFor = max(holdFor, after)
				continue
			}
			l.fail(m, merr, class, after)
		}
		if len(ok) > 0 {
			l.ackAll(ok)
			l.cfg.Observer.Delivered(len(ok), time.Since(start))
		}
		text := l.cfg.Redact(err.Error())
		l.noteError(text)
		if len(held) == 0 {
			l.warn.Warn(l.log, "delivery failed; retrying or dead-lettering", "failed", failed, "batch", len(batch), "error", text)
			return nil
		}
		// The target cannot take events now: keep these and try again.
		wait := max(l.cfg.Backoff.Delay(hold+1), holdFor)
		if hold == 0 {
			l.holds.Add(1)
			defer l.holds.Add(-1)
			l.warn.Warn(l.log, "target unavailable; holding events and retrying", "events", len(held), "retry_in", wait, "error", text)
			keepAlive = time.Now()
		}
		if !l.holdFor(ctx, held, wait, &keepAlive) {
			l.handBack(held)
			return nil
		}
		batch = held
	}
}

// holdFor waits d, telling the mesh now and then that the held events are
// still in progress so they are not redelivered elsewhere. false: ctx
// ended or the loop is stopping first. A stopping loop does not wait out
// a hold (an outage can outlast any stop timeout): the held events are
// handed back for whoever takes the group next.
func (l *Loop) holdFor(ctx context.Context, held []mesh.Message, d time.Duration, lastKeepAlive *time.Time) bool {
	every := l.cfg.AckWait / 3
	deadline := time.Now().Add(d)
	for {
		if time.Since(*lastKeepAlive) >= every {
			for _, m := range held {
				l.settle("in-progress", m.InProgress)
			}
			*lastKeepAlive = time.Now()
		}
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		t := time.NewTimer(min(left, every-time.Since(*lastKeepAlive)))
		select {
		case <-t.C:
			continue
		case <-ctx.Done():
		case <-l.stopping:
		}
		t.Stop()
		return false
	}
}

// fail retries m with backoff, or gives up on it when err is permanent or
// m used its attempts.
func (l *Loop) fail(m mesh.Message, err error, class Class, after time.Duration) {
	attempt := m.Attempt()
	if class == Permanent || l.cfg.MaxAttempts > 0 && attempt >= l.cfg.MaxAttempts {
		l.giveUp(m, err)
		return
	}
	delay := max(l.cfg.Backoff.Delay(attempt), after)
	l.settle("nak", func(c context.Context) error { return m.Nak(c, delay) })
	l.cfg.Observer.Retried(1)
}

// giveUp dead-letters m, or drops it when there is no dead-letter topic.
func (l *Loop) giveUp(m mesh.Message, cause error) {
	reason := l.cfg.Redact(cause.Error())
	if DeadLetter(l.cfg.Engine, l.log, m, l.cfg.Name, l.cfg.DeadLetterTopic, reason, l.cfg.Backoff.Delay(m.Attempt())) {
		if l.cfg.DeadLetterTopic == "" {
			l.cfg.Observer.Dropped(1)
		} else {
			l.cfg.Observer.DeadLettered(1)
		}
	}
}

// ackAll acks ms. The event is remembered as delivered first: if its ack
// is lost, the redelivery is recognised and acked without a second
// delivery.
func (l *Loop) ackAll(ms []mesh.Message) {
	for _, m := range ms {
		if l.dedup != nil {
			l.dedup.Add(m.Seq(), struct{}{})
		}
		l.settle("ack", m.Ack)
	}
}

// handBack keeps events the stopping loop did not deliver; they are
// returned to the mesh, uncounted, when the loop ends.
func (l *Loop) handBack(ms []mesh.Message) {
	l.backMu.Lock()
	l.handedBack = append(l.handedBack, ms...)
	l.backMu.Unlock()
}

func (l *Loop) nakAll(ms []mesh.Message, delay time.Duration) {
	for _, m := range ms {
		l.settle("nak", func(c context.Context) error { return m.Nak(c, delay) })
	}
}

// settle is Settle with a context shared by settlements close in time.
func (l *Loop) settle(what string, f func(context.Context) error) {
	settleIn(l.settling.get(), l.log, what, f)
}

type nopObserver struct{}

func (nopObserver) Delivered(int, time.Duration) {}
func (nopObserver) Retried(int)                  {}
func (nopObserver) DeadLettered(int)             {}
func (nopObserver) Dropped(int)                  {}
func (nopObserver) Filtered(int)                 {}

// Sleep waits d or until ctx is done; false means ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
