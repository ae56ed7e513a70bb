package natsjs

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/mesh"
)

// maxRewatchDelay bounds the wait between attempts to watch a bucket again
// after its watcher ended or the connection reconnected;
// watchStartTimeout bounds one such attempt. Both are short: while a
// cluster comes back, a bucket's stream answers some seconds after the
// connection, and an attempt that waits longer delays the catching up.
const (
	maxRewatchDelay   = 2 * time.Second
	watchStartTimeout = 2 * time.Second
)

// rewatchAfterReconnect are the times, counted from a reconnect, at which
// a watch starts its watcher once more. The one started at the reconnect
// may ride on a consumer of a stream that was still electing its leader,
// which can vanish without a word: nats.go notices only after missed
// heartbeats, 10-20 s, and a sidecar would not see the others' changes
// until then (a subscription created through another sidecar right after
// a cluster restart started here only after that).
var rewatchAfterReconnect = []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second}

// Watch reports the keys that start with prefix: their current values, a
// marker, then every change. It rides on a JetStream ordered consumer,
// which re-creates itself after gaps and lost heartbeats (in some ten
// seconds). After the connection reconnected, and when the ordered consumer
// gives up (the cluster was down too long), a new one starts at once after
// the last revision seen; after a reconnect, again at the times of
// rewatchAfterReconnect.
func (b *kvBucket) Watch(ctx context.Context, prefix string) (<-chan mesh.Change, error) {
	if b.eng.closed.Load() {
		return nil, mesh.ErrClosed
	}
	filter := keyFilter(prefix)
	w, stop, err := b.startWatcher(ctx, filter, 0, b.eng.cfg.PublishTimeout)
	if err != nil {
		return nil, b.wrap(ctx, "watching", prefix+"*", err)
	}
	out := make(chan mesh.Change)
	go b.watch(ctx, prefix, filter, w, stop, out)
	return out, nil
}

// startWatcher opens a watcher of filter, from revision from (0: the
// current values), within timeout. stop ends it.
func (b *kvBucket) startWatcher(ctx context.Context, filter string, from uint64, timeout time.Duration) (jetstream.KeyWatcher, context.CancelFunc, error) {
	// The watcher lives as long as wctx: it cannot carry the timeout of
	// its creation, so the timeout is kept here.
	wctx, stop := context.WithCancel(ctx)
	var opts []jetstream.WatchOpt
	if from > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(from))
	}
	type result struct {
		w   jetstream.KeyWatcher
		err error
	}
	res := make(chan result, 1)
	go func() {
		w, err := b.kv.Watch(wctx, filter, opts...)
		res <- result{w, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var r result
	select {
	case r = <-res:
	case <-timer.C:
		stop()
		if r = <-res; r.err == nil {
			_ = r.w.Stop()
		}
		return nil, nil, context.DeadlineExceeded
	}
	if r.err != nil {
		stop()
		return nil, nil, r.err
	}
	return r.w, stop, nil
}

// watch forwards the watcher's entries to out until ctx is done or the
// engine closes, starting a new watcher when one ends.
func (b *kvBucket) watch(ctx context.Context, prefix, filter string, w jetstream.KeyWatcher, stop context.CancelFunc, out chan<- mesh.Change) {
	defer close(out)
	defer func() { release(w, stop) }() // the latest watcher
	var last uint64                     // the revision last seen, reported or not
	marked := false
	reconnected := b.eng.reconnected()
	var (
		again    <-chan time.Time // the next of rewatchAfterReconnect
		agains   int
		sinceRec time.Time
	)
	send := func(c mesh.Change) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
		case <-b.eng.done:
		}
		return false
	}
	for {
		var en jetstream.KeyValueEntry
		var ok bool
		select {
		case en, ok = <-w.Updates():
		case <-reconnected:
			// The consumer behind w may be gone with the server it was on;
			// do not wait for its heartbeats to say so.
			reconnected = b.eng.reconnected()
			release(w, stop)
			ok = false
			agains, sinceRec = 0, time.Now()
			again = time.After(rewatchAfterReconnect[0])
		case <-again:
			again = nil
			if agains++; agains < len(rewatchAfterReconnect) {
				again = time.After(time.Until(sinceRec.Add(rewatchAfterReconnect[agains])))
			}
			release(w, stop)
			ok = false
		case <-ctx.Done():
			return
		case <-b.eng.done:
			return
		}
		if !ok {
			stop()
			if w, stop = b.rewatch(ctx, filter, last); w == nil {
				return
			}
			continue
		}
		if en == nil { // the current values are all delivered
			if !marked {
				marked = true
				if !send(mesh.Change{}) {
					return
				}
			}
			continue
		}
		if marked && en.Revision() <= last {
			continue // reported before (a watcher started again after last)
		}
		last = max(last, en.Revision())
		if !strings.HasPrefix(en.Key(), prefix) {
			continue
		}
		c := mesh.Change{Key: en.Key(), Revision: en.Revision()}
		switch en.Operation() {
		case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
			c.Deleted = true
		default:
			c.Value = en.Value()
		}
		if !send(c) {
			return
		}
	}
}

// release stops a watcher and drains what it still delivers: its
// subscription's callback may be blocked handing it an entry.
func release(w jetstream.KeyWatcher, stop context.CancelFunc) {
	if w == nil {
		return
	}
	stop()
	go func() {
		for range w.Updates() {
		}
	}()
}

// rewatch starts a watcher after revision last, retrying with a growing
// delay until it succeeds, ctx is done or the engine closes (nil).
func (b *kvBucket) rewatch(ctx context.Context, filter string, last uint64) (jetstream.KeyWatcher, context.CancelFunc) {
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil || b.eng.closed.Load() {
			return nil, nil
		}
		w, stop, err := b.startWatcher(ctx, filter, last+1, min(b.eng.cfg.PublishTimeout, watchStartTimeout))
		if err == nil {
			b.eng.log.Debug("watching bucket again", "bucket", b.name, "after_revision", last, "attempt", attempt)
			return w, stop
		}
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			return nil, nil
		}
		if attempt == 1 || attempt%10 == 0 {
			b.eng.log.Warn("watching bucket", "bucket", b.name, "attempt", attempt, "error", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, nil
		case <-b.eng.done:
			t.Stop()
			return nil, nil
		}
		delay = min(2*delay, maxRewatchDelay)
	}
}
