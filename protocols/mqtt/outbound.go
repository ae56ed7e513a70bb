package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/mesh"
)

// outbound publishes the events of one mesh topic to MQTT. publishLoop
// hands events to paho in order and queues their tokens; confirmLoop waits
// for each token (the PUBACK for QoS 1) and only then acks the event on the
// mesh. At most MaxInFlight events are between the two.
type outbound struct {
	b        *Link
	cfg      Outbound
	log      *slog.Logger
	consumer mesh.Consumer
	filter   bridge.Filter
	tmpl     template
	inflight chan sent
}

type sent struct {
	msg   mesh.Message
	token paho.Token
}

func (b *Link) openOutbound(ctx context.Context, o Outbound) (*outbound, error) {
	f, err := bridge.CompileFilters(o.Filters)
	if err != nil {
		return nil, err
	}
	t, err := parseTemplate(o.MQTTTopic)
	if err != nil {
		return nil, err
	}
	c, err := b.eng.Consume(ctx, mesh.ConsumerConfig{
		Topic:       o.Topic,
		Group:       o.Group,
		MaxInFlight: o.MaxInFlight,
		AckWait:     b.cfg.AckWait,
	})
	if err != nil {
		return nil, err
	}
	return &outbound{
		b:        b,
		cfg:      o,
		log:      b.log.With("topic", o.Topic, "group", o.Group),
		consumer: c,
		filter:   f,
		tmpl:     t,
		inflight: make(chan sent, o.MaxInFlight),
	}, nil
}

func (r *outbound) publishLoop(ctx context.Context) {
	defer close(r.inflight)
	defer r.consumer.Close()
	failures := 0
	for {
		if !r.waitConnected(ctx) {
			return
		}
		msg, err := r.consumer.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, mesh.ErrClosed) {
				return
			}
			failures++
			r.log.Warn("receiving from the mesh", "error", err)
			if !sleep(ctx, bridge.DefaultBackoff.Delay(failures)) {
				return
			}
			continue
		}
		failures = 0
		ev := msg.Event()
		if !r.filter.Match(ev) {
			if err := msg.Ack(ctx); err != nil {
				r.log.Debug("acking a filtered-out event", "error", err)
			}
			continue
		}
		topic, err := r.tmpl.render(ev)
		if err == nil {
			var payload []byte
			if payload, err = Encode(ev); err == nil {
				tok := r.b.client.Publish(topic, byte(r.cfg.QoS), r.cfg.Retain, payload)
				select {
				case r.inflight <- sent{msg: msg, token: tok}:
					continue
				case <-ctx.Done():
					r.giveBack(msg)
					return
				}
			}
		}
		// An event that can never be published: stop its delivery.
		r.log.Error("event cannot be published to MQTT; terminated", "id", ev.ID(), "source", ev.Source(), "error", err)
		if err := msg.Term(ctx); err != nil {
			r.log.Debug("terminating an event", "error", err)
		}
	}
}

// confirmLoop acks each event once the broker confirmed it, in order, and
// hands back those it did not confirm in time.
func (r *outbound) confirmLoop(ctx context.Context) {
	attempt := 0
	for s := range r.inflight {
		ok := s.token.WaitTimeout(r.b.cfg.PublishTimeout)
		if ok && s.token.Error() == nil {
			attempt = 0
			actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.msg.Ack(actx); err != nil {
				r.log.Warn("acking an event the broker confirmed; it may be published again", "id", s.msg.Event().ID(), "error", err)
			}
			cancel()
			continue
		}
		if ctx.Err() != nil {
			r.giveBack(s.msg)
			continue
		}
		attempt++
		err := s.token.Error()
		if err == nil {
			err = fmt.Errorf("no PUBACK within %s", r.b.cfg.PublishTimeout)
		}
		delay := bridge.DefaultBackoff.Delay(attempt)
		r.log.Warn("publishing to MQTT; the mesh redelivers the event", "id", s.msg.Event().ID(), "in", delay, "error", err)
		nctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.msg.Nak(nctx, delay)
		cancel()
	}
}

// giveBack returns an unconfirmed event to the mesh for immediate
// redelivery.
func (r *outbound) giveBack(m mesh.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Nak(ctx, 0); err != nil {
		r.log.Debug("handing back an event", "error", err)
	}
}

// waitConnected blocks until the broker connection is up; false when ctx
// ended first. Publishing while disconnected would only time out.
func (r *outbound) waitConnected(ctx context.Context) bool {
	for !r.b.client.IsConnectionOpen() {
		if !sleep(ctx, 50*time.Millisecond) {
			return false
		}
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
