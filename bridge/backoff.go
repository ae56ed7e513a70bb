package bridge

import "time"

// Backoff is an exponential retry schedule with jitter.
type Backoff struct {
	Initial    time.Duration // first delay (default 200ms)
	Max        time.Duration // cap (default 30s)
	Multiplier float64       // growth per attempt (default 2)
	Jitter     float64       // fraction of the delay randomised, 0..1 (default 0.2)
}

// DefaultBackoff is the schedule used when none is configured.
var DefaultBackoff = Backoff{Initial: 200 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2, Jitter: 0.2}
