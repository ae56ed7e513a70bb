package httpsource

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/meshd/meshd/bridge/cehttp"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SourceTask  = (*Task)(nil)
	_ connectors.Committer   = (*Task)(nil)
	_ connectors.Initializer = (*Task)(nil)
)

const (
	// pollWait is how long Poll waits for a request.
	pollWait = time.Second
	// maxPollEvents bounds the events one Poll returns (whole requests are
	// never split, so one large batch may exceed it).
	maxPollEvents = 1000
)

// Task serves the webhook path. Its handler hands each request's events to
// Poll and waits for Commit (stored) or Stop.
type Task struct {
	tc           connectors.TaskContext
	path         string
	token        []byte
	hmacSecret   []byte
	hmacHeader   string
	eventType    string
	eventSource  types.URIRef
	parser       cehttp.Parser
	timeout      time.Duration
	maxBodyBytes int64

	requests chan *pending
	stopped  chan struct{}
	stopOnce sync.Once
	remove   func()

	inflight []*pending // requests of the last Poll; Poll/Commit/Stop goroutine only
}

// pending is one request waiting for its events to be stored.
type pending struct {
	events []event.Event
	done   chan error // buffered 1
}

var errStopped = errors.New("the webhook source stopped before the mesh stored the events")

// Init keeps the task context.
func (t *Task) Init(tc connectors.TaskContext) { t.tc = tc }

// Start registers the path on the webhook listener.
func (t *Task) Start(_ context.Context, cfg connectors.Config) error {
	if t.tc == nil {
		return errors.New("http-source task started without Init")
	}
	name := t.tc.Connector()
	t.path = cfg.String(FieldPath)
	if t.path == "" {
		t.path = "/" + name
	}
	t.token = []byte(cfg.String(FieldToken))
	t.hmacSecret = []byte(cfg.String(FieldHMACSecret))
	t.hmacHeader = cfg.String(FieldHMACHeader)
	t.eventType = cfg.String(FieldEventType)
	source := cfg.String(FieldEventSource)
	if source == "" {
		source = "/webhooks/" + url.PathEscape(name)
	}
	src := types.ParseURIRef(source)
	if src == nil {
		return fmt.Errorf("%s: %q is not a URI-reference", FieldEventSource, source)
	}
	t.eventSource = *src
	t.timeout = cfg.Duration(FieldTimeout)
	t.maxBodyBytes = cfg.Int(FieldMaxBodyBytes)
	t.requests = make(chan *pending)
	t.stopped = make(chan struct{})
	remove, err := t.tc.Webhooks().Handle(t.path, http.HandlerFunc(t.serve))
	if err != nil {
		return err
	}
	t.remove = remove
	return nil
}

// Stop unregisters the path; requests not stored yet get 503.
func (t *Task) Stop(context.Context) error {
	t.stopOnce.Do(func() {
		if t.stopped != nil {
			close(t.stopped)
		}
		if t.remove != nil {
			t.remove()
		}
		for _, p := range t.inflight {
			p.done <- errStopped
		}
		t.inflight = nil
	})
	return nil
}

// Poll returns the events of the waiting requests.
func (t *Task) Poll(ctx context.Context) ([]connectors.Record, error) {
	timer := time.NewTimer(pollWait)
	defer timer.Stop()
	var first *pending
	select {
	case first = <-t.requests:
	case <-timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	batch := []*pending{first}
	n := len(first.events)
drain:
	for n < maxPollEvents {
		select {
		case p := <-t.requests:
			batch = append(batch, p)
			n += len(p.events)
		default:
			break drain
		}
	}
	t.inflight = batch
	recs := make([]connectors.Record, 0, n)
	for _, p := range batch {
		for _, e := range p.events {
			recs = append(recs, connectors.Record{Event: e})
		}
	}
	return recs, nil
}

// Commit answers the requests of the last Poll: their events are stored.
func (t *Task) Commit(context.Context, []connectors.Record) error {
	for _, p := range t.inflight {
		p.done <- nil
	}
	t.inflight = nil
	return nil
}

func (t *Task) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		problem.Write(w, problem.New(problem.CodeMethodNotAllowed, "send events with POST"))
		return
	}
	body, err := cehttp.ReadBody(w, r, t.maxBodyBytes)
	if err != nil {
		problem.Write(w, problem.FromError(err))
		return
	}
	if !t.authorized(r, body) {
		problem.Write(w, problem.New(problem.CodeUnauthorized, "missing or wrong webhook token or signature"))
		return
	}
	events, err := t.decode(r, body)
	if err != nil {
		problem.Write(w, problem.FromError(err))
		return
	}
	for i := range events {
		if err := bridge.Validate(&events[i]); err != nil {
			var ie *bridge.InvalidEventError
			if errors.As(err, &ie) {
				ie.Index = i
			}
			problem.Write(w, problem.FromError(err))
			return
		}
	}
	if len(events) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	p := &pending{events: events, done: make(chan error, 1)}
	timer := time.NewTimer(t.timeout)
	defer timer.Stop()
	select {
	case t.requests <- p:
	case <-timer.C:
		problem.Write(w, problem.New(problem.CodeMeshUnavailable, "the connector is busy; the events were not stored"))
		return
	case <-t.stopped:
		problem.Write(w, problem.New(problem.CodeMeshUnavailable, errStopped.Error()))
		return
	case <-r.Context().Done():
		return
	}
	select {
	case err := <-p.done:
		if err != nil {
			problem.Write(w, problem.New(problem.CodeMeshUnavailable, err.Error()))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case <-timer.C:
		problem.Write(w, problem.New(problem.CodeMeshUnavailable, "the mesh did not store the events in time"))
	}
}

// authorized checks the token and the HMAC signature, when configured.
func (t *Task) authorized(r *http.Request, body []byte) bool {
	if len(t.token) > 0 {
		got := r.Header.Get(TokenHeader)
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			got = bearer
		}
		if subtle.ConstantTimeCompare([]byte(got), t.token) != 1 {
			return false
		}
	}
	if len(t.hmacSecret) > 0 {
		sig := strings.TrimPrefix(r.Header.Get(t.hmacHeader), "sha256=")
		want, err := hex.DecodeString(sig)
		if err != nil {
			return false
		}
		mac := hmac.New(sha256.New, t.hmacSecret)
		mac.Write(body)
		if !hmac.Equal(mac.Sum(nil), want) {
			return false
		}
	}
	return true
}

// decode turns a request into events with the app API's codec: batch,
// structured, binary, or a plain body wrapped in an event.
func (t *Task) decode(r *http.Request, body []byte) ([]event.Event, error) {
	evs, raw, err := t.parser.Parse(r.Header, body)
	if err != nil {
		return nil, err
	}
	if raw {
		ct := r.Header.Get("Content-Type")
		if ct == "" {
			ct = "application/octet-stream"
		}
		evs = []*event.Event{cehttp.Wrap(ct, body, t.eventSource, t.eventType)}
	}
	out := make([]event.Event, len(evs))
	for i, e := range evs {
		out[i] = *e
	}
	return out, nil
}
