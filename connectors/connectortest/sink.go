package connectortest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
)

// RunSink runs the sink suite: the connector writes a batch; a failing Put
// is retried and its events are not lost; stopping flushes (everything
// acked is in the outside system) and the rest arrives after a restart.
func RunSink(t *testing.T, s Sink) {
	require.Equal(t, connectors.KindSink, s.Spec.Kind, "RunSink needs a sink spec")
	const name, topic = "snk", "connectortest.sink"
	cfg := With(s.Config, connectors.FieldConnectorType, s.Spec.Name, connectors.FieldTopic, topic,
		connectors.FieldBatchSize, 10, connectors.FieldBatchWait, "20ms", connectors.FieldAttempts, 1000)

	start := func(t *testing.T) *env {
		e := newEnv(t, s.Spec, s.Options)
		_, err := e.rt.Create(t.Context(), name, cfg)
		require.NoError(t, err)
		e.waitRunning(name)
		return e
	}
	publish := func(t *testing.T, e *env, prefix string, n int) []string {
		ids := keys(prefix, n)
		evs := make([]*event.Event, n)
		for i, id := range ids {
			ev := event.New()
			ev.SetID(id)
			ev.SetSource("/connectortest")
			ev.SetType("dev.meshd.connectortest")
			require.NoError(t, ev.SetData("application/json", map[string]any{"n": i, "id": id}))
			evs[i] = &ev
		}
		require.NoError(t, e.engine.Engine.Publish(t.Context(), topic, evs))
		return ids
	}
	received := func(ids []string) func() bool {
		return func() bool {
			got := s.Received()
			for _, id := range ids {
				if !slices.Contains(got, id) {
					return false
				}
			}
			return true
		}
	}

	t.Run("WritesABatch", func(t *testing.T) {
		e := start(t)
		ids := publish(t, e, "batch", 25)
		require.Eventually(t, received(ids), wait, tick, "every event reaches the outside system")
	})

	t.Run("RetriesAFailingPutWithoutLoss", func(t *testing.T) {
		e := start(t)
		s.SetFailing(true)
		defer s.SetFailing(false)
		ids := publish(t, e, "retry", 5)
		require.Eventually(t, func() bool { return e.engine.naks.Load() >= 2 || e.engine.inProgress.Load() >= 1 }, wait, tick,
			"failed events are handed back for a retry, or held while the outside system is down")
		s.SetFailing(false)
		require.Eventually(t, received(ids), wait, tick, "retried events arrive once the outside system works again")
	})

	t.Run("StopFlushes", func(t *testing.T) {
		e := start(t)
		ids := publish(t, e, "flush", 30)
		require.Eventually(t, func() bool { return len(e.engine.ackedIDs()) > 0 }, wait, time.Millisecond)
		e.stop()
		got := s.Received()
		for _, id := range e.engine.ackedIDs() {
			assert.Contains(t, got, id, "an acked event is in the outside system once the task stopped")
		}
		e.start()
		require.Eventually(t, received(ids), wait, tick, "the events not written before the stop arrive after the restart")
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		require.NoError(t, e.rt.Delete(ctx, name), fmt.Sprint("deleting ", name))
	})
}
