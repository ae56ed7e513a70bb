package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/mesh"
)

const (
	// minMaxInFlight is the least MaxInFlight of a sink's consumer group.
	minMaxInFlight = 256
	// ackConcurrency bounds the acks of one batch waiting for the server.
	ackConcurrency = 32
)

// sinkLoop feeds task from the instance's consumer group: batches of up to
// batch.size events, waiting at most batch.wait after the first, filtered,
// acked once Put (and Flush) returned, retried with backoff and
// dead-lettered after maxAttempts.
//
// running is called once the consumers are open: from then on every event
// published to the topics reaches the task, even for a new group.
func (r *Runtime) sinkLoop(ctx context.Context, inst *instance, task connectors.SinkTask, log *slog.Logger, running func()) error {
	cfg := inst.cfg
	d := &sinkDelivery{
		r:           r,
		inst:        inst,
		task:        task,
		log:         log,
		maxAttempts: int(cfg.Int(connectors.FieldAttempts)),
		deadLetter:  cfg.String(connectors.FieldDeadLetter),
	}
	d.flusher, _ = task.(connectors.Flusher)
	filter, err := connectors.SinkFilter(cfg)
	if err != nil {
		return fmt.Errorf("compiling filters: %w", err)
	}
	d.filter = filter
	batchSize := int(cfg.Int(connectors.FieldBatchSize))
	batchWait := cfg.Duration(connectors.FieldBatchWait)

	fetchCtx, stopFetch := context.WithCancel(ctx)
	msgs := make(chan mesh.Message)
	var wg sync.WaitGroup
	var consumers []mesh.Consumer
	defer func() {
		stopFetch()
		wg.Wait()
		for _, c := range consumers {
			_ = c.Close()
		}
	}()
	for _, topic := range cfg.Strings(connectors.FieldTopic) {
		c, err := r.opts.Engine.Consume(ctx, mesh.ConsumerConfig{
			Topic:       topic,
			Group:       GroupName(inst.name),
			MaxInFlight: max(minMaxInFlight, 2*batchSize*int(cfg.Int(connectors.FieldTasksMax))),
			AckWait:     r.opts.AckWait,
			StartAtNew:  true,
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("consuming topic %q: %w", topic, err)
		}
		consumers = append(consumers, c)
		wg.Go(func() { d.fetch(fetchCtx, c, msgs) })
	}
	running()
	for {
		var batch []mesh.Message
		select {
		case m := <-msgs:
			batch = append(batch, m)
		case <-ctx.Done():
			return nil
		}
		timer := time.NewTimer(batchWait)
	fill:
		for len(batch) < batchSize {
			select {
			case m := <-msgs:
				batch = append(batch, m)
			case <-timer.C:
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		timer.Stop()
		if ctx.Err() != nil {
			d.nakAll(batch, 0)
			return nil
		}
		if err := d.deliver(ctx, batch); err != nil {
			return err
		}
	}
}

type sinkDelivery struct {
	r           *Runtime
	inst        *instance
	task        connectors.SinkTask
	flusher     connectors.Flusher
	filter      bridge.Filter
	log         *slog.Logger
	maxAttempts int
	deadLetter  string
}

// fetch hands the events of one consumer to the batching loop.
func (d *sinkDelivery) fetch(ctx context.Context, c mesh.Consumer, out chan<- mesh.Message) {
	failures := 0
	for {
		m, err := c.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, mesh.ErrClosed) {
				return
			}
			failures++
			wait := d.r.opts.Backoff.Delay(failures)
			d.log.Warn("receiving from the mesh", "error", err, "retry_in", wait)
			if !sleep(ctx, wait) {
				return
			}
			continue
		}
		failures = 0
		select {
		case out <- m:
		case <-ctx.Done():
			d.settle(m, "nak", func(c context.Context) error { return m.Nak(c, 0) })
			return
		}
	}
}

// deliver puts one batch and settles each of its events. It returns an
// error only when the task must fail (a panic).
func (d *sinkDelivery) deliver(ctx context.Context, batch []mesh.Message) error {
	live := make([]mesh.Message, 0, len(batch))
	evs := make([]event.Event, 0, len(batch))
	pos := make([]connectors.Position, 0, len(batch))
	for _, m := range batch {
		e := m.Event()
		switch {
		case e == nil || !d.filter.Match(e):
			d.settle(m, "ack", m.Ack)
			d.r.metrics.filteredInc(d.inst.name)
		case m.Attempt() > d.maxAttempts:
			// Redelivered past maxAttempts (e.g. it made a task fail):
			// give up without calling Put again.
			d.deadLetterMsg(m, fmt.Errorf("delivered %d times without success", m.Attempt()-1))
		default:
			live = append(live, m)
			evs = append(evs, e.Clone())
			pos = append(pos, connectors.Position{Topic: m.Topic(), Sequence: m.Sequence()})
		}
	}
	if len(live) == 0 {
		return nil
	}
	pctx, span := d.startPut(connectors.WithPositions(ctx, pos), evs)
	err := safe("Put", func() error { return d.task.Put(pctx, evs) })
	var partial *connectors.PartialError
	if d.flusher != nil && (err == nil || errors.As(err, &partial)) {
		if ferr := safe("Flush", func() error { return d.flusher.Flush(pctx) }); ferr != nil {
			err = ferr
		}
	}
	if span != nil {
		var spanErr error
		if err != nil {
			spanErr = errors.New(d.inst.redact(err.Error()))
		}
		bridge.EndSpan(span, spanErr)
	}
	if err == nil {
		d.ackAll(live)
		d.r.metrics.delivered(d.inst.name, len(live))
		return nil
	}
	if ctx.Err() != nil {
		d.nakAll(live, 0) // stopping: hand the events back uncounted
		return nil
	}
	var p *PanicError
	if errors.As(err, &p) {
		d.nakAll(live, d.r.opts.Backoff.Delay(1))
		return err
	}
	failed := 0
	if errors.As(err, &partial) {
		var ok []mesh.Message
		for i, m := range live {
			if ferr, bad := partial.Failed[i]; bad {
				d.fail(m, ferr)
				failed++
			} else {
				ok = append(ok, m)
			}
		}
		d.ackAll(ok)
		d.r.metrics.delivered(d.inst.name, len(ok))
	} else {
		for _, m := range live {
			d.fail(m, err)
		}
		failed = len(live)
	}
	d.log.Warn("sink could not write events; they will be retried or dead-lettered",
		"failed", failed, "batch", len(live), "error", d.inst.redact(err.Error()))
	return nil
}

// startPut starts the span "put <connector>" of a batch and writes its
// context into the events' distributed-tracing extension (they are copies),
// so the sink can continue the trace. Without a tracer: ctx, nil.
func (d *sinkDelivery) startPut(ctx context.Context, evs []event.Event) (context.Context, trace.Span) {
	if d.r.opts.Tracer == nil {
		return ctx, nil
	}
	ptrs := make([]*event.Event, len(evs))
	for i := range evs {
		ptrs[i] = &evs[i]
	}
	ctx, span := d.r.startSpan(ctx, "put", d.inst, ptrs, trace.SpanKindConsumer, time.Time{})
	for _, e := range ptrs {
		bridge.InjectTraceContext(ctx, e)
	}
	return ctx, span
}

// fail retries m with backoff, or dead-letters it when err is permanent or
// m used its attempts.
func (d *sinkDelivery) fail(m mesh.Message, err error) {
	class, after := bridge.Classify(err)
	attempt := m.Attempt()
	if class == bridge.Permanent || attempt >= d.maxAttempts {
		d.deadLetterMsg(m, err)
		return
	}
	delay := max(d.r.opts.Backoff.Delay(attempt), after)
	d.settle(m, "nak", func(c context.Context) error { return m.Nak(c, delay) })
	d.r.metrics.retried(d.inst.name)
}

// deadLetterMsg gives up on m (see bridge.DeadLetter) and counts it.
func (d *sinkDelivery) deadLetterMsg(m mesh.Message, cause error) {
	if bridge.DeadLetter(d.r.opts.Engine, d.log, m, GroupName(d.inst.name), d.deadLetter, d.inst.redact(cause.Error()), d.r.opts.Backoff.Delay(m.Attempt())) {
		d.r.metrics.deadLettered(d.inst.name)
	}
}

// ackAll acks ms, ackConcurrency at a time. Each ack waits for the
// server's confirmation; one after the other, acking a batch of a thousand
// took as long as writing it to PostgreSQL.
func (d *sinkDelivery) ackAll(ms []mesh.Message) {
	sem := make(chan struct{}, ackConcurrency)
	var wg sync.WaitGroup
	for _, m := range ms {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d.settle(m, "ack", m.Ack)
		})
	}
	wg.Wait()
}

func (d *sinkDelivery) nakAll(ms []mesh.Message, delay time.Duration) {
	for _, m := range ms {
		d.settle(m, "nak", func(c context.Context) error { return m.Nak(c, delay) })
	}
}

func (d *sinkDelivery) settle(m mesh.Message, what string, f func(context.Context) error) {
	bridge.Settle(d.log, what, f)
}
