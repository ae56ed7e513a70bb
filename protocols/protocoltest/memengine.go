package protocoltest

import (
	"context"
	"errors"
	"sync"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/mesh"
)

// MemoryEngine is a mesh.Engine that only stores published events in
// memory, for fuzz targets that run thousands of publishes a second. It
// has no consumers or KV; the real engines are what the suite runs on.
type MemoryEngine struct {
	mu     sync.Mutex
	events map[string][]*event.Event
}

var _ mesh.Engine = (*MemoryEngine)(nil)

var errNotInMemory = errors.New("not supported by MemoryEngine")

// Publish stores the events (all or nothing: it cannot fail part-way).
func (m *MemoryEngine) Publish(_ context.Context, topic string, events []*event.Event, _ ...mesh.PublishOption) error {
	if err := mesh.ValidateTopic(topic); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.events == nil {
		m.events = map[string][]*event.Event{}
	}
	m.events[topic] = append(m.events[topic], events...)
	return nil
}

// Events returns and forgets what was published on topic.
func (m *MemoryEngine) Events(topic string) []*event.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.events[topic]
	delete(m.events, topic)
	return out
}

func (m *MemoryEngine) Consume(context.Context, mesh.ConsumerConfig) (mesh.Consumer, error) {
	return nil, errNotInMemory
}
func (m *MemoryEngine) DeleteGroup(context.Context, string, string) error { return nil }
func (m *MemoryEngine) ResetGroup(context.Context, mesh.ConsumerConfig) error {
	return errNotInMemory
}
func (m *MemoryEngine) KV(context.Context, string) (mesh.KV, error) { return nil, errNotInMemory }

// MaxEventBytes is NATS's default max_payload, like a real engine's.
func (m *MemoryEngine) MaxEventBytes() int64 { return 1 << 20 }

func (m *MemoryEngine) Ready(context.Context) error { return nil }
func (m *MemoryEngine) Close() error                { return nil }
