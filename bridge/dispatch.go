package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/meshd/meshd/mesh"
)

// runner is the delivery loop of one subscription: one goroutine takes
// events from the consumer (fetch) and hands them to MaxInFlight workers
// over an unbuffered channel, so at most MaxInFlight+1 events are held.
type runner struct {
	b        *Bridge
	sub      Subscription // normalised; read-only, handed to the Sender
	filter   Filter
	consumer mesh.Consumer
	dedup    *dedupCache
	logger   *slog.Logger
	mo       measureOpts // empty without metrics

	stopFetch context.CancelFunc // ends the fetch loop, then the workers
	abort     context.CancelFunc // cancels in-flight deliveries
	wg        sync.WaitGroup     // fetch loop and workers
	stopOnce  sync.Once
}

// startRunner opens the consumer of sub and starts its loop. b.mu must be
// held.
func (b *Bridge) startRunner(ctx context.Context, sub Subscription, f Filter) error {
	cons, err := b.opts.Engine.Consume(ctx, mesh.ConsumerConfig{
		Topic:       sub.Topic,
		Group:       sub.Group,
		MaxInFlight: sub.MaxInFlight,
		AckWait:     b.opts.AckWait,
		MaxDeliver:  0, // the bridge decides when to dead-letter
		StartAtNew:  true,
	})
	if err != nil {
		return fmt.Errorf("consuming topic %q for subscription %q: %w", sub.Topic, sub.ID, err)
	}
	r := &runner{
		b:        b,
		sub:      sub,
		filter:   f,
		consumer: cons,
		dedup:    newDedupCache(b.opts.DedupSize),
		logger:   b.logger.With("subscription", sub.ID, "topic", sub.Topic),
	}
	if b.metrics != nil {
		r.mo = newMeasureOpts(attribute.String(AttrTopic, sub.Topic), attribute.String(AttrSubscription, sub.ID))
	}
	fetchCtx, stopFetch := context.WithCancel(context.Background())
	sendCtx, abort := context.WithCancel(context.Background())
	r.stopFetch, r.abort = stopFetch, abort
	msgs := make(chan mesh.Message)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(msgs)
		r.fetch(fetchCtx, msgs)
	}()
	for range sub.MaxInFlight {
		r.wg.Go(func() {
			for msg := range msgs {
				r.handle(sendCtx, msg)
			}
		})
	}
	b.runners[sub.ID] = r
	return nil
}

// stop ends the loop: no new events are taken, in-flight deliveries may
// finish until ctx is done, then they are cancelled and their events naked.
// It reports whether deliveries had to be cancelled.
func (r *runner) stop(ctx context.Context) (forced bool) {
	r.stopOnce.Do(func() {
		r.stopFetch()
		done := make(chan struct{})
		go func() { r.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			forced = true
			r.abort()
			<-done
		}
		r.abort()
		if err := r.consumer.Close(); err != nil {
			r.logger.Warn("closing consumer", "error", err)
		}
	})
	return forced
}

func (r *runner) fetch(ctx context.Context, out chan<- mesh.Message) {
	failures := 0
	for {
		msg, err := r.consumer.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, mesh.ErrClosed) {
				r.logger.Warn("consumer closed; subscription stops delivering", "error", err)
				return
			}
			failures++
			wait := r.b.opts.Backoff.Delay(failures)
			r.logger.Warn("receiving from the mesh", "error", err, "retry_in", wait)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		failures = 0
		select {
		case out <- msg:
		case <-ctx.Done():
			r.settle(msg, "nak", func(c context.Context) error { return msg.Nak(c, 0) })
			return
		}
	}
}

// handle delivers one event and settles it with the mesh.
func (r *runner) handle(ctx context.Context, msg mesh.Message) {
	e := msg.Event()
	if e == nil || !r.filter.Match(e) {
		r.settle(msg, "ack", msg.Ack)
		r.inc(filteredCounter)
		return
	}
	key := dedupKey(e)
	if r.dedup.contains(key) {
		// Delivered and acked before: a redelivery or a republish.
		r.settle(msg, "ack", msg.Ack)
		return
	}
	sctx, send, span := r.startDelivery(ctx, e, msg.Attempt())
	start := time.Now()
	err := r.b.opts.Sender.Send(sctx, &r.sub, send)
	if span != nil {
		var spanErr error
		if err != nil {
			spanErr = errors.New(r.redact(err.Error())) // the sink URL may carry credentials
		}
		EndSpan(span, spanErr)
	}
	if err == nil {
		r.dedup.add(key)
		r.settle(msg, "ack", msg.Ack)
		if m := r.b.metrics; m != nil {
			m.deliveryDuration.Record(context.Background(), time.Since(start).Seconds(), r.mo.record...)
			m.delivered.Add(context.Background(), 1, r.mo.add...)
		}
		return
	}
	if ctx.Err() != nil {
		// Stopping: hand the event back without counting a failure.
		r.settle(msg, "nak", func(c context.Context) error { return msg.Nak(c, 0) })
		return
	}
	attempt := msg.Attempt()
	class, after := Classify(err)
	if class == Permanent || attempt >= r.sub.MaxAttempts {
		r.deadLetter(msg, err, attempt)
		return
	}
	delay := max(r.b.opts.Backoff.Delay(attempt), after)
	r.logger.Debug("delivery failed, retrying", "event_id", e.ID(), "attempt", attempt, "retry_in", delay, "error", r.redact(err.Error()))
	r.settle(msg, "nak", func(c context.Context) error { return msg.Nak(c, delay) })
	r.inc(retriedCounter)
}

// deadLetter gives up on msg (see DeadLetter) and counts it.
func (r *runner) deadLetter(msg mesh.Message, cause error, attempt int) {
	if DeadLetter(r.b.opts.Engine, r.logger, msg, "subscription "+r.sub.ID, r.sub.DeadLetterTopic, r.redact(cause.Error()), r.b.opts.Backoff.Delay(attempt)) {
		r.inc(deadLetteredCounter)
	}
}

func (r *runner) settle(msg mesh.Message, what string, f func(context.Context) error) {
	Settle(r.logger, what, f)
}

// redact removes the sink URL (which may carry credentials) from an error
// text that goes to logs and to the dead-letter topic.
func (r *runner) redact(s string) string {
	if r.sub.Sink != "" {
		s = strings.ReplaceAll(s, r.sub.Sink, "<sink>")
	}
	if u, err := url.Parse(r.sub.Sink); err == nil && u.RawQuery != "" {
		s = strings.ReplaceAll(s, u.RawQuery, "<redacted>")
	}
	return s
}

// inc adds one to c, one of r.b.metrics' counters, if there are metrics.
func (r *runner) inc(c func(*metrics) metric.Int64Counter) {
	if m := r.b.metrics; m != nil {
		c(m).Add(context.Background(), 1, r.mo.add...)
	}
}

func filteredCounter(m *metrics) metric.Int64Counter     { return m.filtered }
func retriedCounter(m *metrics) metric.Int64Counter      { return m.retried }
func deadLetteredCounter(m *metrics) metric.Int64Counter { return m.deadLettered }

func dedupKey(e *event.Event) string { return e.Source() + " " + e.ID() }

// dedupCache remembers the source+id of recently acked events of one
// subscription.
type dedupCache struct {
	c *lru.Cache[string, struct{}]
}

func newDedupCache(size int) *dedupCache {
	c, err := lru.New[string, struct{}](size)
	if err != nil {
		panic(err) // only for size <= 0, which New rules out
	}
	return &dedupCache{c: c}
}

func (d *dedupCache) contains(key string) bool { return d.c.Contains(key) }
func (d *dedupCache) add(key string)           { d.c.Add(key, struct{}{}) }
