package email_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	"github.com/meshd/meshd/connectors/email"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/test/infra"
)

// logBuffer keeps what a logger wrote, safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// meshEnv is an embedded mesh with a connector runtime on it, logging at
// debug level into logs, and the connector API over HTTP.
type meshEnv struct {
	engine mesh.Engine
	rt     *worker.Runtime
	logs   *logBuffer
	api    string // base URL
}

func newMeshEnv(t *testing.T) *meshEnv {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	reg := connectors.NewRegistry()
	reg.Register(email.Spec)
	logs := &logBuffer{}
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
		WorkerID:       "emailtest",
	})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		assert.NoError(t, rt.Stop(ctx))
	})
	srv := httptest.NewServer(api.NewHandler(rt, nil))
	t.Cleanup(srv.Close)
	return &meshEnv{engine: eng, rt: rt, logs: logs, api: srv.URL}
}

// create starts connector name with the mailpit's address and fields.
func (m *meshEnv) create(t *testing.T, name string, mp *infra.Mailpit, fields map[string]any) {
	t.Helper()
	host, port, _ := net.SplitHostPort(mp.SMTPAddr)
	cfg := map[string]any{
		connectors.FieldConnectorType: email.Type, connectors.FieldTopic: "orders",
		connectors.FieldBatchWait: "10ms", connectors.FieldAttempts: 1000,
		email.FieldHost: host, email.FieldPort: port, email.FieldTLSMode: email.TLSNone,
		email.FieldFrom: from, email.FieldTo: "{{.Data.email}}", email.FieldSubject: "{{.ID}}",
	}
	for k, v := range fields {
		cfg[k] = v
	}
	_, err := m.rt.Create(t.Context(), name, cfg)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := m.rt.Status(name)
		return err == nil && st.Connector.State == worker.StateRunning && len(st.Tasks) == 1 && st.Tasks[0].State == worker.StateRunning
	}, wait, tick, "connector %s should run", name)
}

func (m *meshEnv) publish(t *testing.T, id, rcpt string) {
	t.Helper()
	e := newEvent(t, id, map[string]any{"email": rcpt})
	require.NoError(t, m.engine.Publish(t.Context(), "orders", []*event.Event{&e}))
}

// shown is everything meshd shows of connector name: logs, the runtime's
// status, info and tasks, and the API's answers.
func (m *meshEnv) shown(t *testing.T, name string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(m.logs.String())
	st, _ := m.rt.Status(name)
	info, _ := m.rt.Get(name)
	tasks, _ := m.rt.Tasks(name)
	for _, v := range []any{st, info, tasks} {
		j, err := json.Marshal(v)
		require.NoError(t, err)
		b.Write(j)
	}
	for _, path := range []string{"", "/config", "/status", "/tasks"} {
		resp, err := http.Get(m.api + "/v1/connectors/" + name + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", path, body)
		b.Write(body)
	}
	return b.String()
}

// messageFor waits for the mail of event id (the subject is the id).
func messageFor(t *testing.T, mp *infra.Mailpit, id string) infra.MailpitSummary {
	t.Helper()
	var found infra.MailpitSummary
	require.Eventually(t, func() bool {
		list, err := mp.Messages(context.Background())
		if err != nil {
			return false
		}
		for _, s := range list {
			if s.Subject == id {
				found = s
				return true
			}
		}
		return false
	}, wait, tick, "the mail of %s should arrive", id)
	return found
}

// Through the runtime: a 4xx is retried until the server takes the mail;
// a 5xx dead-letters the event with the server's reply; the password is
// never shown.
func TestRuntimeRetriesAndDeadLetters(t *testing.T) {
	const password = "Runtime-Secret-Pw-9"
	mp := infra.StartMailpit(t, infra.MailpitOptions{})
	env := newMeshEnv(t)
	env.create(t, "mail", mp, map[string]any{
		connectors.FieldDeadLetter: "orders-dead",
		email.FieldUsername:        "meshd", email.FieldPassword: password,
	})
	ctx := t.Context()

	require.NoError(t, mp.SetChaos(ctx, infra.MailpitChaos{Recipient: infra.MailpitTrigger{ErrorCode: 451, Probability: 100}}))
	env.publish(t, "soft-1", "a@example.org")
	require.Eventually(t, func() bool {
		return strings.Count(env.logs.String(), "451 Chaos recipient error") >= 2
	}, wait, tick, "the runtime retries the refused event")
	require.NoError(t, mp.SetChaos(ctx, infra.MailpitChaos{}))
	got := messageFor(t, mp, "soft-1")
	assert.Equal(t, strings.Trim(email.MessageID("/emailtest", "soft-1", fromAddr), "<>"), got.MessageID)

	dead, err := env.engine.Consume(ctx, mesh.ConsumerConfig{Topic: "orders-dead", Group: "reader"})
	require.NoError(t, err)
	defer dead.Close()
	require.NoError(t, mp.SetChaos(ctx, infra.MailpitChaos{Recipient: infra.MailpitTrigger{ErrorCode: 550, Probability: 100}}))
	env.publish(t, "hard-1", "b@example.org")
	nctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	msg, err := dead.Next(nctx)
	require.NoError(t, err)
	require.NoError(t, msg.Ack(ctx))
	dl := msg.Event()
	assert.Equal(t, "hard-1", dl.ID())
	reason, _ := dl.Extensions()[bridge.ExtDeliveryError].(string)
	assert.Equal(t, "SMTP server answered RCPT TO:<b@example.org> with 550 Chaos recipient error", reason)
	assert.EqualValues(t, "1", fmt.Sprint(dl.Extensions()[bridge.ExtDeliveryAttempts]), "a 5xx spends no retries")
	require.NoError(t, mp.SetChaos(ctx, infra.MailpitChaos{}))

	shown := env.shown(t, "mail")
	assert.Contains(t, shown, connectors.Mask, "the password is masked")
	assert.NotContains(t, shown, password)
	assert.NotContains(t, reason, password)
}

// A wrong password holds the events, shows nowhere, and a corrected config
// sends them.
func TestRuntimeWrongPassword(t *testing.T) {
	const wrong, right = "Wrong-Runtime-Pw-3", "Right-Runtime-Pw-4"
	mp := infra.StartMailpit(t, infra.MailpitOptions{Credentials: map[string]string{"meshd": right}})
	env := newMeshEnv(t)
	env.create(t, "mail", mp, map[string]any{email.FieldUsername: "meshd", email.FieldPassword: wrong})
	env.publish(t, "held-1", "a@example.org")
	require.Eventually(t, func() bool {
		return strings.Contains(env.logs.String(), "Authentication credentials invalid")
	}, wait, tick, "the refused AUTH is logged")
	shown := env.shown(t, "mail")
	assert.NotContains(t, shown, wrong)
	assert.Contains(t, shown, "535", "the reason is shown")

	info, err := env.rt.Get("mail")
	require.NoError(t, err)
	cfg := info.Config // masked: put back as it is, the stored password is kept
	cfg[email.FieldPassword] = right
	_, _, err = env.rt.Put(t.Context(), "mail", cfg)
	require.NoError(t, err)
	m := messageFor(t, mp, "held-1")
	full, err := mp.Message(t.Context(), m.ID)
	require.NoError(t, err)
	assert.Equal(t, "meshd", full.Username)
	assert.NotContains(t, env.shown(t, "mail"), right)
}
