package worker_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/api"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
)

// testSink is a sink type whose Put is scripted by the test.
type testSink struct {
	put func(evs []event.Event) error
}

func (s *testSink) Start(context.Context, connectors.Config) error { return nil }
func (s *testSink) Stop(context.Context) error                     { return nil }
func (s *testSink) NewTask() connectors.Task                       { return &testSinkTask{put: s.put} }
func (s *testSink) TaskConfigs(n int) ([]connectors.Config, error) {
	return []connectors.Config{{}}, nil
}

type testSinkTask struct{ put func([]event.Event) error }

func (t *testSinkTask) Start(context.Context, connectors.Config) error { return nil }
func (t *testSinkTask) Stop(context.Context) error                     { return nil }
func (t *testSinkTask) Put(_ context.Context, evs []event.Event) error { return t.put(evs) }

func setup(t *testing.T, put func([]event.Event) error) (*worker.Runtime, mesh.Engine) {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	reg := connectors.NewRegistry()
	reg.Register(connectors.Spec{
		Name: "test-sink", Kind: connectors.KindSink,
		Fields: []connectors.Field{{Name: "password", Type: connectors.TypeString, Secret: true}},
		New:    func() connectors.Connector { return &testSink{put: put} },
	})
	fast := bridge.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	rt, err := worker.New(worker.Options{Engine: eng, Registry: reg, Backoff: fast, RestartBackoff: fast, WebhookListen: "127.0.0.1:0"})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() { _ = rt.Stop(context.Background()) })
	return rt, eng
}

func publish(t *testing.T, eng mesh.Engine, topic string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		e := event.New()
		e.SetID(id)
		e.SetSource("/test")
		e.SetType("t")
		require.NoError(t, eng.Publish(t.Context(), topic, []*event.Event{&e}))
	}
}

func waitTasks(t *testing.T, rt *worker.Runtime, name string, state worker.State) worker.Status {
	t.Helper()
	var st worker.Status
	require.Eventually(t, func() bool {
		var err error
		st, err = rt.Status(name)
		return err == nil && len(st.Tasks) > 0 && st.Tasks[0].State == state
	}, 10*time.Second, 10*time.Millisecond, "task of %s should be %s", name, state)
	return st
}

// A panic in Put fails the task (with the stack in its trace), the events
// are handed back, and the restarted task delivers them.
func TestPanicFailsTheTaskNotTheProcess(t *testing.T) {
	var calls atomic.Int64
	var mu sync.Mutex
	var got []string
	rt, eng := setup(t, func(evs []event.Event) error {
		if calls.Add(1) == 1 {
			panic("boom")
		}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			got = append(got, e.ID())
		}
		return nil
	})
	_, err := rt.Create(t.Context(), "p", map[string]any{"connector.type": "test-sink", "topic": "t1", "password": "hunter22"})
	require.NoError(t, err)
	waitTasks(t, rt, "p", worker.StateRunning)
	publish(t, eng, "t1", "a")
	require.Eventually(t, func() bool {
		st, _ := rt.Status("p")
		return st.Tasks[0].Restarts > 0
	}, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 }, 20*time.Second, 10*time.Millisecond)
	st := waitTasks(t, rt, "p", worker.StateRunning)
	assert.Equal(t, 1, st.Tasks[0].Restarts)
}

func TestFailedTaskShowsTraceWithSecretsMasked(t *testing.T) {
	rt, eng := setup(t, func(evs []event.Event) error { panic("cannot log in with hunter22") })
	_, err := rt.Create(t.Context(), "f", map[string]any{"connector.type": "test-sink", "topic": "t2", "password": "hunter22", "maxAttempts": 1000})
	require.NoError(t, err)
	waitTasks(t, rt, "f", worker.StateRunning)
	publish(t, eng, "t2", "a")
	st := waitTasks(t, rt, "f", worker.StateFailed)
	assert.Contains(t, st.Tasks[0].Trace, "panic in Put")
	assert.Contains(t, st.Tasks[0].Trace, "goroutine", "a panic's trace has its stack")
	assert.NotContains(t, st.Tasks[0].Trace, "hunter22")
	info, err := rt.Get("f")
	require.NoError(t, err)
	assert.Equal(t, connectors.Mask, info.Config["password"])
}

// A typed partial failure acks the good events; the failed one goes to the
// dead-letter topic with the failure recorded, once it is permanent.
func TestPartialFailureDeadLettersOnlyTheFailed(t *testing.T) {
	var mu sync.Mutex
	var ok []string
	rt, eng := setup(t, func(evs []event.Event) error {
		failed := map[int]error{}
		mu.Lock()
		defer mu.Unlock()
		for i, e := range evs {
			if e.ID() == "bad" {
				failed[i] = &bridge.DeliveryError{Class: bridge.Permanent, StatusCode: 400, Err: errors.New("rejected")}
				continue
			}
			ok = append(ok, e.ID())
		}
		if len(failed) > 0 {
			return &connectors.PartialError{Failed: failed}
		}
		return nil
	})
	dlq, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: "t3-dead", Group: "reader"})
	require.NoError(t, err)
	defer dlq.Close()
	_, err = rt.Create(t.Context(), "pf", map[string]any{"connector.type": "test-sink", "topic": "t3", "deadLetterTopic": "t3-dead", "batch.wait": "50ms",
		"filters": []any{map[string]any{"not": map[string]any{"exact": map[string]any{"id": "skipped"}}}}})
	require.NoError(t, err)
	waitTasks(t, rt, "pf", worker.StateRunning)
	publish(t, eng, "t3", "good-1", "bad", "skipped", "good-2")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	m, err := dlq.Next(ctx)
	require.NoError(t, err)
	assert.Equal(t, "bad", m.Event().ID())
	assert.Contains(t, m.Event().Extensions()[bridge.ExtDeliveryError], "rejected")
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(ok) == 2 }, 10*time.Second, 10*time.Millisecond)
	assert.ElementsMatch(t, []string{"good-1", "good-2"}, ok, "filtered events are not put")
}

func TestAPIValidationAndMasking(t *testing.T) {
	rt, _ := setup(t, func([]event.Event) error { return nil })
	srv := httptest.NewServer(api.NewHandler(rt, nil))
	defer srv.Close()
	do := func(method, path, body string) (int, string) {
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		if resp.StatusCode >= 400 {
			assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
		}
		return resp.StatusCode, b.String()
	}
	code, body := do("PUT", "/v1/connector-plugins/test-sink/config/validate", `{"topic":"x","batch.size":0,"password":"pw123"}`)
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, `"error_count":1`)
	assert.Contains(t, body, `"batch.size"`)
	assert.NotContains(t, body, "pw123")
	code, body = do("POST", "/v1/connectors", `{"name":"a.b","config":{"connector.type":"test-sink","topic":"x"}}`)
	assert.Equal(t, 400, code, body)
	assert.Contains(t, body, "name")
	code, body = do("POST", "/v1/connectors", `{"name":"ok","config":{"connector.type":"test-sink","topic":"bad topic"}}`)
	assert.Equal(t, 400, code, body)
	assert.Contains(t, body, "topic")
	code, body = do("PUT", "/v1/connectors/new/config", `{"connector.type":"test-sink","topic":"x","password":"pw123"}`)
	assert.Equal(t, 201, code, body)
	assert.NotContains(t, body, "pw123")
	code, body = do("GET", "/v1/connectors/new/tasks", "")
	assert.Equal(t, 200, code, body)
	code, body = do("GET", "/v1/connectors/missing/status", "")
	assert.Equal(t, 404, code, body)
	code, body = do("GET", "/v1/connectors/new/offsets", "")
	assert.Equal(t, 200, code, body)
	// A sink's offsets are its positions per topic: "0" until it settled
	// an event.
	assert.JSONEq(t, `{"offsets":[{"partition":"x","offset":"0"}]}`, body)
}
