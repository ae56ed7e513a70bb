package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge/problem"
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

// Path is the path an instance named name serves: its path field, or
// /<name> (the spec's WebhookPath).
func Path(cfg connectors.Config, name string) string {
	if p := cfg.String(FieldPath); p != "" {
		return p
	}
	return "/" + name
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

// EverySidecar makes the task run on every sidecar of the app
// (connectors.EverySidecar): webhooks reach whichever sidecar the load
// balancer picks, and each must serve them.
func (*Endpoint) EverySidecar() {}

// TaskContext is the context Init kept (nil before Init).
func (e *Endpoint) TaskContext() connectors.TaskContext { return e.tc }

// Serve serves h at the config's path (default /<connector name>) until
// Stop.
func (e *Endpoint) Serve(cfg connectors.Config, h http.Handler) error {
	if e.tc == nil {
		return errors.New("webhook source task started without Init")
	}
	e.inbox = NewInbox()
	remove, err := e.tc.Webhooks().Handle(Path(cfg, e.tc.Connector()), h)
	if err != nil {
		return err
	}
	e.remove = remove
	return nil
}

// Submit hands events to Poll and waits until they are stored (see
// Inbox.Submit). An event larger than the mesh stores is refused with a
// 413 problem before anything is handed over.
func (e *Endpoint) Submit(ctx context.Context, events []event.Event, timeout time.Duration) error {
	if limit := e.tc.MaxEventBytes(); limit > 0 {
		for i := range events {
			if size := eventSize(&events[i]); size > limit {
				return problem.New(problem.CodeTooLarge, fmt.Sprintf("the event is about %d bytes with its attributes; the mesh stores at most %d bytes per event", size, limit))
			}
		}
	}
	return e.inbox.Submit(ctx, events, timeout)
}

// eventSize is a generous estimate of e as the mesh stores it: its data,
// and each attribute with room for its header name and framing.
func eventSize(e *event.Event) int64 {
	n := int64(len(e.Data())) + 512 + int64(len(e.ID())+len(e.Source())+len(e.Type())+len(e.Subject())+len(e.DataContentType())+len(e.DataSchema()))
	for name, v := range e.Extensions() {
		n += int64(len(name)+len(fmt.Sprint(v))) + 16
	}
	return n
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
