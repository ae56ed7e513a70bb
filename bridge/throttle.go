package bridge

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// Throttle lets a repeated warning through at most once per Every and
// counts what it held back, so a failure that repeats thousands of times a
// second (every publish while the mesh is down) is one line now and then,
// not a flood. The zero value with Every set is ready; safe for concurrent
// use.
type Throttle struct {
	Every time.Duration
	last  atomic.Int64 // unix nanos of the last warning let through
	held  atomic.Int64 // warnings held back since
}

// Warn logs msg at warn level if Every passed since the last one (with the
// number held back meanwhile), else at debug level.
func (t *Throttle) Warn(log *slog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	if last := t.last.Load(); now-last >= int64(t.Every) && t.last.CompareAndSwap(last, now) {
		if n := t.held.Swap(0); n > 0 {
			args = append(args, "repeated", n)
		}
		log.Warn(msg, args...)
		return
	}
	t.held.Add(1)
	log.Debug(msg, args...)
}
