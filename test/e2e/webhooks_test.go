package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// The webhook listener of a running meshd, as an outside sender meets it:
// HTTPS from webhook.tls.*, a webhook source without a token or signature
// refused, a signed GitHub delivery stored and delivered, a paused source
// answering 503 with Retry-After, and the listener closed once the last
// webhook source is deleted. Secrets appear in no answer and no log line.
func TestWebhookListener(t *testing.T) {
	cert, key := infra.SelfSignedCert(t, t.TempDir())
	hook := freeAddr(t)
	m := newMeshd(t, "hooks-app", fastRetry+"webhook:\n  listen: "+hook+"\n  tls:\n    cert: "+cert+"\n    key: "+key+"\n  maxConns: 64\n")
	out := newSink(t, http.StatusNoContent)

	code, body := m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "open", "config": map[string]any{
		"connector.type": "http-source", "topic": "open"}})
	require.Equal(t, http.StatusBadRequest, code, body)
	assert.Contains(t, body, "auth", "a webhook source without a token or signature is refused")

	const secret = "e2e-gh-s3cret"
	code, body = m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "gh", "config": map[string]any{
		"connector.type": "github-source", "topic": "github", "path": "/hooks/github", "secret": secret}})
	require.Equal(t, http.StatusCreated, code, body)
	assert.NotContains(t, body, secret)
	code, body = m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "gh-out", "config": map[string]any{
		"connector.type": "http-sink", "topic": "github", "url": out.url()}})
	require.Equal(t, http.StatusCreated, code, body)
	m.waitConnector("gh", "RUNNING")
	m.waitConnector("gh-out", "RUNNING")

	pemBytes, err := os.ReadFile(cert)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pemBytes))
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	payload, err := os.ReadFile(filepath.Join("..", "..", "connectors", "github", "testdata", "pull_request.opened.json"))
	require.NoError(t, err)
	deliver := func(sig string) (int, http.Header, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+hook+"/hooks/github", bytes.NewReader(payload))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "pull_request")
		req.Header.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	code, _, body = deliver("sha256=" + strings.Repeat("0", 64))
	assert.Equal(t, http.StatusUnauthorized, code, body)
	code, _, body = deliver(githubSignature(payload, secret))
	require.Equal(t, http.StatusNoContent, code, body)
	require.Eventually(t, func() bool { _, n := out.ids(); return n == 1 }, 30*time.Second, 50*time.Millisecond, "the delivery reaches the sink")
	d := out.deliveries()[0]
	assert.Equal(t, "com.github.pull_request.opened", d.header.Get("Ce-Type"))
	assert.Equal(t, "72d3162e-cc78-11e3-81ab-4c9367dc0958", d.header.Get("Ce-Id"))
	assert.Equal(t, "https://github.com/Codertocat/Hello-World", d.header.Get("Ce-Source"))
	assert.Equal(t, payload, d.body)

	// Without a body: the TLS server answers the first bytes and closes,
	// and a client still writing a body would get a reset instead.
	resp, err := http.Post("http://"+hook+"/hooks/github", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP is refused on a TLS listener")

	code, body = m.adminCall(http.MethodPut, "/v1/connectors/gh/pause", nil)
	require.Equal(t, http.StatusAccepted, code, body)
	m.waitConnector("gh", "PAUSED")
	code, h, body := deliver(githubSignature(payload, secret))
	assert.Equal(t, http.StatusServiceUnavailable, code, body)
	assert.Equal(t, "30", h.Get("Retry-After"))

	code, body = m.adminCall(http.MethodDelete, "/v1/connectors/gh", nil)
	require.Equal(t, http.StatusNoContent, code, body)
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", hook, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}, 10*time.Second, 50*time.Millisecond, "the listener closes with its last webhook source")
	assert.NotContains(t, m.logString(), secret, "the webhook secret is never logged")
}

// githubSignature is X-Hub-Signature-256 as GitHub computes it: "sha256="
// and the hex HMAC-SHA256 of the raw body.
func githubSignature(body []byte, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}
