package rocketmq_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors/rocketmq/remoting"
	"github.com/meshd/meshd/test/infra/rocketmq"
)

// These tests validate the server with the official Go client: its
// producer here, and its push and pull consumers in
// server_consumers_test.go. What a broker returns to a pull is checked
// here with the client's own decoder (primitive.DecodeMessage).

func TestMain(m *testing.M) {
	rlog.SetLogger(quietLog{}) // the client logs to stderr at info level by default
	os.Exit(m.Run())
}

// quietLog drops the client's log; RLOG=1 prints its warnings and errors.
type quietLog struct{}

func (quietLog) Debug(string, map[string]any)       {}
func (quietLog) Info(string, map[string]any)        {}
func (quietLog) Warning(m string, f map[string]any) { debugLog("WARN", m, f) }
func (quietLog) Error(m string, f map[string]any)   { debugLog("ERROR", m, f) }
func (quietLog) Fatal(m string, f map[string]any)   { debugLog("FATAL", m, f) }
func (quietLog) Level(string)                       {}
func (quietLog) OutputPath(string) error            { return nil }
func debugLog(level, m string, f map[string]any) {
	if os.Getenv("RLOG") != "" {
		fmt.Fprintln(os.Stderr, level, m, f)
	}
}

const wait = 20 * time.Second

var instances atomic.Int64

// instance names each client: the client shares one connection set per
// instance name in a process.
func instance(t *testing.T) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), instances.Add(1))
}

type syncProducer interface {
	SendSync(context.Context, ...*primitive.Message) (*primitive.SendResult, error)
}

func newProducer(t *testing.T, s *rocketmq.Server, opts ...producer.Option) syncProducer {
	t.Helper()
	opts = append([]producer.Option{
		producer.WithNameServer([]string{s.NameServer()}),
		producer.WithGroupName("test_producer"),
		producer.WithInstanceName(instance(t)),
		producer.WithRetry(0),
	}, opts...)
	p, err := producer.NewDefaultProducer(opts...)
	require.NoError(t, err)
	require.NoError(t, p.Start())
	t.Cleanup(func() { _ = p.Shutdown() })
	return p
}

// call sends one request to addr and returns the answer.
func call(t *testing.T, addr string, req *remoting.Command) *remoting.Command {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.SetDeadline(time.Now().Add(wait)))
	req.Opaque, req.Language, req.Version = 1, "GO", 317
	frame, err := remoting.Encode(req, remoting.SerializeJSON)
	require.NoError(t, err)
	_, err = nc.Write(frame)
	require.NoError(t, err)
	resp, _, err := remoting.Read(nc)
	require.NoError(t, err)
	require.True(t, resp.IsResponse())
	require.Equal(t, int32(1), resp.Opaque)
	return resp
}

// pull reads a queue from offset as a consumer with a subscription
// expression does, and decodes the answer with the client's decoder.
func pull(t *testing.T, s *rocketmq.Server, topic string, queue int, offset int64, expr string, sign ...string) (*remoting.Command, []*primitive.MessageExt) {
	t.Helper()
	req := &remoting.Command{Code: remoting.PullMessage, ExtFields: map[string]string{
		"consumerGroup": "g_raw", "topic": topic, "queueId": strconv.Itoa(queue), "queueOffset": strconv.FormatInt(offset, 10),
		"maxMsgNums": "32", "sysFlag": "4", "commitOffset": "0", "suspendTimeoutMillis": "0",
		"subscription": expr, "subVersion": "0", "expressionType": "TAG",
	}}
	if len(sign) == 2 {
		remoting.Sign(req, sign[0], sign[1])
	}
	resp := call(t, s.BrokerAddr(), req)
	return resp, primitive.DecodeMessage(resp.Body)
}

// pullAll reads every message of a queue.
func pullAll(t *testing.T, s *rocketmq.Server, topic string, queue int) []*primitive.MessageExt {
	t.Helper()
	var out []*primitive.MessageExt
	for off := int64(0); ; {
		resp, msgs := pull(t, s, topic, queue, off, "*")
		if resp.Code != remoting.Success {
			return out
		}
		out = append(out, msgs...)
		off, _ = strconv.ParseInt(resp.ExtFields["nextBeginOffset"], 10, 64)
	}
}

// The producer's single and batch sends (properties, tags, keys, a
// compressed body) are stored intact, at the queue offsets the sends
// reported, and pulls return them in the format the client decodes.
func TestProducerSends(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{})
	// The topic does not exist: the producer creates it through TBW102.
	p := newProducer(t, s, producer.WithQueueSelector(producer.NewManualQueueSelector()))
	ctx := t.Context()

	single := primitive.NewMessage("orders", []byte("single"))
	single.WithTag("created").WithKeys([]string{"order-1", "customer-7"})
	single.WithProperty("CE_type", "com.example.order created") // a value with a space
	single.WithProperty("unicode", "größe ✓")
	single.Queue = &primitive.MessageQueue{Topic: "orders", BrokerName: s.BrokerName(), QueueId: 1}
	res, err := p.SendSync(ctx, single)
	require.NoError(t, err)
	require.Equal(t, primitive.SendOK, res.Status)
	assert.Len(t, res.OffsetMsgID, 32)
	assert.Equal(t, 1, res.MessageQueue.QueueId)
	assert.Equal(t, int64(0), res.QueueOffset)

	big := bytes.Repeat([]byte("compress me "), 1000) // above the client's 4 KiB compression threshold
	bigMsg := primitive.NewMessage("orders", big)
	bigMsg.Queue = &primitive.MessageQueue{Topic: "orders", BrokerName: s.BrokerName(), QueueId: 2}
	_, err = p.SendSync(ctx, bigMsg)
	require.NoError(t, err)

	batch := make([]*primitive.Message, 5)
	for i := range batch {
		batch[i] = primitive.NewMessage("orders", []byte(fmt.Sprintf("batch-%d", i)))
		batch[i].WithTag("batched")
		batch[i].WithProperty("n", fmt.Sprint(i))
		batch[i].Queue = &primitive.MessageQueue{Topic: "orders", BrokerName: s.BrokerName(), QueueId: 3}
	}
	bres, err := p.SendSync(ctx, batch...)
	require.NoError(t, err)
	assert.Equal(t, 5, strings.Count(bres.OffsetMsgID, ",")+1, "a batch answers one offset message id per message")

	q1 := pullAll(t, s, "orders", 1)
	require.Len(t, q1, 1)
	m := q1[0]
	assert.Equal(t, "single", string(m.Body))
	assert.Equal(t, "created", m.GetTags())
	assert.Equal(t, "order-1 customer-7", m.GetKeys())
	assert.Equal(t, "com.example.order created", m.GetProperty("CE_type"))
	assert.Equal(t, "größe ✓", m.GetProperty("unicode"))
	assert.Equal(t, res.MsgID, m.MsgId, "the message id is the producer's UNIQ_KEY")
	assert.Equal(t, res.OffsetMsgID, m.OffsetMsgId)
	assert.Equal(t, s.Cluster(), m.GetProperty("CLUSTER"))
	assert.NotZero(t, m.StoreTimestamp)
	assert.NotZero(t, m.BornTimestamp)

	q2 := pullAll(t, s, "orders", 2)
	require.Len(t, q2, 1)
	assert.Equal(t, big, q2[0].Body, "the client uncompresses what the broker stored compressed")
	stored, err := s.Messages("orders")
	require.NoError(t, err)
	require.Len(t, stored, 7)
	assert.Equal(t, int32(1), stored[1].SysFlag&1, "the large body is stored compressed")

	q3 := pullAll(t, s, "orders", 3)
	require.Len(t, q3, 5)
	for i, bm := range q3 {
		assert.Equal(t, fmt.Sprintf("batch-%d", i), string(bm.Body))
		assert.Equal(t, fmt.Sprint(i), bm.GetProperty("n"))
		assert.Equal(t, "batched", bm.GetTags())
		assert.Equal(t, bres.QueueOffset+int64(i), bm.QueueOffset, "a batch takes consecutive offsets of one queue")
	}
}

// sendTagged sends messages tagged a, b, c, a and none, with bodies
// <tag>-<n>.
func sendTagged(t *testing.T, p syncProducer, topic string) {
	t.Helper()
	for i, tag := range []string{"a", "b", "c", "a", ""} {
		m := primitive.NewMessage(topic, []byte(fmt.Sprintf("%s-%d", tag, i)))
		m.WithTag(tag)
		_, err := p.SendSync(t.Context(), m)
		require.NoError(t, err)
	}
}

// Pulls filter by tag on the broker, answer PULL_RETRY_IMMEDIATELY when
// nothing matched, and PULL_OFFSET_MOVED outside the queue.
func TestPullAnswers(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{})
	require.NoError(t, s.CreateTopic("tagged", 1))
	sendTagged(t, newProducer(t, s), "tagged")
	resp, msgs := pull(t, s, "tagged", 0, 0, "a || c")
	require.Equal(t, remoting.Success, resp.Code)
	var bodies []string
	for _, m := range msgs {
		bodies = append(bodies, string(m.Body))
	}
	assert.Equal(t, []string{"a-0", "c-2", "a-3"}, bodies)
	assert.Equal(t, "5", resp.ExtFields["nextBeginOffset"])
	assert.Equal(t, "5", resp.ExtFields["maxOffset"])

	resp, _ = pull(t, s, "tagged", 0, 4, "b")
	assert.Equal(t, remoting.PullRetryImmediately, resp.Code, "nothing matched")
	assert.Equal(t, "5", resp.ExtFields["nextBeginOffset"])
	resp, _ = pull(t, s, "tagged", 0, 5, "*")
	assert.Equal(t, remoting.PullNotFound, resp.Code, "at the end")
	resp, _ = pull(t, s, "tagged", 0, 9, "*")
	assert.Equal(t, remoting.PullOffsetMoved, resp.Code, "past the end")
	require.NoError(t, s.DeleteBefore("tagged", 0, 2))
	resp, _ = pull(t, s, "tagged", 0, 1, "*")
	assert.Equal(t, remoting.PullOffsetMoved, resp.Code, "before the head")
	assert.Equal(t, "2", resp.ExtFields["nextBeginOffset"])
	resp, _ = pull(t, s, "nope", 0, 0, "*")
	assert.Equal(t, remoting.TopicNotExist, resp.Code)
}

// What a restarted server serves is what it stored, and a torn write at
// the end of the commit log is cut off.
func TestRestartKeepsTheStore(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{})
	require.NoError(t, s.CreateTopic("durable", 2))
	p := newProducer(t, s)
	for i := range 6 {
		_, err := p.SendSync(t.Context(), primitive.NewMessage("durable", []byte(fmt.Sprint(i))))
		require.NoError(t, err)
	}
	before, err := s.Messages("durable")
	require.NoError(t, err)
	resp := call(t, s.BrokerAddr(), &remoting.Command{Code: remoting.UpdateConsumerOffset, ExtFields: map[string]string{
		"consumerGroup": "g", "topic": "durable", "queueId": "1", "commitOffset": "2"}})
	require.Equal(t, remoting.Success, resp.Code)
	require.NoError(t, s.Close())

	// A crash in the middle of an append leaves half a record.
	f, err := os.OpenFile(filepath.Join(s.StoreDir(), "commitlog"), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write([]byte{0, 0, 1, 0, 0xDA, 0xA3, 0x20, 0xA7, 1, 2, 3})
	require.NoError(t, err)
	require.NoError(t, f.Close())

	require.NoError(t, s.Restart())
	after, err := s.Messages("durable")
	require.NoError(t, err)
	assert.Equal(t, before, after, "the restarted server holds the same messages")
	off, ok := s.ConsumerOffset("g", "durable", 1)
	assert.True(t, ok && off == 2, "and the consumer offsets")

	// The producer reconnects by itself; offsets continue.
	require.Eventually(t, func() bool {
		_, err := p.SendSync(t.Context(), primitive.NewMessage("durable", []byte("after")))
		return err == nil
	}, wait, 50*time.Millisecond)
	got := append(pullAll(t, s, "durable", 0), pullAll(t, s, "durable", 1)...)
	assert.Len(t, got, 7)
	assert.Equal(t, int64(7), s.MaxOffset("durable", 0)+s.MaxOffset("durable", 1))
}

// Java clients send SEND_MESSAGE_V2 (310) with one-letter header names.
func TestSendV2Header(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{})
	require.NoError(t, s.CreateTopic("v2", 1))
	resp := call(t, s.BrokerAddr(), &remoting.Command{Code: remoting.SendMessageV2, Body: []byte("java"), ExtFields: map[string]string{
		"a": "java_producer", "b": "v2", "c": "TBW102", "d": "4", "e": "0", "f": "0", "g": "1700000000000", "h": "0",
		"i": "TAGS\x01t1\x02KEYS\x01k1\x02", "j": "0", "k": "false", "m": "false"}})
	require.Equal(t, remoting.Success, resp.Code, resp.Remark)
	_, msgs := pull(t, s, "v2", 0, 0, "t1")
	require.Len(t, msgs, 1)
	assert.Equal(t, "java", string(msgs[0].Body))
	assert.Equal(t, "k1", msgs[0].GetKeys())
	assert.Equal(t, int64(1700000000000), msgs[0].BornTimestamp)
}

// Sends the broker refuses come back to the producer with the broker's
// code: an unknown topic without auto-creation, a body over the limit, a
// refusal injected with FailSends.
func TestSendRefusals(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{NoAutoCreateTopics: true, MaxMessageSize: 1024})
	require.NoError(t, s.CreateTopic("small", 1))
	p := newProducer(t, s)
	_, err := p.SendSync(t.Context(), primitive.NewMessage("small", bytes.Repeat([]byte{1}, 2048)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "CODE: 13", "MESSAGE_ILLEGAL")
	_, err = p.SendSync(t.Context(), primitive.NewMessage("unknown", []byte("x")))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "route info not found", "no route, no default topic")
	s.FailSends(remoting.SystemBusy, "[PC_SYNCHRONIZED]broker busy")
	_, err = p.SendSync(t.Context(), primitive.NewMessage("small", []byte("x")))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "CODE: 2")
	s.FailSends(0, "")
	_, err = p.SendSync(t.Context(), primitive.NewMessage("small", []byte("x")))
	require.NoError(t, err)
}

// With ACL on, unsigned and badly signed requests are refused as the
// broker refuses them; signed ones pass.
func TestACL(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{Accounts: map[string]string{"meshd": "s3cret"}})
	require.NoError(t, s.CreateTopic("secured", 1))
	ctx := t.Context()
	send := func(opts ...producer.Option) error {
		_, err := newProducer(t, s, opts...).SendSync(ctx, primitive.NewMessage("secured", []byte("x")))
		return err
	}
	err := send()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "CODE: 1")
	assert.Contains(t, err.Error(), "No accessKey is configured")
	err = send(producer.WithCredentials(primitive.Credentials{AccessKey: "meshd", SecretKey: "wrong"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Check signature failed for accessKey=meshd")
	require.NoError(t, send(producer.WithCredentials(primitive.Credentials{AccessKey: "meshd", SecretKey: "s3cret"})))

	resp, _ := pull(t, s, "secured", 0, 0, "*")
	assert.Equal(t, remoting.SystemError, resp.Code, "an unsigned pull is refused")
	resp, msgs := pull(t, s, "secured", 0, 0, "*", "meshd", "s3cret")
	assert.Equal(t, remoting.Success, resp.Code)
	assert.Len(t, msgs, 1)
}

// A namespace prefixes topics on the wire.
func TestNamespace(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{})
	require.NoError(t, s.CreateTopic("tenant%events", 1))
	p := newProducer(t, s, producer.WithNamespace("tenant"))
	_, err := p.SendSync(t.Context(), primitive.NewMessage("events", []byte("scoped")))
	require.NoError(t, err)
	msgs, err := s.Messages("tenant%events")
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Equal(t, "scoped", string(msgs[0].Body))
}
