package sidecar

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"
	collmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshd/meshd/bridge"
)

// otlpReceiver is an in-process OTLP/HTTP (protobuf) collector.
type otlpReceiver struct {
	mu      sync.Mutex
	spans   []*tracepb.Span
	metrics map[string]bool // metric names received
	service string          // service.name of the last trace export
}

func startOTLPReceiver(t *testing.T) (*otlpReceiver, *httptest.Server) {
	rcv := &otlpReceiver{metrics: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		var req colltracepb.ExportTraceServiceRequest
		if !decodeOTLP(t, w, r, &req) {
			return
		}
		rcv.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					rcv.service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				rcv.spans = append(rcv.spans, ss.GetSpans()...)
			}
		}
		rcv.mu.Unlock()
		writeOTLP(w, &colltracepb.ExportTraceServiceResponse{})
	})
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		var req collmetricpb.ExportMetricsServiceRequest
		if !decodeOTLP(t, w, r, &req) {
			return
		}
		rcv.mu.Lock()
		for _, rm := range req.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					rcv.metrics[m.GetName()] = true
				}
			}
		}
		rcv.mu.Unlock()
		writeOTLP(w, &collmetricpb.ExportMetricsServiceResponse{})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return rcv, srv
}

func decodeOTLP(t *testing.T, w http.ResponseWriter, r *http.Request, m proto.Message) bool {
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = proto.Unmarshal(body, m)
	}
	if err != nil {
		t.Errorf("OTLP receiver: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func writeOTLP(w http.ResponseWriter, m proto.Message) {
	b, _ := proto.Marshal(m)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(b)
}

func (r *otlpReceiver) span(name string) *tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.spans {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// unsetenv unsets keys for the test (t.Setenv restores them after).
func unsetenv(t *testing.T, keys ...string) {
	for _, k := range keys {
		t.Setenv(k, "")
		require.NoError(t, os.Unsetenv(k))
	}
}

func startTestSidecar(t *testing.T, sink string) *Sidecar {
	cfg := Defaults()
	cfg.App.ID = "app"
	cfg.Data.Dir = t.TempDir()
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Subscriptions = []bridge.Subscription{{ID: "orders-sink", Topic: "orders", Sink: sink}}
	s, err := Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s
}

func publishBinary(t *testing.T, s *Sidecar, traceparent string) {
	req, err := http.NewRequest(http.MethodPost, "http://"+s.APIAddr()+"/v1/publish/orders", strings.NewReader(`{"n":1}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", "order-1")
	req.Header.Set("Ce-Source", "/shop")
	req.Header.Set("Ce-Type", "order.created")
	req.Header.Set("Ce-Subject", "o-1")
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Less(t, resp.StatusCode, 300, resp.Status)
}

// A publish and its delivery are a parent/child span pair exported over
// OTLP, continuing the publisher's trace, and the sink is handed the
// delivery span's trace context.
func TestTracesExportedOverOTLP(t *testing.T) {
	rcv, collector := startOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
	unsetenv(t, "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
		"OTEL_SDK_DISABLED", envTracesExporter, envMetricsExporter, envProtocol, envTracesEndpoint, envMetricsEndpoint)

	var sinkMu sync.Mutex
	var sinkTraceparent string
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sinkMu.Lock()
		sinkTraceparent = r.Header.Get("Traceparent")
		sinkMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer sink.Close()
	s := startTestSidecar(t, sink.URL)

	const incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	publishBinary(t, s, "00-"+incomingTrace+"-00f067aa0ba902b7-01")

	var pub, del *tracepb.Span
	require.Eventually(t, func() bool {
		pub, del = rcv.span("publish orders"), rcv.span("deliver orders-sink")
		return pub != nil && del != nil
	}, 15*time.Second, 20*time.Millisecond, "publish and deliver spans exported")

	require.Equal(t, incomingTrace, hex.EncodeToString(pub.GetTraceId()))
	require.Equal(t, "00f067aa0ba902b7", hex.EncodeToString(pub.GetParentSpanId()))
	require.Equal(t, tracepb.Span_SPAN_KIND_PRODUCER, pub.GetKind())
	require.Equal(t, pub.GetTraceId(), del.GetTraceId())
	require.True(t, bytes.Equal(pub.GetSpanId(), del.GetParentSpanId()), "deliver is a child of publish")
	require.Equal(t, tracepb.Span_SPAN_KIND_CONSUMER, del.GetKind())
	for _, sp := range []*tracepb.Span{pub, del} {
		require.Equal(t, "order-1", spanAttr(sp, bridge.SpanAttrEventID), sp.GetName())
		require.Equal(t, "/shop", spanAttr(sp, bridge.SpanAttrEventSource))
		require.Equal(t, "order.created", spanAttr(sp, bridge.SpanAttrEventType))
		require.Equal(t, "o-1", spanAttr(sp, bridge.SpanAttrEventSubject))
		require.Equal(t, "orders", spanAttr(sp, bridge.SpanAttrDestination))
	}
	require.Equal(t, "orders-sink", spanAttr(del, bridge.SpanAttrSubscription))

	sinkMu.Lock()
	got := sinkTraceparent
	sinkMu.Unlock()
	require.Equal(t, "00-"+incomingTrace+"-"+hex.EncodeToString(del.GetSpanId())+"-01", got,
		"the sink continues the delivery span")

	rcv.mu.Lock()
	require.Equal(t, "meshd", rcv.service)
	rcv.mu.Unlock()
	require.Eventually(t, func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.metrics[bridge.MetricPublished] && rcv.metrics[bridge.MetricDelivered]
	}, 15*time.Second, 20*time.Millisecond, "the /metrics instruments are exported over OTLP too")
}

// Without OTEL_* variables there is no exporter and no tracer, and the
// bridge leaves events' extensions alone.
func TestNoTelemetryWithoutEnv(t *testing.T) {
	unsetenv(t, envEndpoint, envTracesEndpoint, envMetricsEndpoint)
	tel, err := newTelemetry(t.Context(), "app", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Nil(t, tel.tracer)
	require.Nil(t, tel.tracerProvider)
	require.Nil(t, tel.metricReader)
	require.Empty(t, tel.metricOptions())

	var sinkMu sync.Mutex
	var sinkTraceparent string
	delivered := make(chan struct{}, 1)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sinkMu.Lock()
		sinkTraceparent = r.Header.Get("Traceparent")
		sinkMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		select {
		case delivered <- struct{}{}:
		default:
		}
	}))
	defer sink.Close()
	s := startTestSidecar(t, sink.URL)
	require.Nil(t, s.telemetry.tracer)

	// The bridge itself: Publish leaves the event as it is.
	e := event.New()
	e.SetID("x")
	e.SetSource("/s")
	e.SetType("t")
	e.SetExtension(bridge.ExtTraceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	before := e.Clone()
	require.NoError(t, s.bridge.Publish(t.Context(), "other", []*event.Event{&e}))
	require.Equal(t, before.Extensions(), e.Extensions())

	// The request's traceparent travels unchanged to the sink.
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	publishBinary(t, s, tp)
	select {
	case <-delivered:
	case <-time.After(15 * time.Second):
		t.Fatal("not delivered")
	}
	sinkMu.Lock()
	defer sinkMu.Unlock()
	require.Equal(t, tp, sinkTraceparent)
}

// OTEL_TRACES_SAMPLER is honoured: always_off exports no spans, and the
// trace still reaches the sink, marked not sampled.
func TestTraceSamplerFromEnv(t *testing.T) {
	rcv, collector := startOTLPReceiver(t)
	unsetenv(t, "OTEL_TRACES_SAMPLER_ARG", "OTEL_SDK_DISABLED", envTracesExporter, envProtocol, envTracesEndpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

	got := make(chan string, 1)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Get("Traceparent"):
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer sink.Close()
	s := startTestSidecar(t, sink.URL)
	require.NotNil(t, s.telemetry.tracer)
	require.Nil(t, s.telemetry.metricReader)

	const incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	publishBinary(t, s, "00-"+incomingTrace+"-00f067aa0ba902b7-01")
	var tp string
	select {
	case tp = <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("not delivered")
	}
	require.True(t, strings.HasPrefix(tp, "00-"+incomingTrace+"-"), tp)
	require.True(t, strings.HasSuffix(tp, "-00"), tp)
	require.NoError(t, s.Shutdown(context.Background())) // flushes
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	require.Empty(t, rcv.spans)
}
