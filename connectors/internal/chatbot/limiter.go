package chatbot

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rate is at most N messages in any window of Per.
type Rate struct {
	N   int
	Per time.Duration
}

func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.N, r.Per) }

// ParseRates reads rates written "N/duration" ("20/1m", "5/1s").
func ParseRates(list []string) ([]Rate, error) {
	if len(list) == 0 {
		return nil, fmt.Errorf("want at least one rate like 20/1m")
	}
	out := make([]Rate, 0, len(list))
	for _, s := range list {
		n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
		count, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil || count < 1 {
			return nil, fmt.Errorf("%q: want a count of at least 1, a slash and a duration, like 20/1m", s)
		}
		d, err := time.ParseDuration(strings.TrimSpace(per))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q: want a positive duration after the slash, like 20/1m", s)
		}
		out = append(out, Rate{N: count, Per: d})
	}
	return out, nil
}

// Limiter keeps a robot within its rates over sliding windows: a message
// may go at t if, for each rate, fewer than N messages went in (t-Per, t].
// Each window is widened by a tenth, at most two seconds: the vendor counts
// arrivals, which the network spreads unevenly. Slots are booked in order,
// so concurrent senders (the tasks of one instance) share the limit. Safe
// for concurrent use.
type Limiter struct {
	rates []Rate
	now   func() time.Time
	keep  int // the most N of rates: older bookings no longer matter

	mu      sync.Mutex // guards booked, blocked
	booked  []time.Time
	blocked time.Time // no message before this (the vendor asked to back off)
}

// NewLimiter returns a limiter of rates; now is its clock (nil: time.Now).
func NewLimiter(rates []Rate, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	keep := 0
	for _, r := range rates {
		keep = max(keep, r.N)
	}
	return &Limiter{rates: slices.Clone(rates), now: now, keep: keep}
}

// Reserve books the next slot if it comes within maxWait and returns the
// wait until it. When the slot is further away it books nothing and
// returns the wait with ok false.
func (l *Limiter) Reserve(maxWait time.Duration) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	at := now
	if l.blocked.After(at) {
		at = l.blocked
	}
	if n := len(l.booked); n > 0 && l.booked[n-1].After(at) {
		at = l.booked[n-1]
	}
	for _, r := range l.rates {
		if n := len(l.booked); n >= r.N {
			if next := l.booked[n-r.N].Add(r.Per + margin(r.Per)); next.After(at) {
				at = next
			}
		}
	}
	wait = at.Sub(now)
	if wait > maxWait {
		return wait, false
	}
	l.booked = append(l.booked, at)
	if len(l.booked) > l.keep {
		l.booked = slices.Delete(l.booked, 0, len(l.booked)-l.keep)
	}
	return wait, true
}

// Block keeps every slot at d from now or later (the vendor answered that
// the robot sends too fast).
func (l *Limiter) Block(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until := l.now().Add(d); until.After(l.blocked) {
		l.blocked = until
	}
}

// margin widens a window of per against network jitter.
func margin(per time.Duration) time.Duration { return min(per/10, maxMargin) }

const maxMargin = 2 * time.Second
