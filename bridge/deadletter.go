package bridge

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/mesh"
)

const (
	// settleTimeout bounds an Ack, Nak, Term or dead-letter publish.
	settleTimeout = 10 * time.Second
	// maxDeliveryErrorLen bounds the deliveryerror extension.
	maxDeliveryErrorLen = 500
)

// Settle runs f (an Ack, Nak or Term of a message) with its own timeout, so
// it reaches the mesh even when the work that decided it was cancelled. A
// failure only delays the event (the mesh redelivers after AckWait), so it
// is logged, not returned. Subscriptions and sink connectors share it.
func Settle(logger *slog.Logger, what string, f func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	settleIn(ctx, logger, what, f)
}

// settleIn is Settle within ctx.
func settleIn(ctx context.Context, logger *slog.Logger, what string, f func(context.Context) error) {
	if err := f(ctx); err != nil {
		logger.Warn("settling event with the mesh", "op", what, "error", err)
	}
}

// settleContexts hands out the contexts of Settle for a delivery loop: each
// has its own timeout of at least settleTimeout/2, but one is made only
// when the last is half spent. A context per ack was a timer and some
// 300 bytes per delivered event. Its zero value is ready.
type settleContexts struct {
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc // of ctx; not called: others may hold ctx until its deadline ends it
	renewAt time.Time
}

func (s *settleContexts) get() context.Context {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil || now.After(s.renewAt) {
		s.ctx, s.cancel = context.WithDeadline(context.Background(), now.Add(settleTimeout))
		s.renewAt = now.Add(settleTimeout / 2)
	}
	return s.ctx
}

// DeadLetter gives up on msg. With a topic it publishes a copy of the event,
// the failure recorded in the ExtDeliveryError (reason, truncated) and
// ExtDeliveryAttempts extensions, and then terminates msg; without one it
// terminates msg with a warning. If the publish fails, msg is naked for
// another try after retryDelay, so the event is never lost, and DeadLetter
// returns false. reason must already be free of secrets. by names who
// gives up (ExtDeliveryBy): it is in the copy, and with the event's stream
// sequence its dedup key, so copies of one event from two of them are both
// kept.
func DeadLetter(eng mesh.Engine, logger *slog.Logger, msg mesh.Message, by, topic, reason string, retryDelay time.Duration) (gone bool) {
	e := msg.Event()
	attempt := msg.Attempt()
	reason = truncate(reason, maxDeliveryErrorLen)
	if topic == "" {
		logger.Warn("dropping event after failed delivery (no dead-letter topic)",
			"event_id", e.ID(), "attempts", attempt, "error", reason)
		Settle(logger, "term", msg.Term)
		return true
	}
	dl := e.Clone()
	dl.SetExtension(ExtDeliveryError, reason)
	dl.SetExtension(ExtDeliveryAttempts, int32(min(attempt, 1<<31-1)))
	dl.SetExtension(ExtDeliveryBy, by)
	dl.SetExtension(ExtDeliveryTopic, msg.Topic())
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	// The key names the stored event too: a retry of this dead-lettering
	// is stored once, while the same event stored again (re-driven) and
	// given up on again gets a copy of its own.
	err := eng.Publish(ctx, topic, []*event.Event{&dl}, mesh.WithDedupKey(by+" "+strconv.FormatUint(msg.Seq(), 10)))
	cancel()
	if err != nil {
		logger.Warn("publishing to the dead-letter topic; will retry",
			"event_id", e.ID(), "dead_letter_topic", topic, "error", err, "retry_in", retryDelay)
		Settle(logger, "nak", func(c context.Context) error { return msg.Nak(c, retryDelay) })
		return false
	}
	Settle(logger, "term", msg.Term)
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
