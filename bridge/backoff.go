package bridge

import (
	"math"
	"math/rand/v2"
	"time"
)

// Backoff is an exponential retry schedule with jitter.
type Backoff struct {
	Initial    time.Duration // first delay (default 200ms)
	Max        time.Duration // cap (default 30s)
	Multiplier float64       // growth per attempt (default 2)
	Jitter     float64       // fraction of the delay randomised, 0..1 (default 0.2)
}

// DefaultBackoff is the schedule used when none is configured.
var DefaultBackoff = Backoff{Initial: 200 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2, Jitter: 0.2}

// Delay returns the wait before retry number attempt (1 for the first
// retry): Initial·Multiplier^(attempt-1), capped at Max, then spread
// uniformly by ±Jitter of itself and capped at Max again. Attempts below 1
// count as 1.
//
// Zero fields take DefaultBackoff's values. A negative Jitter disables
// jitter; a Multiplier between 0 and 1 counts as 1 (a constant delay).
// Delay is safe for concurrent use.
func (b Backoff) Delay(attempt int) time.Duration {
	b = b.withDefaults()
	if attempt < 1 {
		attempt = 1
	}
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempt-1))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(b.Max)
	}
	if b.Jitter > 0 {
		d *= 1 + b.Jitter*(2*rand.Float64()-1)
	}
	if d > float64(b.Max) {
		d = float64(b.Max)
	}
	if d < 0 {
		d = 0
	}
	return time.Duration(d)
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	if b.Initial > b.Max {
		b.Initial = b.Max
	}
	switch {
	case b.Multiplier == 0 || math.IsNaN(b.Multiplier) || b.Multiplier < 0:
		b.Multiplier = DefaultBackoff.Multiplier
	case b.Multiplier < 1:
		b.Multiplier = 1
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = DefaultBackoff.Jitter
	case b.Jitter < 0 || math.IsNaN(b.Jitter):
		b.Jitter = 0
	case b.Jitter > 1:
		b.Jitter = 1
	}
	return b
}
