package bridge

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
)

// openEngine starts a real JetStream server in-process for the test.
func openEngine(t *testing.T) *embedded.Engine {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// fastBackoff keeps retry tests short.
var fastBackoff = Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2, Jitter: 0.1}

func newTestBridge(t *testing.T, eng mesh.Engine, s Sender, mod ...func(*Options)) *Bridge {
	t.Helper()
	opts := Options{Engine: eng, Sender: s, Logger: testLogger(t), Backoff: fastBackoff, AckWait: 2 * time.Second}
	for _, m := range mod {
		m(&opts)
	}
	b, err := New(opts)
	require.NoError(t, err)
	stopCtx := context.WithoutCancel(t.Context())
	t.Cleanup(func() { _ = b.Stop(stopCtx) })
	return b
}

// recorder is a Sender that records deliveries and answers with reply.
type recorder struct {
	mu    sync.Mutex
	calls []call
	reply func(n int, e *event.Event) error // n counts calls from 1
}

type call struct {
	at  time.Time
	sub Subscription
	e   event.Event
}

func (r *recorder) Send(ctx context.Context, sub *Subscription, e *event.Event) error {
	r.mu.Lock()
	r.calls = append(r.calls, call{at: time.Now(), sub: *sub, e: e.Clone()})
	n := len(r.calls)
	reply := r.reply
	r.mu.Unlock()
	if reply != nil {
		return reply(n, e)
	}
	return nil
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

func (r *recorder) count() int { return len(r.snapshot()) }

// spyEngine wraps an engine to watch (and optionally lose) settlements of
// delivered messages.
type spyEngine struct {
	mesh.Engine
	mu       sync.Mutex
	settled  []settlement
	dropAcks int // Acks to swallow (not passed to the engine)
}

type settlement struct {
	op      string // ack, nak, term
	id      string
	attempt int
	delay   time.Duration
}

func (s *spyEngine) Consume(ctx context.Context, cfg mesh.ConsumerConfig) (mesh.Consumer, error) {
	c, err := s.Engine.Consume(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &spyConsumer{Consumer: c, spy: s}, nil
}

func (s *spyEngine) record(op string, m mesh.Message, delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settled = append(s.settled, settlement{op: op, id: m.Event().ID(), attempt: m.Attempt(), delay: delay})
}

func (s *spyEngine) settlements() []settlement {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]settlement(nil), s.settled...)
}

type spyConsumer struct {
	mesh.Consumer
	spy *spyEngine
}

func (c *spyConsumer) Next(ctx context.Context) (mesh.Message, error) {
	m, err := c.Consumer.Next(ctx)
	if err != nil {
		return nil, err
	}
	return &spyMessage{Message: m, spy: c.spy}, nil
}

type spyMessage struct {
	mesh.Message
	spy *spyEngine
}

func (m *spyMessage) Ack(ctx context.Context) error {
	m.spy.mu.Lock()
	drop := m.spy.dropAcks > 0
	if drop {
		m.spy.dropAcks--
	}
	m.spy.mu.Unlock()
	m.spy.record("ack", m.Message, 0)
	if drop {
		return nil // lost on the way: the mesh redelivers after AckWait
	}
	return m.Message.Ack(ctx)
}

func (m *spyMessage) Nak(ctx context.Context, d time.Duration) error {
	m.spy.record("nak", m.Message, d)
	return m.Message.Nak(ctx, d)
}

func (m *spyMessage) Term(ctx context.Context) error {
	m.spy.record("term", m.Message, 0)
	return m.Message.Term(ctx)
}

// readTopic collects what is stored on topic from its beginning.
func readTopic(t *testing.T, eng mesh.Engine, topic string) func() []*event.Event {
	t.Helper()
	if spy, ok := eng.(*spyEngine); ok {
		eng = spy.Engine // keep the reader's acks out of the spy's record
	}
	c, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: topic, Group: "test-reader"})
	require.NoError(t, err)
	var mu sync.Mutex
	var got []*event.Event
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			m, err := c.Next(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, m.Event())
			mu.Unlock()
			_ = m.Ack(ctx)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait(); _ = c.Close() })
	return func() []*event.Event {
		mu.Lock()
		defer mu.Unlock()
		return append([]*event.Event(nil), got...)
	}
}

func mkEvent(t testing.TB, id, typ string) *event.Event {
	e := newEvent(t)
	e.SetID(id)
	e.SetType(typ)
	return e
}
