package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// subscriptionIDs lists the subscriptions of m's app API.
func (m *meshd) subscriptionIDs() []string {
	m.t.Helper()
	resp, err := http.Get("http://" + m.api + "/v1/subscriptions")
	require.NoError(m.t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(m.t, http.StatusOK, resp.StatusCode, string(body))
	var subs []struct{ ID string }
	require.NoError(m.t, json.Unmarshal(body, &subs), string(body))
	var ids []string
	for _, s := range subs {
		ids = append(ids, s.ID)
	}
	return ids
}

// connectorNames lists the connector instances of m.
func (m *meshd) connectorNames() []string {
	m.t.Helper()
	code, body := m.adminCall(http.MethodGet, "/v1/connectors", nil)
	require.Equal(m.t, http.StatusOK, code, body)
	var names []string
	require.NoError(m.t, json.Unmarshal([]byte(body), &names), body)
	return names
}

// The config file is the declared state: a subscription or connector
// removed from it is removed at the next start; those created through the
// API are kept.
func TestDeclaredStateIsReconciled(t *testing.T) {
	out := newSink(t, http.StatusNoContent)
	connector := func(name string) string {
		return "  - name: " + name + "\n    config: {connector.type: http-sink, topic: " + name + ", url: '" + out.url() + "'}\n"
	}
	file := func(subs, conns []string) string {
		var b strings.Builder
		b.WriteString(fastRetry)
		if len(subs) > 0 {
			b.WriteString("subscriptions:\n")
			for _, id := range subs {
				b.WriteString(subscriptionYAML(id, id, out.url()))
			}
		}
		if len(conns) > 0 {
			b.WriteString("connectors:\n")
			for _, n := range conns {
				b.WriteString(connector(n))
			}
		}
		return b.String()
	}
	m := newMeshd(t, "declared", file([]string{"file-keep", "file-drop"}, []string{"out-keep", "out-drop"}))
	resp, body := m.post("/v1/subscriptions", http.Header{"Content-Type": {"application/json"}},
		[]byte(`{"id":"api-sub","topic":"api-sub","sink":"`+out.url()+`"}`))
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	code, body := m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "api-out", "config": map[string]any{
		"connector.type": "http-sink", "topic": "api-out", "url": out.url(),
	}})
	require.Equal(t, http.StatusCreated, code, body)
	assert.ElementsMatch(t, []string{"file-keep", "file-drop", "api-sub"}, m.subscriptionIDs())
	assert.ElementsMatch(t, []string{"out-keep", "out-drop", "api-out"}, m.connectorNames())

	require.NoError(t, m.terminate())
	m.rewriteConfig(file([]string{"file-keep"}, []string{"out-keep"}))
	m.start()
	assert.ElementsMatch(t, []string{"file-keep", "api-sub"}, m.subscriptionIDs(), "file-drop left the file")
	assert.ElementsMatch(t, []string{"out-keep", "api-out"}, m.connectorNames(), "out-drop left the file")
	assert.Contains(t, m.logString(), `msg="subscription removed: no longer declared in the config file" subscription=file-drop`)
	assert.Contains(t, m.logString(), `msg="connector removed: no longer declared in the config file" connector=out-drop`)

	// A file that declares nothing any more removes the rest, even after a
	// kill -9; what the API created stays.
	m.kill9()
	m.rewriteConfig(fastRetry)
	m.start()
	assert.ElementsMatch(t, []string{"api-sub"}, m.subscriptionIDs())
	assert.ElementsMatch(t, []string{"api-out"}, m.connectorNames())

	// Removed means removed: events of the dropped subscription's topic are
	// not delivered; the API's subscription still delivers.
	m.publishBinary("file-drop", "gone-1", "com.example.t", []byte(`{}`))
	m.publishBinary("api-sub", "kept-1", "com.example.t", []byte(`{}`))
	require.Eventually(t, func() bool { ids, _ := out.ids(); return ids["kept-1"] > 0 }, 20*time.Second, 50*time.Millisecond)
	ids, _ := out.ids()
	assert.NotContains(t, ids, "gone-1")
}
