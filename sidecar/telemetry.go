package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names meshd's tracer and meter.
const instrumentationName = "github.com/meshd/meshd"

// telemetry is the OTLP side of observability, configured only by the
// standard OTEL_* environment variables: traces when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set,
// metrics (the instruments of /metrics) when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set. Endpoint, headers, timeout,
// compression and TLS are read by the exporters, sampling
// (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG) and batching (OTEL_BSP_*,
// OTEL_METRIC_EXPORT_*) by the SDK. Without them there is no exporter and
// no tracer.
type telemetry struct {
	tracerProvider *sdktrace.TracerProvider // nil: no tracing
	tracer         trace.Tracer             // nil: no tracing
	metricReader   sdkmetric.Reader         // nil: no OTLP metrics
	resource       *resource.Resource       // nil when both are off
}

// OpenTelemetry environment variables meshd reads itself.
const (
	envEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint  = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envMetricsEndpoint = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
	envProtocol        = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol  = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envMetricsProtocol = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
	envTracesExporter  = "OTEL_TRACES_EXPORTER"
	envMetricsExporter = "OTEL_METRICS_EXPORTER"
	envSDKDisabled     = "OTEL_SDK_DISABLED"
)

// newTelemetry sets up OTLP export as the environment asks.
func newTelemetry(ctx context.Context, appID string, logger *slog.Logger) (*telemetry, error) {
	t := &telemetry{}
	if strings.EqualFold(os.Getenv(envSDKDisabled), "true") {
		return t, nil
	}
	traces := exporterWanted(envTracesExporter, envTracesEndpoint, logger)
	metrics := exporterWanted(envMetricsExporter, envMetricsEndpoint, logger)
	if !traces && !metrics {
		return t, nil
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", "meshd"),
			attribute.String("meshd.app.id", appID),
		),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override
	)
	if err != nil {
		return nil, fmt.Errorf("building the OpenTelemetry resource: %w", err)
	}
	t.resource = res
	if traces {
		if err := checkProtocol(envTracesProtocol); err != nil {
			return nil, err
		}
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("creating the OTLP trace exporter: %w", err)
		}
		// No sampler option: the SDK reads OTEL_TRACES_SAMPLER(_ARG),
		// default parentbased_always_on.
		t.tracerProvider = sdktrace.NewTracerProvider(
			sdktrace.WithBatcher(exp),
			sdktrace.WithResource(res),
		)
		t.tracer = t.tracerProvider.Tracer(instrumentationName)
	}
	if metrics {
		if err := checkProtocol(envMetricsProtocol); err != nil {
			return nil, errors.Join(err, t.shutdown(ctx))
		}
		exp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("creating the OTLP metric exporter: %w", err), t.shutdown(ctx))
		}
		// Shut down (and flushed) with the MeterProvider it joins.
		t.metricReader = sdkmetric.NewPeriodicReader(exp)
	}
	return t, nil
}

// exporterWanted reports whether an OTLP exporter of one signal is asked
// for: an endpoint is set and OTEL_<SIGNAL>_EXPORTER is unset, "otlp" or
// lists it.
func exporterWanted(exporterEnv, endpointEnv string, logger *slog.Logger) bool {
	if os.Getenv(envEndpoint) == "" && os.Getenv(endpointEnv) == "" {
		return false
	}
	v := strings.TrimSpace(os.Getenv(exporterEnv))
	if v == "" {
		return true
	}
	for name := range strings.SplitSeq(v, ",") {
		switch strings.TrimSpace(name) {
		case "otlp":
			return true
		case "none":
			return false
		}
	}
	logger.Warn("only the otlp exporter is supported; not exporting", "env", exporterEnv, "value", v)
	return false
}

// checkProtocol refuses an OTLP protocol other than http/protobuf, the one
// meshd's exporters speak.
func checkProtocol(signalEnv string) error {
	p := os.Getenv(signalEnv)
	if p == "" {
		p = os.Getenv(envProtocol)
	}
	if p == "" || p == "http/protobuf" {
		return nil
	}
	return fmt.Errorf("%s=%s: meshd exports OTLP over http/protobuf only", signalEnv, p)
}

// metricOptions are the MeterProvider options that add OTLP export.
func (t *telemetry) metricOptions() []sdkmetric.Option {
	if t == nil || t.metricReader == nil {
		return nil
	}
	return []sdkmetric.Option{sdkmetric.WithReader(t.metricReader), sdkmetric.WithResource(t.resource)}
}

// shutdown flushes and stops the exporters. The metric reader is normally
// shut down (and flushed) with the MeterProvider first; this covers a
// start that failed before the MeterProvider took it.
func (t *telemetry) shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.tracerProvider != nil {
		if err := t.tracerProvider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flushing traces: %w", err))
		}
	}
	if t.metricReader != nil {
		if err := t.metricReader.Shutdown(ctx); err != nil && !errors.Is(err, sdkmetric.ErrReaderShutdown) {
			errs = append(errs, fmt.Errorf("flushing metrics: %w", err))
		}
	}
	return errors.Join(errs...)
}
