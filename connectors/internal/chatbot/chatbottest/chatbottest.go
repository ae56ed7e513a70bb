// Package chatbottest runs a chat sink connector through the real runtime
// on an embedded mesh, for the tests of dingtalk-sink and feishu-sink:
// create an instance, publish events, read its dead letters, and collect
// everything meshd shows of it (logs, status, API answers) to look for
// secrets.
package chatbottest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// Wait bounds every condition the tests wait for; Tick is the polling
// interval.
const (
	Wait = 30 * time.Second
	Tick = 10 * time.Millisecond
)

// Topic is the topic instances consume; DeadTopic their dead-letter topic.
const (
	Topic     = "chat"
	DeadTopic = "chat-dead"
)

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

// Env is an embedded mesh with a connector runtime on it, logging at
// debug level, and the connector API over HTTP.
type Env struct {
	Engine mesh.Engine
	RT     *worker.Runtime
	Logs   *Logs
	api    string
}

// NewEnv starts the runtime with spec registered.
func NewEnv(t *testing.T, spec connectors.Spec) *Env {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	reg := connectors.NewRegistry()
	reg.Register(spec)
	logs := &Logs{}
	fast := bridge.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	rt, err := worker.New(worker.Options{
		Engine:         eng,
		Registry:       reg,
		Logger:         slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Backoff:        fast,
		RestartBackoff: fast,
		AckWait:        5 * time.Second,
		StopTimeout:    10 * time.Second,
		WebhookListen:  "127.0.0.1:0",
		WorkerID:       "chatbottest",
	})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		assert.NoError(t, rt.Stop(ctx))
	})
	srv := httptest.NewServer(api.NewHandler(rt, nil))
	t.Cleanup(srv.Close)
	return &Env{Engine: eng, RT: rt, Logs: logs, api: srv.URL}
}

// Create starts instance name of the spec's type on Topic, dead-lettering
// to DeadTopic, with fields, and waits until it runs.
func (e *Env) Create(t *testing.T, spec connectors.Spec, name string, fields map[string]any) {
	t.Helper()
	cfg := map[string]any{
		connectors.FieldConnectorType: spec.Name, connectors.FieldTopic: Topic,
		connectors.FieldBatchWait: "10ms", connectors.FieldDeadLetter: DeadTopic,
	}
	for k, v := range fields {
		cfg[k] = v
	}
	_, err := e.RT.Create(t.Context(), name, cfg)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := e.RT.Status(name)
		if err != nil || st.Connector.State != worker.StateRunning || len(st.Tasks) == 0 {
			return false
		}
		for _, ts := range st.Tasks {
			if ts.State != worker.StateRunning {
				return false
			}
		}
		return true
	}, Wait, Tick, "connector %s should run", name)
}

// Publish stores events on Topic.
func (e *Env) Publish(t *testing.T, evs ...event.Event) {
	t.Helper()
	ptrs := make([]*event.Event, len(evs))
	for i := range evs {
		ptrs[i] = &evs[i]
	}
	require.NoError(t, e.Engine.Publish(t.Context(), Topic, ptrs))
}

// DeadLetters reads DeadTopic from its start.
func (e *Env) DeadLetters(t *testing.T) *Dead {
	t.Helper()
	c, err := e.Engine.Consume(t.Context(), mesh.ConsumerConfig{Topic: DeadTopic, Group: "chatbottest-dead"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &Dead{c: c}
}

// Dead reads dead letters.
type Dead struct{ c mesh.Consumer }

// Next waits for the next dead letter and returns it with its
// deliveryerror.
func (d *Dead) Next(t *testing.T) (*event.Event, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), Wait)
	defer cancel()
	m, err := d.c.Next(ctx)
	require.NoError(t, err, "a dead letter should arrive")
	require.NoError(t, m.Ack(ctx))
	e := m.Event()
	reason, _ := e.Extensions()[bridge.ExtDeliveryError].(string)
	return e, reason
}

// None fails if a dead letter arrives within d.
func (d *Dead) None(t *testing.T, d2 time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d2)
	defer cancel()
	m, err := d.c.Next(ctx)
	if err == nil {
		t.Fatalf("event %s was dead-lettered: %v", m.Event().ID(), m.Event().Extensions()[bridge.ExtDeliveryError])
	}
}

// Shown is everything meshd shows of instance name: logs, the runtime's
// status, info and tasks, and the API's answers.
func (e *Env) Shown(t *testing.T, name string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(e.Logs.String())
	st, _ := e.RT.Status(name)
	info, _ := e.RT.Get(name)
	tasks, _ := e.RT.Tasks(name)
	for _, v := range []any{st, info, tasks} {
		j, err := json.Marshal(v)
		require.NoError(t, err)
		b.Write(j)
	}
	for _, path := range []string{"", "/config", "/status", "/tasks"} {
		resp, err := http.Get(e.api + "/v1/connectors/" + name + path)
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

// Event is an event with JSON data and the given extensions (name, value
// pairs).
func Event(t testing.TB, id string, data any, ext ...string) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource("/chatbottest")
	e.SetType("dev.meshd.chat")
	e.SetSubject("order-" + id)
	for i := 0; i+1 < len(ext); i += 2 {
		e.SetExtension(ext[i], ext[i+1])
	}
	if data != nil {
		require.NoError(t, e.SetData(event.ApplicationJSON, data))
	}
	return e
}
