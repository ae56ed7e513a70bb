// Package mesh defines the durable queue that carries CloudEvents between
// meshd's endpoints, subscribers and connectors.
//
// An Engine stores events per topic, feeds them to durable consumer groups
// (one member of a group receives each event; every group receives every
// event) and keeps a key/value store for offsets and configs. The one real
// implementation is mesh/natsjs; mesh/embedded runs its server in-process.
// Every Engine passes mesh/meshtest.
package mesh

import (
	"context"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Engine is a durable event queue. All methods are safe for concurrent use.
type Engine interface {
	// Publish stores events on topic and returns only once every one of them
	// is stored. The events must be valid (bridge.Validate): the engine
	// only encodes them. Re-publishing an event with the same source and id
	// (and dedup key, see WithDedupKey) inside the engine's duplicate window
	// stores it once. On error some events may have been stored; publishing
	// them again is safe.
	Publish(ctx context.Context, topic string, events []*event.Event, opts ...PublishOption) error

	// Consume opens (creating if needed) the durable consumer for cfg.Group on
	// cfg.Topic. Consumers opened with the same topic and group compete for
	// events; other groups each receive every event.
	Consume(ctx context.Context, cfg ConsumerConfig) (Consumer, error)

	// DeleteGroup removes the durable consumer for group on topic, dropping
	// its position and unacked events. Deleting a missing group is not an error.
	DeleteGroup(ctx context.Context, topic, group string) error

	// ResetGroup starts the group cfg.Group on cfg.Topic over at the start
	// cfg gives a new group (StartSeq, else StartTime, else StartAtNew,
	// else the oldest stored event), creating it if it does not exist. Its
	// position and unacked events are dropped; members open at the time
	// carry on with the reset group (their unsettled messages of before
	// are settled into nothing). A member that creates the group while it
	// is being reset cannot make it start elsewhere.
	ResetGroup(ctx context.Context, cfg ConsumerConfig) error

	// KV opens (creating if needed) the key/value bucket with the given name.
	KV(ctx context.Context, bucket string) (KV, error)

	// Ready reports whether the engine can store events now.
	Ready(ctx context.Context) error

	// MaxEventBytes is the largest event (attributes and data, as stored)
	// the engine carries; a larger one fails Publish with ErrTooLarge.
	MaxEventBytes() int64

	// Close releases the engine. It is idempotent; consumers opened from the
	// engine stop delivering.
	Close() error
}

// DefaultAckWait is how long a delivered event may stay unacked before it
// is delivered again, when a consumer does not say.
const DefaultAckWait = 30 * time.Second

// ConsumerConfig describes a durable consumer group on one topic.
type ConsumerConfig struct {
	Topic string
	Group string
	// MaxInFlight bounds the events delivered and not yet acked, naked or
	// terminated across all members of the group. Default 256.
	MaxInFlight int
	// AckWait is how long a delivered event may stay unacked before it is
	// delivered again. Default 30s.
	AckWait time.Duration
	// MaxDeliver is the most times an event is delivered; 0 means no limit.
	MaxDeliver int
	// StartAtNew makes a group that does not exist yet start with events
	// published after its creation; otherwise it starts at the oldest stored
	// event of the topic. An existing group always resumes where it was.
	StartAtNew bool
	// StartSeq, or else StartTime, makes a group that does not exist yet
	// start at the first event of the topic stored at or after that stream
	// sequence (Message.Seq) or time; they win over StartAtNew.
	StartSeq  uint64
	StartTime time.Time
	// Ephemeral asks for a consumer of its own instead of a member of
	// Group (which is then only a label): it starts at new events, and the
	// engine removes it when it is closed, or soon after its process died.
	// For subscribers that live as long as a connection.
	Ephemeral bool
	// RedeliverFirst is for a group read by one member at a time whose
	// events must stay in order across that member's crash: the events a
	// previous member left unacknowledged (it died holding them) are
	// delivered before any newer one, so the first Next may wait for
	// them to come back (at most AckWait). Without it they come back
	// after AckWait, behind newer events.
	RedeliverFirst bool
}

// DuplicateCounter is implemented by engines that count re-publishes they
// acknowledged without storing again (the same source and id inside the
// duplicate window), for metrics.
type DuplicateCounter interface {
	// Duplicates returns the count so far, by topic.
	Duplicates() map[string]int64
}

// BucketChecker is implemented by engines that can tell whether a
// key/value bucket exists without creating it (Engine.KV creates).
type BucketChecker interface {
	BucketExists(ctx context.Context, bucket string) (bool, error)
}

// Consumer is one member of a consumer group.
type Consumer interface {
	// Next blocks until an event is delivered to this member, ctx is done
	// (ctx.Err() is returned) or the consumer is closed (ErrClosed).
	Next(ctx context.Context) (Message, error)
	// Close stops this member; its unacked events go back to the group after
	// AckWait. Idempotent.
	Close() error
}

// Message is one delivery of an event to a consumer.
type Message interface {
	Event() *event.Event
	Topic() string
	// Seq is the event's position in the store: unique among the stored
	// events of every topic, growing in the order they were stored, and the
	// same on every delivery of the event (a re-publish outside the
	// duplicate window, a dead-letter copy, are other stored events).
	Seq() uint64
	// Attempt is the delivery count of this event in its group, from 1.
	Attempt() int
	// Ack marks the event processed; it is not delivered to the group
	// again. An ack lost on the way (the connection failed) lets the event
	// be delivered again: delivery is at least once.
	Ack(ctx context.Context) error
	// Nak asks for redelivery after delay (0: as soon as possible).
	Nak(ctx context.Context, delay time.Duration) error
	// Term stops delivery of the event to the group for good.
	Term(ctx context.Context) error
	// InProgress resets the AckWait timer for a slow handler.
	InProgress(ctx context.Context) error
}

// KV is a key/value bucket with compare-and-set. Keys are tokens of letters,
// digits and "-_=./" characters.
type KV interface {
	// Get returns ErrKeyNotFound when key has no value.
	Get(ctx context.Context, key string) (Entry, error)
	// Put stores value unconditionally and returns the new revision.
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	// Create stores value only if key has no value (ErrConflict otherwise).
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	// Update stores value only if key is at revision (ErrConflict otherwise).
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Keys lists the keys that have a value, filtered by prefix ("" for all).
	Keys(ctx context.Context, prefix string) ([]string, error)
	// Watch reports the keys that start with prefix ("" for all), from
	// every client of the bucket, on the returned channel in revision
	// order: first the current value of each (and possibly the deletion of
	// keys that have none), then one Change with an empty Key saying the
	// current values are all reported, then every put and delete as it
	// happens. A watch outlives losses of the connection: what changed
	// meanwhile is reported once the storage is reachable again (a key
	// that changed several times at least with its latest value). The
	// channel is closed when ctx is done or the engine is closed. The
	// receiver must keep reading: changes wait for it.
	Watch(ctx context.Context, prefix string) (<-chan Change, error)
}

// Change is a put or a delete of a key, as Watch reports it. The zero
// Change (empty Key) marks the end of the current values.
type Change struct {
	Key      string
	Value    []byte // nil for a deletion
	Revision uint64
	Deleted  bool
}

// Entry is a stored value and its revision.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
}

// PublishOption changes how Publish stores events.
type PublishOption func(*PublishOptions)

// PublishOptions are the settings PublishOptions apply; engines read them
// with ApplyPublishOptions.
type PublishOptions struct {
	// DedupKey tells events apart by key as well as by topic, source and id
	// (see WithDedupKey).
	DedupKey string
}

// WithDedupKey makes Publish tell events apart by key as well as by topic,
// source and id. Two publishers of one event to one topic — dead-letter
// copies from two subscriptions — each store their copy, while a retry by
// the same publisher is still stored once.
func WithDedupKey(key string) PublishOption {
	return func(o *PublishOptions) { o.DedupKey = key }
}

// ApplyPublishOptions folds opts into PublishOptions.
func ApplyPublishOptions(opts []PublishOption) PublishOptions {
	var o PublishOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}
