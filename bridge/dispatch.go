package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/meshd/meshd/mesh"
)

// runner delivers one subscription: a delivery loop (loop.go) with
// MaxInFlight workers, each sending one event at a time with the Sender.
type runner struct {
	b    *Bridge
	sub  Subscription // normalised; read-only, handed to the Sender
	log  *slog.Logger
	mo   measureOpts // empty without metrics
	loop *Loop
	// rev and data are the stored revision and value it runs (guarded by
	// Bridge.mu).
	rev  uint64
	data []byte
}

// startRunner opens the consumer of sub, stored at rev as data, and starts
// its loop (a paused sub gets a runner without one). b.mu must be held.
func (b *Bridge) startRunner(ctx context.Context, sub Subscription, f Filter, rev uint64, data []byte) error {
	if sub.Paused {
		b.runners[sub.ID] = pausedRunner(b, sub, rev, data) // pause.go
		return nil
	}
	cc, _ := startPosition(sub.StartAt) // validated
	cc.Topic, cc.Group, cc.MaxInFlight, cc.AckWait = sub.Topic, sub.Group, sub.MaxInFlight, b.opts.AckWait
	cc.MaxDeliver = 0 // the loop decides when to dead-letter
	cons, err := b.opts.Engine.Consume(ctx, cc)
	if err != nil {
		return fmt.Errorf("consuming topic %q for subscription %q: %w", sub.Topic, sub.ID, err)
	}
	delivered := sub
	delivered.Sink = b.sinkURL(sub.Sink)
	r := &runner{
		b:    b,
		sub:  delivered,
		log:  b.logger.With("subscription", sub.ID, "topic", sub.Topic),
		rev:  rev,
		data: data,
	}
	if b.metrics != nil {
		r.mo = newMeasureOpts(attribute.String(AttrTopic, sub.Topic), attribute.String(AttrSubscription, sub.ID))
	}
	r.loop = StartLoop(context.Background(), LoopConfig{
		Name:            "subscription/" + sub.ID,
		Engine:          b.opts.Engine,
		Consumers:       []mesh.Consumer{cons},
		Handler:         r.deliver,
		Filter:          f,
		Workers:         sub.MaxInFlight,
		MaxAttempts:     sub.MaxAttempts,
		DeadLetterTopic: sub.DeadLetterTopic,
		DedupSize:       b.opts.DedupSize,
		Backoff:         b.opts.Backoff,
		AckWait:         b.opts.AckWait,
		Logger:          r.log,
		Redact:          r.redact,
		Observer:        subscriptionObserver{r},
	})
	b.runners[sub.ID] = r
	return nil
}

// stop ends the loop: no new events are taken, in-flight deliveries may
// finish until ctx is done, then they are cancelled and their events naked.
// It reports whether deliveries had to be cancelled.
func (r *runner) stop(ctx context.Context) (forced bool) {
	if r.loop == nil { // paused
		return false
	}
	return r.loop.Stop(ctx)
}

// deliver sends the one event of batch to the sink.
func (r *runner) deliver(ctx context.Context, batch []mesh.Message) error {
	msg := batch[0]
	sctx, send, span := r.startDelivery(ctx, msg.Event(), msg.Attempt())
	err := r.b.opts.Sender.Send(sctx, &r.sub, send)
	if span != nil {
		var spanErr error
		if err != nil {
			spanErr = errors.New(r.redact(err.Error())) // the sink URL may carry credentials
		}
		EndSpan(span, spanErr)
	}
	return err
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

// subscriptionObserver counts a subscription's deliveries in the bridge's
// metrics.
type subscriptionObserver struct{ r *runner }

func (o subscriptionObserver) Delivered(n int, took time.Duration) {
	if m := o.r.b.metrics; m != nil {
		m.deliveryDuration.Record(context.Background(), took.Seconds(), o.r.mo.record...)
		m.delivered.Add(context.Background(), int64(n), o.r.mo.add...)
	}
}

func (o subscriptionObserver) Retried(n int) { o.add(func(m *metrics) counter { return m.retried }, n) }
func (o subscriptionObserver) DeadLettered(n int) {
	o.add(func(m *metrics) counter { return m.deadLettered }, n)
}
func (o subscriptionObserver) Dropped(n int) { o.add(func(m *metrics) counter { return m.dropped }, n) }
func (o subscriptionObserver) Filtered(n int) {
	o.add(func(m *metrics) counter { return m.filtered }, n)
}

func (o subscriptionObserver) add(c func(*metrics) counter, n int) {
	if m := o.r.b.metrics; m != nil {
		c(m).Add(context.Background(), int64(n), o.r.mo.add...)
	}
}
