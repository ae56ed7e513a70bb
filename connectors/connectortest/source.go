package connectortest

import (
	"context"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
)

// RunSource runs the source suite: the connector starts and stops cleanly,
// produces valid CloudEvents, resumes after a restart from its committed
// offsets with nothing lost, and commits only what the mesh stored.
func RunSource(t *testing.T, s Source) {
	require.Equal(t, connectors.KindSource, s.Spec.Kind, "RunSource needs a source spec")
	if s.Key == nil {
		s.Key = func(e *event.Event) string { return e.ID() }
	}
	const name, topic = "src", "connectortest.source"
	cfg := With(s.Config, connectors.FieldConnectorType, s.Spec.Name, connectors.FieldTopic, topic)

	t.Run("StartsAndStops", func(t *testing.T) {
		e := newEnv(t, s.Spec, s.Options)
		_, err := e.rt.Create(t.Context(), name, cfg)
		require.NoError(t, err)
		e.waitRunning(name)
		e.restart()
		e.waitRunning(name)
		require.NoError(t, e.rt.Pause(t.Context(), name))
		st, err := e.rt.Status(name)
		require.NoError(t, err)
		assert.Equal(t, worker.StatePaused, st.Connector.State)
		require.NoError(t, e.rt.Resume(t.Context(), name))
		e.waitRunning(name)
		require.NoError(t, e.rt.Delete(t.Context(), name))
		assert.Empty(t, e.rt.List())
	})

	t.Run("ProducesValidCloudEvents", func(t *testing.T) {
		e := newEnv(t, s.Spec, s.Options)
		got := e.collect(topic, s.Key)
		_, err := e.rt.Create(t.Context(), name, cfg)
		require.NoError(t, err)
		e.waitRunning(name)
		ks := keys("valid", 10)
		require.NoError(t, s.Produce(t.Context(), ks))
		require.Eventually(t, func() bool { return got.has(ks) }, wait, tick, "every produced item arrives on the topic")
		for _, ev := range got.all() {
			assert.NoError(t, bridge.Validate(ev), "event %s", ev.ID())
			assert.NoError(t, ev.Validate(), "event %s", ev.ID())
		}
	})

	t.Run("ResumesAfterRestartWithNothingLost", func(t *testing.T) {
		e := newEnv(t, s.Spec, s.Options)
		got := e.collect(topic, s.Key)
		_, err := e.rt.Create(t.Context(), name, cfg)
		require.NoError(t, err)
		e.waitRunning(name)
		before := keys("before", 5)
		require.NoError(t, s.Produce(t.Context(), before))
		require.Eventually(t, func() bool { return got.has(before) }, wait, tick)
		offsets, err := e.rt.Offsets(t.Context(), name)
		require.NoError(t, err)

		e.stop()
		during := keys("during", 5)
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		done := produceAsync(ctx, s, during) // the system holds them, or retries, while meshd is down
		if !s.AcksAfterStore {
			require.NoError(t, <-done)
			stored := make(chan error, 1) // done gave its one answer
			stored <- nil
			done = stored
		}
		e.start()
		e.waitRunning(name)
		require.NoError(t, <-done)
		require.Eventually(t, func() bool { return got.has(append(before, during...)) }, wait, tick,
			"items produced while the connector was down arrive after its restart")
		if len(offsets) > 0 {
			after, err := e.rt.Offsets(t.Context(), name)
			require.NoError(t, err)
			assert.NotEqual(t, offsets, after, "offsets advance after the restart")
		}
	})

	t.Run("CommitsOnlyWhatTheMeshStored", func(t *testing.T) {
		e := newEnv(t, s.Spec, s.Options)
		got := e.collect(topic, s.Key)
		_, err := e.rt.Create(t.Context(), name, cfg)
		require.NoError(t, err)
		e.waitRunning(name)
		first := keys("stored", 3)
		require.NoError(t, s.Produce(t.Context(), first))
		require.Eventually(t, func() bool { return got.has(first) }, wait, tick)

		e.engine.failPublish.Store(true)
		failed := e.engine.publishFailures.Load()
		next := keys("refused", 3)
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		done := produceAsync(ctx, s, next)
		// A task publishes a poll, commits its offsets, then polls again: once
		// a publish of the refused records failed, the offsets of the stored
		// ones are committed. (Reading them as soon as the stored records
		// arrived raced with that commit.)
		require.Eventually(t, func() bool { return e.engine.publishFailures.Load() > failed }, wait, tick,
			"the runtime tries to publish while the mesh refuses")
		committed, err := e.rt.Offsets(t.Context(), name)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return e.engine.publishFailures.Load() > failed+3 }, wait, tick,
			"the runtime tries again while the mesh refuses")
		now, err := e.rt.Offsets(t.Context(), name)
		require.NoError(t, err)
		assert.Equal(t, committed, now, "no offset is committed while the mesh refuses the records")
		if s.AcksAfterStore {
			select {
			case err := <-done:
				t.Fatalf("the outside system got an answer (%v) before the mesh stored its items", err)
			case <-time.After(50 * time.Millisecond): // a window for a wrong early answer, not a synchronisation
			}
		}
		e.engine.failPublish.Store(false)
		require.NoError(t, <-done)
		require.Eventually(t, func() bool { return got.has(next) }, wait, tick, "the refused records arrive once the mesh is back")
	})
}
