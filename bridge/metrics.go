package bridge

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/meshd/meshd/mesh"
)

// Metric names. Durations are in seconds.
const (
	MetricPublished        = "meshd.events.published"    // counter; attr topic
	MetricDuplicates       = "meshd.events.duplicates"   // counter; attr topic
	MetricPublishDuration  = "meshd.publish.duration"    // histogram; attr topic
	MetricDelivered        = "meshd.events.delivered"    // counter; attrs topic, subscription
	MetricDeliveryDuration = "meshd.delivery.duration"   // histogram; attrs topic, subscription
	MetricRetried          = "meshd.events.retried"      // counter; attrs topic, subscription
	MetricDeadLettered     = "meshd.events.deadlettered" // counter; attrs topic, subscription
	MetricDropped          = "meshd.events.dropped"      // counter; attrs topic, subscription
	MetricFiltered         = "meshd.events.filtered"     // counter; attrs topic, subscription
)

// Metric attribute keys.
const (
	AttrTopic        = "topic"
	AttrSubscription = "subscription"
)

type metrics struct {
	published        metric.Int64Counter
	publishDuration  metric.Float64Histogram
	delivered        metric.Int64Counter
	deliveryDuration metric.Float64Histogram
	retried          metric.Int64Counter
	deadLettered     metric.Int64Counter
	dropped          metric.Int64Counter
	filtered         metric.Int64Counter
}

type counter = metric.Int64Counter

func newMetrics(m metric.Meter) (*metrics, error) {
	var ms metrics
	var err error
	counter := func(name, desc string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit("{event}"))
		return c
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		if err != nil {
			return nil
		}
		var h metric.Float64Histogram
		h, err = m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"))
		return h
	}
	ms.published = counter(MetricPublished, "Events stored on the mesh by publishers.")
	ms.publishDuration = histogram(MetricPublishDuration, "Time for the mesh to store a publish request.")
	ms.delivered = counter(MetricDelivered, "Events delivered to subscription sinks.")
	ms.deliveryDuration = histogram(MetricDeliveryDuration, "Time of successful deliveries to subscription sinks.")
	ms.retried = counter(MetricRetried, "Failed deliveries scheduled for a retry.")
	ms.deadLettered = counter(MetricDeadLettered, "Events given up on and stored on the dead-letter topic.")
	ms.dropped = counter(MetricDropped, "Events given up on with no dead-letter topic: dropped.")
	ms.filtered = counter(MetricFiltered, "Events acked without delivery because the subscription's filters did not match.")
	if err != nil {
		return nil, err
	}
	return &ms, nil
}

// observeDuplicates reports the engine's count of re-publishes it
// acknowledged without storing again (a retry, or another event with the
// same source and id inside the duplicate window), by topic.
func observeDuplicates(m metric.Meter, dc mesh.DuplicateCounter) error {
	_, err := m.Int64ObservableCounter(MetricDuplicates,
		metric.WithDescription("Published events acknowledged but not stored again: the same source and id inside the mesh's duplicate window."),
		metric.WithUnit("{event}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for topic, n := range dc.Duplicates() {
				o.Observe(n, metric.WithAttributes(attribute.String(AttrTopic, topic)))
			}
			return nil
		}))
	return err
}

// measureOpts are pre-built measurement options for one attribute set, so
// recording allocates nothing.
type measureOpts struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

func newMeasureOpts(kvs ...attribute.KeyValue) measureOpts {
	o := metric.WithAttributeSet(attribute.NewSet(kvs...))
	return measureOpts{add: []metric.AddOption{o}, record: []metric.RecordOption{o}}
}

// maxCachedTopics bounds the per-topic cache; topics beyond it are validated
// and measured per call instead.
const maxCachedTopics = 4096

// topicOpts returns the metric options of topic, validating it and
// caching both on first use.
func (b *Bridge) topicOpts(topic string) (*measureOpts, error) {
	return b.topics.Get(topic, func(topic string) (*measureOpts, error) {
		if err := mesh.ValidateTopic(topic); err != nil {
			return nil, err
		}
		o := newMeasureOpts(attribute.String(AttrTopic, topic))
		return &o, nil
	})
}
