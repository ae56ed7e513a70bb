package chatbot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/connectors"
)

// Robot is one chat robot of a vendor.
type Robot interface {
	// Prepare builds the message of e. An error is the event's own (a
	// template that fails, a message above the vendor's limit): it
	// dead-letters that event. send posts the message; its errors are
	// classified as bridge/outcome.go says, or are a *BackoffError.
	Prepare(e *event.Event) (send func(ctx context.Context) error, err error)
	// Redact removes what the robot learned and must not show (access
	// tokens) from an error text.
	Redact(text string) string
}

// SendLater is what Prepare returns for the message m, made with err:
// send bound to m, or err (the event's own failure).
func SendLater[M any](m M, err error, send func(ctx context.Context, m M) error) (func(ctx context.Context) error, error) {
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return send(ctx, m) }, nil
}

// BackoffError is the vendor's answer that the robot sends too fast: the
// message was not posted; it and the rest of its batch are held (no
// attempt spent) and the robot sends nothing for After.
type BackoffError struct {
	Err   error
	After time.Duration
}

func (e *BackoffError) Error() string { return e.Err.Error() }
func (e *BackoffError) Unwrap() error { return e.Err }

// Backoff marks err as the vendor's "too fast" answer.
func Backoff(err error, after time.Duration) error { return &BackoffError{Err: err, After: after} }

// errRateLimited is the reason of events held for the rate limit.
var errRateLimited = errors.New("held for the robot's rate limit")

// Sink sends events through one robot, within its rates. An instance
// holds one Sink for all its tasks. Safe for concurrent use.
type Sink struct {
	robot   Robot
	lim     *Limiter
	wait    time.Duration
	backoff time.Duration
	client  *cehttp.Client
}

// NewSink returns the sink of robot under settings s; client is closed
// with it (nil: none).
func NewSink(robot Robot, s Settings, client *cehttp.Client, now func() time.Time) *Sink {
	return &Sink{robot: robot, lim: NewLimiter(s.Rates, now), wait: s.Wait, backoff: s.Backoff, client: client}
}

// Redact masks what the robot must not show in text.
func (s *Sink) Redact(text string) string { return s.robot.Redact(text) }

// Close drops the idle connections.
func (s *Sink) Close() {
	if s.client != nil {
		s.client.Close()
	}
}

// Put sends the events one after the other, in order. An event whose
// message cannot be made fails for good alone. Each message waits for a
// slot of the rate limit; when the next slot is further than rate.wait
// from the start of the batch, the rest of the batch is held (no attempt
// spent) until it. The vendor's "too fast" answer holds that event and
// the rest for the backoff, in order, and the robot sends nothing until
// then; a vendor that cannot be reached holds the rest of the batch.
func (s *Sink) Put(ctx context.Context, log *slog.Logger, events []event.Event) error {
	start := time.Now()
	failed := map[int]error{}
	rest := func(from int, err error) error {
		if from == 0 && len(failed) == 0 {
			return err
		}
		for j := from; j < len(events); j++ {
			failed[j] = err
		}
		return &connectors.PartialError{Failed: failed}
	}
	for i := range events {
		if err := ctx.Err(); err != nil {
			return rest(i, err)
		}
		send, err := s.robot.Prepare(&events[i])
		if err != nil {
			failed[i] = bridge.PermanentError(fmt.Errorf("event %s: %s", events[i].ID(), s.robot.Redact(err.Error())))
			continue
		}
		wait, ok := s.lim.Reserve(max(0, s.wait-time.Since(start)))
		if !ok {
			return rest(i, bridge.UnavailableError(fmt.Errorf("%w: next message allowed in %s", errRateLimited, wait.Round(time.Millisecond)), wait))
		}
		if wait > 0 && !bridge.Sleep(ctx, wait) {
			return rest(i, ctx.Err())
		}
		err = send(ctx)
		switch {
		case err == nil:
			continue
		case ctx.Err() != nil:
			return rest(i, ctx.Err())
		}
		var bo *BackoffError
		if errors.As(err, &bo) {
			after := bo.After
			if after <= 0 {
				after = s.backoff
			}
			s.lim.Block(after)
			text := s.robot.Redact(bo.Err.Error())
			log.Info("the vendor asked the robot to slow down; sending nothing for a while", "wait", after, "answer", text)
			return rest(i, bridge.UnavailableError(fmt.Errorf("%w: the vendor answered %s", errRateLimited, text), after))
		}
		err = s.redact(err)
		if errors.Is(err, bridge.ErrUnavailable) {
			return rest(i, err)
		}
		failed[i] = err
	}
	if len(failed) == 0 {
		return nil
	}
	return &connectors.PartialError{Failed: failed}
}

// redact removes the robot's secrets from err's text, keeping its class.
func (s *Sink) redact(err error) error {
	text := s.robot.Redact(err.Error())
	if text == err.Error() {
		return err
	}
	class, after := bridge.Classify(err)
	return &bridge.DeliveryError{Class: class, RetryAfter: after, Err: errors.New(text)}
}

// NewConnector returns the connector of a chat sink type. Its Sink is
// opened with open (no network I/O there) by the first task that starts,
// with the Guard of that task's context (meshd's rule of which addresses
// may be dialled); its tasks (tasks.max of them) all send through that
// Sink, so they share its rate limit and access token, and a restarted
// task keeps them. Stop closes it; a restarted connector opens a new one.
func NewConnector(open func(cfg connectors.Config, guard *cehttp.Guard) (*Sink, error)) connectors.Connector {
	return &connector{open: open}
}

type connector struct {
	open func(connectors.Config, *cehttp.Guard) (*Sink, error)
	cfg  connectors.Config

	mu   sync.Mutex // guards sink
	sink *Sink
}

func (c *connector) Start(_ context.Context, cfg connectors.Config) error {
	c.cfg = cfg
	return nil
}

// sinkFor returns the connector's Sink, opening it with guard if no task
// did yet.
func (c *connector) sinkFor(guard *cehttp.Guard) (*Sink, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sink == nil {
		if c.cfg == nil {
			return nil, errors.New("the connector is not started")
		}
		sink, err := c.open(c.cfg, guard)
		if err != nil {
			return nil, err
		}
		c.sink = sink
	}
	return c.sink, nil
}

func (c *connector) Stop(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sink != nil {
		c.sink.Close()
		c.sink = nil
	}
	return nil
}

func (c *connector) NewTask() connectors.Task { return &task{c: c} }

func (c *connector) TaskConfigs(maxTasks int) ([]connectors.Config, error) {
	return connectors.EveryTask(c.cfg, max(maxTasks, 1)), nil
}

// task sends through its connector's Sink.
type task struct {
	c     *connector
	log   *slog.Logger
	guard *cehttp.Guard
	sink  *Sink
}

var (
	_ connectors.SinkTask    = (*task)(nil)
	_ connectors.Initializer = (*task)(nil)
)

func (t *task) Init(tc connectors.TaskContext) { t.log, t.guard = tc.Logger(), tc.Guard() }

func (t *task) Start(context.Context, connectors.Config) error {
	sink, err := t.c.sinkFor(t.guard)
	if err != nil {
		return err
	}
	t.sink = sink
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (t *task) Stop(context.Context) error { return nil }

func (t *task) Put(ctx context.Context, events []event.Event) error {
	return t.sink.Put(ctx, t.log, events)
}
