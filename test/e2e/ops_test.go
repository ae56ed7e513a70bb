package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cli runs the meshd command against m's admin port and returns its exit
// code, stdout and stderr.
func (m *meshd) cli(args ...string) (int, string, string) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, meshdBin, args...)
	cmd.Env = append(cmd.Environ(), "MESHD_ADMIN_URL=http://"+m.admin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		var exit *exec.ExitError
		require.ErrorAs(m.t, err, &exit, "meshd %v: %s", args, errOut.String())
		return exit.ExitCode(), out.String(), errOut.String()
	}
	return 0, out.String(), errOut.String()
}

// cliOK runs the command and requires success.
func (m *meshd) cliOK(args ...string) string {
	m.t.Helper()
	code, out, errOut := m.cli(args...)
	require.Equal(m.t, 0, code, "meshd %v: %s%s", args, out, errOut)
	return out
}

func (m *meshd) subStatus(id string) map[string]any {
	m.t.Helper()
	var v map[string]any
	require.NoError(m.t, json.Unmarshal([]byte(m.cliOK("subscriptions", "status", id, "--json")), &v))
	return v
}

// countingSink counts deliveries to /ok and refuses those to /bad for
// good (400, with markup in its answer).
type countingSink struct{ ok atomic.Int64 }

func (s *countingSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	if r.URL.Path == "/bad" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "<b>no</b>")
		return
	}
	s.ok.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

// The operator's commands and APIs against a real meshd: topics, where a
// subscription stands, pausing it (kept across a restart, though the
// config file declares it) and resuming it, listing and re-driving dead
// letters, the task and offset commands of connectors, the detailed
// health, and their usage errors.
func TestOperatorCommands(t *testing.T) {
	var s countingSink
	srv := httptest.NewServer(&s)
	t.Cleanup(srv.Close)
	m := newMeshd(t, "ops", fmt.Sprintf(`subscriptions:
  - id: good
    topic: orders
    sink: %[1]s/ok
  - id: bad
    topic: orders
    sink: %[1]s/bad
    maxAttempts: 1
    deadLetterTopic: orders-dead
connectors:
  - name: snk
    config: {connector.type: http-sink, topic: orders, url: "%[1]s/ok"}
`, srv.URL))
	for i := range 3 {
		m.publishBinary("orders", fmt.Sprint("e", i), "order.created", []byte(`{}`))
	}
	require.Eventually(t, func() bool { return s.ok.Load() == 6 }, 20*time.Second, 20*time.Millisecond, "good and snk each get 3")

	out := m.cliOK("topics")
	assert.Regexp(t, `(?m)^orders\s+3\s+\d+`, out)
	assert.Regexp(t, `(?m)^orders-dead\s+3\s+`, out)

	require.Eventually(t, func() bool {
		return m.subStatus("bad")["deadLettered"] == 3.0
	}, 10*time.Second, 20*time.Millisecond)
	out = m.cliOK("subscriptions", "status")
	assert.Regexp(t, `(?m)^good\s+orders\s+RUNNING\s+0`, out)
	assert.Regexp(t, `(?m)^bad\s+orders\s+RUNNING\s+0\s+0\s+0\s+0\s+3\s+sink answered 400: <b>no</b>`, out)

	// Pause: nothing delivered, the backlog grows, and it stays paused
	// across a restart although the file declares the subscription.
	assert.Contains(t, m.cliOK("subscriptions", "pause", "good"), "good: PAUSED")
	m.publishBinary("orders", "p1", "order.created", []byte(`{}`))
	m.publishBinary("orders", "p2", "order.created", []byte(`{}`))
	require.Eventually(t, func() bool { return m.subStatus("good")["backlog"] == 2.0 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return s.ok.Load() == 8 }, 10*time.Second, 20*time.Millisecond, "snk gets them")
	require.NoError(t, m.terminate())
	m.start()
	st := m.subStatus("good")
	assert.Equal(t, "PAUSED", st["state"])
	assert.Equal(t, 2.0, st["backlog"])
	assert.EqualValues(t, 8, s.ok.Load())
	_, metrics := m.adminCall(http.MethodGet, "/metrics", nil)
	for _, want := range []string{
		`meshd_subscription_paused{subscription="good",topic="orders"} 1`,
		`meshd_subscription_backlog{subscription="good",topic="orders"} 2`,
		`meshd_topic_events{topic="orders-dead"} 5`, // bad gave up on all five
	} {
		assert.True(t, strings.Contains(metrics, want), "/metrics lacks %s", want)
	}

	// Update in place on the app API keeps it paused.
	req, _ := http.NewRequest(http.MethodPut, "http://"+m.api+"/v1/subscriptions/good", strings.NewReader(`{"topic":"orders","sink":"`+srv.URL+`/ok","maxInFlight":4}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Contains(t, string(body), `"paused":true`)
	assert.Contains(t, string(body), `"maxInFlight":4`)

	assert.Contains(t, m.cliOK("subscriptions", "resume", "good"), "good: RUNNING")
	require.Eventually(t, func() bool { return s.ok.Load() == 10 }, 10*time.Second, 20*time.Millisecond, "the backlog is delivered")

	// Dead letters: listed with who gave up and why, then re-driven.
	out = m.cliOK("deadletters", "list")
	assert.Regexp(t, `(?m)^orders-dead\s+\d+\s+subscription/bad$`, out)
	out = m.cliOK("deadletters", "list", "orders-dead", "--by", "subscription/bad")
	assert.Equal(t, 1+5, strings.Count(out, "\n"), out) // header and 5 events
	assert.Contains(t, out, "sink answered 400: <b>no</b>")
	var page struct {
		Events []struct {
			Seq      uint64
			By       string
			Topic    string
			Attempts int
		}
	}
	require.NoError(t, json.Unmarshal([]byte(m.cliOK("deadletters", "list", "orders-dead", "--json", "--limit", "2")), &page))
	require.Len(t, page.Events, 2)
	assert.Equal(t, "subscription/bad", page.Events[0].By)
	assert.Equal(t, "orders", page.Events[0].Topic)
	assert.Equal(t, 1, page.Events[0].Attempts)
	assert.Equal(t, "re-driven 1, deleted 1, skipped 0\n", m.cliOK("deadletters", "redrive", "orders-dead", "--seq", fmt.Sprint(page.Events[0].Seq)))
	// Re-driven to "orders": good and snk get it again, and bad gives up
	// on it again.
	require.Eventually(t, func() bool { return s.ok.Load() == 12 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { // bad gives up on it again: a copy of its own
		code, out, _ := m.cli("deadletters", "list", "orders-dead", "--json")
		return code == 0 && json.Unmarshal([]byte(out), &page) == nil && len(page.Events) == 5
	}, 10*time.Second, 20*time.Millisecond)
	out = m.cliOK("deadletters", "redrive", "orders-dead", "--all", "--keep")
	assert.Contains(t, out, "re-driven 5, deleted 0")

	// Connectors: tasks, offsets, stop, positions.
	out = m.cliOK("connectors", "tasks", "snk")
	assert.Regexp(t, `(?m)^0\s+RUNNING\s+\S+:\d+\s+0`, out) // the member: host:admin-port
	out = m.cliOK("connectors", "offsets", "snk")
	assert.Regexp(t, `(?m)^orders\s+[1-9]\d*$`, out)
	code, _, errOut := m.cli("connectors", "offsets", "snk", "--reset")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "not stopped")
	assert.Contains(t, m.cliOK("connectors", "stop", "snk"), "snk: stopped")
	assert.Equal(t, "STOPPED", func() string { s, _ := m.connectorState("snk"); return s }())
	code, _, errOut = m.cli("connectors", "restart", "snk", "--task", "0")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "not running")
	assert.Contains(t, m.cliOK("connectors", "offsets", "snk", "--set", "orders=0"), "1 offsets changed")
	got := s.ok.Load()
	m.cliOK("connectors", "resume", "snk")
	require.Eventually(t, func() bool { return s.ok.Load() >= got+8 }, 10*time.Second, 20*time.Millisecond, "snk reads orders again from the start")
	code, body2 := m.adminCall(http.MethodGet, "/v1/connectors/snk/topics", nil)
	assert.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `{"snk":{"topics":["orders"]}}`, body2)
	m.waitConnector("snk", "RUNNING")
	assert.Contains(t, m.cliOK("connectors", "restart", "snk", "--task", "0"), "task 0 restarted")

	// Health in detail; /readyz?verbose without error texts.
	code, body2 = m.adminCall(http.MethodGet, "/v1/health", nil)
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body2, `"name":"snk"`)
	assert.Contains(t, body2, `"detail":"sink answered 400: \u003cb\u003eno\u003c/b\u003e"`)
	code, body2 = m.adminCall(http.MethodGet, "/readyz?verbose", nil)
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body2, `"subscriptions":[{"name":"bad","state":"RUNNING"}`)
	assert.NotContains(t, body2, "sink answered")

	// The dashboard comes from the binary with a strict policy.
	resp, err = http.Get("http://" + m.admin + "/ui/")
	require.NoError(t, err)
	page2, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(page2), `<script src="app.js" defer></script>`)
	csp := resp.Header.Get("Content-Security-Policy")
	assert.Contains(t, csp, "default-src 'none'")
	assert.Contains(t, csp, "script-src 'self'")
	assert.NotContains(t, csp, "unsafe")
	code, body2 = m.adminCall(http.MethodGet, "/v1/overview", nil)
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body2, `"subscriptions":[{"id":"bad"`)

	// Usage errors exit 2 on one line.
	for _, args := range [][]string{
		{"topics", "extra"},
		{"subscriptions", "pause"},
		{"subscriptions", "status", "a", "b"},
		{"subscriptions", "frobnicate"},
		{"deadletters", "redrive", "orders-dead"},
		{"deadletters", "redrive", "orders-dead", "--all", "--seq", "1"},
		{"deadletters", "list", "a", "b"},
		{"connectors", "offsets", "snk", "--task", "1"},
		{"connectors", "tasks"},
	} {
		code, _, errOut := m.cli(args...)
		assert.Equal(t, 2, code, "%v: %s", args, errOut)
	}
	// --admin wins over MESHD_ADMIN_URL.
	cmd := exec.Command(meshdBin, "subscriptions", "status", "good", "--admin", "http://"+m.admin)
	cmd.Env = append(cmd.Environ(), "MESHD_ADMIN_URL=http://127.0.0.1:1")
	outb, err := cmd.CombinedOutput()
	require.NoError(t, err, string(outb))
	assert.Regexp(t, `(?m)^good\s+orders\s+RUNNING`, string(outb))
	code, out, _ = m.cli("subscriptions", "-h")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "pause ID")

	code, out, _ = m.cli("-h")
	assert.Equal(t, 0, code)
	for _, c := range []string{"meshd topics", "meshd subscriptions status|pause|resume", "meshd deadletters list|redrive", "meshd connectors tasks", "meshd version"} {
		assert.Contains(t, out, c)
	}
}
