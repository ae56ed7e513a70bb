package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
)

// A sink's Put is a span "put <connector>" continuing the event's trace,
// and the task sees the span's context in the event.
func TestPutSpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)).Tracer("test")
	var mu sync.Mutex
	var got []event.Event
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	reg := connectors.NewRegistry()
	reg.Register(connectors.Spec{
		Name: "test-sink", Kind: connectors.KindSink,
		New: func() connectors.Connector {
			return &testSink{put: func(evs []event.Event) error { mu.Lock(); defer mu.Unlock(); got = append(got, evs...); return nil }}
		},
	})
	rt, err := worker.New(worker.Options{Engine: eng, Registry: reg, Tracer: tracer, WebhookListen: "127.0.0.1:0"})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() { _ = rt.Stop(context.Background()) })
	_, err = rt.Create(t.Context(), "ts", map[string]any{"connector.type": "test-sink", "topic": "tr", "batch.wait": "10ms"})
	require.NoError(t, err)
	waitTasks(t, rt, "ts", worker.StateRunning)

	e := event.New()
	e.SetID("1")
	e.SetSource("/test")
	e.SetType("t")
	e.SetExtension(bridge.ExtTraceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	require.NoError(t, eng.Publish(t.Context(), "tr", []*event.Event{&e}))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 }, 10*time.Second, 10*time.Millisecond)

	var put *tracetest.SpanStub
	require.Eventually(t, func() bool {
		for _, s := range exp.GetSpans() {
			if s.Name == "put ts" {
				put = &s
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, trace.SpanKindConsumer, put.SpanKind)
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", put.SpanContext.TraceID().String())
	assert.Equal(t, "00f067aa0ba902b7", put.Parent.SpanID().String())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-"+put.SpanContext.SpanID().String()+"-01", got[0].Extensions()[bridge.ExtTraceparent])
}

// testSource polls one record, then nothing.
type testSource struct{ rec connectors.Record }

func (s *testSource) Start(context.Context, connectors.Config) error { return nil }
func (s *testSource) Stop(context.Context) error                     { return nil }
func (s *testSource) NewTask() connectors.Task                       { return &testSourceTask{rec: s.rec} }
func (s *testSource) TaskConfigs(int) ([]connectors.Config, error) {
	return []connectors.Config{{}}, nil
}

type testSourceTask struct {
	rec  connectors.Record
	done bool
}

func (t *testSourceTask) Start(context.Context, connectors.Config) error { return nil }
func (t *testSourceTask) Stop(context.Context) error                     { return nil }
func (t *testSourceTask) Poll(ctx context.Context) ([]connectors.Record, error) {
	if t.done {
		return nil, nil
	}
	t.done = true
	return []connectors.Record{t.rec}, nil
}

// A poll that returned records is a span "poll <connector>", the parent of
// the publish span whose context the stored event carries; empty polls
// make no span.
func TestPollSpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)).Tracer("test")
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	rec := connectors.Record{Event: event.New()}
	rec.Event.SetID("1")
	rec.Event.SetSource("/test")
	rec.Event.SetType("t")
	reg := connectors.NewRegistry()
	reg.Register(connectors.Spec{
		Name: "test-source", Kind: connectors.KindSource,
		New: func() connectors.Connector { return &testSource{rec: rec} },
	})
	rt, err := worker.New(worker.Options{Engine: eng, Registry: reg, Tracer: tracer, WebhookListen: "127.0.0.1:0"})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() { _ = rt.Stop(context.Background()) })
	cons, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: "src", Group: "reader"})
	require.NoError(t, err)
	defer cons.Close()
	_, err = rt.Create(t.Context(), "ps", map[string]any{"connector.type": "test-source", "topic": "src"})
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	m, err := cons.Next(ctx)
	require.NoError(t, err)
	var poll, pub *tracetest.SpanStub
	require.Eventually(t, func() bool {
		for _, s := range exp.GetSpans() {
			switch s.Name {
			case "poll ps":
				poll = &s
			case "publish src":
				pub = &s
			}
		}
		return poll != nil && pub != nil
	}, 10*time.Second, 10*time.Millisecond)
	time.Sleep(3 * idlePollForTest) // a few empty polls
	n := 0
	for _, s := range exp.GetSpans() {
		if s.Name == "poll ps" {
			n++
		}
	}
	assert.Equal(t, 1, n, "empty polls make no span")
	assert.Equal(t, poll.SpanContext.SpanID(), pub.Parent.SpanID())
	assert.Equal(t, "00-"+pub.SpanContext.TraceID().String()+"-"+pub.SpanContext.SpanID().String()+"-01",
		m.Event().Extensions()[bridge.ExtTraceparent])
}

const idlePollForTest = 50 * time.Millisecond
