package github

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

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

// Task serves the webhook path: each verified delivery becomes one event,
// handed to Poll through the Endpoint; the delivery is answered once the
// mesh stored it.
type Task struct {
	webhook.Endpoint
	secret       []byte
	pingPublish  bool
	source       string
	timeout      time.Duration
	maxBodyBytes int64
}

// Start serves the path on the webhook listener.
func (t *Task) Start(_ context.Context, cfg connectors.Config) error {
	t.secret = []byte(cfg.String(FieldSecret))
	t.pingPublish = cfg.Bool(FieldPingPublish)
	t.source = cfg.String(FieldSource)
	t.timeout = cfg.Duration(FieldTimeout)
	t.maxBodyBytes = cfg.Int(FieldMaxBodyBytes)
	return t.Serve(cfg, http.HandlerFunc(t.serve))
}

// errSignature never says what the request carried.
var errSignature = problem.New(problem.CodeUnauthorized, "missing or wrong "+HeaderSignature+": sign the delivery with the webhook's secret")

func (t *Task) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		problem.Write(w, problem.New(problem.CodeMethodNotAllowed, "GitHub delivers with POST"))
		return
	}
	body, err := cehttp.ReadBody(w, r, t.maxBodyBytes)
	if err != nil {
		problem.Write(w, problem.FromError(err))
		return
	}
	// The signature first: nothing of an unsigned request is parsed.
	if len(t.secret) > 0 && !webhook.CheckSHA256(r.Header.Get(HeaderSignature), body, t.secret) {
		problem.Write(w, errSignature)
		return
	}
	payload, err := payloadOf(r.Header.Get("Content-Type"), body)
	if err != nil {
		code := problem.CodeInvalidRequest
		if errors.Is(err, errUnsupportedType) {
			code = problem.CodeUnsupportedMediaType
		}
		problem.Write(w, problem.New(code, err.Error()))
		return
	}
	e, err := newEvent(r.Header, payload, t.source)
	if err != nil {
		problem.Write(w, problem.New(problem.CodeInvalidRequest, err.Error()))
		return
	}
	if err := bridge.Validate(e); err != nil {
		problem.Write(w, problem.FromError(err))
		return
	}
	if r.Header.Get(HeaderEvent) == "ping" && !t.pingPublish {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := t.Submit(r.Context(), []event.Event{*e}, t.timeout); err != nil {
		problem.Write(w, problem.FromError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
