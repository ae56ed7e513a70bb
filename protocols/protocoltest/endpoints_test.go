package protocoltest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/protocols/httpapi"
	"github.com/meshd/meshd/protocols/mqtt"
	pt "github.com/meshd/meshd/protocols/protocoltest"
	ws "github.com/meshd/meshd/protocols/websocket"
	"github.com/meshd/meshd/test/infra"
)

var quiet = slog.New(slog.DiscardHandler)

func newBridge(t *testing.T, eng mesh.Engine) *bridge.Bridge {
	t.Helper()
	b, err := bridge.New(bridge.Options{Engine: eng, Logger: quiet, Sender: cehttp.NewSender(cehttp.ClientConfig{Timeout: 5 * time.Second}), AckWait: 10 * time.Second})
	require.NoError(t, err)
	return b
}

func decodeProblem(t *testing.T, body []byte) *problem.Problem {
	var p problem.Problem
	require.NoError(t, json.Unmarshal(body, &p), "%s", body)
	return &p
}

// ---- HTTP ----

func httpEndpoint(t *testing.T, eng mesh.Engine) *pt.Endpoint {
	b := newBridge(t, eng)
	srv := httptest.NewServer(httpapi.NewHandler(b, httpapi.Config{AppID: "suite"}, quiet))
	t.Cleanup(srv.Close)
	post := func(ctx context.Context, t *testing.T, topic string, h http.Header, body []byte) pt.Answer {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/publish/"+topic, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err, "no answer")
		defer resp.Body.Close()
		rb, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusNoContent {
			return pt.Answer{Stored: true}
		}
		return pt.Answer{Problem: decodeProblem(t, rb)}
	}
	return &pt.Endpoint{
		Name:  "http",
		Batch: true,
		PublishStructured: func(ctx context.Context, t *testing.T, topic string, body []byte) pt.Answer {
			ct := cehttp.MediaTypeStructured
			if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
				ct = cehttp.MediaTypeBatch
			}
			return post(ctx, t, topic, http.Header{"Content-Type": {ct}}, body)
		},
		PublishBinary: func(ctx context.Context, t *testing.T, topic string, e *event.Event) pt.Answer {
			h := http.Header{}
			h.Set("ce-specversion", e.SpecVersion())
			h.Set("ce-id", e.ID())
			h.Set("ce-source", e.Source())
			h.Set("ce-type", e.Type())
			if e.Subject() != "" {
				h.Set("ce-subject", e.Subject())
			}
			if !e.Time().IsZero() {
				h.Set("ce-time", types.FormatTime(e.Time()))
			}
			if e.DataSchema() != "" {
				h.Set("ce-dataschema", e.DataSchema())
			}
			for k, v := range e.Extensions() {
				s, err := types.Format(v)
				require.NoError(t, err)
				h.Set("ce-"+k, s)
			}
			if e.DataContentType() != "" {
				h.Set("Content-Type", e.DataContentType())
			}
			return post(ctx, t, topic, h, e.Data())
		},
		Receive: func(t *testing.T) func() []byte {
			got := make(chan []byte, 16)
			sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				got <- body
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(sink.Close)
			require.NoError(t, b.Start(t.Context()))
			t.Cleanup(func() { _ = b.Stop(context.Background()) })
			_, err := b.CreateSubscription(t.Context(), bridge.Subscription{ID: "suite-out", Topic: pt.OutboundTopic, Sink: sink.URL, ContentMode: "structured"})
			require.NoError(t, err)
			return func() []byte {
				select {
				case b := <-got:
					return b
				case <-time.After(20 * time.Second):
					t.Fatal("no delivery to the sink")
					return nil
				}
			}
		},
	}
}

// ---- WebSocket ----

type wsClient struct {
	mu sync.Mutex
	c  *websocket.Conn
}

func wsEndpoint(t *testing.T, eng mesh.Engine) *pt.Endpoint {
	b := newBridge(t, eng)
	h := ws.NewHandler(b, eng, ws.Config{PublishTimeout: 5 * time.Second}, quiet)
	srv := httptest.NewServer(h)
	t.Cleanup(func() { h.Close(); srv.Close() })
	base := "ws" + strings.TrimPrefix(srv.URL, "http")
	dial := func(t *testing.T, path string) *websocket.Conn {
		d := websocket.Dialer{Subprotocols: []string{ws.SubprotocolJSON}}
		c, _, err := d.DialContext(t.Context(), base+path, nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	conns := map[string]*wsClient{}
	var connsMu sync.Mutex
	conn := func(t *testing.T, topic string) *wsClient {
		connsMu.Lock()
		defer connsMu.Unlock()
		if c, ok := conns[topic]; ok {
			return c
		}
		c := &wsClient{c: dial(t, "/v1/ws/publish/"+topic)}
		conns[topic] = c
		return c
	}
	return &pt.Endpoint{
		Name:  "websocket",
		Batch: true,
		PublishStructured: func(ctx context.Context, t *testing.T, topic string, body []byte) pt.Answer {
			c := conn(t, topic)
			c.mu.Lock()
			defer c.mu.Unlock()
			require.NoError(t, c.c.WriteMessage(websocket.TextMessage, body))
			if dl, ok := ctx.Deadline(); ok {
				_ = c.c.SetReadDeadline(dl)
			}
			want := 1
			var raws []json.RawMessage
			if json.Unmarshal(body, &raws) == nil && len(raws) > 0 {
				want = len(raws) // a batch: one ack per event
			}
			for i := 0; i < want; i++ {
				_, msg, err := c.c.ReadMessage()
				require.NoError(t, err, "no answer")
				var r struct {
					Ack   string          `json:"ack"`
					Error json.RawMessage `json:"error"`
				}
				require.NoError(t, json.Unmarshal(msg, &r))
				if r.Error != nil {
					return pt.Answer{Problem: decodeProblem(t, r.Error)}
				}
			}
			return pt.Answer{Stored: true}
		},
		Receive: func(t *testing.T) func() []byte {
			c := dial(t, "/v1/ws/subscribe/"+pt.OutboundTopic+"?group=suite-out")
			return func() []byte {
				require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
				_, msg, err := c.ReadMessage()
				require.NoError(t, err)
				var id struct {
					ID string `json:"id"`
				}
				require.NoError(t, json.Unmarshal(msg, &id))
				require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(`{"ack":"`+id.ID+`"}`)))
				return msg
			}
		},
	}
}

// ---- MQTT ----

var mqttSeq atomic.Int64

func mqttFactory(broker *infra.Mosquitto) pt.Factory {
	return func(t *testing.T, eng mesh.Engine) *pt.Endpoint {
		name := fmt.Sprintf("suite%d", mqttSeq.Add(1))
		cfg := mqtt.LinkConfig{
			Name: name, Broker: broker.URL(), PublishTimeout: time.Second, AckWait: 5 * time.Second,
			Outbound: []mqtt.Outbound{{Topic: pt.OutboundTopic, MQTTTopic: name + "-out/{id}", QoS: 1}},
		}
		for _, topic := range pt.Topics {
			cfg.Inbound = append(cfg.Inbound, mqtt.Inbound{Filter: name + "/" + topic, QoS: 1, Topic: topic})
		}
		start := func(t *testing.T, eng mesh.Engine) *mqtt.Link {
			br, err := mqtt.Start(t.Context(), cfg, newBridge(t, eng), eng, quiet)
			require.NoError(t, err)
			t.Cleanup(func() { _ = br.Stop(context.Background()) })
			require.Eventually(t, br.Connected, 10*time.Second, 10*time.Millisecond)
			return br
		}
		current := start(t, eng)

		received := make(chan []byte, 64)
		opts := paho.NewClientOptions().AddBroker(broker.URL()).SetClientID(name + "-app").
			SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { received <- m.Payload() })
		app := paho.NewClient(opts)
		tok := app.Connect()
		require.True(t, tok.WaitTimeout(10*time.Second))
		require.NoError(t, tok.Error())
		t.Cleanup(func() { app.Disconnect(100) })

		return &pt.Endpoint{
			Name:               "mqtt",
			MalformedIsWrapped: true,
			PublishStructured: func(ctx context.Context, t *testing.T, topic string, body []byte) pt.Answer {
				tok := app.Publish(name+"/"+topic, 1, false, body)
				require.True(t, tok.WaitTimeout(10*time.Second))
				require.NoError(t, tok.Error())
				return pt.Answer{Unanswered: true}
			},
			Receive: func(t *testing.T) func() []byte {
				tok := app.Subscribe(name+"-out/#", 1, nil)
				require.True(t, tok.WaitTimeout(10*time.Second))
				require.NoError(t, tok.Error())
				return func() []byte {
					select {
					case b := <-received:
						return b
					case <-time.After(20 * time.Second):
						t.Fatal("nothing published to MQTT")
						return nil
					}
				}
			},
			Restart: func(t *testing.T, eng mesh.Engine) {
				require.NoError(t, current.Stop(t.Context()))
				current = start(t, eng)
			},
		}
	}
}

func TestHTTP(t *testing.T)      { pt.Run(t, httpEndpoint) }
func TestWebSocket(t *testing.T) { pt.Run(t, wsEndpoint) }
func TestMQTT(t *testing.T)      { pt.Run(t, mqttFactory(infra.StartMosquitto(t))) }

// The WebSocket endpoint answers malformed input with exactly the problem
// the HTTP API gives: same code, status and detail.
func TestWebSocketErrorsMatchHTTP(t *testing.T) {
	eng := pt.NewMesh(t)
	h := pt.PublishMalformed(t, httpEndpoint(t, eng))
	w := pt.PublishMalformed(t, wsEndpoint(t, eng))
	require.Equal(t, len(h), len(w))
	for name, a := range h {
		require.NotNil(t, a.Problem, name)
		require.Equal(t, *a.Problem, *w[name].Problem, name)
	}
}
