package bridge

import (
	"context"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func newTestTracer() (trace.Tracer, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	return tp.Tracer("test"), exp
}

// A batch is one producer span, parented on the first event's trace
// context and linked to the others'; every event then carries the span's
// context.
func TestPublishSpanOfBatch(t *testing.T) {
	tracer, exp := newTestTracer()
	b, err := New(Options{Engine: nopEngine{}, Tracer: tracer})
	require.NoError(t, err)
	e1, e2, e3 := newEvent(t), newEvent(t), newEvent(t)
	e1.SetExtension(ExtTraceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	e1.SetExtension(ExtTracestate, "vendor=1")
	e2.SetExtension(ExtTraceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{e1, e2, e3}))

	spans := exp.GetSpans()
	require.Len(t, spans, 1)
	s := spans[0]
	assert.Equal(t, "publish orders", s.Name)
	assert.Equal(t, trace.SpanKindProducer, s.SpanKind)
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.SpanContext.TraceID().String())
	assert.Equal(t, "00f067aa0ba902b7", s.Parent.SpanID().String())
	require.Len(t, s.Links, 1)
	assert.Equal(t, "0af7651916cd43dd8448eb211c80319c", s.Links[0].SpanContext.TraceID().String())
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + s.SpanContext.SpanID().String() + "-01"
	for _, e := range []*event.Event{e1, e2, e3} {
		assert.Equal(t, want, e.Extensions()[ExtTraceparent])
	}
	assert.Equal(t, "vendor=1", e1.Extensions()[ExtTracestate])
	assert.Equal(t, "vendor=1", e3.Extensions()[ExtTracestate])
}

// Without a traceparent the publish span continues the caller's span.
func TestPublishSpanContinuesContext(t *testing.T) {
	tracer, exp := newTestTracer()
	b, err := New(Options{Engine: nopEngine{}, Tracer: tracer})
	require.NoError(t, err)
	ctx, parent := tracer.Start(context.Background(), "poll")
	e := newEvent(t)
	require.NoError(t, b.Publish(ctx, "orders", []*event.Event{e}))
	parent.End()
	spans := exp.GetSpans()
	require.Len(t, spans, 2)
	assert.Equal(t, parent.SpanContext().SpanID(), spans[0].Parent.SpanID())
	var id string
	for _, kv := range spans[0].Attributes {
		if kv.Key == SpanAttrEventID {
			id = kv.Value.AsString()
		}
	}
	assert.Equal(t, e.ID(), id)
}

// Without a Tracer, Publish leaves events alone.
func TestPublishWithoutTracerLeavesEvents(t *testing.T) {
	b, err := New(Options{Engine: nopEngine{}})
	require.NoError(t, err)
	e := newEvent(t)
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{e}))
	assert.Empty(t, e.Extensions())
}
