package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// admin calls the admin API of m with a JSON body (nil: none).
func (m *meshd) adminCall(method, path string, body any) (int, string) {
	m.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(m.t, err)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+m.admin+path, r)
	require.NoError(m.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := m.envValue("MESHD_ADMIN_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(m.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (m *meshd) connectorState(name string) (string, []string) {
	m.t.Helper()
	code, body := m.adminCall(http.MethodGet, "/v1/connectors/"+name+"/status", nil)
	if code != http.StatusOK {
		return fmt.Sprint(code), nil
	}
	var st struct {
		Connector struct{ State string }
		Tasks     []struct{ State string }
	}
	require.NoError(m.t, json.Unmarshal([]byte(body), &st), body)
	var tasks []string
	for _, t := range st.Tasks {
		tasks = append(tasks, t.State)
	}
	return st.Connector.State, tasks
}

func (m *meshd) waitConnector(name, state string) {
	m.t.Helper()
	require.Eventually(m.t, func() bool {
		s, tasks := m.connectorState(name)
		if s != state || len(tasks) == 0 {
			return false
		}
		for _, t := range tasks {
			if t != state {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "connector %s should be %s", name, state)
}

// postWebhook posts a plain JSON body to an http-source.
func postWebhook(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The whole life of connector instances through the REST API: create a
// webhook source and an HTTP sink on one topic, events flow, pause (nothing
// delivered), resume (the backlog arrives), update the config, delete.
func TestConnectorsAPILifecycle(t *testing.T) {
	webhook := freeAddr(t)
	m := newMeshd(t, "conn-app", fastRetry+"webhook:\n  listen: "+webhook+"\n")
	out := newSink(t, http.StatusNoContent)
	out2 := newSink(t, http.StatusNoContent)

	code, body := m.adminCall(http.MethodGet, "/v1/connector-plugins", nil)
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"type":"http-source"`)
	assert.Contains(t, body, `"type":"http-sink"`)

	// Bad configs: 400 problem naming the field.
	for field, cfg := range map[string]map[string]any{
		"url":            {"connector.type": "http-sink", "topic": "orders"},
		"connector.type": {"connector.type": "no-such-type", "topic": "orders"},
		"tasks.max":      {"connector.type": "http-sink", "topic": "orders", "url": out.url(), "tasks.max": "many"},
		"bogus":          {"connector.type": "http-sink", "topic": "orders", "url": out.url(), "bogus": 1},
	} {
		code, body := m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "bad", "config": cfg})
		assert.Equal(t, http.StatusBadRequest, code, body)
		assert.Contains(t, body, field, "the problem names the bad field")
		assert.Contains(t, body, `"code":"invalid-request"`)
	}

	code, body = m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "orders-in", "config": map[string]any{
		"connector.type": "http-source", "topic": "orders", "path": "/hooks/orders", "token": "hook-s3cret", "type": "com.example.order",
	}})
	require.Equal(t, http.StatusCreated, code, body)
	assert.NotContains(t, body, "hook-s3cret", "secrets are masked")
	assert.Contains(t, body, `"token":"********"`)
	code, body = m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "orders-out", "config": map[string]any{
		"connector.type": "http-sink", "tasks.max": 1, "topic": "orders", "url": out.url(),
		"secret.headers": map[string]string{"X-Api-Key": "sink-s3cret"},
	}})
	require.Equal(t, http.StatusCreated, code, body)
	code, body = m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "orders-out", "config": map[string]any{
		"connector.type": "http-sink", "topic": "orders", "url": out.url()}})
	assert.Equal(t, http.StatusConflict, code, body)
	m.waitConnector("orders-in", "RUNNING")
	m.waitConnector("orders-out", "RUNNING")

	hook := "http://" + webhook + "/hooks/orders"
	code, body = postWebhook(t, hook, "wrong", `{"n":0}`)
	assert.Equal(t, http.StatusUnauthorized, code, body)
	for i := range 5 {
		code, body := postWebhook(t, hook, "hook-s3cret", fmt.Sprintf(`{"n":%d}`, i))
		require.Equal(t, http.StatusNoContent, code, body)
	}
	require.Eventually(t, func() bool { _, n := out.ids(); return n >= 5 }, 30*time.Second, 50*time.Millisecond, "webhook events reach the sink")
	for _, d := range out.deliveries() {
		assert.Equal(t, "com.example.order", d.header.Get("Ce-Type"))
		assert.Equal(t, "sink-s3cret", d.header.Get("X-Api-Key"))
	}

	// Pause the sink: nothing is delivered; resume: the backlog arrives.
	code, body = m.adminCall(http.MethodPut, "/v1/connectors/orders-out/pause", nil)
	require.Equal(t, http.StatusAccepted, code, body)
	m.waitConnector("orders-out", "PAUSED")
	for i := 5; i < 10; i++ {
		m.publishBinary("orders", fmt.Sprintf("backlog-%d", i), "com.example.order", []byte(`{}`))
	}
	assert.Never(t, func() bool { _, n := out.ids(); return n > 5 }, 500*time.Millisecond, 50*time.Millisecond, "a paused sink delivers nothing")
	code, body = m.adminCall(http.MethodPut, "/v1/connectors/orders-out/resume", nil)
	require.Equal(t, http.StatusAccepted, code, body)
	require.Eventually(t, func() bool { _, n := out.ids(); return n >= 10 }, 30*time.Second, 50*time.Millisecond, "the backlog arrives after resume")

	// Update the config (the masked secret is kept): new events go to the new URL.
	code, body = m.adminCall(http.MethodGet, "/v1/connectors/orders-out/config", nil)
	require.Equal(t, http.StatusOK, code, body)
	assert.NotContains(t, body, "sink-s3cret")
	var cfg map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &cfg))
	cfg["url"] = out2.url()
	code, body = m.adminCall(http.MethodPut, "/v1/connectors/orders-out/config", cfg)
	require.Equal(t, http.StatusOK, code, body)
	m.waitConnector("orders-out", "RUNNING")
	m.publishBinary("orders", "after-update", "com.example.order", []byte(`{}`))
	require.Eventually(t, func() bool { ids, _ := out2.ids(); return ids["after-update"] > 0 }, 30*time.Second, 50*time.Millisecond)
	assert.Equal(t, "sink-s3cret", out2.deliveries()[0].header.Get("X-Api-Key"), "a secret put back masked keeps its value")

	// The CLI talks to the same API.
	cli, err := exec.Command(meshdBin, "connectors", "list", "--admin", "http://"+m.admin).CombinedOutput()
	require.NoError(t, err, string(cli))
	assert.Contains(t, string(cli), "orders-in")
	assert.Contains(t, string(cli), "orders-out")

	code, body = m.adminCall(http.MethodDelete, "/v1/connectors/orders-out", nil)
	require.Equal(t, http.StatusNoContent, code, body)
	code, body = m.adminCall(http.MethodGet, "/v1/connectors/orders-out", nil)
	assert.Equal(t, http.StatusNotFound, code, body)
	assert.Contains(t, body, `"code":"not-found"`)
	code, body = m.adminCall(http.MethodGet, "/v1/connectors", nil)
	require.Equal(t, http.StatusOK, code, body)
	assert.JSONEq(t, `["orders-in"]`, body)
	assert.NotContains(t, m.logString(), "hook-s3cret", "secrets are never logged")
	assert.NotContains(t, m.logString(), "sink-s3cret", "secrets are never logged")
}

// A sink created through the API is mid-stream when meshd is killed with
// -9; the restarted meshd restores it from the mesh KV and it resumes from
// its committed position: every event arrives.
func TestConnectorResumesAfterKill9(t *testing.T) {
	out := newSink(t, http.StatusNoContent)
	m := newMeshd(t, "conn-kill", fastRetry+"webhook:\n  listen: "+freeAddr(t)+"\n")
	code, body := m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "stream-out", "config": map[string]any{
		"connector.type": "http-sink", "topic": "stream", "url": out.url(), "batch.size": 5, "maxAttempts": 1000,
	}})
	require.Equal(t, http.StatusCreated, code, body)
	m.waitConnector("stream-out", "RUNNING")

	const n = 300
	for i := range n {
		m.publishBinary("stream", fmt.Sprintf("s-%03d", i), "com.example.tick", []byte(fmt.Sprintf(`{"n":%d}`, i)))
		if i == n/2 {
			require.Eventually(t, func() bool { _, got := out.ids(); return got > 0 }, 30*time.Second, 10*time.Millisecond)
			out.setStatus(http.StatusServiceUnavailable) // the rest stays mid-stream in the mesh
		}
	}
	m.kill9()
	out.setStatus(http.StatusNoContent)
	_, before := out.ids()
	t.Logf("%d of %d events delivered before kill -9", before, n)

	m.start()
	m.waitConnector("stream-out", "RUNNING")
	require.Eventually(t, func() bool { ids, _ := out.ids(); return len(ids) == n }, 60*time.Second, 50*time.Millisecond,
		"every event arrives after kill -9 and restart")
}

// Connectors declared in the config file are created at start.
func TestConnectorDeclaredInConfig(t *testing.T) {
	out := newSink(t, http.StatusNoContent)
	webhook := freeAddr(t)
	m := newMeshd(t, "conn-yaml", fastRetry+"webhook:\n  listen: "+webhook+"\nconnectors:\n"+
		"  - name: hooks\n    config:\n      connector.type: http-source\n      topic: yaml-hooks\n      auth: none\n"+
		"  - name: hooks-out\n    config:\n      connector.type: http-sink\n      topic: [yaml-hooks]\n      url: "+out.url()+"\n      mode: structured\n")
	m.waitConnector("hooks", "RUNNING")
	m.waitConnector("hooks-out", "RUNNING")
	code, body := postWebhook(t, "http://"+webhook+"/hooks", "", `{"hello":"world"}`)
	require.Equal(t, http.StatusNoContent, code, body)
	require.Eventually(t, func() bool { _, n := out.ids(); return n == 1 }, 30*time.Second, 50*time.Millisecond)
	d := out.deliveries()[0]
	mt, _, err := mime.ParseMediaType(d.header.Get("Content-Type"))
	require.NoError(t, err)
	assert.Equal(t, "application/cloudevents+json", mt, "structured mode, as subscriptions send it")
	assert.Contains(t, string(d.body), `"hello":"world"`)
	assert.Contains(t, string(d.body), `"type":"meshd.webhook"`)
}
