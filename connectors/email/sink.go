package email

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SinkTask    = (*Task)(nil)
	_ connectors.Initializer = (*Task)(nil)
)

// Task sends the events of each batch as mails, one after the other, over
// one SMTP connection that it keeps between batches.
type Task struct {
	s   *settings
	log *slog.Logger

	mu   sync.Mutex // guards sess; held by Put and Stop
	sess *session   // nil: not connected
}

// Init takes the task's logger.
func (t *Task) Init(tc connectors.TaskContext) { t.log = tc.Logger() }

// Start prepares the templates and TLS settings; it connects at the first
// Put.
func (t *Task) Start(_ context.Context, cfg connectors.Config) error {
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	s, errs := parseConfig(cfg)
	if len(errs) > 0 {
		return &connectors.ValidationError{Fields: errs}
	}
	t.s = s
	return nil
}

// Stop ends the SMTP session with QUIT.
func (t *Task) Stop(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closeSession(true)
	return nil
}

// Put sends each event as one mail. An event whose mail cannot be made,
// or that the server refuses with a 5xx reply, fails for good; a 4xx reply
// or a connection lost while sending fails it for a retry; a server that
// cannot be reached fails the rest of the batch as unavailable.
func (t *Task) Put(ctx context.Context, events []event.Event) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	failed := map[int]error{}
	now := time.Now()
	for i := range events {
		err := ctx.Err()
		if err == nil {
			err = t.send(ctx, &events[i], now)
		}
		if err == nil {
			continue
		}
		if errors.Is(err, bridge.ErrUnavailable) || ctx.Err() != nil {
			if i == 0 {
				return err
			}
			for j := i; j < len(events); j++ {
				failed[j] = err
			}
			break
		}
		failed[i] = err
	}
	if len(failed) == 0 {
		return nil
	}
	return &connectors.PartialError{Failed: failed}
}

// send makes the mail of e and sends it, classified as bridge/outcome.go
// says. A connection that was good before but is gone now (the server
// closed it while idle, or after a number of mails) is replaced, and the
// mail sent again, once.
func (t *Task) send(ctx context.Context, e *event.Event, now time.Time) error {
	m, err := t.s.build(e, now)
	if err != nil {
		return bridge.PermanentError(err)
	}
	for {
		fresh := t.sess == nil
		if fresh {
			sess, err := t.s.dial(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return bridge.UnavailableError(err, 0)
			}
			t.log.Debug("connected to the SMTP server", "addr", t.s.addr, "tls", t.s.mode)
			t.sess = sess
		}
		err := t.sess.send(ctx, m, t.s.timeout)
		if err == nil {
			return nil
		}
		var lost *lostError
		isLost := errors.As(err, &lost)
		if isLost || t.sess.broken {
			t.closeSession(false)
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case !isLost:
			return classifyReply(err)
		case fresh:
			return bridge.RetryError(err, 0)
		}
		t.log.Debug("SMTP connection lost; reconnecting", "error", err)
	}
}

// closeSession ends the session, if any.
func (t *Task) closeSession(polite bool) {
	if t.sess != nil {
		t.sess.close(polite)
		t.sess = nil
	}
}

// classifyReply classifies a refused command: a refusal of the session
// (authentication or encryption required, credentials refused) holds the
// batch until the configuration or the server changes; any other 5xx
// refuses this mail for good; 4xx and the rest are worth a retry.
func classifyReply(err error) error {
	var re *replyError
	if errors.As(err, &re) {
		switch {
		case re.code == 454, re.code == 530, re.code == 534, re.code == 535, re.code == 538:
			return bridge.UnavailableError(err, 0)
		case re.code >= 500:
			return bridge.PermanentError(err)
		}
	}
	return bridge.RetryError(err, 0)
}
