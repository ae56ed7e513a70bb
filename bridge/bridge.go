package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshd/meshd/mesh"
)

// Errors of the subscription API, checked with errors.Is.
var (
	ErrSubscriptionNotFound = errors.New("subscription not found")
	ErrSubscriptionExists   = errors.New("subscription already exists")
	// ErrSubscriptionChanged is a lost race: the subscription changed
	// (through this sidecar or another) after it was read, or is not at the
	// revision the caller named.
	ErrSubscriptionChanged = errors.New("subscription changed meanwhile")
	// ErrSharedGroup refuses to replay a subscription whose consumer group
	// other subscriptions share: they would receive the replay too.
	ErrSharedGroup = errors.New("consumer group shared with other subscriptions")
	// ErrInvalidReplay wraps a message saying what is wrong with a
	// replay's start.
	ErrInvalidReplay = errors.New("invalid replay")
	// ErrInvalidSubscription wraps a message naming the bad field.
	ErrInvalidSubscription = errors.New("invalid subscription")
	// ErrNoSender is returned when subscriptions must run but Options.Sender
	// is nil.
	ErrNoSender = errors.New("bridge has no Sender to deliver subscriptions")
)

// Defaults of Options.
const (
	DefaultDedupSize          = 10000
	DefaultSubscriptionBucket = "meshd-subscriptions"
)

// Bridge moves events between endpoints and the mesh: it validates and
// publishes, and runs the delivery loops of subscriptions.
//
// Lock order: Bridge.mu, then Bridge.kvMu. Runners take no bridge locks;
// their dedup caches lock internally and call nothing back. The goroutine
// that follows the subscription bucket (live.go) takes mu for each change;
// Stop waits for it without holding mu.
type Bridge struct {
	opts    Options
	logger  *slog.Logger
	metrics *metrics                        // nil without a Meter
	tracer  trace.Tracer                    // nil without a Tracer
	topics  ReadCache[string, *measureOpts] // validated topics

	mu        sync.Mutex         // guards running, runners, watch*; serialises subscription changes
	running   bool               // between Start and Stop
	runners   map[string]*runner // by subscription id, while running
	watchStop func()             // ends following the bucket; set while running
	watchDone chan struct{}      // closed when following has ended

	kvMu sync.Mutex // guards kv; taken after mu
	kv   mesh.KV    // subscription bucket, opened lazily
}

// New returns a Bridge; call Start to run persisted subscriptions.
func New(opts Options) (*Bridge, error) {
	if opts.Engine == nil {
		return nil, errors.New("bridge: Options.Engine is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DedupSize <= 0 {
		opts.DedupSize = DefaultDedupSize
	}
	if opts.AckWait <= 0 {
		opts.AckWait = mesh.DefaultAckWait
	}
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = DefaultBackoff
	}
	if opts.SubscriptionBucket == "" {
		opts.SubscriptionBucket = DefaultSubscriptionBucket
	}
	b := &Bridge{opts: opts, logger: opts.Logger, tracer: opts.Tracer, runners: map[string]*runner{}}
	b.topics.Max = maxCachedTopics
	if opts.Meter != nil {
		m, err := newMetrics(opts.Meter)
		if err != nil {
			return nil, fmt.Errorf("creating metric instruments: %w", err)
		}
		if dc, ok := opts.Engine.(mesh.DuplicateCounter); ok {
			if err := observeDuplicates(opts.Meter, dc); err != nil {
				return nil, fmt.Errorf("creating metric instruments: %w", err)
			}
		}
		b.metrics = m
	}
	return b, nil
}

// Publish validates every event, then stores them all on topic. An invalid
// event anywhere publishes nothing and returns *InvalidEventError. Engine
// failures wrap mesh.ErrUnavailable; a bad topic wraps mesh.ErrInvalidTopic.
func (b *Bridge) Publish(ctx context.Context, topic string, events []*event.Event) error {
	for i, e := range events {
		if err := Validate(e); err != nil {
			if ie, ok := err.(*InvalidEventError); ok {
				ie.Index = i
			}
			return err
		}
	}
	tm, err := b.topicOpts(topic)
	if err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	if b.tracer != nil {
		return b.publishTraced(ctx, topic, events, func(ctx context.Context) error {
			return b.publish(ctx, topic, tm, events)
		})
	}
	return b.publish(ctx, topic, tm, events)
}

// publish stores events on topic and measures it.
func (b *Bridge) publish(ctx context.Context, topic string, tm *measureOpts, events []*event.Event) error {
	if b.metrics == nil {
		if err := b.opts.Engine.Publish(ctx, topic, events); err != nil {
			return wrapEngineError(topic, err)
		}
		return nil
	}
	start := time.Now()
	if err := b.opts.Engine.Publish(ctx, topic, events); err != nil {
		return wrapEngineError(topic, err)
	}
	b.metrics.publishDuration.Record(ctx, time.Since(start).Seconds(), tm.record...)
	b.metrics.published.Add(ctx, int64(len(events)), tm.add...)
	return nil
}

// wrapEngineError keeps the engine's error in the chain and adds
// mesh.ErrUnavailable to everything but a bad topic or an event too large,
// so endpoints answer 503 for any other failure to store.
func wrapEngineError(topic string, err error) error {
	if errors.Is(err, mesh.ErrInvalidTopic) || errors.Is(err, mesh.ErrTooLarge) || errors.Is(err, mesh.ErrUnavailable) {
		return fmt.Errorf("publishing to %q: %w", topic, err)
	}
	return fmt.Errorf("publishing to %q: %w: %w", topic, mesh.ErrUnavailable, err)
}
