package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
)

// The operator's view on the admin port (docs/operations.md): topics,
// subscription status and pause/resume, dead letters and their re-drive,
// health in detail, the dashboard's snapshot and the dashboard itself
// (ui.go). Every route is on the admin mux, behind its authentication.

// opsTimeout bounds the mesh requests of one status call.
const opsTimeout = 10 * time.Second

func (s *Sidecar) mountOps(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/topics", s.topicsHandler)
	mux.HandleFunc("GET /v1/subscriptions", s.subscriptionsHandler)
	mux.HandleFunc("GET /v1/subscriptions/{id}/status", s.subscriptionStatusHandler)
	mux.HandleFunc("PUT /v1/subscriptions/{id}/pause", s.pauseHandler(true))
	mux.HandleFunc("PUT /v1/subscriptions/{id}/resume", s.pauseHandler(false))
	mux.HandleFunc("GET /v1/deadletters", s.deadLetterTopicsHandler)
	mux.HandleFunc("GET /v1/deadletters/{topic}", s.deadLettersHandler)
	mux.HandleFunc("POST /v1/deadletters/{topic}/redrive", s.redriveHandler)
	mux.HandleFunc("GET /v1/health", s.healthHandler)
	mux.HandleFunc("GET /v1/overview", s.overviewHandler)
	s.mountUI(mux)
}

// opsFail answers err as a problem, logging what the caller cannot fix.
func (s *Sidecar) opsFail(w http.ResponseWriter, r *http.Request, err error) {
	var p problem.Problem
	switch {
	case errors.Is(err, bridge.ErrInvalidRedrive), errors.Is(err, errBadQuery):
		p = problem.New(problem.CodeInvalidRequest, err.Error())
	case errors.Is(err, bridge.ErrNotSupported):
		p = problem.New(problem.CodeConflict, err.Error())
	default:
		p = problem.FromError(err)
		if p.Code == problem.CodeInternal || p.Code == problem.CodeMeshUnavailable {
			s.logger.Warn("admin API", "method", r.Method, "path", r.URL.Path, "error", err)
		}
	}
	p.Instance = r.URL.Path
	problem.Write(w, p)
}

var errBadQuery = errors.New("invalid query")

// TopicView is a topic in GET /v1/topics.
type TopicView struct {
	mesh.TopicInfo
	// Published counts the events this sidecar stored on the topic since
	// it started (its API, MQTT inbound and source connectors); Rate is
	// their number per second over the last minute.
	Published float64 `json:"published"`
	Rate      float64 `json:"rate"`
}

func (s *Sidecar) topicsHandler(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), opsTimeout)
	defer cancel()
	topics, err := s.topicViews(ctx, s.gatherCounters())
	if err != nil {
		s.opsFail(w, r, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, topics)
}

func (s *Sidecar) topicViews(ctx context.Context, c counters) ([]TopicView, error) {
	ts, ok := s.engine.(mesh.TopicStats)
	if !ok {
		return nil, fmt.Errorf("listing topics: %w", bridge.ErrNotSupported)
	}
	infos, err := ts.Topics(ctx)
	if err != nil {
		return nil, err
	}
	published := c[metricPublished]
	now := time.Now()
	s.ops.rates.observe(now, published)
	out := make([]TopicView, 0, len(infos))
	seen := map[string]bool{}
	for _, ti := range infos {
		seen[ti.Name] = true
		out = append(out, TopicView{TopicInfo: ti, Published: published[ti.Name], Rate: s.ops.rates.rate(now, ti.Name, published[ti.Name])})
	}
	for name, n := range published { // published here, all expired since
		if !seen[name] {
			out = append(out, TopicView{TopicInfo: mesh.TopicInfo{Name: name}, Published: n, Rate: s.ops.rates.rate(now, name, n)})
		}
	}
	slices.SortFunc(out, func(a, b TopicView) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SubscriptionView is a subscription with where its delivery stands.
type SubscriptionView struct {
	ID              string `json:"id"`
	Topic           string `json:"topic"`
	Group           string `json:"group"`
	Sink            string `json:"sink"` // without credentials or query
	DeadLetterTopic string `json:"deadLetterTopic,omitempty"`
	MaxAttempts     int    `json:"maxAttempts"`
	bridge.SubscriptionState
	// State is RUNNING, PAUSED, HOLDING (the sink cannot be reached),
	// STOPPED (no delivery loop here) or FAILED (stored, cannot run).
	State string `json:"state"`
	// Backlog is Pending + Unacked: events of the topic the subscription
	// has not settled yet.
	Backlog     uint64 `json:"backlog"`
	Pending     uint64 `json:"pending"`
	Unacked     int    `json:"unacked"`
	Redelivered int    `json:"redeliveries"`
	// GroupError says why the group position is not known.
	GroupError string `json:"groupError,omitempty"`
	// Counters since this sidecar started.
	Delivered    float64 `json:"delivered"`
	Retried      float64 `json:"retried"`
	DeadLettered float64 `json:"deadLettered"`
	Dropped      float64 `json:"dropped"`
}

func (s *Sidecar) subscriptionsHandler(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), opsTimeout)
	defer cancel()
	views, err := s.subscriptionViews(ctx, s.gatherCounters())
	if err != nil {
		s.opsFail(w, r, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, views)
}

func (s *Sidecar) subscriptionViews(ctx context.Context, c counters) ([]SubscriptionView, error) {
	subs, err := s.bridge.ListSubscriptions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]SubscriptionView, len(subs))
	for i, sub := range subs {
		out[i] = s.subscriptionView(ctx, sub, c)
	}
	return out, nil
}

func (s *Sidecar) subscriptionStatusHandler(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), opsTimeout)
	defer cancel()
	sub, err := s.bridge.GetSubscription(ctx, r.PathValue("id"))
	if err != nil {
		s.opsFail(w, r, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, s.subscriptionView(ctx, sub, s.gatherCounters()))
}

func (s *Sidecar) subscriptionView(ctx context.Context, sub bridge.Subscription, c counters) SubscriptionView {
	v := SubscriptionView{
		ID: sub.ID, Topic: sub.Topic, Group: sub.Group, Sink: redactSink(sub.Sink),
		DeadLetterTopic: sub.DeadLetterTopic, MaxAttempts: sub.MaxAttempts,
		Delivered: c[metricDelivered][sub.ID], Retried: c[metricRetried][sub.ID],
		DeadLettered: c[metricDeadLettered][sub.ID], Dropped: c[metricDropped][sub.ID],
	}
	if v.Group == "" {
		v.Group = v.ID
	}
	st, ok := s.bridge.SubscriptionState(sub.ID)
	v.SubscriptionState = st
	v.Paused = v.Paused || sub.Paused
	switch {
	case v.Paused:
		v.State = "PAUSED"
	case !ok:
		if _, err := bridge.ValidateSubscription(sub); err != nil {
			v.State, v.LastError = "FAILED", err.Error()
		} else {
			v.State = "STOPPED"
		}
	case st.Holding:
		v.State = "HOLDING"
	case st.Running:
		v.State = "RUNNING"
	default:
		v.State = "STOPPED"
	}
	if gs, ok := s.engine.(mesh.GroupStats); ok {
		gi, err := gs.GroupInfo(ctx, sub.Topic, v.Group)
		switch {
		case err == nil:
			v.Pending, v.Unacked, v.Redelivered = gi.Pending, gi.Unacked, gi.Redelivered
			v.Backlog = gi.Pending + uint64(max(gi.Unacked, 0))
		case errors.Is(err, mesh.ErrGroupNotFound):
			v.GroupError = "no consumer group yet"
		default:
			v.GroupError = "the mesh did not tell the group's position"
			s.logger.Debug("reading a subscription's group", "subscription", sub.ID, "error", err)
		}
	}
	return v
}

// redactSink is a sink URL without user info and query, which may carry
// credentials.
func redactSink(sink string) string {
	u, err := url.Parse(sink)
	if err != nil {
		return "<unparsable sink>"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	u.Fragment = ""
	return u.String()
}

func (s *Sidecar) pauseHandler(pause bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f := s.bridge.ResumeSubscription
		if pause {
			f = s.bridge.PauseSubscription
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		sub, err := f(ctx, r.PathValue("id"))
		if err != nil {
			s.opsFail(w, r, err)
			return
		}
		problem.WriteJSON(w, http.StatusOK, s.subscriptionView(ctx, sub, s.gatherCounters()))
	}
}

// DeadLetterTopic is a topic that subscriptions, sink connectors or MQTT
// outbound routes dead-letter to, with who writes to it.
type DeadLetterTopic struct {
	Topic   string   `json:"topic"`
	Events  uint64   `json:"events"`
	Writers []string `json:"writers"` // deliveryby values: subscription/<id>, connector/<name>, mqtt/<link>
}

func (s *Sidecar) deadLetterTopicsHandler(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), opsTimeout)
	defer cancel()
	out, err := s.deadLetterTopics(ctx, nil)
	if err != nil {
		s.opsFail(w, r, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, out)
}

// deadLetterTopics lists the dead-letter topics configured here, with the
// events they hold (from topics when given, else asked of the mesh).
func (s *Sidecar) deadLetterTopics(ctx context.Context, topics []TopicView) ([]DeadLetterTopic, error) {
	writers := map[string][]string{}
	subs, err := s.bridge.ListSubscriptions(ctx)
	if err != nil {
		return nil, err
	}
	for _, sub := range subs {
		if sub.DeadLetterTopic != "" {
			writers[sub.DeadLetterTopic] = append(writers[sub.DeadLetterTopic], "subscription/"+sub.ID)
		}
	}
	if s.connectors != nil {
		for _, n := range s.connectors.List() {
			if info, err := s.connectors.Get(n); err == nil {
				if dl, _ := info.Config[connectors.FieldDeadLetter].(string); dl != "" {
					writers[dl] = append(writers[dl], "connector/"+n)
				}
			}
		}
	}
	for _, l := range s.cfg.MQTT {
		for _, o := range l.Outbound {
			if o.DeadLetterTopic != "" {
				writers[o.DeadLetterTopic] = append(writers[o.DeadLetterTopic], "mqtt/"+l.Name)
			}
		}
	}
	if topics == nil && len(writers) > 0 {
		if topics, err = s.topicViews(ctx, s.gatherCounters()); err != nil {
			return nil, err
		}
	}
	events := map[string]uint64{}
	for _, t := range topics {
		events[t.Name] = t.Events
	}
	out := make([]DeadLetterTopic, 0, len(writers))
	for t, ws := range writers {
		slices.Sort(ws)
		out = append(out, DeadLetterTopic{Topic: t, Events: events[t], Writers: slices.Compact(ws)})
	}
	slices.SortFunc(out, func(a, b DeadLetterTopic) int { return strings.Compare(a.Topic, b.Topic) })
	return out, nil
}

// DeadLetterPage is the answer of GET /v1/deadletters/{topic}.
type DeadLetterPage struct {
	Topic  string                   `json:"topic"`
	Events []bridge.DeadLetterEntry `json:"events"`
	// Next is the "from" of the next page; 0: this page reached the end.
	Next uint64 `json:"next,omitempty"`
}

func (s *Sidecar) deadLettersHandler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err := uintParam(q.Get("from"), "from")
	var limit uint64
	if err == nil {
		limit, err = uintParam(q.Get("limit"), "limit")
	}
	if err != nil {
		s.opsFail(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), opsTimeout)
	defer cancel()
	topic := r.PathValue("topic")
	evs, next, err := s.bridge.ListDeadLetters(ctx, topic, from, int(min(limit, bridge.MaxDeadLetterPage)))
	if err != nil {
		s.opsFail(w, r, err)
		return
	}
	if by := q.Get("by"); by != "" {
		evs = slices.DeleteFunc(evs, func(e bridge.DeadLetterEntry) bool { return e.By != by })
	}
	if evs == nil {
		evs = []bridge.DeadLetterEntry{}
	}
	problem.WriteJSON(w, http.StatusOK, DeadLetterPage{Topic: topic, Events: evs, Next: next})
}

func uintParam(v, name string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q: want a number", errBadQuery, name, v)
	}
	return n, nil
}

func (s *Sidecar) redriveHandler(w http.ResponseWriter, r *http.Request) {
	var req bridge.RedriveRequest
	if err := problem.ReadJSON(w, r, &req, 1<<20, problem.CodeInvalidRequest); err != nil {
		s.opsFail(w, r, err)
		return
	}
	// A re-drive is bounded by the client, not by opsTimeout: "all" of a
	// large dead-letter topic takes a while.
	res, err := s.bridge.Redrive(r.Context(), r.PathValue("topic"), req)
	if err != nil {
		s.logger.Warn("re-drive ended early", "topic", r.PathValue("topic"), "redriven", res.Redriven, "error", err)
		s.opsFail(w, r, err)
		return
	}
	s.logger.Info("dead letters re-driven", "topic", r.PathValue("topic"), "redriven", res.Redriven, "deleted", res.Deleted, "skipped", len(res.Skipped))
	problem.WriteJSON(w, http.StatusOK, res)
}

// Health is the answer of GET /v1/health and /readyz?verbose: the mesh
// decides readiness; the rest is reported, never counted against it (a
// failed connector must not take the pod out of service).
type Health struct {
	Status        string            `json:"status"` // "ready" or "not ready"
	Mesh          HealthCheck       `json:"mesh"`
	Endpoints     []HealthCheck     `json:"endpoints"`
	MQTT          []HealthCheck     `json:"mqtt"`
	Connectors    []ConnectorHealth `json:"connectors"`
	Subscriptions []HealthCheck     `json:"subscriptions"`
}

// HealthCheck is one part and its state.
type HealthCheck struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
}

// ConnectorHealth is a connector and its tasks.
type ConnectorHealth struct {
	HealthCheck
	Tasks []HealthCheck `json:"tasks"`
}

func (s *Sidecar) healthHandler(w http.ResponseWriter, r *http.Request) {
	h := s.health(r.Context(), true)
	problem.WriteJSON(w, http.StatusOK, h)
}

// health gathers the states; details (error texts) only when asked, as
// /readyz answers without the admin token.
func (s *Sidecar) health(ctx context.Context, details bool) Health {
	h := Health{Status: "ready", Endpoints: []HealthCheck{}, MQTT: []HealthCheck{}, Connectors: []ConnectorHealth{}, Subscriptions: []HealthCheck{}}
	detail := func(d string) string {
		if details {
			return d
		}
		return ""
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := s.engine.Ready(rctx)
	cancel()
	h.Mesh = HealthCheck{Name: meshDescription(s.cfg), State: "ready"}
	if err != nil {
		h.Status = "not ready"
		h.Mesh.State, h.Mesh.Detail = "unavailable", detail(s.notReadyDetail(err))
	}
	h.Endpoints = append(h.Endpoints,
		HealthCheck{Name: "api", State: "listening", Detail: detail(s.APIAddr())},
		HealthCheck{Name: "admin", State: "listening", Detail: detail(s.AdminAddr())})
	if s.endpoints.ws != nil {
		h.Endpoints = append(h.Endpoints, HealthCheck{Name: "websocket", State: "serving", Detail: detail(s.APIAddr() + "/v1/ws/")})
	}
	for i, l := range s.endpoints.mqtt {
		c := HealthCheck{Name: s.cfg.MQTT[i].Name, State: "disconnected", Detail: detail(brokerHost(s.cfg.MQTT[i].Broker))}
		if l.Connected() {
			c.State = "connected"
		}
		h.MQTT = append(h.MQTT, c)
	}
	if s.connectors != nil {
		for _, n := range s.connectors.List() {
			st, err := s.connectors.Status(n)
			if err != nil {
				continue
			}
			ch := ConnectorHealth{HealthCheck: HealthCheck{Name: n, State: string(st.Connector.State), Detail: detail(firstLine(st.Connector.Trace))}, Tasks: []HealthCheck{}}
			for _, t := range st.Tasks {
				ch.Tasks = append(ch.Tasks, HealthCheck{Name: strconv.Itoa(t.ID), State: string(t.State), Detail: detail(firstLine(t.Trace))})
			}
			h.Connectors = append(h.Connectors, ch)
		}
	}
	if subs, err := s.bridge.ListSubscriptions(ctx); err == nil {
		for _, sub := range subs {
			st, ok := s.bridge.SubscriptionState(sub.ID)
			c := HealthCheck{Name: sub.ID, State: "RUNNING", Detail: detail(st.LastError)}
			switch {
			case sub.Paused || st.Paused:
				c.State = "PAUSED"
			case !ok || !st.Running:
				c.State = "STOPPED"
			case st.Holding:
				c.State = "HOLDING"
			}
			h.Subscriptions = append(h.Subscriptions, c)
		}
	}
	return h
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// brokerHost is the host:port of a broker URL, without credentials.
func brokerHost(broker string) string {
	if u, err := url.Parse(broker); err == nil {
		return u.Host
	}
	return ""
}

// readyVerbose answers /readyz?verbose: the states of every part, without
// error texts (the probe path needs no token), with the status code of
// the mesh alone.
func (s *Sidecar) readyVerbose(w http.ResponseWriter, r *http.Request) {
	h := s.health(r.Context(), false)
	status := http.StatusOK
	if h.Status != "ready" {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	problem.WriteJSON(w, status, h)
}

// workerStatus is a connector's status, or a FAILED one saying why not.
func workerStatus(rt *worker.Runtime, name string) worker.Status {
	st, err := rt.Status(name)
	if err != nil {
		return worker.Status{Name: name, Connector: worker.UnitState{State: worker.StateFailed, Trace: err.Error()}, Tasks: []worker.TaskState{}}
	}
	return st
}
