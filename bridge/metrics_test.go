package bridge

import (
	"context"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/meshd/meshd/mesh"
)

func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

func sumOf(t *testing.T, data metricdata.Aggregation, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	s, ok := data.(metricdata.Sum[int64])
	if !ok {
		return 0 // not recorded yet
	}
	want := attribute.NewSet(attrs...)
	for _, dp := range s.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Value
		}
	}
	return 0
}

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	eng := openEngine(t)
	rec := &recorder{}
	b := newTestBridge(t, eng, rec, func(o *Options) { o.Meter = mp.Meter("meshd") })
	require.NoError(t, b.Start(t.Context()))
	_, err := b.CreateSubscription(t.Context(), Subscription{ID: "s", Topic: "orders", Sink: "http://127.0.0.1:1/x",
		Filters: []map[string]any{{"exact": map[string]any{"type": "keep"}}}})
	require.NoError(t, err)

	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "1", "keep"), mkEvent(t, "2", "drop")}))
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "3", "keep")}))
	// A re-publish inside the duplicate window: acknowledged, not stored,
	// counted.
	require.NoError(t, b.Publish(t.Context(), "orders", []*event.Event{mkEvent(t, "3", "keep")}))
	// Two workers: the filtered event can be counted after both others.
	require.Eventually(t, func() bool {
		got := collect(t, reader)
		return sumOf(t, got[MetricDelivered], attribute.String("topic", "orders"), attribute.String("subscription", "s")) == 2 &&
			sumOf(t, got[MetricFiltered], attribute.String("topic", "orders"), attribute.String("subscription", "s")) > 0
	}, waitFor, tick)

	got := collect(t, reader)
	assert.EqualValues(t, 4, sumOf(t, got[MetricPublished], attribute.String("topic", "orders")), "every event answered as stored")
	assert.EqualValues(t, 1, sumOf(t, got[MetricDuplicates], attribute.String("topic", "orders")), "of which one was a duplicate")
	assert.EqualValues(t, 1, sumOf(t, got[MetricFiltered], attribute.String("topic", "orders"), attribute.String("subscription", "s")))
	ph, ok := got[MetricPublishDuration].(metricdata.Histogram[float64])
	require.True(t, ok)
	require.Len(t, ph.DataPoints, 1)
	assert.EqualValues(t, 3, ph.DataPoints[0].Count)
	dh, ok := got[MetricDeliveryDuration].(metricdata.Histogram[float64])
	require.True(t, ok)
	require.Len(t, dh.DataPoints, 1)
	assert.EqualValues(t, 2, dh.DataPoints[0].Count)
}

// nopEngine stores nothing: it isolates the bridge's own publish cost.
type nopEngine struct{ mesh.Engine }

func (nopEngine) Publish(context.Context, string, []*event.Event, ...mesh.PublishOption) error {
	return nil
}

func benchmarkPublish(b *testing.B, withMetrics bool) {
	opts := Options{Engine: nopEngine{}}
	if withMetrics {
		opts.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())).Meter("meshd")
	}
	br, err := New(opts)
	require.NoError(b, err)
	e := newEvent(b)
	e.SetExtension("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	events := []*event.Event{e}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := br.Publish(ctx, "orders", events); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPublish measures the bridge's overhead per publish (validation,
// topic check, metrics) on an engine that does nothing.
func BenchmarkPublish(b *testing.B) {
	b.Run("no-metrics", func(b *testing.B) { benchmarkPublish(b, false) })
	b.Run("metrics", func(b *testing.B) { benchmarkPublish(b, true) })
}

func TestPublishAllocs(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	br, err := New(Options{Engine: nopEngine{}, Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("meshd")})
	require.NoError(t, err)
	events := []*event.Event{newEvent(t)}
	ctx := context.Background()
	require.NoError(t, br.Publish(ctx, "orders", events)) // warm the topic cache
	allocs := testing.AllocsPerRun(200, func() {
		if err := br.Publish(ctx, "orders", events); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs, "the publish path should not allocate in the bridge")
}
