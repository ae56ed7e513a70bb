package mqtt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/mesh"
)

// outbound publishes the events of one mesh topic to MQTT: a handler of
// the bridge's delivery loop. Each worker publishes one event and waits for
// the broker's confirmation (the PUBACK for QoS 1) before the loop acks it
// on the mesh; MaxInFlight workers keep that many publishes in flight.
type outbound struct {
	b    *Link
	cfg  Outbound
	tmpl template
}

var errNotConnected = errors.New("the broker connection is down")

// startOutbound opens the consumer of o and starts its delivery loop,
// which ends with ctx.
func (b *Link) startOutbound(ctx context.Context, o Outbound) (*bridge.Loop, error) {
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
	r := &outbound{b: b, cfg: o, tmpl: t}
	return bridge.StartLoop(ctx, bridge.LoopConfig{
		Name:            "mqtt/" + b.cfg.Name + "/" + o.Group,
		Engine:          b.eng,
		Consumers:       []mesh.Consumer{c},
		Start:           r.start,
		Filter:          f,
		Workers:         o.MaxInFlight,
		MaxAttempts:     o.MaxAttempts,
		DeadLetterTopic: o.DeadLetterTopic,
		Backoff:         b.cfg.Backoff,
		AckWait:         b.cfg.AckWait,
		Logger:          b.log.With("topic", o.Topic, "group", o.Group),
	}), nil
}

// start hands one event to the MQTT client (in the order events arrive)
// and returns the wait for the broker's confirmation.
func (r *outbound) start(ctx context.Context, m mesh.Message) func() error {
	ev := m.Event()
	topic, err := r.tmpl.render(ev)
	if err != nil {
		return bridge.Finished(bridge.PermanentError(fmt.Errorf("rendering the MQTT topic: %w", err)))
	}
	payload, err := Encode(ev)
	if err != nil {
		return bridge.Finished(bridge.PermanentError(fmt.Errorf("encoding the event: %w", err)))
	}
	if !r.b.client.IsConnectionOpen() {
		return bridge.Finished(bridge.UnavailableError(errNotConnected, 0))
	}
	tok := r.b.client.Publish(topic, byte(r.cfg.QoS), r.cfg.Retain, payload)
	return func() error {
		timer := time.NewTimer(r.b.cfg.PublishTimeout)
		defer timer.Stop()
		select {
		case <-tok.Done():
		case <-timer.C:
			return bridge.RetryError(fmt.Errorf("no PUBACK within %s", r.b.cfg.PublishTimeout), 0)
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := tok.Error(); err != nil {
			if !r.b.client.IsConnectionOpen() {
				return bridge.UnavailableError(fmt.Errorf("publishing to MQTT: %w", err), 0)
			}
			return fmt.Errorf("publishing to MQTT: %w", err)
		}
		return nil
	}
}
