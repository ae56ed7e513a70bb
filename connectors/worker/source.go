package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/mesh"
)

// idlePoll is the pause after a Poll that returned nothing, so a source
// that does not block cannot spin.
const idlePoll = 50 * time.Millisecond

// pollLoop polls task, publishes its records to the instance's topic, then
// commits their offsets and calls Commit. A poll waits until the previous
// records are stored: back-pressure reaches the source.
func (r *Runtime) pollLoop(ctx context.Context, inst *instance, tc *taskContext, task connectors.SourceTask) error {
	topic := inst.cfg.String(connectors.FieldTopic)
	committer, _ := task.(connectors.Committer)
	for {
		if ctx.Err() != nil {
			return nil
		}
		var pollStart time.Time
		if r.opts.Tracer != nil {
			pollStart = time.Now()
		}
		var recs []connectors.Record
		err := safe("Poll", func() (err error) { recs, err = task.Poll(ctx); return err })
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("polling: %w", err)
		}
		if len(recs) == 0 {
			if !bridge.Sleep(ctx, idlePoll) {
				return nil
			}
			continue
		}
		evs := make([]*event.Event, len(recs))
		offsets := map[string]string{}
		for i := range recs {
			evs[i] = &recs[i].Event
			if recs[i].Partition != "" {
				offsets[recs[i].Partition] = recs[i].Offset
			}
		}
		// A task whose lease another sidecar took over (this process was
		// paused, or cut off from the mesh) stops here: nothing of this
		// poll is published or committed, the new holder polls it again.
		if err := r.retry(ctx, inst, "confirming the task's lease", func() error { return tc.lease.confirm(ctx) }); err != nil {
			return nil
		}
		pctx, span := r.startSpan(ctx, "poll", inst, evs, trace.SpanKindProducer, pollStart)
		err = r.publish(pctx, inst, topic, evs)
		if span != nil {
			bridge.EndSpan(span, err)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil // not stored, not committed: the source sends them again
			}
			return err
		}
		r.metrics.published(inst.name, len(evs))
		if len(offsets) > 0 {
			commit := func() error {
				if err := tc.lease.confirm(ctx); err != nil {
					return err
				}
				return r.commitOffsets(ctx, inst.name, offsets)
			}
			if err := r.retry(ctx, inst, "committing offsets", commit); err != nil {
				return nil // stopping; the records are stored and will be polled again
			}
		}
		if committer != nil {
			err := safe("Commit", func() error { return committer.Commit(ctx, recs) })
			var p *PanicError
			if errors.As(err, &p) {
				return err
			}
			if err != nil && ctx.Err() == nil {
				tc.log.Warn("committing records upstream", "error", inst.redact(err.Error()))
			}
		}
	}
}

// publish stores evs on topic, retrying with backoff while the mesh is
// unavailable. An invalid event or topic fails the task.
func (r *Runtime) publish(ctx context.Context, inst *instance, topic string, evs []*event.Event) error {
	var invalid *bridge.InvalidEventError
	for attempt := 1; ; attempt++ {
		err := r.bridge.Publish(ctx, topic, evs)
		if err == nil {
			return nil
		}
		if errors.As(err, &invalid) || errors.Is(err, mesh.ErrInvalidTopic) || errors.Is(err, mesh.ErrTooLarge) {
			return fmt.Errorf("publishing polled records: %w", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := r.opts.Backoff.Delay(attempt)
		inst.log.Warn("publishing polled records; will retry", "topic", topic, "count", len(evs), "error", err, "retry_in", wait)
		if !bridge.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// retry calls f with backoff until it succeeds or ctx is done.
func (r *Runtime) retry(ctx context.Context, inst *instance, what string, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := r.opts.Backoff.Delay(attempt)
		inst.log.Warn(what+"; will retry", "error", err, "retry_in", wait)
		if !bridge.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// startSpan starts the span "<op> <connector>" of a batch of events (a
// poll's records or a sink's Put), parented on the first event's
// distributed-tracing extension and linked to the others'. start is when
// the operation began (zero: now). Without a tracer it returns ctx and a
// nil span.
func (r *Runtime) startSpan(ctx context.Context, op string, inst *instance, evs []*event.Event, kind trace.SpanKind, start time.Time) (context.Context, trace.Span) {
	if r.opts.Tracer == nil {
		return ctx, nil
	}
	parent, opts := bridge.BatchSpanOptions(ctx, evs)
	opts = append(opts,
		trace.WithSpanKind(kind),
		trace.WithAttributes(
			attribute.String("meshd.connector", inst.name),
			attribute.String("meshd.connector.type", inst.cfg.String(connectors.FieldConnectorType)),
		))
	if !start.IsZero() {
		opts = append(opts, trace.WithTimestamp(start))
	}
	return r.opts.Tracer.Start(parent, op+" "+inst.name, opts...)
}
