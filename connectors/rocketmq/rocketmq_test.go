package rocketmq_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/rocketmq"
	"github.com/meshd/meshd/connectors/rocketmq/remoting"
	"github.com/meshd/meshd/connectors/worker"
	rmq "github.com/meshd/meshd/test/infra/rocketmq"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runChild() // the meshd process of TestSourceResumesAfterKill9
		return
	}
	rocketmq.InstallClientLog() // before any client runs: replacing the client's logger races with one
	os.Exit(m.Run())
}

const wait = 30 * time.Second

var instances atomic.Int64

// producerFor is an application's producer: the official client.
func producerFor(t testing.TB, s *rmq.Server, opts ...producer.Option) interface {
	SendSync(context.Context, ...*primitive.Message) (*primitive.SendResult, error)
} {
	t.Helper()
	p, err := producer.NewDefaultProducer(append([]producer.Option{
		producer.WithNameServer([]string{s.NameServer()}),
		producer.WithGroupName("app"),
		producer.WithInstanceName(fmt.Sprintf("app-%d", instances.Add(1))),
		producer.WithRetry(0),
	}, opts...)...)
	require.NoError(t, err)
	require.NoError(t, p.Start())
	t.Cleanup(func() { _ = p.Shutdown() })
	return p
}

// send sends one message per key (the key as body and key), retrying
// while the broker is away.
func send(ctx context.Context, p interface {
	SendSync(context.Context, ...*primitive.Message) (*primitive.SendResult, error)
}, topic string, keys []string, tag string) error {
	for _, k := range keys {
		m := primitive.NewMessage(topic, []byte(k))
		m.WithKeys([]string{k})
		if tag != "" {
			m.WithTag(tag)
		}
		for {
			_, err := p.SendSync(ctx, m)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("sending %s: %w", k, err)
			}
			time.Sleep(20 * time.Millisecond) // the broker restarts; a retry pace, not a synchronisation
		}
	}
	return nil
}

func ceIDs(t testing.TB, s *rmq.Server, topic string) []string {
	msgs, err := s.Messages(topic)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, m.Properties["CE_id"])
	}
	return out
}

func TestSinkSuite(t *testing.T) {
	s := rmq.Start(t, rmq.Config{})
	require.NoError(t, s.CreateTopic("meshd-sink", 4))
	connectortest.RunSink(t, connectortest.Sink{
		Spec:     rocketmq.SinkSpec,
		Config:   map[string]any{rocketmq.FieldNameServers: s.NameServer(), rocketmq.FieldRocketTopic: "meshd-sink", rocketmq.FieldTimeout: "2s"},
		Received: func() []string { return ceIDs(t, s, "meshd-sink") },
		// Failing is a broker that is down; back is the broker restarted
		// on its store.
		SetFailing: func(failing bool) {
			if failing {
				require.NoError(t, s.Close())
			} else if !s.Running() {
				require.NoError(t, s.Restart())
			}
		},
	})
}

func TestSourceSuite(t *testing.T) {
	s := rmq.Start(t, rmq.Config{})
	require.NoError(t, s.CreateTopic("meshd-source", 4))
	p := producerFor(t, s)
	connectortest.RunSource(t, connectortest.Source{
		Spec:    rocketmq.SourceSpec,
		Config:  map[string]any{rocketmq.FieldNameServers: s.NameServer(), rocketmq.FieldRocketTopic: "meshd-source", rocketmq.FieldConsumeFrom: "first"},
		Produce: func(ctx context.Context, keys []string) error { return send(ctx, p, "meshd-source", keys, "") },
		Key:     func(e *event.Event) string { k, _ := e.Extensions()["rocketmqkeys"].(string); return k },
	})
}

// A message becomes an event: its id, source, type, time, data (binary
// stays binary) and the rocketmq* extensions; only the expression's tags
// are read.
func TestSourceEvents(t *testing.T) {
	s := rmq.Start(t, rmq.Config{})
	require.NoError(t, s.CreateTopic("plain", 2))
	p := producerFor(t, s, producer.WithQueueSelector(producer.NewManualQueueSelector()))
	rt, collector, _ := newRuntime(t, rocketmq.SourceSpec)
	got := collector("events")
	_, err := rt.Create(t.Context(), "plain", map[string]any{
		connectors.FieldConnectorType: rocketmq.SourceType, connectors.FieldTopic: "events",
		rocketmq.FieldNameServers: s.NameServer(), rocketmq.FieldRocketTopic: "plain", rocketmq.FieldConsumeFrom: "first",
		rocketmq.FieldTags: "keep || also", rocketmq.FieldEventType: "com.example.plain",
	})
	require.NoError(t, err)
	binary := []byte{0, 1, 2, 0x80, 0xff}
	var ids []string
	for i, tag := range []string{"keep", "drop", "also"} {
		m := primitive.NewMessage("plain", binary)
		m.WithTag(tag).WithKeys([]string{fmt.Sprintf("k%d", i), "second"})
		m.Queue = &primitive.MessageQueue{Topic: "plain", BrokerName: s.BrokerName(), QueueId: 1}
		res, err := p.SendSync(t.Context(), m)
		require.NoError(t, err)
		ids = append(ids, res.MsgID)
	}
	require.Eventually(t, func() bool { return got.len() == 2 }, wait, 10*time.Millisecond)
	e := got.byID(ids[0])
	require.NotNil(t, e, "the event id is the message id")
	assert.Nil(t, got.byID(ids[1]), "a tag outside the expression is not read")
	assert.Equal(t, "rocketmq://DefaultCluster/plain", e.Source())
	assert.Equal(t, "com.example.plain", e.Type())
	assert.Equal(t, "application/octet-stream", e.DataContentType())
	assert.Equal(t, binary, e.Data(), "binary bodies stay binary")
	assert.False(t, e.Time().IsZero())
	ext := e.Extensions()
	assert.Equal(t, "keep", ext["rocketmqtags"])
	assert.Equal(t, "k0 second", ext["rocketmqkeys"])
	assert.Equal(t, "1", ext["rocketmqqueueid"], "extensions travel the mesh as strings")
	assert.Equal(t, "0", ext["rocketmqqueueoffset"])
	assert.Equal(t, s.BrokerName(), ext["rocketmqbroker"])
	assert.Contains(t, ext, "rocketmqborntime")
	assert.Contains(t, ext, "rocketmqstoretime")
	require.NoError(t, bridge.Validate(e))

	require.Eventually(t, func() bool {
		offs, err := rt.Offsets(t.Context(), "plain")
		require.NoError(t, err)
		return slices.Contains(offs, worker.Offset{Partition: "plain/broker-a/1", Offset: "3"})
	}, wait, 10*time.Millisecond, "the offset is the next message's, past the last one read")
}

// An event sent by rocketmq-sink comes out of rocketmq-source as the same
// event: attributes, extensions (as strings) and binary data, through
// CE_ properties. Keys and tags come from templates.
func TestSinkToSourceRoundTrip(t *testing.T) {
	s := rmq.Start(t, rmq.Config{})
	require.NoError(t, s.CreateTopic("roundtrip", 4))
	rt, collector, publish := newRuntime(t, rocketmq.SinkSpec, rocketmq.SourceSpec)
	back := collector("back")
	_, err := rt.Create(t.Context(), "out", map[string]any{
		connectors.FieldConnectorType: rocketmq.SinkType, connectors.FieldTopic: "out",
		rocketmq.FieldNameServers: s.NameServer(), rocketmq.FieldRocketTopic: "round{tenant}",
		rocketmq.FieldTags: "{type}", rocketmq.FieldKeys: "{id} {subject}",
	})
	require.NoError(t, err)
	_, err = rt.Create(t.Context(), "in", map[string]any{
		connectors.FieldConnectorType: rocketmq.SourceType, connectors.FieldTopic: "back",
		rocketmq.FieldNameServers: s.NameServer(), rocketmq.FieldRocketTopic: "roundtrip", rocketmq.FieldConsumeFrom: "first",
	})
	require.NoError(t, err)
	waitRunning(t, rt, "out")
	e := event.New()
	e.SetID("evt-1")
	e.SetSource("/shop")
	e.SetType("order.created")
	e.SetSubject("order-9")
	e.SetTime(time.Date(2026, 12, 1, 8, 0, 0, 5000, time.UTC))
	e.SetExtension("tenant", "trip")
	e.SetExtension("priority", int32(7))
	data := []byte{0xde, 0xad, 0xbe, 0xef, 0}
	require.NoError(t, e.SetData("application/x-custom", data))
	require.NoError(t, publish("out", &e))

	require.Eventually(t, func() bool { return back.byID("evt-1") != nil }, wait, 10*time.Millisecond)
	got := back.byID("evt-1")
	assert.Equal(t, e.Source(), got.Source())
	assert.Equal(t, e.Type(), got.Type())
	assert.Equal(t, e.Subject(), got.Subject())
	assert.True(t, e.Time().Equal(got.Time()))
	assert.Equal(t, "application/x-custom", got.DataContentType())
	assert.Equal(t, data, got.Data())
	assert.Equal(t, "trip", got.Extensions()["tenant"])
	assert.Equal(t, "7", got.Extensions()["priority"])
	assert.Equal(t, "order.created", got.Extensions()["rocketmqtags"], "the tag template")
	assert.Equal(t, "evt-1 order-9", got.Extensions()["rocketmqkeys"], "the keys template")
}

// Events no message can carry are dead-lettered at once; the others of the
// batch are sent.
func TestSinkDeadLettersWhatCannotTravel(t *testing.T) {
	s := rmq.Start(t, rmq.Config{MaxMessageSize: 64 << 10})
	require.NoError(t, s.CreateTopic("strict", 1))
	rt, collector, publish := newRuntime(t, rocketmq.SinkSpec)
	dead := collector("dead")
	_, err := rt.Create(t.Context(), "strict", map[string]any{
		connectors.FieldConnectorType: rocketmq.SinkType, connectors.FieldTopic: "in", connectors.FieldDeadLetter: "dead",
		connectors.FieldBatchWait: "200ms", connectors.FieldAttempts: 100,
		rocketmq.FieldNameServers: s.NameServer(), rocketmq.FieldRocketTopic: "{target}",
	})
	require.NoError(t, err)
	waitRunning(t, rt, "strict")
	mk := func(id, target string, data []byte, ext ...string) *event.Event {
		e := event.New()
		e.SetID(id)
		e.SetSource("/t")
		e.SetType("t")
		if target != "" {
			e.SetExtension("target", target)
		}
		for i := 0; i+1 < len(ext); i += 2 {
			e.SetExtension(ext[i], ext[i+1])
		}
		require.NoError(t, e.SetData("text/plain", data))
		return &e
	}
	require.NoError(t, publish("in",
		mk("ok-1", "strict", []byte("fine")),
		mk("no-target", "", []byte("x")),
		mk("bad-topic", "not a topic", []byte("x")),
		mk("separator", "strict", []byte("x"), "note", "a\x02b"),
		mk("too-big", "strict", noise(t, 100<<10)), // the client compresses bodies: noise stays big
		mk("ok-2", "strict", []byte("fine")),
	))
	require.Eventually(t, func() bool { return dead.len() == 4 }, wait, 10*time.Millisecond)
	for _, id := range []string{"no-target", "bad-topic", "separator", "too-big"} {
		e := dead.byID(id)
		require.NotNil(t, e, id)
		assert.NotEmpty(t, e.Extensions()["deliveryerror"], id)
	}
	require.Eventually(t, func() bool {
		ids := ceIDs(t, s, "strict")
		return slices.Contains(ids, "ok-1") && slices.Contains(ids, "ok-2")
	}, wait, 10*time.Millisecond)
	assert.Len(t, ceIDs(t, s, "strict"), 2)
}

func noise(t *testing.T, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// A broker restart in the middle of a stream loses nothing: the source
// reads on from its positions.
func TestSourceAcrossBrokerRestart(t *testing.T) {
	s := rmq.Start(t, rmq.Config{})
	require.NoError(t, s.CreateTopic("restart", 4))
	p := producerFor(t, s)
	rt, collector, _ := newRuntime(t, rocketmq.SourceSpec)
	got := collector("events")
	_, err := rt.Create(t.Context(), "restart", map[string]any{
		connectors.FieldConnectorType: rocketmq.SourceType, connectors.FieldTopic: "events",
		rocketmq.FieldNameServers: s.NameServer(), rocketmq.FieldRocketTopic: "restart", rocketmq.FieldConsumeFrom: "first",
		rocketmq.FieldTimeout: "2s",
	})
	require.NoError(t, err)
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = fmt.Sprintf("r%03d", i)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- send(ctx, p, "restart", keys, "") }()
	require.Eventually(t, func() bool { return got.len() >= 50 }, wait, 5*time.Millisecond)
	require.NoError(t, s.Restart())
	require.NoError(t, <-sent)
	require.Eventually(t, func() bool { return got.hasKeys(keys) }, wait, 10*time.Millisecond, "every message arrives after the broker restart")
}

// tasks.max splits the queues: each queue is read by one task.
func TestSourceSplitsQueues(t *testing.T) {
	s := rmq.Start(t, rmq.Config{})
	require.NoError(t, s.CreateTopic("split", 8))
	p := producerFor(t, s)
	rt, collector, _ := newRuntime(t, rocketmq.SourceSpec)
	got := collector("events")
	_, err := rt.Create(t.Context(), "split", map[string]any{
		connectors.FieldConnectorType: rocketmq.SourceType, connectors.FieldTopic: "events", connectors.FieldTasksMax: 3,
		rocketmq.FieldNameServers: s.NameServer(), rocketmq.FieldRocketTopic: "split", rocketmq.FieldConsumeFrom: "first",
	})
	require.NoError(t, err)
	waitRunning(t, rt, "split")
	keys := make([]string, 80)
	for i := range keys {
		keys[i] = fmt.Sprintf("s%02d", i)
	}
	require.NoError(t, send(t.Context(), p, "split", keys, ""))
	require.Eventually(t, func() bool { return got.hasKeys(keys) }, wait, 10*time.Millisecond)
	assert.Equal(t, len(keys), got.count(), "each message is read once: no queue is shared")
	tasks, err := rt.Tasks("split")
	require.NoError(t, err)
	assert.Len(t, tasks, 3)
}

// A position the broker no longer holds (retention deleted the messages)
// is skipped with a warning, and reading goes on.
func TestSourceSkipsDeletedMessages(t *testing.T) {
	s := rmq.Start(t, rmq.Config{})
	require.NoError(t, s.CreateTopic("expiring", 1))
	p := producerFor(t, s)
	require.NoError(t, send(t.Context(), p, "expiring", []string{"e0", "e1", "e2", "e3"}, ""))
	require.NoError(t, s.DeleteBefore("expiring", 0, 2))
	rt, collector, _ := newRuntime(t, rocketmq.SourceSpec)
	got := collector("events")
	// The group's offset on the broker says 0: deleted since.
	_, err := rt.Create(t.Context(), "expiring", map[string]any{
		connectors.FieldConnectorType: rocketmq.SourceType, connectors.FieldTopic: "events",
		rocketmq.FieldNameServers: s.NameServer(), rocketmq.FieldRocketTopic: "expiring", rocketmq.FieldConsumeFrom: "first",
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return got.hasKeys([]string{"e2", "e3"}) }, wait, 10*time.Millisecond)
	assert.Equal(t, 2, got.count())
}

// consume.from decides where a queue starts that has no offset anywhere;
// the position it found is kept as the group's offset on the broker.
func TestSourceConsumeFrom(t *testing.T) {
	s := rmq.Start(t, rmq.Config{})
	require.NoError(t, s.CreateTopic("from", 1))
	p := producerFor(t, s)
	require.NoError(t, send(t.Context(), p, "from", []string{"old0", "old1", "old2"}, ""))
	// A queue whose head is gone: the broker no longer answers offset 0
	// for a new group (it does for a queue whose first message is in
	// memory, as RocketMQ's own consumers see too).
	require.NoError(t, s.DeleteBefore("from", 0, 1))
	rt, collector, _ := newRuntime(t, rocketmq.SourceSpec)
	cases := map[string]map[string]any{
		"first": {rocketmq.FieldConsumeFrom: "first"},
		"last":  {rocketmq.FieldConsumeFrom: "last"},
		"stamp": {rocketmq.FieldConsumeFrom: "timestamp", rocketmq.FieldConsumeTimestamp: time.Now().Add(-time.Hour).Format(time.RFC3339)},
	}
	got := map[string]*collected{}
	for name, extra := range cases {
		got[name] = collector("from-" + name)
		cfg := map[string]any{
			connectors.FieldConnectorType: rocketmq.SourceType, connectors.FieldTopic: "from-" + name,
			rocketmq.FieldNameServers: s.NameServer(), rocketmq.FieldRocketTopic: "from",
		}
		for k, v := range extra {
			cfg[k] = v
		}
		_, err := rt.Create(t.Context(), name, cfg)
		require.NoError(t, err)
		waitRunning(t, rt, name)
	}
	require.Eventually(t, func() bool {
		off, ok := s.ConsumerOffset("meshd-last", "from", 0)
		return ok && off == 3
	}, wait, 10*time.Millisecond, "the last position is kept on the broker before anything is read")
	require.NoError(t, send(t.Context(), p, "from", []string{"new"}, ""))
	require.Eventually(t, func() bool {
		return got["first"].hasKeys([]string{"old1", "old2", "new"}) && got["last"].hasKeys([]string{"new"}) && got["stamp"].hasKeys([]string{"new"})
	}, wait, 10*time.Millisecond)
	assert.Equal(t, 1, got["last"].count(), "last: only what came after")
	assert.Equal(t, 3, got["stamp"].count(), "an hour ago: from the first message kept")
}

// The client's log lines reach the logger of the instance whose group they
// name, lowered by one level; other lines go to the first instance's.
func TestClientLogRouting(t *testing.T) {
	var a, b bytes.Buffer
	la := slog.New(slog.NewTextHandler(&syncWriter{w: &a}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	lb := slog.New(slog.NewTextHandler(&syncWriter{w: &b}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	detachA := rocketmq.AttachClientLog("group-a", la)
	defer detachA()
	detachB := rocketmq.AttachClientLog("group-b", lb)
	rlog.Warning("about b", map[string]any{rlog.LogKeyProducerGroup: "group-b"})
	rlog.Info("chatty", map[string]any{rlog.LogKeyProducerGroup: "group-b"})
	rlog.Error("unattributed", nil)
	detachB()
	rlog.Warning("b is gone", map[string]any{rlog.LogKeyProducerGroup: "group-b"})
	assert.Contains(t, b.String(), "level=INFO msg=\"about b\"")
	assert.NotContains(t, b.String(), "chatty", "client info is debug")
	assert.Contains(t, a.String(), "level=WARN msg=unattributed")
	assert.Contains(t, a.String(), "b is gone")
	assert.Contains(t, a.String(), "client=rocketmq-client-go")
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Bad configs are refused naming the field.
func TestConfigChecks(t *testing.T) {
	for _, c := range []struct {
		spec  connectors.Spec
		field string
		cfg   map[string]any
	}{
		{rocketmq.SinkSpec, rocketmq.FieldNameServers, map[string]any{rocketmq.FieldNameServers: "rocketmq.internal:9876"}},
		{rocketmq.SinkSpec, rocketmq.FieldNameServers, map[string]any{rocketmq.FieldNameServers: "127.0.0.1"}},
		{rocketmq.SinkSpec, rocketmq.FieldRocketTopic, map[string]any{rocketmq.FieldRocketTopic: "has space"}},
		{rocketmq.SinkSpec, rocketmq.FieldRocketTopic, map[string]any{rocketmq.FieldRocketTopic: "t-{Bad}"}},
		{rocketmq.SinkSpec, rocketmq.FieldTags, map[string]any{rocketmq.FieldTags: "{"}},
		{rocketmq.SinkSpec, rocketmq.FieldSecretKey, map[string]any{rocketmq.FieldAccessKey: "ak"}},
		{rocketmq.SinkSpec, rocketmq.FieldGroup, map[string]any{rocketmq.FieldGroup: "a.b"}},
		{rocketmq.SinkSpec, rocketmq.FieldTimeout, map[string]any{rocketmq.FieldTimeout: "0s"}},
		{rocketmq.SourceSpec, rocketmq.FieldRocketTopic, map[string]any{rocketmq.FieldRocketTopic: "{templated}"}},
		{rocketmq.SourceSpec, rocketmq.FieldConsumeTimestamp, map[string]any{rocketmq.FieldConsumeFrom: "timestamp"}},
		{rocketmq.SourceSpec, rocketmq.FieldConsumeTimestamp, map[string]any{rocketmq.FieldConsumeTimestamp: "yesterday"}},
		{rocketmq.SourceSpec, rocketmq.FieldPullBatch, map[string]any{rocketmq.FieldPullBatch: 0}},
		{rocketmq.SourceSpec, rocketmq.FieldNamespace, map[string]any{rocketmq.FieldNamespace: "a%b"}},
	} {
		raw := map[string]any{connectors.FieldConnectorType: c.spec.Name, connectors.FieldTopic: "t",
			rocketmq.FieldNameServers: "127.0.0.1:9876", rocketmq.FieldRocketTopic: "orders"}
		for k, v := range c.cfg {
			raw[k] = v
		}
		_, err := c.spec.Validate(raw)
		var ve *connectors.ValidationError
		require.ErrorAs(t, err, &ve, "%v", c.cfg)
		assert.NotEmpty(t, ve.Field(c.field), "%v: want an error on %s, got %v", c.cfg, c.field, err)
	}
	cfg := connectortest.Config(t, rocketmq.SourceSpec, rocketmq.FieldNameServers, "10.0.0.1:9876;10.0.0.2:9876", rocketmq.FieldRocketTopic, "orders",
		rocketmq.FieldSecretKey, "s3cret", rocketmq.FieldAccessKey, "ak")
	assert.Equal(t, "orders", cfg.String(rocketmq.FieldRocketTopic))
	masked := rocketmq.SourceSpec.Masked(map[string]any{rocketmq.FieldSecretKey: "s3cret"})
	assert.Equal(t, connectors.Mask, masked[rocketmq.FieldSecretKey])
	assert.False(t, strings.Contains(fmt.Sprint(masked), "s3cret"))
}

// A source stops promptly with pulls held by the broker.
func TestSourceStopsPromptly(t *testing.T) {
	s := rmq.Start(t, rmq.Config{})
	require.NoError(t, s.CreateTopic("idle", 4))
	task := &rocketmq.SourceTask{}
	task.Init(connectortest.TaskContext(nil))
	cfg := connectortest.Config(t, rocketmq.SourceSpec, rocketmq.FieldNameServers, s.NameServer(), rocketmq.FieldRocketTopic, "idle")
	require.NoError(t, task.Start(t.Context(), cfg))
	recs, err := task.Poll(t.Context()) // leaves long polls held by the broker
	require.NoError(t, err)
	assert.Empty(t, recs)
	start := time.Now()
	require.NoError(t, task.Stop(t.Context()))
	assert.Less(t, time.Since(start), 2*time.Second, "Stop does not wait for the broker's long poll")
	assert.Positive(t, s.Requests()[remoting.PullMessage])

	missing := &rocketmq.SourceTask{}
	err = missing.Start(t.Context(), connectortest.Config(t, rocketmq.SourceSpec, rocketmq.FieldNameServers, s.NameServer(), rocketmq.FieldRocketTopic, "nowhere"))
	require.Error(t, err, "a topic no name server knows fails the task at start")
	assert.Contains(t, err.Error(), `"nowhere"`)
	assert.Contains(t, err.Error(), "does not exist")
	require.NoError(t, missing.Stop(t.Context()))
}

// With ACL on and a namespace, the sink and the source sign their requests
// and put the namespace in front of topic and group; refused credentials
// hold the sink's events (unavailable) and fail the source's task.
func TestACLAndNamespace(t *testing.T) {
	s := rmq.Start(t, rmq.Config{Accounts: map[string]string{"meshd": "s3cret"}})
	require.NoError(t, s.CreateTopic("tenant%secured", 2))
	rt, collector, publish := newRuntime(t, rocketmq.SinkSpec, rocketmq.SourceSpec)
	back := collector("back")
	common := func(kv ...any) map[string]any {
		m := map[string]any{rocketmq.FieldNameServers: s.NameServer(), rocketmq.FieldRocketTopic: "secured",
			rocketmq.FieldNamespace: "tenant", rocketmq.FieldAccessKey: "meshd", rocketmq.FieldSecretKey: "s3cret"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	_, err := rt.Create(t.Context(), "secout", common(connectors.FieldConnectorType, rocketmq.SinkType, connectors.FieldTopic, "out"))
	require.NoError(t, err)
	_, err = rt.Create(t.Context(), "secin", common(connectors.FieldConnectorType, rocketmq.SourceType, connectors.FieldTopic, "back",
		rocketmq.FieldConsumeFrom, "first"))
	require.NoError(t, err)
	waitRunning(t, rt, "secout")
	e := event.New()
	e.SetID("signed-1")
	e.SetSource("/t")
	e.SetType("t")
	require.NoError(t, publish("out", &e))
	require.Eventually(t, func() bool { return back.byID("signed-1") != nil }, wait, 10*time.Millisecond)
	msgs, err := s.Messages("tenant%secured")
	require.NoError(t, err)
	assert.Len(t, msgs, 1, "the namespace is in front of the topic on the wire")
	require.Eventually(t, func() bool {
		_, ok := s.ConsumerOffset("tenant%meshd-secin", "tenant%secured", msgs[0].QueueID)
		return ok
	}, wait, 10*time.Millisecond, "and of the group")

	wrong := common(rocketmq.FieldSecretKey, "wrong", rocketmq.FieldTimeout, "500ms")
	sinkCfg := connectortest.Config(t, rocketmq.SinkSpec, mapPairs(wrong)...)
	conn := rocketmq.SinkSpec.New()
	require.NoError(t, conn.Start(t.Context(), sinkCfg))
	defer conn.Stop(context.Background())
	task := conn.NewTask().(connectors.SinkTask)
	task.(connectors.Initializer).Init(connectortest.TaskContext(nil))
	require.NoError(t, task.Start(t.Context(), sinkCfg))
	err = task.Put(t.Context(), []event.Event{e})
	require.Error(t, err)
	class, _ := bridge.Classify(err)
	assert.Equal(t, bridge.Unavailable, class, "refused credentials hold the events: %v", err)
	assert.NotContains(t, err.Error(), "wrong", "the secret is not in the error")

	src := &rocketmq.SourceTask{}
	src.Init(connectortest.TaskContext(nil))
	require.NoError(t, src.Start(t.Context(), connectortest.Config(t, rocketmq.SourceSpec, mapPairs(wrong)...)))
	defer src.Stop(context.Background())
	var pollErr error
	require.Eventually(t, func() bool { _, pollErr = src.Poll(t.Context()); return pollErr != nil }, wait, time.Millisecond,
		"the source's task fails once every queue failed for the timeout")
	assert.Contains(t, pollErr.Error(), "Check signature failed")
}

func mapPairs(m map[string]any) []any {
	out := make([]any, 0, 2*len(m))
	for k, v := range m {
		out = append(out, k, v)
	}
	return out
}
