package connectortest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/mesh"
)

// faultyEngine wraps an engine: its publishes can be made to fail, and it
// records the events consumers acked and how many were naked.
type faultyEngine struct {
	mesh.Engine
	failPublish     atomic.Bool
	publishFailures atomic.Int64
	naks            atomic.Int64
	inProgress      atomic.Int64 // events held while the outside system is down

	mu    sync.Mutex
	acked map[string]bool // event ids
}

func newFaultyEngine(e mesh.Engine) *faultyEngine {
	return &faultyEngine{Engine: e, acked: map[string]bool{}}
}

func (f *faultyEngine) Publish(ctx context.Context, topic string, events []*event.Event, opts ...mesh.PublishOption) error {
	if f.failPublish.Load() {
		f.publishFailures.Add(1)
		return mesh.ErrUnavailable
	}
	return f.Engine.Publish(ctx, topic, events, opts...)
}

func (f *faultyEngine) Consume(ctx context.Context, cfg mesh.ConsumerConfig) (mesh.Consumer, error) {
	c, err := f.Engine.Consume(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &trackedConsumer{Consumer: c, f: f}, nil
}

func (f *faultyEngine) ackedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.acked))
	for id := range f.acked {
		out = append(out, id)
	}
	return out
}

type trackedConsumer struct {
	mesh.Consumer
	f *faultyEngine
}

func (c *trackedConsumer) Next(ctx context.Context) (mesh.Message, error) {
	m, err := c.Consumer.Next(ctx)
	if err != nil {
		return nil, err
	}
	return &trackedMessage{Message: m, f: c.f}, nil
}

type trackedMessage struct {
	mesh.Message
	f *faultyEngine
}

func (m *trackedMessage) Ack(ctx context.Context) error {
	err := m.Message.Ack(ctx)
	if err == nil {
		m.f.mu.Lock()
		m.f.acked[m.Event().ID()] = true
		m.f.mu.Unlock()
	}
	return err
}

func (m *trackedMessage) Nak(ctx context.Context, delay time.Duration) error {
	m.f.naks.Add(1)
	return m.Message.Nak(ctx, delay)
}

func (m *trackedMessage) InProgress(ctx context.Context) error {
	m.f.inProgress.Add(1)
	return m.Message.InProgress(ctx)
}
