package bridge

import (
	"context"
	"errors"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Errors of the subscription API, checked with errors.Is.
var (
	ErrSubscriptionNotFound = errors.New("subscription not found")
	ErrSubscriptionExists   = errors.New("subscription already exists")
	// ErrInvalidSubscription wraps a message naming the bad field.
	ErrInvalidSubscription = errors.New("invalid subscription")
)

// Bridge moves events between endpoints and the mesh: it validates and
// publishes, and runs the delivery loops of subscriptions.
type Bridge struct {
	opts Options
}

// New returns a Bridge; call Start to run persisted subscriptions.
func New(opts Options) (*Bridge, error) { panic("unimplemented") }

// Publish validates every event, then stores them all on topic. An invalid
// event anywhere publishes nothing and returns *InvalidEventError. Engine
// failures wrap mesh.ErrUnavailable; a bad topic wraps mesh.ErrInvalidTopic.
func (b *Bridge) Publish(ctx context.Context, topic string, events []*event.Event) error {
	panic("unimplemented")
}

// Start restores the persisted subscriptions and starts their delivery loops.
func (b *Bridge) Start(ctx context.Context) error { panic("unimplemented") }

// Stop ends delivery loops; in-flight deliveries finish or are naked.
func (b *Bridge) Stop(ctx context.Context) error { panic("unimplemented") }

// CreateSubscription validates, persists and starts sub. Errors wrap
// ErrInvalidSubscription (naming the field) or ErrSubscriptionExists.
func (b *Bridge) CreateSubscription(ctx context.Context, sub Subscription) (Subscription, error) {
	panic("unimplemented")
}

// PutSubscription creates sub or replaces the one with its id (used for
// subscriptions declared in the config file).
func (b *Bridge) PutSubscription(ctx context.Context, sub Subscription) (Subscription, error) {
	panic("unimplemented")
}

// GetSubscription returns ErrSubscriptionNotFound for an unknown id.
func (b *Bridge) GetSubscription(ctx context.Context, id string) (Subscription, error) {
	panic("unimplemented")
}

// ListSubscriptions returns every subscription, ordered by id.
func (b *Bridge) ListSubscriptions(ctx context.Context) ([]Subscription, error) {
	panic("unimplemented")
}

// DeleteSubscription stops and removes a subscription and its consumer group.
func (b *Bridge) DeleteSubscription(ctx context.Context, id string) error { panic("unimplemented") }

// Validate checks one event against the CloudEvents spec; errors are
// *InvalidEventError.
func Validate(e *event.Event) error { panic("unimplemented") }
