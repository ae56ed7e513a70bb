package sidecar

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// startTest starts a sidecar on loopback ports with edit applied to the
// defaults.
func startTest(t *testing.T, edit func(*Config)) *Sidecar {
	t.Helper()
	cfg := Defaults()
	cfg.App.ID = "sec"
	cfg.Data.Dir = t.TempDir()
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Webhook.Listen = "127.0.0.1:0"
	if edit != nil {
		edit(&cfg)
	}
	s, err := Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s
}

// The admin token guards every admin path but the probes; the probe
// listener serves the probes only; /metrics is open only when configured.
func TestAdminTokenAndProbeListener(t *testing.T) {
	for _, openMetrics := range []bool{false, true} {
		t.Run(fmt.Sprintf("openMetrics=%v", openMetrics), func(t *testing.T) {
			s := startTest(t, func(c *Config) {
				c.Admin.Token = "adm1n-t0ken"
				c.Admin.ProbeListen = "127.0.0.1:0"
				c.Admin.OpenMetrics = openMetrics
			})
			admin, probe := "http://"+s.AdminAddr(), "http://"+s.ProbeAddr()
			bearer := http.Header{"Authorization": {"Bearer adm1n-t0ken"}}
			metricsOpen := http.StatusUnauthorized
			probeMetrics := http.StatusNotFound
			if openMetrics {
				metricsOpen, probeMetrics = http.StatusOK, http.StatusOK
			}
			for _, tc := range []struct {
				url    string
				header http.Header
				want   int
			}{
				{admin + "/healthz", nil, 200},
				{admin + "/readyz", nil, 200},
				{admin + "/metrics", nil, metricsOpen},
				{admin + "/metrics", bearer, 200},
				{admin + "/v1/connectors", nil, 401},
				{admin + "/v1/connectors", http.Header{"Authorization": {"Bearer wrong"}}, 401},
				{admin + "/v1/connectors", http.Header{"Meshd-Api-Token": {"adm1n-t0ken"}}, 401},
				{admin + "/v1/connector-plugins", nil, 401},
				{admin + "/v1/connectors", bearer, 200},
				{admin + "/nope", nil, 401},
				{admin + "/healthz/", nil, 401},
				{probe + "/healthz", nil, 200},
				{probe + "/readyz", nil, 200},
				{probe + "/metrics", nil, probeMetrics},
				{probe + "/v1/connectors", bearer, 404},
				// The dashboard's files hold no data: a browser opening
				// the page cannot send the token. Its API calls need it.
				{admin + "/ui/", nil, 200},
				{admin + "/ui/app.js", nil, 200},
				{admin + "/v1/overview", nil, 401},
				{probe + "/ui/", nil, 404},
				// /readyz?verbose names every subscription and connector.
				{admin + "/readyz?verbose", nil, 401},
				{admin + "/readyz?verbose", bearer, 200},
				{probe + "/readyz?verbose", nil, 404},
			} {
				code, body := infra.Call(t, "GET", tc.url, tc.header, "")
				assert.Equal(t, tc.want, code, "%s %v: %s", tc.url, tc.header, body)
				assert.NotContains(t, body, "adm1n-t0ken")
			}
			code, _ := infra.Call(t, "POST", admin+"/v1/connectors/x/restart", http.Header{"Origin": {"https://evil.example"}, "Authorization": {"Bearer adm1n-t0ken"}}, "")
			assert.Equal(t, http.StatusForbidden, code, "a page of another origin may not call the admin API")
		})
	}
}

// Subscriptions whose sink is one of meshd's own listeners, or a cloud
// metadata address, are refused when created, however the sink names it.
func TestSubscriptionSinkOnOwnListenerIsRefused(t *testing.T) {
	s := startTest(t, func(c *Config) { c.Admin.ProbeListen = "127.0.0.1:0" })
	_, adminPort, _ := net.SplitHostPort(s.AdminAddr())
	_, apiPort, _ := net.SplitHostPort(s.APIAddr())
	_, probePort, _ := net.SplitHostPort(s.ProbeAddr())
	for i, sink := range []string{
		"http://" + s.AdminAddr() + "/v1/connectors",
		"http://localhost:" + adminPort + "/v1/connectors",
		"http://0.0.0.0:" + apiPort + "/v1/publish/loop",
		"http://127.0.0.1:" + probePort + "/healthz",
		"http://169.254.169.254/latest/meta-data/",
	} {
		body := fmt.Sprintf(`{"id":"s%d","topic":"t","sink":%q}`, i, sink)
		code, answer := infra.Call(t, "POST", "http://"+s.APIAddr()+"/v1/subscriptions", http.Header{"Content-Type": {"application/json"}}, body)
		assert.Equal(t, http.StatusBadRequest, code, "%s: %s", sink, answer)
		assert.Contains(t, answer, "invalid-subscription")
	}
	code, list := infra.Call(t, "GET", "http://"+s.APIAddr()+"/v1/subscriptions", nil, "")
	require.Equal(t, 200, code)
	assert.JSONEq(t, "[]", list)
}

// slowRequest opens a connection and sends the headers of a publish that
// declares a body of declared bytes, then 10 bytes of it, and stops.
func slowRequest(t *testing.T, addr string, declared int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = fmt.Fprintf(c, "POST /v1/publish/slow HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n0123456789", addr, declared)
	require.NoError(t, err)
	return c
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Requests that declare a large body and send little of it hold little
// memory (the body is read as it arrives, not allocated as declared), and
// are cut off after api.readTimeout.
func TestIncompleteRequestsHoldNoMemory(t *testing.T) {
	const n = 200
	s := startTest(t, nil)
	maxBody := int(Defaults().API.MaxBodyBytes)

	base := runtime.NumGoroutine()
	before := heapInUse()
	for range n {
		slowRequest(t, s.APIAddr(), maxBody)
	}
	// Each request is in its handler, waiting for its body: a goroutine per
	// connection. (Nine in ten: goroutines of earlier tests that were still
	// ending when base was read may be gone by now.)
	require.Eventually(t, func() bool { return runtime.NumGoroutine() >= base+n*9/10 }, 10*time.Second, 10*time.Millisecond)
	grown := float64(heapInUse()) - float64(before)
	declared := float64(n * maxBody)
	ratio := grown / declared
	t.Logf("%d requests declaring %d bytes each: heap grew by %.1f MiB, %.4f of the %.0f MiB declared", n, maxBody, grown/(1<<20), ratio, declared/(1<<20))
	assert.Less(t, ratio, 0.02, "incomplete requests hold memory as if their bodies had arrived")
}

func TestSlowRequestsAreCutOff(t *testing.T) {
	s := startTest(t, func(c *Config) {
		c.API.ReadTimeout = 300 * time.Millisecond
		c.API.ReadHeaderTimeout = 200 * time.Millisecond
	})
	body := slowRequest(t, s.APIAddr(), 1<<20)
	head, err := net.Dial("tcp", s.APIAddr())
	require.NoError(t, err)
	defer head.Close()
	_, err = fmt.Fprintf(head, "POST /v1/publish/slow HTTP/1.1\r\nHost: x\r\n")
	require.NoError(t, err)
	for name, c := range map[string]net.Conn{"a trickling body": body, "trickling headers": head} {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err := io.ReadAll(c) // whatever the server answers, it closes
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "%s: the server held the connection for 10s", name)
	}

	// A WebSocket is not cut off by api.readTimeout.
	d := websocket.Dialer{Subprotocols: []string{"cloudevents.json"}}
	sub, _, err := d.Dial("ws://"+s.APIAddr()+"/v1/ws/subscribe/ws?group=g", nil)
	require.NoError(t, err)
	defer sub.Close()
	time.Sleep(3 * 300 * time.Millisecond) // what is tested is that this much time passed
	code, answer := infra.Call(t, "POST", "http://"+s.APIAddr()+"/v1/publish/ws", http.Header{"Content-Type": {"text/plain"}}, "hi")
	require.Equal(t, http.StatusNoContent, code, answer)
	require.NoError(t, sub.SetReadDeadline(time.Now().Add(10*time.Second)))
	var got map[string]any
	require.NoError(t, sub.ReadJSON(&got), "the WebSocket outlived api.readTimeout")
	assert.Equal(t, "hi", got["data"])
}

// api.maxConns bounds open connections: one more waits until one closes.
func TestAPIMaxConns(t *testing.T) {
	s := startTest(t, func(c *Config) { c.API.MaxConns = 3 })
	held := make([]net.Conn, 3)
	for i := range held {
		held[i] = slowRequest(t, s.APIAddr(), 100)
	}
	extra, err := net.Dial("tcp", s.APIAddr())
	require.NoError(t, err, "the kernel accepts it into its queue")
	defer extra.Close()
	_, err = fmt.Fprintf(extra, "GET /v1/subscriptions HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, extra.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = bufio.NewReader(extra).ReadByte()
	var ne net.Error
	require.ErrorAs(t, err, &ne, "a fourth connection was served while three were open")
	require.True(t, ne.Timeout())

	held[0].Close()
	require.NoError(t, extra.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(extra), nil)
	require.NoError(t, err, "served once a connection closed")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}
