// Package webhook is what the sources on meshd's public webhook listener
// share (http-source, github-source, chatgpt-source): the Inbox that hands
// each request's events to the task's Poll and answers the request only
// once the mesh stored them, and the checks of who sent a request (a
// shared token, an HMAC-SHA256 signature of the body, a Standard Webhooks
// signature with its timestamp window).
package webhook

import (
	"context"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/connectors"
)

const (
	// pollWait is how long Poll waits for a request.
	pollWait = time.Second
	// maxPollEvents bounds the events one Poll returns (whole requests are
	// never split, so one large batch may exceed it).
	maxPollEvents = 1000
)

// Errors of Inbox.Submit. Each is a problem.Problem (503), ready for
// problem.Write.
var (
	// ErrBusy: the task did not take the events within the timeout (it is
	// still storing earlier ones).
	ErrBusy error = problem.New(problem.CodeMeshUnavailable, "the connector is busy; the events were not stored")
	// ErrNotStored: the mesh did not store the events within the timeout.
	ErrNotStored error = problem.New(problem.CodeMeshUnavailable, "the mesh did not store the events in time")
	// ErrStopped: the source stopped before the mesh stored the events.
	ErrStopped error = problem.New(problem.CodeMeshUnavailable, "the webhook source stopped before the mesh stored the events")
)

// Inbox passes the events of webhook requests to a source task: an HTTP
// handler calls Submit, which blocks until the task's Poll took the events,
// the runtime published them and Commit confirmed it. Poll, Commit and
// Close are called by the task from the runtime's one goroutine; Submit from
// any number of handlers.
type Inbox struct {
	requests chan *pending
	stopped  chan struct{}
	stopOnce sync.Once

	inflight []*pending // requests of the last Poll; Poll/Commit/Close goroutine only
}

// pending is one request waiting for its events to be stored.
type pending struct {
	events []event.Event
	done   chan error // buffered 1
}

// NewInbox returns an open Inbox.
func NewInbox() *Inbox {
	return &Inbox{requests: make(chan *pending), stopped: make(chan struct{})}
}

// Submit hands events to the next Poll and waits until the mesh stored
// them (nil), timeout passed (ErrBusy, ErrNotStored), the inbox closed
// (ErrStopped) or ctx is done (ctx.Err(): the client went away). Events
// must be valid: an invalid one fails the task.
func (b *Inbox) Submit(ctx context.Context, events []event.Event, timeout time.Duration) error {
	if len(events) == 0 {
		return nil
	}
	p := &pending{events: events, done: make(chan error, 1)}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case b.requests <- p:
	case <-timer.C:
		return ErrBusy
	case <-b.stopped:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	// Handed over: the answer comes from Commit or Close, whatever the
	// client does meanwhile.
	select {
	case err := <-p.done:
		return err
	case <-timer.C:
		return ErrNotStored
	}
}

// Poll returns the events of the waiting requests, waiting about a second
// for a first one.
func (b *Inbox) Poll(ctx context.Context) ([]connectors.Record, error) {
	timer := time.NewTimer(pollWait)
	defer timer.Stop()
	var first *pending
	select {
	case first = <-b.requests:
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
		case p := <-b.requests:
			batch = append(batch, p)
			n += len(p.events)
		default:
			break drain
		}
	}
	b.inflight = batch
	recs := make([]connectors.Record, 0, n)
	for _, p := range batch {
		for _, e := range p.events {
			recs = append(recs, connectors.Record{Event: e})
		}
	}
	return recs, nil
}

// Commit answers the requests of the last Poll: their events are stored.
func (b *Inbox) Commit() {
	for _, p := range b.inflight {
		p.done <- nil
	}
	b.inflight = nil
}

// Close refuses new requests and answers the ones not stored yet with
// ErrStopped. Idempotent.
func (b *Inbox) Close() {
	b.stopOnce.Do(func() {
		close(b.stopped)
		for _, p := range b.inflight {
			p.done <- ErrStopped
		}
		b.inflight = nil
	})
}
