package worker

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric names; every one has the attribute "connector".
const (
	MetricPublished    = "meshd.connector.events.published"    // source records stored on the mesh
	MetricDelivered    = "meshd.connector.events.delivered"    // sink events acked after Put
	MetricRetried      = "meshd.connector.events.retried"      // sink events naked for a retry
	MetricDeadLettered = "meshd.connector.events.deadlettered" // sink events given up on, stored on the dead-letter topic
	MetricDropped      = "meshd.connector.events.dropped"      // sink events given up on without a dead-letter topic
	MetricFiltered     = "meshd.connector.events.filtered"     // sink events skipped by filters
	MetricTaskFailures = "meshd.connector.task.failures"       // task failures (each followed by a restart)
)

// metrics is nil without a Meter; its methods then do nothing.
type metrics struct {
	publishedC, deliveredC, retriedC, deadLetteredC, droppedC, filteredC, failuresC metric.Int64Counter
}

func newMetrics(m metric.Meter) (*metrics, error) {
	var ms metrics
	var err error
	c := func(name, desc, unit string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var ctr metric.Int64Counter
		ctr, err = m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		return ctr
	}
	ms.publishedC = c(MetricPublished, "Records of source connectors stored on the mesh.", "{event}")
	ms.deliveredC = c(MetricDelivered, "Events written by sink connectors.", "{event}")
	ms.retriedC = c(MetricRetried, "Events a sink connector failed to write, scheduled for a retry.", "{event}")
	ms.deadLetteredC = c(MetricDeadLettered, "Events a sink connector gave up on, stored on its dead-letter topic.", "{event}")
	ms.droppedC = c(MetricDropped, "Events a sink connector gave up on with no dead-letter topic: dropped.", "{event}")
	ms.filteredC = c(MetricFiltered, "Events skipped by a sink connector's filters.", "{event}")
	ms.failuresC = c(MetricTaskFailures, "Connector task failures.", "{failure}")
	if err != nil {
		return nil, err
	}
	return &ms, nil
}

func (m *metrics) add(c metric.Int64Counter, name string, n int) {
	if n == 0 {
		return
	}
	c.Add(context.Background(), int64(n), metric.WithAttributes(attribute.String("connector", name)))
}

func (m *metrics) published(name string, n int) {
	if m != nil {
		m.add(m.publishedC, name, n)
	}
}

func (m *metrics) delivered(name string, n int) {
	if m != nil {
		m.add(m.deliveredC, name, n)
	}
}

func (m *metrics) retried(name string, n int) {
	if m != nil {
		m.add(m.retriedC, name, n)
	}
}

func (m *metrics) deadLettered(name string, n int) {
	if m != nil {
		m.add(m.deadLetteredC, name, n)
	}
}

func (m *metrics) dropped(name string, n int) {
	if m != nil {
		m.add(m.droppedC, name, n)
	}
}

func (m *metrics) filtered(name string, n int) {
	if m != nil {
		m.add(m.filteredC, name, n)
	}
}

func (m *metrics) taskFailed(name string) {
	if m != nil {
		m.add(m.failuresC, name, 1)
	}
}
