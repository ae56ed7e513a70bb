package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/mesh"
)

// minMaxInFlight is the least MaxInFlight of a sink's consumer group.
const minMaxInFlight = 256

// inFlightPerBatch is how many batches' worth of events a sink task may
// hold unacknowledged: the batch its Put writes, the next one its delivery
// loop reads ahead, and what the pull subscription fetched ahead, with
// room. Fewer, and the mesh stops feeding a task mid read-ahead.
const inFlightPerBatch = 4

// sinkLoop feeds task from the instance's consumer group through the
// bridge's delivery loop: batches of up to batch.size events, waiting at
// most batch.wait after the first, filtered, acked once Put (and Flush)
// returned, retried with backoff, held while the outside system is
// unavailable, dead-lettered after maxAttempts or a permanent failure.
//
// running is called once the consumers are open: from then on every event
// published to the topics reaches the task, even for a new group.
func (r *Runtime) sinkLoop(ctx context.Context, inst *instance, id int, task connectors.SinkTask, l *lease, log *slog.Logger, running func()) error {
	cfg := inst.cfg
	filter, err := connectors.SinkFilter(cfg)
	if err != nil {
		return fmt.Errorf("compiling filters: %w", err)
	}
	var consumers []mesh.Consumer
	dedup := 0
	for _, topic := range cfg.Strings(connectors.FieldTopic) {
		gc := r.groupConfig(inst, topic)
		// The only task of an InOrder sink writes in the order events were
		// published, also after a crash of the sidecar that ran it: what it
		// held unacknowledged comes first (a TRUNCATE, an upsert of a key,
		// must not be overtaken by what was published before it).
		gc.RedeliverFirst = inst.spec.InOrder && inst.taskCount() == 1
		dedup = max(dedup, gc.MaxInFlight)
		c, err := r.opts.Engine.Consume(ctx, gc)
		if err != nil {
			for _, c := range consumers {
				_ = c.Close()
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("consuming topic %q: %w", topic, err)
		}
		consumers = append(consumers, c)
	}
	d := &sinkDelivery{r: r, inst: inst, task: task, lease: l}
	d.flusher, _ = task.(connectors.Flusher)
	loop := bridge.StartLoop(ctx, bridge.LoopConfig{
		Name:            "connector/" + inst.name,
		Engine:          r.opts.Engine,
		Consumers:       consumers,
		Handler:         d.put,
		Filter:          filter,
		BatchSize:       int(cfg.Int(connectors.FieldBatchSize)),
		BatchWait:       cfg.Duration(connectors.FieldBatchWait),
		MaxAttempts:     int(cfg.Int(connectors.FieldAttempts)),
		DeadLetterTopic: cfg.String(connectors.FieldDeadLetter),
		// Events the task holds unacknowledged (a batch held while the
		// outside system is down, the batches read and fetched behind it)
		// come again when their ack wait runs out: the copies of what was
		// written meanwhile are recognised, not written twice nor counted
		// as attempts.
		DedupSize: dedup,
		Backoff:   r.opts.Backoff,
		AckWait:   r.opts.AckWait,
		Logger:    log,
		Redact:    inst.redact,
		Observer:  sinkObserver{m: r.metrics, name: inst.name},
	})
	inst.addLoop(loop) // tasks.go: its status shows in the connector's
	defer inst.removeLoop(loop)
	inst.setProbe(id, func() (bridge.LoopStatus, time.Time) { return loop.Status(), d.lastOK() })
	defer inst.setProbe(id, nil)
	running()
	<-loop.Done()
	return loop.Err()
}

// groupConfig is the consumer group of a sink instance on one topic. A new
// group starts at events published after it was made (StartAtNew).
func (r *Runtime) groupConfig(inst *instance, topic string) mesh.ConsumerConfig {
	cfg := inst.cfg
	return mesh.ConsumerConfig{
		Topic:       topic,
		Group:       GroupName(inst.name),
		MaxInFlight: max(minMaxInFlight, inFlightPerBatch*int(cfg.Int(connectors.FieldBatchSize))*int(cfg.Int(connectors.FieldTasksMax))),
		AckWait:     r.opts.AckWait,
		StartAtNew:  true,
	}
}

// openGroups makes the consumer groups of a sink instance exist, when it
// is created or its topics change, before any task runs: events published
// from then on are kept for it even while its tasks cannot start (its
// outside system is unreachable, a task fails), and delivered once they
// run.
func (r *Runtime) openGroups(ctx context.Context, inst *instance) error {
	if inst.invalid != nil || inst.spec.Kind != connectors.KindSink {
		return nil
	}
	for _, topic := range inst.cfg.Strings(connectors.FieldTopic) {
		c, err := r.opts.Engine.Consume(ctx, r.groupConfig(inst, topic))
		if err != nil {
			return fmt.Errorf("creating the consumer group of %q on topic %q: %w", inst.name, topic, err)
		}
		if err := c.Close(); err != nil {
			r.log.Warn("closing a new consumer group", "connector", inst.name, "topic", topic, "error", err)
		}
	}
	return nil
}

type sinkDelivery struct {
	r       *Runtime
	inst    *instance
	task    connectors.SinkTask
	flusher connectors.Flusher
	lease   *lease
	ok      atomic.Int64 // unix nanoseconds of the last Put that wrote its whole batch
}

func (d *sinkDelivery) lastOK() time.Time {
	if n := d.ok.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// put hands one batch to the task: Put, then Flush. A panic in either
// aborts the loop, which fails the task.
func (d *sinkDelivery) put(ctx context.Context, batch []mesh.Message) error {
	if err := d.lease.confirm(ctx); isFenced(err) {
		// Another sidecar runs this task now: the batch goes back to the
		// group, and the task stops.
		return fmt.Errorf("%w: %w", bridge.ErrAbort, err)
	} else if err != nil {
		return fmt.Errorf("%w: confirming the task's lease: %w", bridge.ErrUnavailable, err)
	}
	evs := make([]event.Event, len(batch))
	for i, m := range batch {
		evs[i] = m.Event().Clone()
	}
	pctx, span := d.startPut(ctx, evs)
	err := safe("Put", func() error {
		if ps, ok := d.task.(connectors.PositionedSink); ok {
			pos := make([]connectors.Position, len(batch))
			for i, m := range batch {
				pos[i] = connectors.Position{Topic: m.Topic(), Sequence: m.Seq()}
			}
			return ps.PutPositions(pctx, evs, pos)
		}
		return d.task.Put(pctx, evs)
	})
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
		d.ok.Store(time.Now().UnixNano())
	}
	var p *PanicError
	if errors.As(err, &p) {
		return fmt.Errorf("%w: %w", bridge.ErrAbort, err)
	}
	return err
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

// sinkObserver counts a sink connector's deliveries in the runtime's
// metrics.
type sinkObserver struct {
	m    *metrics
	name string
}

func (o sinkObserver) Delivered(n int, _ time.Duration) { o.m.delivered(o.name, n) }
func (o sinkObserver) Retried(n int)                    { o.m.retried(o.name, n) }
func (o sinkObserver) DeadLettered(n int)               { o.m.deadLettered(o.name, n) }
func (o sinkObserver) Dropped(n int)                    { o.m.dropped(o.name, n) }
func (o sinkObserver) Filtered(n int)                   { o.m.filtered(o.name, n) }
