package connectortest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/api"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
)

// The topic a Runtime's instances consume, and their dead-letter topic.
const (
	runtimeTopic = "events"
	runtimeDead  = "events-dead"
)

// Runtime is the runtime of the suite, with one connector type registered,
// for a connector's own tests through the runtime: it logs at debug level
// into Logs and serves the connector API over HTTP, so a test can create
// instances, publish events, read dead letters, and look at everything
// meshd shows of an instance.
type Runtime struct {
	Engine mesh.Engine
	RT     *worker.Runtime
	Logs   *Logs
	typ    string // connector.type of the instances
	api    string // base URL
}

// NewRuntime starts a runtime with spec registered, stopped when the test
// ends.
func NewRuntime(t *testing.T, spec connectors.Spec) *Runtime {
	t.Helper()
	logs := &Logs{}
	e := newEnv(t, spec, func(o *worker.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	srv := httptest.NewServer(api.NewHandler(e.rt, nil))
	t.Cleanup(srv.Close)
	return &Runtime{Engine: e.engine.Engine, RT: e.rt, Logs: logs, typ: spec.Name, api: srv.URL}
}

// Create starts instance name of the runtime's connector type with fields,
// consuming the topic Publish stores to and dead-lettering to the one
// DeadLetters reads (unless fields say otherwise), and waits until it and
// its tasks run.
func (r *Runtime) Create(t *testing.T, name string, fields map[string]any) {
	t.Helper()
	cfg := map[string]any{
		connectors.FieldConnectorType: r.typ, connectors.FieldTopic: runtimeTopic, connectors.FieldBatchWait: "10ms", connectors.FieldDeadLetter: runtimeDead,
	}
	maps.Copy(cfg, fields)
	_, err := r.RT.Create(t.Context(), name, cfg)
	require.NoError(t, err)
	waitRunning(t, r.RT, name)
}

// Publish stores events on the topic instances consume.
func (r *Runtime) Publish(t *testing.T, evs ...event.Event) {
	t.Helper()
	ptrs := make([]*event.Event, len(evs))
	for i := range evs {
		ptrs[i] = &evs[i]
	}
	require.NoError(t, r.Engine.Publish(t.Context(), runtimeTopic, ptrs))
}

// DeadLetters reads the dead-letter topic from its start.
func (r *Runtime) DeadLetters(t *testing.T) *DeadLetters {
	t.Helper()
	c, err := r.Engine.Consume(t.Context(), mesh.ConsumerConfig{Topic: runtimeDead, Group: "connectortest-dead"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &DeadLetters{c: c}
}

// DeadLetters reads dead letters.
type DeadLetters struct{ c mesh.Consumer }

// Next waits for the next dead letter and returns it with its
// deliveryerror.
func (d *DeadLetters) Next(t *testing.T) (*event.Event, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	m, err := d.c.Next(ctx)
	require.NoError(t, err, "a dead letter should arrive")
	require.NoError(t, m.Ack(ctx))
	e := m.Event()
	reason, _ := e.Extensions()[bridge.ExtDeliveryError].(string)
	return e, reason
}

// None fails if a dead letter arrives within d.
func (d *DeadLetters) None(t *testing.T, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	m, err := d.c.Next(ctx)
	if err == nil {
		t.Fatalf("event %s was dead-lettered: %v", m.Event().ID(), m.Event().Extensions()[bridge.ExtDeliveryError])
	}
}

// Shown is everything meshd shows of instance name: the logs, the
// runtime's status, info and tasks, and the API's answers.
func (r *Runtime) Shown(t *testing.T, name string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(r.Logs.String())
	st, _ := r.RT.Status(name)
	info, _ := r.RT.Get(name)
	tasks, _ := r.RT.Tasks(name)
	for _, v := range []any{st, info, tasks} {
		j, err := json.Marshal(v)
		require.NoError(t, err)
		b.Write(j)
	}
	for _, path := range []string{"", "/config", "/status", "/tasks"} {
		resp, err := http.Get(r.api + "/v1/connectors/" + name + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", path, body)
		b.Write(body)
	}
	return b.String()
}

// NoSecret fails if text holds any of secrets (or their JSON-escaped
// form).
func NoSecret(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		q, _ := json.Marshal(s)
		if strings.Contains(text, s) || strings.Contains(text, strings.Trim(string(q), `"`)) {
			t.Errorf("a secret (%d chars, starting %.3q) shows", len(s), s)
		}
	}
}

// Logs keeps what a logger wrote, safe for concurrent use.
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
