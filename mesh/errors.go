package mesh

import "errors"

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
)
