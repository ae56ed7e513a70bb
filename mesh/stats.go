package mesh

import (
	"context"
	"errors"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Optional extensions of an Engine for the operator's view (the admin
// API's topics, subscription status and dead letters). Callers check for
// them with a type assertion; an engine without them still carries events.

// ErrGroupNotFound is returned by GroupStats.GroupInfo for a group that
// does not exist (yet, or any more).
var ErrGroupNotFound = errors.New("consumer group not found")

// ErrEventNotFound is returned by EventDeleter.DeleteEvent for a sequence
// that holds no event of the topic.
var ErrEventNotFound = errors.New("event not found")

// TopicStats is implemented by engines that can describe the topics they
// store.
type TopicStats interface {
	// Topics lists the topics that hold events, ordered by name.
	Topics(ctx context.Context) ([]TopicInfo, error)
}

// TopicInfo describes the stored events of one topic.
type TopicInfo struct {
	Name   string `json:"name"`
	Events uint64 `json:"events"`
	// Bytes is an estimate: the store's bytes shared out among its topics
	// by their event counts (exact when one topic holds every event).
	Bytes uint64 `json:"bytes"`
	// First and Last are when the oldest and newest stored events were
	// stored, with their sequences (zero when not known).
	First    time.Time `json:"first,omitzero"`
	Last     time.Time `json:"last,omitzero"`
	FirstSeq uint64    `json:"firstSeq,omitempty"`
	LastSeq  uint64    `json:"lastSeq,omitempty"`
}

// GroupStats is implemented by engines that can tell where a consumer
// group stands.
type GroupStats interface {
	// GroupInfo returns ErrGroupNotFound for a group that does not exist.
	GroupInfo(ctx context.Context, topic, group string) (GroupInfo, error)
}

// GroupInfo is the position of a consumer group on its topic.
type GroupInfo struct {
	// Pending counts the stored events not yet delivered to the group.
	Pending uint64 `json:"pending"`
	// Unacked counts the events delivered and not yet acked (or naked or
	// terminated).
	Unacked int `json:"unacked"`
	// Redelivered counts the unacked events delivered more than once.
	Redelivered int `json:"redelivered"`
	// Delivered is the stream sequence of the last event delivered;
	// AckFloor the sequence up to which every event is settled.
	Delivered uint64 `json:"delivered"`
	AckFloor  uint64 `json:"ackFloor"`
	// Waiting counts the members waiting for events (pull requests).
	Waiting int `json:"waiting"`
}

// EventReader is implemented by engines that can read stored events
// without a consumer group: the dead-letter listing.
type EventReader interface {
	// ReadEvents returns up to limit events of topic stored at or after
	// stream sequence from, in order; fewer (or none) at the end.
	ReadEvents(ctx context.Context, topic string, from uint64, limit int) ([]StoredEvent, error)
}

// StoredEvent is an event as stored, with its place in the store.
type StoredEvent struct {
	Seq   uint64
	Time  time.Time
	Event *event.Event
}

// EventDeleter is implemented by engines that can remove one stored event.
type EventDeleter interface {
	// DeleteEvent removes the event at stream sequence seq, which must be
	// an event of topic (ErrEventNotFound otherwise).
	DeleteEvent(ctx context.Context, topic string, seq uint64) error
}
