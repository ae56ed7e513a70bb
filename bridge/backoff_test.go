package bridge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBackoffDefaults(t *testing.T) {
	var b Backoff // all zero: DefaultBackoff
	for attempt := -1; attempt <= 1; attempt++ {
		d := b.Delay(attempt)
		assert.GreaterOrEqual(t, d, 160*time.Millisecond, "attempt %d", attempt)
		assert.LessOrEqual(t, d, 240*time.Millisecond, "attempt %d", attempt)
	}
}

func TestBackoffGrowsWithinJitterBounds(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Hour, Multiplier: 2, Jitter: 0.25}
	for attempt := 1; attempt <= 10; attempt++ {
		base := float64(100*time.Millisecond) * float64(int(1)<<(attempt-1))
		lo, hi := time.Duration(base*0.75), time.Duration(base*1.25)
		for range 200 {
			d := b.Delay(attempt)
			assert.GreaterOrEqual(t, d, lo, "attempt %d", attempt)
			assert.LessOrEqual(t, d, hi, "attempt %d", attempt)
		}
		// Monotone-ish: the lowest delay of an attempt is above the highest
		// of the attempt two before it.
		if attempt > 2 {
			prevHi := time.Duration(base / 4 * 1.25)
			assert.Greater(t, lo, prevHi)
		}
	}
}

func TestBackoffCap(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 5 * time.Second, Multiplier: 3, Jitter: 0.5}
	for _, attempt := range []int{3, 4, 10, 100, 10000, int(^uint(0) >> 1)} {
		for range 100 {
			d := b.Delay(attempt)
			assert.LessOrEqual(t, d, 5*time.Second, "attempt %d", attempt)
			assert.GreaterOrEqual(t, d, 2500*time.Millisecond, "attempt %d", attempt)
		}
	}
}

func TestBackoffJitterSpreads(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: 0.2}
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[b.Delay(1)] = true
	}
	assert.Greater(t, len(seen), 10, "jitter should spread delays")
}

func TestBackoffNoJitter(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: -1}
	assert.Equal(t, time.Second, b.Delay(1))
	assert.Equal(t, 2*time.Second, b.Delay(2))
	assert.Equal(t, 8*time.Second, b.Delay(4))
	assert.Equal(t, time.Minute, b.Delay(20))
}

func TestBackoffOddFields(t *testing.T) {
	// Multiplier below 1 counts as 1; Initial above Max is capped.
	b := Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 0.5, Jitter: -1}
	assert.Equal(t, time.Second, b.Delay(5))
	b = Backoff{Initial: time.Hour, Max: time.Minute, Jitter: -1}
	assert.Equal(t, time.Minute, b.Delay(1))
}
