package websocket_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/mesh/natsjs"
	ws "github.com/meshd/meshd/protocols/websocket"
)

type env struct {
	eng *embedded.Engine
	h   *ws.Handler
	srv *httptest.Server
}

func newEnv(t *testing.T, cfg ws.Config) *env {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	b, err := bridge.New(bridge.Options{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	h := ws.NewHandler(b, eng, cfg, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(h)
	t.Cleanup(func() { h.Close(); srv.Close() })
	return &env{eng: eng, h: h, srv: srv}
}

func (e *env) url(path string) string { return "ws" + strings.TrimPrefix(e.srv.URL, "http") + path }

func (e *env) dial(t *testing.T, path string, header http.Header) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{ws.SubprotocolJSON}, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.DialContext(t.Context(), e.url(path), header)
	require.NoError(t, err)
	require.Equal(t, ws.SubprotocolJSON, resp.Header.Get("Sec-WebSocket-Protocol"))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

type reply struct {
	Ack   string          `json:"ack"`
	Error json.RawMessage `json:"error"`
	ID    string          `json:"id"`
	IDs   []string        `json:"ids"`
}

func (r reply) code(t *testing.T) string {
	var p struct{ Code, Detail string }
	require.NoError(t, json.Unmarshal(r.Error, &p))
	return p.Code
}

func read(t *testing.T, c *websocket.Conn) []byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, b, err := c.ReadMessage()
	require.NoError(t, err)
	return b
}

func readReply(t *testing.T, c *websocket.Conn) reply {
	t.Helper()
	var r reply
	require.NoError(t, json.Unmarshal(read(t, c), &r))
	return r
}

func readEvent(t *testing.T, c *websocket.Conn) event.Event {
	t.Helper()
	e := event.New()
	b := read(t, c)
	require.NoError(t, json.Unmarshal(b, &e), string(b))
	return e
}

func send(t *testing.T, c *websocket.Conn, s string) {
	t.Helper()
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(s)))
}

func ce(id string) string {
	return `{"specversion":"1.0","id":"` + id + `","source":"/test","type":"t","data":{"n":1}}`
}

// publishN publishes n events e0..e(n-1) directly on the mesh.
func publishN(t *testing.T, eng mesh.Engine, topic string, n int) {
	t.Helper()
	for i := range n {
		e := event.New()
		e.SetID("e" + string(rune('0'+i)))
		e.SetSource("/test")
		e.SetType("t")
		require.NoError(t, eng.Publish(t.Context(), topic, []*event.Event{&e}))
	}
}

func TestPublishAcksAfterStoreAndSurvivesMalformed(t *testing.T) {
	e := newEnv(t, ws.Config{})
	// A durable group created before publishing sees everything stored.
	cons, err := e.eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: "orders", Group: "check"})
	require.NoError(t, err)
	defer cons.Close()

	c := e.dial(t, "/v1/ws/publish/orders", nil)
	send(t, c, ce("a1"))
	require.Equal(t, "a1", readReply(t, c).Ack)

	send(t, c, `{"specversion":"1.0","id":"bad","source":"/x"}`) // no type
	r := readReply(t, c)
	require.Equal(t, "invalid-event", r.code(t))
	require.Equal(t, "bad", r.ID)

	send(t, c, `not json`)
	require.Equal(t, "invalid-request", readReply(t, c).code(t))

	send(t, c, "["+ce("b1")+","+ce("b2")+"]")
	require.Equal(t, "b1", readReply(t, c).Ack)
	require.Equal(t, "b2", readReply(t, c).Ack)

	send(t, c, "["+ce("c1")+`,{"specversion":"9.9"}]`)
	r = readReply(t, c)
	require.Equal(t, "invalid-event", r.code(t))
	require.Equal(t, []string{"c1", ""}, r.IDs)

	var got []string
	for len(got) < 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		m, err := cons.Next(ctx)
		cancel()
		require.NoError(t, err)
		got = append(got, m.Event().ID())
		require.NoError(t, m.Ack(t.Context()))
	}
	require.Equal(t, []string{"a1", "b1", "b2"}, got)
}

func TestPublishTooLargeKeepsConnection(t *testing.T) {
	e := newEnv(t, ws.Config{MaxMessageBytes: 200})
	c := e.dial(t, "/v1/ws/publish/orders", nil)
	send(t, c, `{"specversion":"1.0","id":"big","source":"/x","type":"t","data":"`+strings.Repeat("x", 500)+`"}`)
	require.Equal(t, "too-large", readReply(t, c).code(t))
	send(t, c, ce("small"))
	require.Equal(t, "small", readReply(t, c).Ack)
}

func TestPublishInvalidTopicIsRefusedAtHandshake(t *testing.T) {
	e := newEnv(t, ws.Config{})
	_, resp, err := websocket.DefaultDialer.Dial(e.url("/v1/ws/publish/bad%20topic"), nil)
	require.Error(t, err)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestSubscribeAckNackAndInFlightBound(t *testing.T) {
	e := newEnv(t, ws.Config{AckTimeout: 30 * time.Second})
	c := e.dial(t, "/v1/ws/subscribe/orders?group=g1&maxInFlight=2", nil)
	publishN(t, e.eng, "orders", 4)

	first, second := readEvent(t, c), readEvent(t, c)
	require.Equal(t, []string{"e0", "e1"}, []string{first.ID(), second.ID()})
	// Two unacked: nothing more arrives.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, _, err := c.ReadMessage()
	require.Error(t, err, "a third event arrived while two were unacked")
	// A timed-out read breaks a gorilla conn; reconnect to the same group:
	// the first connection's unacked events come back at once.
	require.NoError(t, c.Close())
	c = e.dial(t, "/v1/ws/subscribe/orders?group=g1&maxInFlight=2", nil)
	seen := map[string]int{}
	for range 2 {
		seen[readEvent(t, c).ID()]++
	}
	require.Equal(t, map[string]int{"e0": 1, "e1": 1}, seen)

	send(t, c, `{"nack":"e0"}`)
	send(t, c, `{"ack":"e1"}`)
	for len(seen) < 4 || seen["e0"] < 2 {
		ev := readEvent(t, c)
		seen[ev.ID()]++
		send(t, c, `{"ack":"`+ev.ID()+`"}`)
	}
	send(t, c, `{"ack":"nope"}`)
	r := readReply(t, c)
	require.Equal(t, "invalid-request", r.code(t))
	require.Equal(t, "nope", r.ID)
	send(t, c, `garbage`)
	require.Equal(t, "invalid-request", readReply(t, c).code(t))
}

func TestSubscribeRedeliversAfterAckTimeout(t *testing.T) {
	e := newEnv(t, ws.Config{AckTimeout: 500 * time.Millisecond})
	c := e.dial(t, "/v1/ws/subscribe/orders?group=g1", nil)
	publishN(t, e.eng, "orders", 1)
	require.Equal(t, "e0", readEvent(t, c).ID())
	again := readEvent(t, c) // not acked: comes back after the ack timeout
	require.Equal(t, "e0", again.ID())
	send(t, c, `{"ack":"e0"}`)
}

func TestSubscribeFilterAndFanOut(t *testing.T) {
	e := newEnv(t, ws.Config{})
	filter := `{"exact":{"type":"keep"}}`
	a := e.dial(t, "/v1/ws/subscribe/orders?filter="+urlQuery(filter), nil)
	b := e.dial(t, "/v1/ws/subscribe/orders", nil)
	for _, typ := range []string{"drop", "keep"} {
		ev := event.New()
		ev.SetID(typ)
		ev.SetSource("/t")
		ev.SetType(typ)
		require.NoError(t, e.eng.Publish(t.Context(), "orders", []*event.Event{&ev}))
	}
	require.Equal(t, "keep", readEvent(t, a).ID())
	require.Equal(t, "drop", readEvent(t, b).ID())
	require.Equal(t, "keep", readEvent(t, b).ID())
}

func TestDeadClientsEventsGoBack(t *testing.T) {
	e := newEnv(t, ws.Config{PingInterval: 100 * time.Millisecond, AckTimeout: time.Minute})
	// The dead client reads its event, then stops reading: it answers no
	// more pings (gorilla answers pings only while reading).
	dead := e.dial(t, "/v1/ws/subscribe/orders?group=g", nil)
	publishN(t, e.eng, "orders", 1)
	require.Equal(t, "e0", readEvent(t, dead).ID())

	alive := e.dial(t, "/v1/ws/subscribe/orders?group=g", nil)
	// Well before the one-minute ack timeout, the event moves over.
	require.Equal(t, "e0", readEvent(t, alive).ID())
}

func TestTokenAndOrigin(t *testing.T) {
	e := newEnv(t, ws.Config{Token: "s3cret", AllowedOrigins: []string{"https://app.example"}})
	_, resp, err := websocket.DefaultDialer.Dial(e.url("/v1/ws/publish/orders"), nil)
	require.Error(t, err)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	e.dial(t, "/v1/ws/publish/orders", http.Header{"Authorization": {"Bearer s3cret"}})

	d := websocket.Dialer{Subprotocols: []string{ws.SubprotocolJSON, ws.TokenSubprotocolPrefix + base64.RawURLEncoding.EncodeToString([]byte("s3cret"))}}
	c, resp, err := d.Dial(e.url("/v1/ws/publish/orders"), http.Header{"Origin": {"https://app.example"}})
	require.NoError(t, err)
	require.Equal(t, ws.SubprotocolJSON, resp.Header.Get("Sec-WebSocket-Protocol"), "the token is never echoed")
	c.Close()

	for origin, ok := range map[string]bool{"https://evil.example": false, "http://localhost:3000": true, "http://127.0.0.1:8080": true} {
		c, resp, err := websocket.DefaultDialer.Dial(e.url("/v1/ws/publish/orders"), http.Header{"Origin": {origin}, "Meshd-Api-Token": {"s3cret"}})
		if ok {
			require.NoError(t, err, origin)
			c.Close()
		} else {
			require.Error(t, err, origin)
			require.Equal(t, http.StatusForbidden, resp.StatusCode, origin)
		}
	}
}

func TestAvroIsRefusedWithReason(t *testing.T) {
	e := newEnv(t, ws.Config{})
	d := websocket.Dialer{Subprotocols: []string{ws.SubprotocolAvro}}
	c, _, err := d.Dial(e.url("/v1/ws/publish/orders"), nil)
	require.NoError(t, err)
	defer c.Close()
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, websocket.CloseUnsupportedData, ce.Code)
	require.Contains(t, ce.Text, "cloudevents.json")
}

func TestCloseEndsConnections(t *testing.T) {
	e := newEnv(t, ws.Config{})
	c := e.dial(t, "/v1/ws/subscribe/orders", nil)
	e.h.Close()
	_, _, err := c.ReadMessage()
	require.True(t, websocket.IsCloseError(err, websocket.CloseGoingAway), "%v", err)
}

// Subscribers without a group use consumers of their own that go with the
// connection: many more come and go than the mesh holds at once, and one
// over the limit is told so with a 429, not a retryable 503.
func TestEphemeralSubscribersFreeTheirConsumers(t *testing.T) {
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir(), Mesh: natsjs.Config{MaxConsumers: 3}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	b, err := bridge.New(bridge.Options{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	h := ws.NewHandler(b, eng, ws.Config{}, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(h)
	t.Cleanup(func() { h.Close(); srv.Close() })
	e := &env{eng: eng, h: h, srv: srv}
	d := websocket.Dialer{Subprotocols: []string{ws.SubprotocolJSON}}
	for i := range 10 {
		// The consumer of a closed connection is deleted as it closes;
		// allow the server a moment before the next comes.
		require.Eventually(t, func() bool {
			c, _, err := d.Dial(e.url("/v1/ws/subscribe/orders"), nil)
			if err != nil {
				return false
			}
			return c.Close() == nil
		}, 5*time.Second, 20*time.Millisecond, "subscriber %d of 10 with room for 3", i)
	}
	require.Eventually(t, func() bool {
		var open []*websocket.Conn
		defer func() {
			for _, c := range open {
				_ = c.Close()
			}
		}()
		for range 3 {
			c, _, err := d.Dial(e.url("/v1/ws/subscribe/orders"), nil)
			if err != nil {
				return false
			}
			open = append(open, c)
		}
		_, resp, err := d.Dial(e.url("/v1/ws/subscribe/orders"), nil)
		if err == nil || resp.StatusCode != http.StatusTooManyRequests {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		assert.Contains(t, string(body), "limit-reached")
		assert.Empty(t, resp.Header.Get("Retry-After"))
		return true
	}, 10*time.Second, 50*time.Millisecond, "three at once fill the mesh; a fourth is refused with 429")
}
