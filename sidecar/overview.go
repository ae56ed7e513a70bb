package sidecar

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
)

// The dashboard's snapshot (GET /v1/overview), the counters it is built
// from, and the sampler behind the rates of GET /v1/topics.

// Counters read back from /metrics, by the label that names their owner.
const (
	metricPublished    = "meshd_events_published"    // by topic
	metricDelivered    = "meshd_events_delivered"    // by subscription
	metricRetried      = "meshd_events_retried"      // by subscription
	metricDeadLettered = "meshd_events_deadlettered" // by subscription
	metricDropped      = "meshd_events_dropped"      // by subscription

	metricConnPublished    = "meshd_connector_events_published" // by connector
	metricConnDelivered    = "meshd_connector_events_delivered"
	metricConnRetried      = "meshd_connector_events_retried"
	metricConnDeadLettered = "meshd_connector_events_deadlettered"
)

// counterLabels is the owner label of each counter read back.
var counterLabels = map[string]string{
	metricPublished: "topic", metricDelivered: "subscription", metricRetried: "subscription",
	metricDeadLettered: "subscription", metricDropped: "subscription",
	metricConnPublished: "connector", metricConnDelivered: "connector",
	metricConnRetried: "connector", metricConnDeadLettered: "connector",
}

// counters are values by metric (without _total) and owner.
type counters map[string]map[string]float64

// gatherCounters reads the counters the operator's view shows from the
// registry behind /metrics: the numbers match what Prometheus scrapes.
func (s *Sidecar) gatherCounters() counters {
	out := counters{}
	for name := range counterLabels {
		out[name] = map[string]float64{}
	}
	fams, err := s.metrics.registry.Gather()
	if err != nil {
		s.logger.Debug("reading metrics for the admin API", "error", err)
	}
	for _, f := range fams {
		name := strings.TrimSuffix(f.GetName(), "_total")
		label, ok := counterLabels[name]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					out[name][lp.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// ops is the state of the operator's view: the rate sampler and its
// goroutine, stopped by Shutdown.
type ops struct {
	rates rateKeeper
	stop  context.CancelFunc
	done  chan struct{}
}

// rateEvery is how often the sampler reads the publish counters;
// rateWindow how far back a rate looks.
const (
	rateEvery  = 5 * time.Second
	rateWindow = time.Minute
)

// startOps starts sampling the publish counters so that GET /v1/topics
// has rates from its first call on.
func (s *Sidecar) startOps() {
	if err := s.registerGauges(); err != nil { // gauges.go
		s.logger.Warn("the backlog and topic gauges are not on /metrics", "error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.ops = &ops{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.ops.done)
		t := time.NewTicker(rateEvery)
		defer t.Stop()
		for {
			s.ops.rates.observe(time.Now(), s.gatherCounters()[metricPublished])
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
}

// close stops the sampler and waits for it; nil-safe.
func (o *ops) close() {
	if o == nil {
		return
	}
	o.stop()
	<-o.done
}

// rateKeeper keeps samples of counters over the last rateWindow (and a
// little more) to turn them into rates.
type rateKeeper struct {
	mu      sync.Mutex
	samples []rateSample // oldest first
}

type rateSample struct {
	at   time.Time
	vals map[string]float64
}

// observe records vals unless the last sample is younger than a second.
func (k *rateKeeper) observe(now time.Time, vals map[string]float64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if n := len(k.samples); n > 0 && now.Sub(k.samples[n-1].at) < time.Second {
		return
	}
	cp := make(map[string]float64, len(vals))
	for key, v := range vals {
		cp[key] = v
	}
	k.samples = append(k.samples, rateSample{at: now, vals: cp})
	for len(k.samples) > 2 && now.Sub(k.samples[1].at) >= rateWindow {
		k.samples = k.samples[1:]
	}
}

// rate is (current - the value rateWindow ago, or the oldest sample) /
// elapsed, per second; 0 without a sample a second old.
func (k *rateKeeper) rate(now time.Time, key string, current float64) float64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, s := range k.samples {
		dt := now.Sub(s.at)
		if dt > rateWindow+rateEvery {
			continue
		}
		if dt < time.Second {
			return 0
		}
		return max(0, current-s.vals[key]) / dt.Seconds()
	}
	return 0
}

// Overview is the dashboard's snapshot: everything it shows, in one
// request a second.
type Overview struct {
	Time          time.Time          `json:"time"`
	App           string             `json:"app"`
	Version       string             `json:"version"`
	Health        Health             `json:"health"`
	Topics        []TopicView        `json:"topics"`
	Subscriptions []SubscriptionView `json:"subscriptions"`
	Connectors    []ConnectorView    `json:"connectors"`
	MQTT          []MQTTView         `json:"mqtt"`
	DeadLetters   []DeadLetterTopic  `json:"deadLetters"`
	Errors        []string           `json:"errors,omitempty"` // parts that could not be read
}

// ConnectorView is a connector for the dashboard.
type ConnectorView struct {
	worker.Status
	Plugin          string          `json:"plugin"`
	Topics          []string        `json:"topics"`
	DeadLetterTopic string          `json:"deadLetterTopic,omitempty"`
	Offsets         []worker.Offset `json:"offsets"`
	bridge.LoopStatus
	Published    float64 `json:"published"`
	Delivered    float64 `json:"delivered"`
	Retried      float64 `json:"retried"`
	DeadLettered float64 `json:"deadLettered"`
}

// MQTTView is an MQTT bridge for the dashboard.
type MQTTView struct {
	Name      string          `json:"name"`
	Broker    string          `json:"broker"` // host:port
	Connected bool            `json:"connected"`
	Inbound   []MQTTRouteView `json:"inbound"`
	Outbound  []MQTTRouteView `json:"outbound"`
}

// MQTTRouteView is one route: an MQTT filter or topic template and a mesh
// topic.
type MQTTRouteView struct {
	MQTT  string `json:"mqtt"`
	Topic string `json:"topic"`
}

func (s *Sidecar) overviewHandler(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), opsTimeout)
	defer cancel()
	c := s.gatherCounters()
	o := Overview{Time: time.Now().UTC(), App: s.cfg.App.ID, Version: Version, Health: s.health(ctx, true),
		Topics: []TopicView{}, Subscriptions: []SubscriptionView{}, Connectors: []ConnectorView{}, MQTT: []MQTTView{}, DeadLetters: []DeadLetterTopic{}}
	var err error
	if o.Topics, err = s.topicViews(ctx, c); err != nil {
		o.Topics = []TopicView{}
		o.Errors = append(o.Errors, "topics: "+problem.FromError(err).Detail)
	}
	if o.Subscriptions, err = s.subscriptionViews(ctx, c); err != nil {
		o.Subscriptions = []SubscriptionView{}
		o.Errors = append(o.Errors, "subscriptions: "+problem.FromError(err).Detail)
	}
	if s.connectors != nil {
		for _, n := range s.connectors.List() {
			o.Connectors = append(o.Connectors, s.connectorView(ctx, n, c))
		}
	}
	for i, l := range s.endpoints.mqtt {
		lc := s.cfg.MQTT[i]
		v := MQTTView{Name: lc.Name, Broker: brokerHost(lc.Broker), Connected: l.Connected(), Inbound: []MQTTRouteView{}, Outbound: []MQTTRouteView{}}
		for _, in := range lc.Inbound {
			v.Inbound = append(v.Inbound, MQTTRouteView{MQTT: in.Filter, Topic: in.Topic})
		}
		for _, out := range lc.Outbound {
			v.Outbound = append(v.Outbound, MQTTRouteView{MQTT: out.MQTTTopic, Topic: out.Topic})
		}
		o.MQTT = append(o.MQTT, v)
	}
	if dl, err := s.deadLetterTopics(ctx, o.Topics); err == nil {
		o.DeadLetters = dl
	} else {
		o.Errors = append(o.Errors, "dead letters: "+problem.FromError(err).Detail)
	}
	problem.WriteJSON(w, http.StatusOK, o)
}

func (s *Sidecar) connectorView(ctx context.Context, name string, c counters) ConnectorView {
	v := ConnectorView{Status: workerStatus(s.connectors, name), Topics: []string{}, Offsets: []worker.Offset{},
		Published: c[metricConnPublished][name], Delivered: c[metricConnDelivered][name],
		Retried: c[metricConnRetried][name], DeadLettered: c[metricConnDeadLettered][name]}
	if info, err := s.connectors.Get(name); err == nil {
		v.Plugin, _ = info.Config[connectors.FieldConnectorType].(string)
		v.DeadLetterTopic, _ = info.Config[connectors.FieldDeadLetter].(string)
	}
	if ts, err := s.connectors.Topics(name); err == nil {
		v.Topics = ts
	}
	if offs, err := s.connectors.Offsets(ctx, name); err == nil {
		v.Offsets = offs
	}
	v.LoopStatus, _ = s.connectors.DeliveryStatus(name)
	return v
}
