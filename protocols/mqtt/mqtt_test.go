package mqtt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/protocols/mqtt"
	"github.com/meshd/meshd/test/infra"
)

func openMesh(t *testing.T) (*embedded.Engine, *bridge.Bridge) {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	b, err := bridge.New(bridge.Options{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return eng, b
}

func startLink(t *testing.T, cfg mqtt.LinkConfig, pub mqtt.Publisher, eng mesh.Engine) *mqtt.Link {
	t.Helper()
	br, err := mqtt.Start(t.Context(), cfg, pub, eng, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { _ = br.Stop(context.Background()) })
	require.Eventually(t, br.Connected, 10*time.Second, 20*time.Millisecond)
	return br
}

// client is a test MQTT client with a persistent session that records what
// it receives.
type client struct {
	c    paho.Client
	mu   sync.Mutex
	msgs []paho.Message
}

func newClient(t *testing.T, broker, id string, subscribe ...string) *client {
	t.Helper()
	tc := &client{}
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(500 * time.Millisecond).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			tc.mu.Lock()
			tc.msgs = append(tc.msgs, m)
			tc.mu.Unlock()
		})
	if len(subscribe) > 0 {
		opts.SetOnConnectHandler(func(c paho.Client) {
			for _, f := range subscribe {
				c.Subscribe(f, 1, nil)
			}
		})
	}
	tc.c = paho.NewClient(opts)
	tok := tc.c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	for _, f := range subscribe {
		tok := tc.c.Subscribe(f, 1, nil)
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error())
	}
	t.Cleanup(func() { tc.c.Disconnect(100) })
	return tc
}

func (c *client) publish(t *testing.T, topic string, payload []byte) {
	t.Helper()
	tok := c.c.Publish(topic, 1, false, payload)
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
}

func (c *client) received() []paho.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]paho.Message(nil), c.msgs...)
}

// collect reads events of a durable group until cond holds.
func collect(t *testing.T, eng mesh.Engine, topic, group string, cond func([]*event.Event) bool) []*event.Event {
	t.Helper()
	cons, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: topic, Group: group})
	require.NoError(t, err)
	defer cons.Close()
	var got []*event.Event
	deadline := time.Now().Add(20 * time.Second)
	for !cond(got) {
		require.True(t, time.Now().Before(deadline), "timed out with %d events", len(got))
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		m, err := cons.Next(ctx)
		cancel()
		if err != nil {
			continue
		}
		got = append(got, m.Event())
		require.NoError(t, m.Ack(t.Context()))
	}
	return got
}

func atLeast(n int) func([]*event.Event) bool {
	return func(es []*event.Event) bool { return len(es) >= n }
}

func cloudEvent(id string) []byte {
	return []byte(`{"specversion":"1.0","id":"` + id + `","source":"/dev","type":"reading","myext":"x","data":{"v":1}}`)
}

func TestInboundWrapsAndTakesCloudEventsAsIs(t *testing.T) {
	broker := infra.StartMosquitto(t)
	eng, b := openMesh(t)
	startLink(t, mqtt.LinkConfig{
		Name: "plant", Broker: broker.URL(),
		Inbound: []mqtt.Inbound{{Filter: "sensors/+/temperature", QoS: 1, Topic: "sensors"}},
	}, b, eng)
	dev := newClient(t, broker.URL(), "dev")
	dev.publish(t, "sensors/s1/temperature", []byte("21.5"))
	dev.publish(t, "sensors/s2/temperature", cloudEvent("ce-1"))
	dev.publish(t, "sensors/s3/humidity", []byte("ignored"))
	dev.publish(t, "sensors/s4/temperature", []byte{0xff, 0x00, 0x01})

	got := collect(t, eng, "sensors", "check", atLeast(3))
	require.Len(t, got, 3)
	w := got[0]
	require.Equal(t, "sensors/s1/temperature", w.Subject())
	require.Equal(t, "mqtt://"+broker.Addr()+"/sensors/s1/temperature", w.Source())
	require.Equal(t, mqtt.DefaultWrappedType, w.Type())
	require.Equal(t, "application/json", w.DataContentType())
	require.Equal(t, []byte("21.5"), w.Data())
	require.NotEmpty(t, w.ID())

	ce := got[1]
	require.Equal(t, "ce-1", ce.ID())
	require.Equal(t, "/dev", ce.Source())
	require.Equal(t, "x", ce.Extensions()["myext"])
	require.JSONEq(t, `{"v":1}`, string(ce.Data()))

	require.Equal(t, []byte{0xff, 0x00, 0x01}, got[2].Data())
	require.Equal(t, "application/octet-stream", got[2].DataContentType())
}

func TestOutboundTemplateFilterAndQoS1(t *testing.T) {
	broker := infra.StartMosquitto(t)
	eng, b := openMesh(t)
	startLink(t, mqtt.LinkConfig{
		Name: "plant", Broker: broker.URL(),
		Outbound: []mqtt.Outbound{{Topic: "commands", MQTTTopic: "devices/{subject}/cmd", QoS: 1,
			Filters: []map[string]any{{"exact": map[string]any{"type": "cmd"}}}}},
	}, b, eng)
	dev := newClient(t, broker.URL(), "dev", "devices/#")
	for i, typ := range []string{"cmd", "other", "cmd"} {
		e := event.New()
		e.SetID(fmt.Sprint("c", i))
		e.SetSource("/ctl")
		e.SetType(typ)
		e.SetSubject(fmt.Sprint("d", i))
		require.NoError(t, e.SetData("application/json", map[string]int{"n": i}))
		require.NoError(t, b.Publish(t.Context(), "commands", []*event.Event{&e}))
	}
	require.Eventually(t, func() bool { return len(dev.received()) >= 2 }, 10*time.Second, 20*time.Millisecond)
	msgs := dev.received()
	require.Len(t, msgs, 2)
	require.Equal(t, "devices/d0/cmd", msgs[0].Topic())
	require.Equal(t, "devices/d2/cmd", msgs[1].Topic())
	var got event.Event
	require.NoError(t, json.Unmarshal(msgs[1].Payload(), &got))
	require.Equal(t, "c2", got.ID())
	require.JSONEq(t, `{"n":2}`, string(got.Data()))
}

// QoS 1 messages queued by the broker for meshd's persistent session
// survive a broker restart, both ways.
func TestQoS1ThroughBrokerRestart(t *testing.T) {
	broker := infra.StartMosquitto(t)
	eng, b := openMesh(t)
	cfg := mqtt.LinkConfig{
		Name: "plant", Broker: broker.URL(), PublishTimeout: time.Second, AckWait: 3 * time.Second,
		Inbound:  []mqtt.Inbound{{Filter: "sensors/#", QoS: 1, Topic: "sensors"}},
		Outbound: []mqtt.Outbound{{Topic: "commands", MQTTTopic: "devices/{subject}/cmd", QoS: 1}},
	}
	br := startLink(t, cfg, b, eng) // creates the persistent session
	require.NoError(t, br.Stop(t.Context()))

	dev := newClient(t, broker.URL(), "dev", "devices/#")
	for i := range 5 {
		dev.publish(t, "sensors/s/t", cloudEvent(fmt.Sprint("in-", i)))
	}
	broker.Restart()
	startLink(t, cfg, b, eng)
	for i := range 5 {
		dev.publish(t, "sensors/s/t", cloudEvent(fmt.Sprint("in-", 5+i)))
	}
	// Outbound while the broker is down: held by the mesh until it is back.
	broker.Stop()
	for i := range 5 {
		e := event.New()
		e.SetID(fmt.Sprint("out-", i))
		e.SetSource("/ctl")
		e.SetType("cmd")
		e.SetSubject("d1")
		require.NoError(t, b.Publish(t.Context(), "commands", []*event.Event{&e}))
	}
	broker.Start()

	got := collect(t, eng, "sensors", "check", func(es []*event.Event) bool { return len(ids(es)) >= 10 })
	for i := range 10 {
		require.Contains(t, ids(got), fmt.Sprint("in-", i))
	}
	require.Eventually(t, func() bool {
		seen := map[string]bool{}
		for _, m := range dev.received() {
			var e event.Event
			if json.Unmarshal(m.Payload(), &e) == nil {
				seen[e.ID()] = true
			}
		}
		return len(seen) == 5
	}, 30*time.Second, 50*time.Millisecond)
}

func ids(es []*event.Event) map[string]bool {
	out := map[string]bool{}
	for _, e := range es {
		out[e.ID()] = true
	}
	return out
}

// gatedPublisher blocks every publish until open is closed, recording that
// it was called.
type gatedPublisher struct {
	next   mqtt.Publisher
	open   chan struct{}
	called chan struct{}
	once   sync.Once
}

func (g *gatedPublisher) Publish(ctx context.Context, topic string, events []*event.Event) error {
	g.once.Do(func() { close(g.called) })
	select {
	case <-g.open:
		return g.next.Publish(ctx, topic, events)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A meshd stopped while messages are in flight (received from the broker,
// not yet stored) loses none: they were not acked, so the broker sends them
// again to the next session.
func TestMeshdRestartWithMessagesInFlight(t *testing.T) {
	broker := infra.StartMosquitto(t)
	eng, b := openMesh(t)
	cfg := mqtt.LinkConfig{
		Name: "plant", Broker: broker.URL(),
		Inbound: []mqtt.Inbound{{Filter: "sensors/#", QoS: 1, Topic: "sensors"}},
	}
	gate := &gatedPublisher{next: b, open: make(chan struct{}), called: make(chan struct{})}
	first := startLink(t, cfg, gate, eng)
	dev := newClient(t, broker.URL(), "dev")
	for i := range 20 {
		dev.publish(t, "sensors/s/t", cloudEvent(fmt.Sprint("m-", i)))
	}
	select {
	case <-gate.called:
	case <-time.After(10 * time.Second):
		t.Fatal("the bridge never tried to store a message")
	}
	require.NoError(t, first.Stop(t.Context())) // crash-like: nothing was stored or acked

	startLink(t, cfg, b, eng)
	got := collect(t, eng, "sensors", "check", func(es []*event.Event) bool { return len(ids(es)) >= 20 })
	for i := range 20 {
		require.Contains(t, ids(got), fmt.Sprint("m-", i))
	}
}

func TestConfigValidation(t *testing.T) {
	ok := mqtt.LinkConfig{Name: "p", Broker: "tcp://127.0.0.1:1883", Inbound: []mqtt.Inbound{{Filter: "a/#", Topic: "a"}}}
	require.NoError(t, ok.Validate())
	for name, mutate := range map[string]func(*mqtt.LinkConfig){
		"name":     func(c *mqtt.LinkConfig) { c.Name = "a b" },
		"broker":   func(c *mqtt.LinkConfig) { c.Broker = "http://x" },
		"filter":   func(c *mqtt.LinkConfig) { c.Inbound[0].Filter = "a/#/b" },
		"qos":      func(c *mqtt.LinkConfig) { c.Inbound[0].QoS = 2 },
		"topic":    func(c *mqtt.LinkConfig) { c.Inbound[0].Topic = "a b" },
		"template": func(c *mqtt.LinkConfig) { c.Outbound = []mqtt.Outbound{{Topic: "x", MQTTTopic: "a/{Subject}"}} },
		"wildcard": func(c *mqtt.LinkConfig) { c.Outbound = []mqtt.Outbound{{Topic: "x", MQTTTopic: "a/+"}} },
		"tls":      func(c *mqtt.LinkConfig) { c.TLS.CertFile = "x" },
	} {
		c := ok
		c.Inbound = append([]mqtt.Inbound(nil), ok.Inbound...)
		mutate(&c)
		require.Error(t, c.Validate(), name)
	}
	require.NotContains(t, fmt.Sprint(mqtt.LinkConfig{Password: "hunter2"}), "hunter2")
	b, err := json.Marshal(mqtt.LinkConfig{Password: "hunter2"})
	require.NoError(t, err)
	require.NotContains(t, string(b), "hunter2")
}
