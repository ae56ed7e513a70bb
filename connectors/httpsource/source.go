package httpsource

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/internal/webhook"
)

var (
	_ connectors.SourceTask  = (*Task)(nil)
	_ connectors.Committer   = (*Task)(nil)
	_ connectors.Initializer = (*Task)(nil)
)

// Task serves the webhook path. Its handler hands each request's events to
// Poll through the Endpoint and waits for Commit (stored) or Stop.
type Task struct {
	webhook.Endpoint
	token        []byte
	hmacKey      []byte
	hmacScheme   string
	hmacHeader   string
	tolerance    time.Duration
	eventType    string
	eventSource  types.URIRef
	parser       cehttp.Parser
	timeout      time.Duration
	maxBodyBytes int64
}

// Start serves the path on the webhook listener.
func (t *Task) Start(_ context.Context, cfg connectors.Config) error {
	if t.TaskContext() == nil {
		return errors.New("http-source task started without Init")
	}
	name := t.TaskContext().Connector()
	t.token = []byte(cfg.String(FieldToken))
	t.hmacScheme = cfg.String(FieldHMACScheme)
	t.hmacHeader = cfg.String(FieldHMACHeader)
	t.tolerance = cfg.Duration(FieldHMACTolerance)
	if sec := cfg.String(FieldHMACSecret); sec != "" {
		t.hmacKey = []byte(sec)
		if t.hmacScheme == SchemeStandard {
			key, err := webhook.ParseStandardSecret(sec)
			if err != nil {
				return fmt.Errorf("%s: %w", FieldHMACSecret, err)
			}
			t.hmacKey = key
		}
	}
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
	return t.Serve(cfg, http.HandlerFunc(t.serve))
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
	if err := t.authorize(r.Header, body); err != nil {
		problem.Write(w, problem.New(problem.CodeUnauthorized, err.Error()))
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
	if err := t.Submit(r.Context(), events, t.timeout); err != nil {
		problem.Write(w, problem.FromError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

var errUnauthorized = errors.New("missing or wrong webhook token or signature")

// authorize checks the token and the signature, when configured. Its
// errors never repeat what the request carried.
func (t *Task) authorize(h http.Header, body []byte) error {
	if len(t.token) > 0 && !webhook.CheckToken(h, t.token) {
		return errUnauthorized
	}
	if len(t.hmacKey) == 0 {
		return nil
	}
	if t.hmacScheme == SchemeStandard {
		return webhook.CheckStandard(h, body, t.hmacKey, t.tolerance, time.Now())
	}
	if !webhook.CheckSHA256(h.Get(t.hmacHeader), body, t.hmacKey) {
		return errUnauthorized
	}
	return nil
}

// decode turns a request into events with the app API's codec: batch,
// structured, binary, or a plain body wrapped in an event (whose id is the
// Standard Webhooks message id when there is one, so a sender's retry is
// recognised as the same event).
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
		e := cehttp.Wrap(ct, body, t.eventSource, t.eventType)
		if id := r.Header.Get(webhook.HeaderStandardID); id != "" && t.hmacScheme == SchemeStandard && len(t.hmacKey) > 0 {
			e.SetID(id)
		}
		evs = []*event.Event{e}
	}
	out := make([]event.Event, len(evs))
	for i, e := range evs {
		out[i] = *e
	}
	return out, nil
}
