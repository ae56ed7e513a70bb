package sidecar

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/meshd/meshd/mesh"
)

// Gauges of where deliveries stand, read from the mesh when /metrics is
// scraped: the numbers to alert on (docs/operations.md).
const (
	MetricSubscriptionBacklog = "meshd.subscription.backlog" // gauge {event}; attrs subscription, topic: pending + unacked
	MetricSubscriptionHolding = "meshd.subscription.holding" // gauge; attrs subscription, topic: 1 while its sink cannot be reached
	MetricSubscriptionPaused  = "meshd.subscription.paused"  // gauge; attrs subscription, topic: 1 while paused
	MetricTopicEvents         = "meshd.topic.events"         // gauge {event}; attr topic: events stored
)

// gaugeEvery is how long one reading of the mesh serves the gauges. They
// are read afresh only for a scrape of /metrics: the dashboard and the rate
// sampler gather the registry too, every second and every few seconds, and
// must not cost a request per subscription each time.
const gaugeEvery = 5 * time.Second

type gaugeReading struct {
	at     time.Time
	subs   []subGauge
	topics []mesh.TopicInfo
}

type subGauge struct {
	attrs           metric.MeasurementOption
	backlog         int64
	hasBacklog      bool
	holding, paused int64
}

// registerGauges adds the gauges to the meter behind /metrics.
func (s *Sidecar) registerGauges() error {
	var mu sync.Mutex
	var last gaugeReading
	read := func(ctx context.Context) gaugeReading {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last.at) < gaugeEvery || s.metrics.scrapes.Load() == 0 {
			return last // the dashboard's and the rate sampler's reads reuse the last scrape's
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		last = s.readGauges(ctx)
		return last
	}
	m := s.metrics.meter
	backlog, err1 := m.Int64ObservableGauge(MetricSubscriptionBacklog, metric.WithUnit("{event}"),
		metric.WithDescription("Events of the topic a subscription has not settled yet: pending plus unacked."))
	holding, err2 := m.Int64ObservableGauge(MetricSubscriptionHolding,
		metric.WithDescription("1 while a subscription holds events because its sink cannot be reached."))
	paused, err3 := m.Int64ObservableGauge(MetricSubscriptionPaused,
		metric.WithDescription("1 while a subscription is paused."))
	stored, err4 := m.Int64ObservableGauge(MetricTopicEvents, metric.WithUnit("{event}"),
		metric.WithDescription("Events the mesh stores on a topic."))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return err
	}
	_, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		r := read(ctx)
		for _, sg := range r.subs {
			if sg.hasBacklog {
				o.ObserveInt64(backlog, sg.backlog, sg.attrs)
			}
			o.ObserveInt64(holding, sg.holding, sg.attrs)
			o.ObserveInt64(paused, sg.paused, sg.attrs)
		}
		for _, t := range r.topics {
			o.ObserveInt64(stored, int64(t.Events), metric.WithAttributes(attribute.String("topic", t.Name)))
		}
		return nil
	}, backlog, holding, paused, stored)
	return err
}

func (s *Sidecar) readGauges(ctx context.Context) gaugeReading {
	r := gaugeReading{at: time.Now()}
	if ts, ok := s.engine.(mesh.TopicStats); ok {
		if topics, err := ts.Topics(ctx); err == nil {
			r.topics = topics
		}
	}
	subs, err := s.bridge.ListSubscriptions(ctx)
	if err != nil {
		return r
	}
	gs, _ := s.engine.(mesh.GroupStats)
	for _, sub := range subs {
		sg := subGauge{attrs: metric.WithAttributes(attribute.String("subscription", sub.ID), attribute.String("topic", sub.Topic))}
		st, _ := s.bridge.SubscriptionState(sub.ID)
		if st.Holding {
			sg.holding = 1
		}
		if st.Paused || sub.Paused {
			sg.paused = 1
		}
		if gs != nil {
			group := sub.Group
			if group == "" {
				group = sub.ID
			}
			if gi, err := gs.GroupInfo(ctx, sub.Topic, group); err == nil {
				sg.backlog, sg.hasBacklog = int64(gi.Pending)+int64(gi.Unacked), true
			}
		}
		r.subs = append(r.subs, sg)
	}
	return r
}

// scraping marks the requests of /metrics as scrapes while they are
// answered.
func (m *metrics) scraping(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.scrapes.Add(1)
		defer m.scrapes.Add(-1)
		next.ServeHTTP(w, r)
	})
}
