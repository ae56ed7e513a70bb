package protocoltest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/mesh/natsjs"
)

const answerTimeout = 20 * time.Second

// NewMesh opens an embedded mesh in a temp dir, closed at the end of the test.
func NewMesh(t *testing.T) *embedded.Engine {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

// reader reads a durable group that exists before anything is published.
type reader struct {
	t *testing.T
	c mesh.Consumer
}

func newReader(t *testing.T, eng mesh.Engine, topic string) *reader {
	t.Helper()
	c, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: topic, Group: "suite-check"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &reader{t: t, c: c}
}

func (r *reader) next() *event.Event {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), answerTimeout)
	defer cancel()
	m, err := r.c.Next(ctx)
	require.NoError(r.t, err, "no event arrived on the mesh")
	require.NoError(r.t, m.Ack(r.t.Context()))
	return m.Event()
}

func publish(t *testing.T, ep *Endpoint, topic string, body []byte) Answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), answerTimeout)
	defer cancel()
	return ep.PublishStructured(ctx, t, topic, body)
}

func requireStored(t *testing.T, a Answer) {
	t.Helper()
	if a.Unanswered {
		return
	}
	require.Nil(t, a.Problem, "error answer")
	require.True(t, a.Stored, "no success answer")
}

func testRoundTrip(t *testing.T, f Factory, binary bool) {
	eng := NewMesh(t)
	ep := f(t, eng)
	if binary && ep.PublishBinary == nil {
		t.Skipf("%s has no binary mode", ep.Name)
	}
	r := newReader(t, eng, "roundtrip")
	for _, fx := range Fixtures(t) {
		var a Answer
		if binary {
			ctx, cancel := context.WithTimeout(t.Context(), answerTimeout)
			a = ep.PublishBinary(ctx, t, "roundtrip", fx.Event)
			cancel()
		} else {
			a = publish(t, ep, "roundtrip", fx.Structured(t))
		}
		requireStored(t, a)
		RequireSameEvent(t, fx.Event, r.next())
	}
}

func testBatch(t *testing.T, f Factory) {
	eng := NewMesh(t)
	ep := f(t, eng)
	if !ep.Batch {
		t.Skipf("%s has no batch mode", ep.Name)
	}
	r := newReader(t, eng, "roundtrip")
	fx := Fixtures(t)
	body := []byte("[" + string(fx[0].Structured(t)) + "," + string(fx[1].Structured(t)) + "]")
	requireStored(t, publish(t, ep, "roundtrip", body))
	RequireSameEvent(t, fx[0].Event, r.next())
	RequireSameEvent(t, fx[1].Event, r.next())
}

func testOutbound(t *testing.T, f Factory) {
	eng := NewMesh(t)
	ep := f(t, eng)
	if ep.Receive == nil {
		t.Skipf("%s does not deliver events", ep.Name)
	}
	next := ep.Receive(t)
	for _, fx := range Fixtures(t) {
		require.NoError(t, eng.Publish(t.Context(), OutboundTopic, []*event.Event{fx.Event}))
		got := event.New()
		body := next()
		require.NoError(t, json.Unmarshal(body, &got), "%s", body)
		RequireSameEvent(t, fx.Event, &got)
	}
}

// gatedEngine holds every Publish until open is closed.
type gatedEngine struct {
	mesh.Engine
	open    chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (g *gatedEngine) Publish(ctx context.Context, topic string, events []*event.Event, opts ...mesh.PublishOption) error {
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.open:
		return g.Engine.Publish(ctx, topic, events, opts...)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", mesh.ErrUnavailable, ctx.Err())
	}
}

func testNoSuccessBeforeStored(t *testing.T, f Factory) {
	eng := NewMesh(t)
	gate := &gatedEngine{Engine: eng, open: make(chan struct{}), entered: make(chan struct{})}
	ep := f(t, gate)
	r := newReader(t, eng, "gated")
	fx := Fixtures(t)[0]
	answers := make(chan Answer, 1)
	go func() { answers <- publish(t, ep, "gated", fx.Structured(t)) }()
	select {
	case <-gate.entered:
	case <-time.After(answerTimeout):
		t.Fatal("the endpoint never asked the mesh to store the event")
	}
	if ep.Restart != nil {
		// No answer channel: prove the broker was not acked by crashing
		// the endpoint while the mesh holds the event, then checking that
		// it arrives through a fresh endpoint on an open mesh.
		require.True(t, (<-answers).Unanswered)
		ep.Restart(t, eng)
		RequireSameEvent(t, fx.Event, r.next())
		close(gate.open)
		return
	}
	require.Never(t, func() bool { return len(answers) > 0 }, 300*time.Millisecond, 10*time.Millisecond,
		"the endpoint answered before the mesh stored the event")
	close(gate.open)
	requireStored(t, <-answers)
	RequireSameEvent(t, fx.Event, r.next())
}

// Malformed is one malformed message and the problem code it gets.
type Malformed struct {
	Name  string
	Body  string
	Code  string
	Batch bool // only for endpoints with a batch mode
}

// MalformedCases are the malformed messages every endpoint is sent.
var MalformedCases = []Malformed{
	{Name: "not JSON", Body: `{"specversion":`, Code: problem.CodeInvalidRequest},
	{Name: "empty", Body: ``, Code: problem.CodeInvalidRequest},
	{Name: "null", Body: `null`, Code: problem.CodeInvalidRequest},
	{Name: "missing id", Body: `{"specversion":"1.0","source":"/s","type":"t"}`, Code: problem.CodeInvalidEvent},
	{Name: "missing type", Body: `{"specversion":"1.0","id":"1","source":"/s"}`, Code: problem.CodeInvalidEvent},
	{Name: "missing source", Body: `{"specversion":"1.0","id":"1","type":"t"}`, Code: problem.CodeInvalidEvent},
	{Name: "unknown specversion", Body: `{"specversion":"2.0","id":"1","source":"/s","type":"t"}`, Code: problem.CodeInvalidEvent},
	{Name: "bad time", Body: `{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"yesterday"}`, Code: problem.CodeInvalidEvent},
	{Name: "bad extension name", Body: `{"specversion":"1.0","id":"1","source":"/s","type":"t","Bad_Ext":"x"}`, Code: problem.CodeInvalidEvent},
	{Name: "bad data_base64", Body: `{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"%%%"}`, Code: problem.CodeInvalidEvent},
	{Name: "batch with one bad event", Batch: true, Code: problem.CodeInvalidEvent,
		Body: `[{"specversion":"1.0","id":"good","source":"/s","type":"t"},{"specversion":"1.0","id":"bad","source":"/s"}]`},
}

// PublishMalformed sends every applicable malformed case to topic
// "malformed" and returns the answers by case name.
func PublishMalformed(t *testing.T, ep *Endpoint) map[string]Answer {
	t.Helper()
	out := map[string]Answer{}
	for _, c := range MalformedCases {
		if c.Batch && !ep.Batch {
			continue
		}
		out[c.Name] = publish(t, ep, "malformed", []byte(c.Body))
	}
	return out
}

func testMalformed(t *testing.T, f Factory) {
	eng := NewMesh(t)
	ep := f(t, eng)
	r := newReader(t, eng, "malformed")
	answers := PublishMalformed(t, ep)
	var wrapped []Malformed
	for _, c := range MalformedCases {
		a, ok := answers[c.Name]
		if !ok {
			continue
		}
		if ep.MalformedIsWrapped {
			require.True(t, a.Unanswered, c.Name)
			wrapped = append(wrapped, c)
			continue
		}
		require.NotNil(t, a.Problem, "%s: no error answer", c.Name)
		require.False(t, a.Stored, c.Name)
		require.Equal(t, c.Code, a.Problem.Code, "%s: %s", c.Name, a.Problem.Detail)
		require.NotEmpty(t, a.Problem.Detail, c.Name)
		require.Equal(t, problem.TypeBase+c.Code, a.Problem.Type, c.Name)
	}
	// Nothing was published (or, for a wrapping endpoint, exactly the
	// wrapped payloads, unchanged): the next event is the sentinel.
	for _, c := range wrapped {
		got := r.next()
		if c.Body == "" {
			require.Empty(t, got.Data(), c.Name)
		} else {
			require.Equal(t, []byte(c.Body), got.Data(), c.Name)
		}
	}
	sentinel := Fixtures(t)[3]
	requireStored(t, publish(t, ep, "malformed", sentinel.Structured(t)))
	RequireSameEvent(t, sentinel.Event, r.next())
}

// natsServer is a NATS server with JetStream on a fixed loopback port, so
// the suite can take the mesh down and bring it back.
type natsServer struct {
	t    *testing.T
	opts server.Options
	srv  *server.Server
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	n := &natsServer{t: t, opts: server.Options{
		ServerName: "suite", Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	}}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.opts.Port) }

func (n *natsServer) start() {
	n.t.Helper()
	opts := n.opts
	srv, err := server.NewServer(&opts)
	require.NoError(n.t, err)
	srv.Start()
	require.True(n.t, srv.ReadyForConnections(10*time.Second), "nats-server did not start")
	n.srv = srv
}

func (n *natsServer) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func testOutage(t *testing.T, f Factory) {
	ns := startNATS(t)
	eng, err := natsjs.Connect(t.Context(), natsjs.Config{URLs: []string{ns.url()}, PublishTimeout: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	ep := f(t, eng)
	r := newReader(t, eng, "outage")
	fx := Fixtures(t)
	requireStored(t, publish(t, ep, "outage", fx[0].Structured(t)))
	RequireSameEvent(t, fx[0].Event, r.next())

	ns.stop()
	start := time.Now()
	a := publish(t, ep, "outage", fx[1].Structured(t))
	if !a.Unanswered {
		require.NotNil(t, a.Problem, "success answered while the mesh is down")
		require.Equal(t, problem.CodeMeshUnavailable, a.Problem.Code, a.Problem.Detail)
		require.Equal(t, 503, a.Problem.Status)
		t.Logf("%s answered %s after %s", ep.Name, a.Problem.Code, time.Since(start).Round(time.Millisecond))
	}
	ns.start()
	if !a.Unanswered {
		// The client retries; the mesh is back.
		require.Eventually(t, func() bool {
			a := publish(t, ep, "outage", fx[1].Structured(t))
			return a.Stored
		}, answerTimeout, 200*time.Millisecond)
	}
	// Either way the event is stored once the mesh is back (an endpoint
	// without answers retried on its own).
	RequireSameEvent(t, fx[1].Event, r.next())
}
