package natsjs

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/mesh"
)

// asyncWindow is how many async publishes of one batch are outstanding
// before Publish waits for their acks.
const asyncWindow = 1024

// Publish stores events on topic and returns once JetStream acked every
// one. One event is a synchronous request; a batch is encoded first (an
// invalid event publishes nothing), then sent with async publishes in
// windows of asyncWindow and their acks awaited.
func (e *Engine) Publish(ctx context.Context, topic string, events []*event.Event, opts ...mesh.PublishOption) error {
	if e.closed.Load() {
		return fmt.Errorf("publishing to %q: %w", topic, mesh.ErrClosed)
	}
	o := mesh.ApplyPublishOptions(opts)
	subject, err := e.subject(topic)
	if err != nil {
		return fmt.Errorf("publishing: %w", err)
	}
	switch len(events) {
	case 0:
		return nil
	case 1:
		msg, err := e.encode(subject, topic, events[0], o.DedupKey)
		if err == nil {
			err = e.checkSize(msg, 0)
		}
		if err != nil {
			return fmt.Errorf("publishing to %q: %w", topic, err)
		}
		// PublishMsg bounds a ctx without deadline by cfg.PublishTimeout.
		ack, err := e.js.PublishMsg(ctx, msg)
		if err != nil {
			return fmt.Errorf("publishing to %q: %w", topic, e.classify(ctx, err))
		}
		if ack.Duplicate {
			e.countDuplicate(topic)
		}
		return nil
	}
	msgs := make([]*nats.Msg, len(events))
	for i, ev := range events {
		if msgs[i], err = e.encode(subject, topic, ev, o.DedupKey); err == nil {
			err = e.checkSize(msgs[i], i)
		}
		if err != nil {
			return fmt.Errorf("publishing to %q: event %d: %w", topic, i, err)
		}
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, min(len(msgs), asyncWindow))
	for start := 0; start < len(msgs); start += asyncWindow {
		futures = futures[:0]
		for _, m := range msgs[start:min(start+asyncWindow, len(msgs))] {
			f, err := e.js.PublishMsgAsync(m, jetstream.WithStallWait(e.cfg.PublishTimeout))
			if err != nil {
				return fmt.Errorf("publishing to %q: %d of %d events sent: %w", topic, start+len(futures), len(msgs), e.classify(ctx, err))
			}
			futures = append(futures, f)
		}
		for i, f := range futures {
			select {
			case ack := <-f.Ok():
				if ack.Duplicate {
					e.countDuplicate(topic)
				}
			case err := <-f.Err():
				return fmt.Errorf("publishing to %q: event %d: %w", topic, start+i, e.classify(ctx, err))
			case <-ctx.Done():
				return fmt.Errorf("publishing to %q: waiting for %d acks: %w", topic, len(msgs)-start-i, e.classify(ctx, ctx.Err()))
			}
		}
	}
	return nil
}

// encode encodes one event, which the caller validated; a dedup key joins
// its Nats-Msg-Id.
func (e *Engine) encode(subject, topic string, ev *event.Event, dedupKey string) (*nats.Msg, error) {
	if ev == nil || ev.Context == nil {
		return nil, errors.New("nil event")
	}
	m, err := encode(subject, topic, ev, dedupKey)
	if err != nil {
		return nil, fmt.Errorf("invalid event %q: %w", ev.ID(), err)
	}
	e.markOrigin(m)
	return m, nil
}

// MaxEventBytes is the server's max_payload: a message carries the event's
// headers and data.
func (e *Engine) MaxEventBytes() int64 { return e.nc.MaxPayload() }

// checkSize refuses a message the server would refuse, before anything of
// the publish is sent: a batch stores all its events or none.
func (e *Engine) checkSize(m *nats.Msg, index int) error {
	hdr := headerSize(m.Header)
	if hdr > maxHeaderBytes {
		return &mesh.TooLargeError{Index: index, Size: hdr, Limit: maxHeaderBytes, Attributes: true}
	}
	size := len(m.Data) + hdr
	if limit := e.nc.MaxPayload(); int64(size) > limit {
		return &mesh.TooLargeError{Index: index, Size: size, Limit: limit}
	}
	return nil
}

// maxHeaderBytes is JetStream's limit on a message's headers (its error
// 10097): an event's attributes travel there.
const maxHeaderBytes = 64 << 10

// headerSize is the wire size of a NATS header block: "NATS/1.0\r\n",
// "key: value\r\n" per value, and the closing "\r\n".
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// countDuplicate counts a publish JetStream acknowledged as a duplicate.
func (e *Engine) countDuplicate(topic string) {
	c, ok := e.dups.Load(topic)
	if !ok {
		c, _ = e.dups.LoadOrStore(topic, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(1)
}

// Duplicates implements mesh.DuplicateCounter.
func (e *Engine) Duplicates() map[string]int64 {
	out := map[string]int64{}
	e.dups.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}
