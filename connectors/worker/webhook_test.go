package worker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/httpsource"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/test/infra"
)

// webhookRuntime runs http-source on an embedded mesh with the listener at
// addr.
func webhookRuntime(t *testing.T, addr string, opts worker.WebhookOptions) (*worker.Runtime, mesh.Engine) {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	reg := connectors.NewRegistry()
	reg.Register(httpsource.Spec)
	fast := bridge.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	rt, err := worker.New(worker.Options{Engine: eng, Registry: reg, Backoff: fast, RestartBackoff: fast, WebhookListen: addr, Webhook: opts})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() { _ = rt.Stop(context.Background()) })
	return rt, eng
}

func hookConfig(path string) map[string]any {
	return map[string]any{"connector.type": "http-source", "topic": "hooks", "path": path, "token": "hook-token", "timeout": "5s"}
}

// post sends body to url with the hook token and returns the status, the
// body and the headers.
func post(t *testing.T, client *http.Client, url, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer hook-token")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return true
}

// The listener opens with the first webhook source, stays while one is
// left, closes when the last is deleted and opens again for a new one.
func TestWebhookListenerFollowsItsSources(t *testing.T) {
	addr := infra.FreeAddr(t)
	rt, _ := webhookRuntime(t, addr, worker.WebhookOptions{})
	assert.Empty(t, rt.WebhookAddr(), "no webhook source, no listener")
	assert.True(t, refused(addr))

	for _, n := range []string{"a", "b"} {
		_, err := rt.Create(t.Context(), n, hookConfig("/hooks/"+n))
		require.NoError(t, err)
		waitTasks(t, rt, n, worker.StateRunning)
	}
	assert.Equal(t, addr, rt.WebhookAddr())
	code, body, _ := post(t, http.DefaultClient, "http://"+addr+"/hooks/a", `{}`)
	assert.Equal(t, http.StatusNoContent, code, body)

	require.NoError(t, rt.Delete(t.Context(), "a"))
	code, body, _ = post(t, http.DefaultClient, "http://"+addr+"/hooks/a", `{}`)
	assert.Equal(t, http.StatusNotFound, code, body)
	assert.Equal(t, addr, rt.WebhookAddr(), "one source is left")

	require.NoError(t, rt.Delete(t.Context(), "b"))
	assert.Empty(t, rt.WebhookAddr())
	assert.True(t, refused(addr), "the listener closes with the last webhook source")

	_, err := rt.Create(t.Context(), "c", hookConfig("/hooks/c"))
	require.NoError(t, err)
	waitTasks(t, rt, "c", worker.StateRunning)
	code, body, _ = post(t, http.DefaultClient, "http://"+addr+"/hooks/c", `{}`)
	assert.Equal(t, http.StatusNoContent, code, body, "the listener opens again on the same address")
}

// A paused source answers 503 with Retry-After (senders retry) and stores
// nothing; resumed, it takes requests again; deleted while paused, its path
// is gone and the listener closes.
func TestWebhookPausedSourceAnswers503(t *testing.T) {
	addr := infra.FreeAddr(t)
	rt, eng := webhookRuntime(t, addr, worker.WebhookOptions{})
	_, err := rt.Create(t.Context(), "p", hookConfig("/hooks/p"))
	require.NoError(t, err)
	waitTasks(t, rt, "p", worker.StateRunning)
	url := "http://" + addr + "/hooks/p"

	require.NoError(t, rt.Pause(t.Context(), "p"))
	code, body, h := post(t, http.DefaultClient, url, `{"n":"while-paused"}`)
	assert.Equal(t, http.StatusServiceUnavailable, code, body)
	assert.Equal(t, "30", h.Get("Retry-After"))
	assert.Equal(t, "application/problem+json", h.Get("Content-Type"))
	assert.Contains(t, body, `"code":"paused"`)

	require.NoError(t, rt.Resume(t.Context(), "p"))
	waitTasks(t, rt, "p", worker.StateRunning)
	code, body, _ = post(t, http.DefaultClient, url, `{"n":"after-resume"}`)
	require.Equal(t, http.StatusNoContent, code, body)

	cons, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: "hooks", Group: "reader"})
	require.NoError(t, err)
	defer cons.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	m, err := cons.Next(ctx)
	require.NoError(t, err)
	assert.JSONEq(t, `{"n":"after-resume"}`, string(m.Event().Data()), "the request refused while paused was not stored")
	require.NoError(t, m.Ack(ctx))

	require.NoError(t, rt.Pause(t.Context(), "p"))
	code, _, _ = post(t, http.DefaultClient, url, `{}`)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	require.NoError(t, rt.Delete(t.Context(), "p"))
	assert.True(t, refused(addr), "deleting the last (paused) source closes the listener")
}

// A source paused (or stopped) before a restart keeps answering 503 on
// its path after it, though its task does not run: a 404 makes many
// senders give up.
func TestWebhookPausedSourceKeepsItsPathAcrossRestarts(t *testing.T) {
	addr := infra.FreeAddr(t)
	rt, eng := webhookRuntime(t, addr, worker.WebhookOptions{})
	for _, n := range []string{"p", "s"} {
		_, err := rt.Create(t.Context(), n, hookConfig("/hooks/"+n))
		require.NoError(t, err)
		waitTasks(t, rt, n, worker.StateRunning)
	}
	require.NoError(t, rt.Pause(t.Context(), "p"))
	require.NoError(t, rt.StopConnector(t.Context(), "s"))
	require.NoError(t, rt.Stop(t.Context()))
	assert.True(t, refused(addr))

	reg := connectors.NewRegistry()
	reg.Register(httpsource.Spec)
	rt2, err := worker.New(worker.Options{Engine: eng, Registry: reg, WebhookListen: addr})
	require.NoError(t, err)
	require.NoError(t, rt2.Start(t.Context()))
	t.Cleanup(func() { _ = rt2.Stop(context.Background()) })
	for _, n := range []string{"p", "s"} {
		code, body, h := post(t, http.DefaultClient, "http://"+addr+"/hooks/"+n, `{}`)
		assert.Equal(t, http.StatusServiceUnavailable, code, "%s: %s", n, body)
		assert.Equal(t, "30", h.Get("Retry-After"))
	}
	code, _, _ := post(t, http.DefaultClient, "http://"+addr+"/hooks/other", `{}`)
	assert.Equal(t, http.StatusNotFound, code)

	require.NoError(t, rt2.Resume(t.Context(), "p"))
	waitTasks(t, rt2, "p", worker.StateRunning)
	code, body, _ := post(t, http.DefaultClient, "http://"+addr+"/hooks/p", `{}`)
	assert.Equal(t, http.StatusNoContent, code, body)
	require.NoError(t, rt2.Delete(t.Context(), "s"))
	code, _, _ = post(t, http.DefaultClient, "http://"+addr+"/hooks/s", `{}`)
	assert.Equal(t, http.StatusNotFound, code, "deleted: its path is gone")
}

// With webhook.tls set the listener speaks HTTPS only, HTTP/2 included,
// and picks up a renewed certificate without a restart.
func TestWebhookTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := infra.SelfSignedCert(t, dir)
	addr := infra.FreeAddr(t)
	rt, _ := webhookRuntime(t, addr, worker.WebhookOptions{TLSCert: certFile, TLSKey: keyFile})
	_, err := rt.Create(t.Context(), "s", hookConfig("/hooks/s"))
	require.NoError(t, err)
	waitTasks(t, rt, "s", worker.StateRunning)

	client := func() *http.Client {
		pemBytes, err := os.ReadFile(certFile)
		require.NoError(t, err)
		pool := x509.NewCertPool()
		require.True(t, pool.AppendCertsFromPEM(pemBytes))
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+addr+"/hooks/s", strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set("authorization", "Bearer hook-token") // HTTP/2 sends header names in lower case
	resp, err := client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, 2, resp.ProtoMajor, "HTTP/2 over TLS")

	code, body, _ := post(t, http.DefaultClient, "http://"+addr+"/hooks/s", `{}`)
	assert.Equal(t, http.StatusBadRequest, code, "plain HTTP is refused: %s", body)

	// A renewed certificate (new key, same files) is served to new connections.
	old := certSerial(t, addr, nil)
	renewed := t.TempDir()
	newCert, newKey := infra.SelfSignedCert(t, renewed)
	for src, dst := range map[string]string{newCert: certFile, newKey: keyFile} {
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(dst, b, 0o600))
		future := time.Now().Add(2 * time.Second) // a later mtime even on coarse clocks
		require.NoError(t, os.Chtimes(dst, future, future))
	}
	require.Eventually(t, func() bool { return certSerial(t, addr, nil) != old }, 10*time.Second, 100*time.Millisecond,
		"the listener serves the renewed certificate")
}

// certSerial returns the serial number of the certificate addr presents.
func certSerial(t *testing.T, addr string, _ *x509.CertPool) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the presented certificate only
	require.NoError(t, err)
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// Hundreds of connections that send their headers (or body) too slowly do
// not hold the listener: each is closed after the read timeouts, the
// connection limit is kept, and a normal request gets through.
func TestWebhookSlowConnectionsDoNotHoldTheListener(t *testing.T) {
	addr := infra.FreeAddr(t)
	rt, _ := webhookRuntime(t, addr, worker.WebhookOptions{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: time.Second, MaxConns: 50})
	_, err := rt.Create(t.Context(), "slow", hookConfig("/hooks/slow"))
	require.NoError(t, err)
	waitTasks(t, rt, "slow", worker.StateRunning)

	const slow = 300
	conns := make([]net.Conn, 0, slow+1)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range slow {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		require.NoError(t, err)
		conns = append(conns, c)
		_, err = c.Write([]byte("POST /hooks/slow HTTP/1.1\r\nHost: x\r\n")) // and never the end of the headers
		require.NoError(t, err)
	}
	// One more that sends its headers and then too little of its body.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	conns = append(conns, c)
	_, err = fmt.Fprint(c, "POST /hooks/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer hook-token\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"slow\":")
	require.NoError(t, err)

	start := time.Now()
	client := &http.Client{Timeout: 30 * time.Second}
	code, body, _ := post(t, client, "http://"+addr+"/hooks/slow", `{"normal":true}`)
	assert.Equal(t, http.StatusNoContent, code, body)
	t.Logf("a normal request behind %d slow connections (limit 50, header timeout 300ms) was answered in %v", slow+1, time.Since(start).Round(time.Millisecond))

	// Every slow connection is closed by the listener.
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := 0
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err := io.Copy(io.Discard, c) // until the server closes
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				mu.Lock()
				open++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Zero(t, open, "connections still held open by the listener after 20s")
}

// A source whose path another instance serves fails with a trace naming
// the owner.
func TestWebhookPathTaken(t *testing.T) {
	rt, _ := webhookRuntime(t, "127.0.0.1:0", worker.WebhookOptions{})
	_, err := rt.Create(t.Context(), "first", hookConfig("/hooks/same"))
	require.NoError(t, err)
	waitTasks(t, rt, "first", worker.StateRunning)
	_, err = rt.Create(t.Context(), "second", hookConfig("/hooks/same"))
	require.NoError(t, err)
	st := waitTasks(t, rt, "second", worker.StateFailed)
	assert.Contains(t, st.Tasks[0].Trace, `served by connector "first"`)
	b, _ := json.Marshal(st)
	assert.NotContains(t, string(b), "hook-token")
}
