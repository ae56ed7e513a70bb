package sidecar

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// The config shape of the mqtt: list, as documented in docs/mqtt.md.
func TestMQTTConfigDecodes(t *testing.T) {
	c := Defaults()
	require.NoError(t, c.DecodeYAML([]byte(`
mqtt:
  - name: plant
    broker: tcp://127.0.0.1:1883
    password: hunter2
    inbound:  [{filter: "sensors/#", qos: 1, topic: sensors}]
    outbound: [{topic: commands, mqttTopic: "devices/{subject}/cmd", qos: 1}]
`)))
	require.NoError(t, c.Validate())
	require.Len(t, c.MQTT, 1)
	require.Equal(t, "devices/{subject}/cmd", c.MQTT[0].Outbound[0].MQTTTopic)
	require.Equal(t, "hunter2", string(c.MQTT[0].Password))

	c.MQTT[0].Inbound[0].QoS = 2
	require.ErrorContains(t, c.Validate(), "mqtt[0]")
	require.Error(t, c.DecodeYAML([]byte("mqtt: [{name: x, brokr: tcp://h:1}]")), "unknown keys are errors")
}

// A device's MQTT message reaches an app's WebSocket subscription through a
// running sidecar, and an app publishes over the WebSocket on the app port.
func TestSidecarServesWebSocketAndMQTT(t *testing.T) {
	broker := infra.StartMosquitto(t)
	cfg := Defaults()
	cfg.App.ID = "app"
	cfg.Data.Dir = t.TempDir()
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	require.NoError(t, cfg.DecodeYAML([]byte("mqtt:\n  - name: plant\n    broker: "+broker.URL()+"\n    inbound: [{filter: \"sensors/#\", qos: 1, topic: sensors}]\n")))
	s, err := Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer s.Shutdown(context.Background())

	d := websocket.Dialer{Subprotocols: []string{"cloudevents.json"}}
	sub, _, err := d.Dial("ws://"+s.APIAddr()+"/v1/ws/subscribe/sensors?group=g", nil)
	require.NoError(t, err)
	defer sub.Close()

	require.Eventually(t, func() bool { return s.endpoints.mqtt[0].Connected() }, 10*time.Second, 20*time.Millisecond)
	dev := paho.NewClient(paho.NewClientOptions().AddBroker(broker.URL()).SetClientID("dev"))
	tok := dev.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	defer dev.Disconnect(100)
	tok = dev.Publish("sensors/s1", 1, false, "21.5")
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())

	require.NoError(t, sub.SetReadDeadline(time.Now().Add(20*time.Second)))
	var got map[string]any
	require.NoError(t, sub.ReadJSON(&got))
	require.Equal(t, "sensors/s1", got["subject"])
	require.NoError(t, sub.WriteJSON(map[string]string{"ack": got["id"].(string)}))

	pub, _, err := d.Dial("ws://"+s.APIAddr()+"/v1/ws/publish/sensors", nil)
	require.NoError(t, err)
	defer pub.Close()
	require.NoError(t, pub.WriteMessage(websocket.TextMessage, []byte(`{"specversion":"1.0","id":"w1","source":"/app","type":"t"}`)))
	var ack map[string]json.RawMessage
	require.NoError(t, pub.ReadJSON(&ack))
	require.JSONEq(t, `"w1"`, string(ack["ack"]))
}

// The profiler is served on the admin port only when admin.pprof says so.
func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := Defaults()
		cfg.Admin.Pprof = on
		s := &Sidecar{cfg: cfg}
		m, err := newMetrics()
		require.NoError(t, err)
		s.metrics = m
		w := httptest.NewRecorder()
		s.adminHandler().ServeHTTP(w, httptest.NewRequest("GET", "/debug/pprof/", nil))
		if on {
			assert.Equal(t, http.StatusOK, w.Code)
		} else {
			assert.Equal(t, http.StatusNotFound, w.Code)
		}
	}
}
