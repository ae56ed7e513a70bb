package webhook

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/connectors"
)

// FieldPath is the path field every webhook source has.
const FieldPath = "path"

// PathField is the path field of a webhook source's spec.
func PathField() connectors.Field {
	return connectors.Field{Name: FieldPath, Type: connectors.TypeString,
		Description: "Path served on the webhook listener (default /<connector name>)."}
}

// CheckPath is the rule of the path field.
func CheckPath(cfg connectors.Config) []connectors.FieldError {
	if p := cfg.String(FieldPath); p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# ")) {
		return []connectors.FieldError{{Field: FieldPath, Reason: "want an absolute path like /hooks/github"}}
	}
	return nil
}

// Endpoint is what a webhook source task shares with the others: embedded
// in the task, it keeps the task context (Init), serves the task's path on
// the webhook listener (Serve, called from Start) and passes the events its
// handler Submits to Poll, answering once Commit says they are stored.
// The task adds Start and its handler.
type Endpoint struct {
	tc     connectors.TaskContext
	inbox  *Inbox
	remove func()
}

// Init keeps the task context.
func (e *Endpoint) Init(tc connectors.TaskContext) { e.tc = tc }

// TaskContext is the context Init kept (nil before Init).
func (e *Endpoint) TaskContext() connectors.TaskContext { return e.tc }

// Serve serves h at the config's path (default /<connector name>) until
// Stop.
func (e *Endpoint) Serve(cfg connectors.Config, h http.Handler) error {
	if e.tc == nil {
		return errors.New("webhook source task started without Init")
	}
	path := cfg.String(FieldPath)
	if path == "" {
		path = "/" + e.tc.Connector()
	}
	e.inbox = NewInbox()
	remove, err := e.tc.Webhooks().Handle(path, h)
	if err != nil {
		return err
	}
	e.remove = remove
	return nil
}

// Submit hands events to Poll and waits until they are stored (see
// Inbox.Submit).
func (e *Endpoint) Submit(ctx context.Context, events []event.Event, timeout time.Duration) error {
	return e.inbox.Submit(ctx, events, timeout)
}

// Stop leaves the path; requests not stored yet get 503.
func (e *Endpoint) Stop(context.Context) error {
	if e.remove != nil {
		e.remove()
	}
	if e.inbox != nil {
		e.inbox.Close()
	}
	return nil
}

// Poll returns the events of the waiting requests.
func (e *Endpoint) Poll(ctx context.Context) ([]connectors.Record, error) { return e.inbox.Poll(ctx) }

// Commit answers the requests of the last Poll: their events are stored.
func (e *Endpoint) Commit(context.Context, []connectors.Record) error {
	e.inbox.Commit()
	return nil
}
