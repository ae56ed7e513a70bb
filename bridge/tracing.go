package bridge

import (
	"context"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Extensions of the CloudEvents distributed-tracing extension: W3C trace
// context, https://www.w3.org/TR/trace-context/.
const (
	ExtTraceparent = "traceparent"
	ExtTracestate  = "tracestate"
)

// Span attribute keys (OpenTelemetry semantic conventions for messaging
// and CloudEvents, plus meshd's own).
const (
	SpanAttrEventID          = "cloudevents.event_id"
	SpanAttrEventSource      = "cloudevents.event_source"
	SpanAttrEventType        = "cloudevents.event_type"
	SpanAttrEventSubject     = "cloudevents.event_subject"
	SpanAttrEventSpecVersion = "cloudevents.event_spec_version"
	SpanAttrMessagingSystem  = "messaging.system"
	SpanAttrOperation        = "messaging.operation.type"
	SpanAttrDestination      = "messaging.destination.name"
	SpanAttrConsumerGroup    = "messaging.consumer.group.name"
	SpanAttrBatchCount       = "messaging.batch.message_count"
	SpanAttrSubscription     = "meshd.subscription"
	SpanAttrDeliveryAttempt  = "meshd.delivery.attempt"
)

// traceContext is the W3C propagator the distributed-tracing extension
// carries.
var traceContext propagation.TraceContext

// extCarrier reads and writes the distributed-tracing extension of an
// event as a propagation.TextMapCarrier.
type extCarrier struct{ e *event.Event }

func (c extCarrier) Get(key string) string {
	v, ok := extensionMap(c.e)[key]
	if !ok {
		return ""
	}
	s, _ := v.(string)
	return s
}

func (c extCarrier) Set(key, value string) { c.e.SetExtension(key, value) }

func (c extCarrier) Keys() []string { return []string{ExtTraceparent, ExtTracestate} }

// extensionMap returns e's extension map itself (Event.Extensions copies).
func extensionMap(e *event.Event) map[string]any {
	switch c := e.Context.(type) {
	case *event.EventContextV1:
		return c.Extensions
	case *event.EventContextV03:
		return c.Extensions
	case nil:
		return nil
	default:
		return c.GetExtensions()
	}
}

// ExtractTraceContext returns ctx with the remote span context carried by
// e's distributed-tracing extension as the parent, or ctx unchanged when e
// carries none (or an invalid one).
func ExtractTraceContext(ctx context.Context, e *event.Event) context.Context {
	if e == nil || e.Context == nil {
		return ctx
	}
	if _, ok := extensionMap(e)[ExtTraceparent]; !ok {
		return ctx
	}
	return traceContext.Extract(ctx, extCarrier{e})
}

// InjectTraceContext writes the span context of ctx into e's
// distributed-tracing extension, replacing what was there. Without a valid
// span context e is left alone.
func InjectTraceContext(ctx context.Context, e *event.Event) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || e == nil || e.Context == nil {
		return
	}
	if sc.TraceState().Len() == 0 {
		// The propagator only writes a non-empty tracestate: drop a stale one.
		if m := extensionMap(e); m != nil {
			delete(m, ExtTracestate)
		}
	}
	traceContext.Inject(ctx, extCarrier{e})
}

// EventSpanAttributes are the span attributes naming one event.
func EventSpanAttributes(e *event.Event) []attribute.KeyValue {
	kv := []attribute.KeyValue{
		attribute.String(SpanAttrEventID, e.ID()),
		attribute.String(SpanAttrEventSource, e.Source()),
		attribute.String(SpanAttrEventType, e.Type()),
		attribute.String(SpanAttrEventSpecVersion, e.SpecVersion()),
	}
	if s := e.Subject(); s != "" {
		kv = append(kv, attribute.String(SpanAttrEventSubject, s))
	}
	return kv
}

// BatchSpanOptions parents a span of a batch of events on the trace
// context of the first event that carries one, links the other events'
// trace contexts, and names the single event or counts the batch. It
// returns the parent context to start the span with.
func BatchSpanOptions(ctx context.Context, events []*event.Event) (context.Context, []trace.SpanStartOption) {
	parent := ctx
	parented := false
	var links []trace.Link
	for _, e := range events {
		ec := ExtractTraceContext(context.Background(), e)
		sc := trace.SpanContextFromContext(ec)
		if !sc.IsValid() {
			continue
		}
		if !parented {
			parent = trace.ContextWithRemoteSpanContext(ctx, sc)
			parented = true
			continue
		}
		if !sc.Equal(trace.SpanContextFromContext(parent)) {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	var attrs []attribute.KeyValue
	if len(events) == 1 && events[0] != nil && events[0].Context != nil {
		attrs = EventSpanAttributes(events[0])
	} else {
		attrs = []attribute.KeyValue{attribute.Int(SpanAttrBatchCount, len(events))}
	}
	opts := []trace.SpanStartOption{trace.WithAttributes(attrs...)}
	if len(links) > 0 {
		opts = append(opts, trace.WithLinks(links...))
	}
	return parent, opts
}

// EndSpan records err, if any, on span and ends it.
func EndSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// publishTraced is Publish's engine call inside a producer span "publish
// <topic>", whose context it writes into every event's distributed-tracing
// extension so deliveries continue the trace.
func (b *Bridge) publishTraced(ctx context.Context, topic string, events []*event.Event, publish func(context.Context) error) error {
	parent, opts := BatchSpanOptions(ctx, events)
	opts = append(opts,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String(SpanAttrMessagingSystem, "meshd"),
			attribute.String(SpanAttrOperation, "send"),
			attribute.String(SpanAttrDestination, topic),
		))
	ctx, span := b.tracer.Start(parent, "publish "+topic, opts...)
	for _, e := range events {
		InjectTraceContext(ctx, e)
	}
	err := publish(ctx)
	EndSpan(span, err)
	return err
}

// startDelivery starts the consumer span "deliver <subscription>" of e,
// parented on e's distributed-tracing extension, and returns the event to
// send: a copy of e carrying the delivery span's context, so the sink
// continues the trace. Without a tracer it returns ctx, e and a nil span.
func (r *runner) startDelivery(ctx context.Context, e *event.Event, attempt int) (context.Context, *event.Event, trace.Span) {
	if r.b.tracer == nil {
		return ctx, e, nil
	}
	attrs := append(EventSpanAttributes(e),
		attribute.String(SpanAttrMessagingSystem, "meshd"),
		attribute.String(SpanAttrOperation, "process"),
		attribute.String(SpanAttrDestination, r.sub.Topic),
		attribute.String(SpanAttrConsumerGroup, r.sub.Group),
		attribute.String(SpanAttrSubscription, r.sub.ID),
		attribute.Int(SpanAttrDeliveryAttempt, attempt),
	)
	ctx, span := r.b.tracer.Start(ExtractTraceContext(ctx, e), "deliver "+r.sub.ID,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	if !span.SpanContext().IsValid() {
		return ctx, e, span
	}
	c := e.Clone()
	InjectTraceContext(ctx, &c)
	return ctx, &c, span
}
