package bridge

// This file is the contract between the bridge and the endpoints
// (protocols/...) and the sidecar. Signatures here are stable; bodies live in
// the other files of the package.

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshd/meshd/mesh"
)

// Options configures a Bridge.
type Options struct {
	Engine mesh.Engine
	Logger *slog.Logger // nil: slog.Default()
	Meter  metric.Meter // nil: no metrics
	// Tracer makes a producer span per Publish and a consumer span per
	// delivery, linked through the events' distributed-tracing extension
	// (traceparent, tracestate). nil: no spans, and events are left alone.
	Tracer trace.Tracer
	// Sender delivers events to subscription sinks (protocols/httpapi provides
	// the HTTP one). Required to run subscriptions.
	Sender Sender
	// DedupSize is the number of recently acked source+id pairs remembered
	// per subscription (default 10000).
	DedupSize int
	// Backoff is the retry schedule of deliveries (zero: DefaultBackoff).
	Backoff Backoff
	// AckWait is how long a delivery may take before the mesh redelivers
	// (default 30s). Must exceed the sender's timeout.
	AckWait time.Duration
	// AppPort is the port of the app next to the sidecar: a subscription
	// sink given as a path ("/events") is delivered to
	// http://127.0.0.1:<AppPort><path>. 0: path sinks are refused.
	AppPort int
	// SubscriptionBucket is the mesh KV bucket subscriptions are kept in
	// (default "meshd-subscriptions"). Sidecars sharing one mesh but not
	// their subscriptions need different buckets.
	SubscriptionBucket string
}

// Subscription is a push subscription in the shape of the CloudEvents
// Subscriptions API, plus meshd's topic, group and retry fields.
type Subscription struct {
	ID    string `json:"id" yaml:"id"`
	Topic string `json:"topic" yaml:"topic"`
	// Group names the consumer group; default: the subscription id. Groups
	// are the app's own: another app's group of the same name is another
	// group.
	Group string `json:"group,omitempty" yaml:"group,omitempty"`
	// Sink is the URL events are POSTed to, or a path ("/events") on the
	// app next to the sidecar (see Options.AppPort).
	Sink string `json:"sink" yaml:"sink"`
	// Protocol is "HTTP" (the default and only one for now).
	Protocol string `json:"protocol,omitempty" yaml:"protocol,omitempty"`
	// ContentMode is "binary" (default) or "structured".
	ContentMode string `json:"contentMode,omitempty" yaml:"contentMode,omitempty"`
	// Filters all must match (CloudEvents Subscriptions API filter dialects).
	Filters []map[string]any `json:"filters,omitempty" yaml:"filters,omitempty"`
	// MaxAttempts is the most deliveries before dead-lettering; 0 (the
	// default) retries for as long as the mesh keeps the event.
	MaxAttempts int `json:"maxAttempts,omitempty" yaml:"maxAttempts,omitempty"`
	// DeadLetterTopic receives events given up on (a permanent failure, or
	// MaxAttempts spent); none: dropped with a warning and counted in
	// meshd_events_dropped_total.
	DeadLetterTopic string `json:"deadLetterTopic,omitempty" yaml:"deadLetterTopic,omitempty"`
	// StartAt is where a new subscription starts reading its topic: "new"
	// (the default: events published after its creation), "earliest" (every
	// event the mesh still keeps), an RFC 3339 time, or a stream sequence.
	// A subscription that exists keeps its position when this changes.
	StartAt string `json:"startAt,omitempty" yaml:"startAt,omitempty"`
	// MaxInFlight bounds concurrent unacked deliveries (default 32).
	MaxInFlight int `json:"maxInFlight,omitempty" yaml:"maxInFlight,omitempty"`
	// Paused subscriptions deliver nothing; their group keeps its position
	// (PauseSubscription, ResumeSubscription). UpdateSubscription keeps it.
	Paused bool `json:"paused,omitempty" yaml:"paused,omitempty"`
}

// Sender delivers one event to a subscription's sink. A nil error acks;
// errors are classified as described in outcome.go.
type Sender interface {
	Send(ctx context.Context, sub *Subscription, e *event.Event) error
}

// SinkChecker is implemented by Senders that refuse some sinks (meshd's own
// listeners, addresses outside an allow-list): a subscription whose sink is
// refused is not created. The Sender still checks each delivery (a name may
// resolve to another address later).
type SinkChecker interface {
	CheckSink(ctx context.Context, sink string) error
}

// InvalidEventError names the event of a request and the attribute that
// made it invalid.
type InvalidEventError struct {
	Index     int    // position in the request's batch, from 0
	Attribute string // e.g. "specversion", "time", an extension name; "" if none applies
	Reason    string
}

func (e *InvalidEventError) Error() string {
	prefix := ""
	if e.Index > 0 {
		prefix = fmt.Sprintf("event %d: ", e.Index)
	}
	if e.Attribute == "" {
		return prefix + e.Reason
	}
	return fmt.Sprintf("%sattribute %q: %s", prefix, e.Attribute, e.Reason)
}

// Extension attributes the bridge adds to dead-lettered events.
const (
	// ExtDeliveryError is why delivery gave up (redacted, truncated).
	ExtDeliveryError = "deliveryerror"
	// ExtDeliveryAttempts is how many deliveries were tried.
	ExtDeliveryAttempts = "deliveryattempts"
	// ExtDeliveryBy names who gave up: "subscription/<id>",
	// "connector/<name>", "mqtt/<link>/<group>", "websocket/<group>".
	ExtDeliveryBy = "deliveryby"
	// ExtDeliveryTopic is the topic the event was delivered from, where a
	// re-drive sends it back.
	ExtDeliveryTopic = "deliverytopic"
)
