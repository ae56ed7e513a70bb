package mesh

import (
	"errors"
	"fmt"
)

var (
	// ErrUnavailable means the engine cannot reach its storage now; the
	// operation may succeed if retried later.
	ErrUnavailable = errors.New("mesh unavailable")
	// ErrClosed is returned by operations on a closed engine or consumer.
	ErrClosed = errors.New("mesh closed")
	// ErrKeyNotFound is returned by KV.Get for a key without a value.
	ErrKeyNotFound = errors.New("key not found")
	// ErrConflict is returned by KV.Create and KV.Update when the key is not
	// in the expected state.
	ErrConflict = errors.New("revision conflict")
	// ErrInvalidTopic is returned for a topic name the engine cannot carry.
	ErrInvalidTopic = errors.New("invalid topic")
	// ErrTooLarge is returned for an event larger than the engine can
	// carry (*TooLargeError says by how much); nothing of its publish is
	// stored.
	ErrTooLarge = errors.New("event too large for the mesh")
	// ErrLimit is returned when the mesh refuses a consumer (or other
	// resource) because a configured limit is reached; it is not retried
	// by itself.
	ErrLimit = errors.New("mesh limit reached")
)

// TooLargeError names the event that does not fit and the mesh's limit.
type TooLargeError struct {
	Index int   // in the publish's events
	Size  int   // the event's encoded size (attributes and data)
	Limit int64 // the most the mesh carries per event
	// Attributes says the limit is the one on an event's attributes
	// alone (Size and Limit then count attributes only).
	Attributes bool
}

func (e *TooLargeError) Error() string {
	if e.Attributes {
		return fmt.Sprintf("the attributes of event %d take %d bytes; the mesh carries at most %d bytes of attributes per event", e.Index, e.Size, e.Limit)
	}
	return fmt.Sprintf("event %d is %d bytes with its attributes; the mesh carries at most %d bytes per event", e.Index, e.Size, e.Limit)
}

func (e *TooLargeError) Unwrap() error { return ErrTooLarge }
