package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/mesh"
)

// latencyBuckets suit sub-millisecond publishes up to slow subscribers.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

type metrics struct {
	registry *prometheus.Registry
	provider *sdkmetric.MeterProvider
	meter    metric.Meter
	// scrapes counts the /metrics requests being answered: the gauges
	// that ask the mesh refresh only for them (gauges.go).
	scrapes atomic.Int32
}

// newMetrics builds the MeterProvider behind /metrics; extra adds readers
// (OTLP export, telemetry.go).
func newMetrics(extra ...sdkmetric.Option) (*metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, err
	}
	provider := sdkmetric.NewMeterProvider(append([]sdkmetric.Option{
		sdkmetric.WithReader(exp),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: latencyBuckets}},
		)),
	}, extra...)...)
	return &metrics{registry: reg, provider: provider, meter: provider.Meter("github.com/meshd/meshd")}, nil
}

func (m *metrics) shutdown(ctx context.Context) error { return m.provider.Shutdown(ctx) }

func (s *Sidecar) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		problem.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("verbose") {
			s.readyVerbose(w, r) // ops.go
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.engine.Ready(ctx); err != nil {
			s.logger.Debug("not ready", "error", err)
			problem.Write(w, problem.New(problem.CodeMeshUnavailable, s.notReadyDetail(err)))
			return
		}
		problem.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.Handle("GET /metrics", s.metrics.scraping(promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})))
	if s.cfg.Admin.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	s.mountConnectors(mux)
	s.mountOps(mux) // ops.go
	if s.engine != nil && s.bridge != nil {
		s.startOps() // overview.go; Shutdown stops it
	}
	return problemFallback(mux, "the admin API serves /healthz, /readyz, /metrics, /v1/connectors, /v1/connector-plugins, /v1/topics, /v1/subscriptions, /v1/deadletters, /v1/health and the dashboard at /ui/")
}

// notReadyDetail says in one short sentence why the mesh is not ready; the
// engine's error (NATS internals) goes to the debug log.
func (s *Sidecar) notReadyDetail(err error) string {
	switch {
	case errors.Is(err, mesh.ErrClosed):
		return "meshd is shutting down"
	case s.cfg.Mesh.URL != "":
		return "the mesh at " + redactedMeshURL(s.cfg) + " cannot store events now"
	default:
		return "the embedded mesh cannot store events now"
	}
}

// problemFallback answers the requests mux has no handler for — 404, and
// 405 with mux's Allow header — as problem+json like the app API, instead
// of ServeMux's plain text. hint ends the 404 detail.
func problemFallback(mux *http.ServeMux, hint string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" { // a route, or ServeMux's redirect to a clean path
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			allow := rec.header.Get("Allow")
			w.Header().Set("Allow", allow)
			problem.Write(w, problem.New(problem.CodeMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, allow)))
			return
		}
		problem.Write(w, problem.New(problem.CodeNotFound, fmt.Sprintf("no admin API at %s %s; %s", r.Method, r.URL.Path, hint)))
	})
}

// headerRecorder keeps the status and headers of ServeMux's own 404/405
// answers and drops their text.
type headerRecorder struct {
	header http.Header
	status int
}

func (r *headerRecorder) Header() http.Header { return r.header }
func (r *headerRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *headerRecorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return len(p), nil
}
