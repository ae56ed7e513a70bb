package bridge

import (
	"errors"
	"fmt"
	"time"
)

// How a failed delivery is treated is decided here, once, for every
// delivery loop (subscriptions, sink connectors, MQTT outbound, WebSocket
// subscribers). A handler returns nil (the event is acked) or an error:
//
//   - one that wraps ErrPermanent: retrying cannot help (a 4xx, a value the
//     target refuses). The event is dead-lettered at once.
//   - one that wraps ErrUnavailable: the target as a whole cannot take
//     events now (connection refused, database down). The loop holds the
//     events and tries again with backoff, without spending their attempts,
//     and takes no new events meanwhile: back-pressure, not loss.
//   - any other error: this event failed; it is retried with backoff (or
//     after the target's Retry-After) and dead-lettered after maxAttempts.
var (
	ErrPermanent   = errors.New("permanent failure")
	ErrUnavailable = errors.New("target unavailable")
)

// Class is the treatment of a failed delivery.
type Class int

// Classes of failed deliveries.
const (
	// Retry retries the event with backoff, counting an attempt.
	Retry Class = iota
	// Permanent dead-letters the event at once.
	Permanent
	// Unavailable holds the events and retries without counting attempts.
	Unavailable
)

func (c Class) String() string {
	switch c {
	case Permanent:
		return "permanent"
	case Unavailable:
		return "unavailable"
	default:
		return "retry"
	}
}

// DeliveryError is a failed delivery with its class, the target's
// requested wait and, for HTTP targets, the status code.
type DeliveryError struct {
	Class Class
	// RetryAfter, when set, is the target's requested wait (Retry-After),
	// already capped by MaxRetryAfter.
	RetryAfter time.Duration
	// StatusCode is the target's HTTP status, 0 for other failures.
	StatusCode int
	Err        error
}

// MaxRetryAfter caps a target's requested wait.
const MaxRetryAfter = 5 * time.Minute

func (e *DeliveryError) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("sink answered %d: %v", e.StatusCode, e.Err)
	}
	return e.Err.Error()
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrPermanent) and errors.Is(err, ErrUnavailable)
// true for a DeliveryError of that class.
func (e *DeliveryError) Is(target error) bool {
	switch target {
	case ErrPermanent:
		return e.Class == Permanent
	case ErrUnavailable:
		return e.Class == Unavailable
	}
	return false
}

// PermanentError marks err as one retrying cannot fix.
func PermanentError(err error) error { return &DeliveryError{Class: Permanent, Err: err} }

// UnavailableError marks err as the target being unable to take any event
// now; after, if positive, is the target's requested wait.
func UnavailableError(err error, after time.Duration) error {
	return &DeliveryError{Class: Unavailable, Err: err, RetryAfter: capRetryAfter(after)}
}

// RetryError marks err as a failure of this event worth retrying, after at
// least after (0: the backoff decides).
func RetryError(err error, after time.Duration) error {
	return &DeliveryError{Class: Retry, Err: err, RetryAfter: capRetryAfter(after)}
}

// Classify returns the class of a delivery error and the wait the target
// asked for (0 if none). nil is not an error and must not be classified.
func Classify(err error) (Class, time.Duration) {
	var after time.Duration
	var de *DeliveryError
	if errors.As(err, &de) {
		after = capRetryAfter(de.RetryAfter)
	}
	switch {
	case errors.Is(err, ErrPermanent):
		return Permanent, after
	case errors.Is(err, ErrUnavailable):
		return Unavailable, after
	}
	return Retry, after
}

func capRetryAfter(d time.Duration) time.Duration {
	return max(0, min(d, MaxRetryAfter))
}
