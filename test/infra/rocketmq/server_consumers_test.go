//go:build !race

package rocketmq_test

// The official client's push and pull consumers, against the server. They
// run without the race detector only: rocketmq-client-go v2.1.2 races with
// itself (pushConsumer.messageQueueChanged writes a SubscriptionData's
// SubVersion while the route refresh clones it; the pull consumer's
// rebalance likewise), which -race reports whatever the server does. make
// unit runs them.

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors/rocketmq/remoting"
	"github.com/meshd/meshd/test/infra/rocketmq"
)

// received collects what a push consumer got.
type received struct {
	mu   sync.Mutex
	msgs []*primitive.MessageExt
}

func (r *received) add(ms ...*primitive.MessageExt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, ms...)
}

func (r *received) bodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = string(m.Body)
	}
	return out
}

func (r *received) byBody(body string) *primitive.MessageExt {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if string(m.Body) == body {
			return m
		}
	}
	return nil
}

func pushConsumer(t *testing.T, s *rocketmq.Server, group, topic, expr string, f func(*primitive.MessageExt) consumer.ConsumeResult, opts ...consumer.Option) *received {
	t.Helper()
	got, _ := stoppablePushConsumer(t, s, group, topic, expr, f, opts...)
	return got
}

// stoppablePushConsumer is pushConsumer with its Shutdown.
func stoppablePushConsumer(t *testing.T, s *rocketmq.Server, group, topic, expr string, f func(*primitive.MessageExt) consumer.ConsumeResult, opts ...consumer.Option) (*received, func()) {
	t.Helper()
	got := &received{}
	opts = append([]consumer.Option{
		consumer.WithNameServer([]string{s.NameServer()}),
		consumer.WithGroupName(group),
		consumer.WithInstance(instance(t)),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
	}, opts...)
	c, err := consumer.NewPushConsumer(opts...)
	require.NoError(t, err)
	require.NoError(t, c.Subscribe(topic, consumer.MessageSelector{Type: consumer.TAG, Expression: expr},
		func(_ context.Context, ms ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			for _, m := range ms {
				if f != nil {
					if r := f(m); r != consumer.ConsumeSuccess {
						return r, nil
					}
				}
			}
			got.add(ms...)
			return consumer.ConsumeSuccess, nil
		}))
	require.NoError(t, c.Start())
	stop := func() { _ = c.Shutdown() }
	t.Cleanup(stop)
	return got, stop
}

func has(want ...string) func(*received) bool {
	return func(r *received) bool {
		got := r.bodies()
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false
			}
		}
		return true
	}
}

// What the producer sent reaches a push consumer intact: properties,
// tags, keys, a compressed body, a batch.
func TestPushConsumerReceivesWhatWasSent(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{})
	p := newProducer(t, s)
	ctx := t.Context()
	single := primitive.NewMessage("orders", []byte("single"))
	single.WithTag("created").WithKeys([]string{"order-1", "customer-7"})
	single.WithProperty("CE_type", "com.example.order created")
	res, err := p.SendSync(ctx, single)
	require.NoError(t, err)
	big := bytes.Repeat([]byte("compress me "), 1000)
	_, err = p.SendSync(ctx, primitive.NewMessage("orders", big))
	require.NoError(t, err)
	batch := make([]*primitive.Message, 5)
	for i := range batch {
		batch[i] = primitive.NewMessage("orders", []byte(fmt.Sprintf("batch-%d", i)))
		batch[i].WithProperty("n", fmt.Sprint(i))
	}
	bres, err := p.SendSync(ctx, batch...)
	require.NoError(t, err)

	got := pushConsumer(t, s, "g_all", "orders", "*", nil)
	want := []string{"single", string(big), "batch-0", "batch-1", "batch-2", "batch-3", "batch-4"}
	require.Eventually(t, func() bool { return has(want...)(got) }, wait, 10*time.Millisecond)
	m := got.byBody("single")
	assert.Equal(t, "created", m.GetTags())
	assert.Equal(t, "order-1 customer-7", m.GetKeys())
	assert.Equal(t, "com.example.order created", m.GetProperty("CE_type"))
	assert.Equal(t, res.MsgID, m.MsgId)
	assert.Equal(t, res.QueueOffset, m.QueueOffset)
	assert.Equal(t, res.MessageQueue.QueueId, m.Queue.QueueId)
	assert.Equal(t, big, got.byBody(string(big)).Body)
	for i := range 5 {
		bm := got.byBody(fmt.Sprintf("batch-%d", i))
		assert.Equal(t, fmt.Sprint(i), bm.GetProperty("n"))
		assert.Equal(t, bres.QueueOffset+int64(i), bm.QueueOffset)
	}
	assert.Equal(t, 5, strings.Count(bres.OffsetMsgID, ",")+1)
}

// A tag expression delivers only the matching tags.
func TestTagFilter(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{})
	require.NoError(t, s.CreateTopic("tagged", 2))
	sendTagged(t, newProducer(t, s), "tagged")
	got := pushConsumer(t, s, "g_tags", "tagged", "a || c", nil)
	require.Eventually(t, func() bool { return has("a-0", "c-2", "a-3")(got) }, wait, 10*time.Millisecond)
	all := pushConsumer(t, s, "g_every", "tagged", "*", nil)
	require.Eventually(t, func() bool { return has("a-0", "b-1", "c-2", "a-3", "-4")(all) }, wait, 10*time.Millisecond)
	assert.ElementsMatch(t, []string{"a-0", "c-2", "a-3"}, got.bodies(), "only the tags of the expression")
}

// A message the consumer asks to retry comes back through the group's
// retry topic with its reconsume count, and goes to the dead-letter topic
// after the most attempts.
func TestRetryAndDeadLetter(t *testing.T) {
	short := make([]time.Duration, 18)
	for i := range short {
		short[i] = 20 * time.Millisecond
	}
	s := rocketmq.Start(t, rocketmq.Config{DelayLevels: short})
	require.NoError(t, s.CreateTopic("work", 1))
	// The broker creates a group's retry topic at its first heartbeat; the
	// client learns its route only at its next route refresh (30 s). Made
	// beforehand, as for a group that consumed before.
	require.NoError(t, s.CreateTopic("%RETRY%g_retry", 1))
	p := newProducer(t, s)
	for _, body := range []string{"flaky", "poison"} {
		_, err := p.SendSync(t.Context(), primitive.NewMessage("work", []byte(body)))
		require.NoError(t, err)
	}
	var mu sync.Mutex
	attempts := map[string][]int32{}
	got := pushConsumer(t, s, "g_retry", "work", "*", func(m *primitive.MessageExt) consumer.ConsumeResult {
		mu.Lock()
		defer mu.Unlock()
		attempts[string(m.Body)] = append(attempts[string(m.Body)], m.ReconsumeTimes)
		if string(m.Body) == "poison" || len(attempts["flaky"]) == 1 && string(m.Body) == "flaky" {
			return consumer.ConsumeRetryLater
		}
		return consumer.ConsumeSuccess
	}, consumer.WithMaxReconsumeTimes(2), consumer.WithConsumeMessageBatchMaxSize(1))
	require.Eventually(t, func() bool { return has("flaky")(got) }, wait, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		dlq, _ := s.Messages("%DLQ%g_retry")
		return len(dlq) == 1
	}, wait, 10*time.Millisecond, "the poison message ends in the dead-letter topic")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []int32{0, 1}, attempts["flaky"], "redelivered once, with its reconsume count")
	assert.Equal(t, []int32{0, 1, 2}, attempts["poison"])
	dlq, _ := s.Messages("%DLQ%g_retry")
	assert.Equal(t, "poison", string(dlq[0].Body))
	assert.Equal(t, "work", dlq[0].Properties["RETRY_TOPIC"])
}

// A push consumer commits its offsets to the broker; a new consumer of the
// group resumes there; CONSUME_FROM_TIMESTAMP and CONSUME_FROM_LAST_OFFSET
// search the queues.
func TestOffsetsAndStartPositions(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{})
	require.NoError(t, s.CreateTopic("log", 1))
	p := newProducer(t, s)
	send := func(bodies ...string) {
		for _, b := range bodies {
			_, err := p.SendSync(t.Context(), primitive.NewMessage("log", []byte(b)))
			require.NoError(t, err)
		}
	}
	send("m0", "m1", "m2")
	first, stop := stoppablePushConsumer(t, s, "g_log", "log", "*", nil)
	require.Eventually(t, func() bool { return has("m0", "m1", "m2")(first) }, wait, 10*time.Millisecond)
	stop() // persists its offsets, one-way
	require.Eventually(t, func() bool { off, ok := s.ConsumerOffset("g_log", "log", 0); return ok && off == 3 }, wait, 10*time.Millisecond,
		"the consumer committed offset 3")

	send("m3", "m4")
	// The queue's head is gone: a new group starts from the timestamp or
	// the end, not from 0.
	require.NoError(t, s.DeleteBefore("log", 0, 1))
	second := pushConsumer(t, s, "g_log", "log", "*", nil)
	require.Eventually(t, func() bool { return has("m3", "m4")(second) }, wait, 10*time.Millisecond)
	assert.NotContains(t, second.bodies(), "m2", "a consumer of the group resumes at its committed offset")

	// Timestamps have a resolution of seconds: an hour ago finds the first
	// message kept, an hour ahead the end.
	stamp := func(d time.Duration) consumer.Option {
		return consumer.WithConsumeTimestamp(time.Now().Add(d).Format("20060102150405"))
	}
	fromPast := pushConsumer(t, s, "g_past", "log", "*", nil, consumer.WithConsumeFromWhere(consumer.ConsumeFromTimestamp), stamp(-time.Hour))
	fromFuture := pushConsumer(t, s, "g_future", "log", "*", nil, consumer.WithConsumeFromWhere(consumer.ConsumeFromTimestamp), stamp(time.Hour))
	fromLast := pushConsumer(t, s, "g_last", "log", "*", nil, consumer.WithConsumeFromWhere(consumer.ConsumeFromLastOffset))
	require.Eventually(t, func() bool {
		return s.Requests()[remoting.SearchOffsetByTimestamp] >= 2 && s.Requests()[remoting.GetMaxOffset] > 0
	}, wait, 10*time.Millisecond)
	require.Eventually(t, func() bool { return has("m1", "m2", "m3", "m4")(fromPast) }, wait, 10*time.Millisecond)
	send("m5")
	require.Eventually(t, func() bool { return has("m5")(fromLast) && has("m5")(fromFuture) && has("m5")(fromPast) }, wait, 10*time.Millisecond)
	assert.Equal(t, []string{"m5"}, fromLast.bodies(), "CONSUME_FROM_LAST_OFFSET starts at the end")
	assert.Equal(t, []string{"m5"}, fromFuture.bodies(), "a timestamp after the last message starts at the end")
	assert.NotContains(t, fromPast.bodies(), "m0", "the deleted head is not served")
}

// The pull consumer reads a queue from any offset; the broker answers
// offsets outside the queue as moved.
func TestPullConsumer(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{})
	require.NoError(t, s.CreateTopic("pulled", 1))
	p := newProducer(t, s)
	for i := range 40 {
		_, err := p.SendSync(t.Context(), primitive.NewMessage("pulled", []byte(fmt.Sprint(i))))
		require.NoError(t, err)
	}
	c, err := consumer.NewPullConsumer(
		consumer.WithNameServer([]string{s.NameServer()}),
		consumer.WithGroupName("g_pull"),
		consumer.WithInstance(instance(t)),
	)
	require.NoError(t, err)
	require.NoError(t, c.Subscribe("pulled", consumer.MessageSelector{}))
	require.NoError(t, c.Start())
	defer c.Shutdown()
	mq := &primitive.MessageQueue{Topic: "pulled", BrokerName: s.BrokerName(), QueueId: 0}
	res, err := c.PullFrom(t.Context(), mq, 5, 100)
	require.NoError(t, err)
	require.Equal(t, primitive.PullFound, res.Status)
	msgs := res.GetMessageExts()
	require.Len(t, msgs, 32, "the broker sends at most 32 messages per pull")
	assert.Equal(t, "5", string(msgs[0].Body))
	assert.Equal(t, int64(5), msgs[0].QueueOffset)
	assert.Equal(t, int64(37), res.NextBeginOffset)
	assert.Equal(t, int64(40), res.MaxOffset)

	res, err = c.PullFrom(t.Context(), mq, 50, 10)
	require.NoError(t, err)
	assert.Equal(t, primitive.PullOffsetIllegal, res.Status, "an offset past the end is answered PULL_OFFSET_MOVED")
}

// An orderly consumer locks its queues (LOCK_BATCH_MQ) and sees each
// queue's messages in order.
func TestOrderlyConsumer(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{})
	require.NoError(t, s.CreateTopic("ordered", 4))
	p := newProducer(t, s, producer.WithQueueSelector(producer.NewManualQueueSelector()))
	var want []string
	for i := range 40 {
		m := primitive.NewMessage("ordered", []byte(fmt.Sprintf("%02d", i)))
		m.Queue = &primitive.MessageQueue{Topic: "ordered", BrokerName: s.BrokerName(), QueueId: i % 4}
		_, err := p.SendSync(t.Context(), m)
		require.NoError(t, err)
		want = append(want, fmt.Sprintf("%02d", i))
	}
	var mu sync.Mutex
	order := map[int][]int64{}
	got := pushConsumer(t, s, "g_order", "ordered", "*", func(m *primitive.MessageExt) consumer.ConsumeResult {
		mu.Lock()
		order[m.Queue.QueueId] = append(order[m.Queue.QueueId], m.QueueOffset)
		mu.Unlock()
		return consumer.ConsumeSuccess
	}, consumer.WithConsumerOrder(true))
	require.Eventually(t, func() bool { return has(want...)(got) }, wait, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for q, offs := range order {
		assert.True(t, slices.IsSorted(offs), "queue %d consumed in order: %v", q, offs)
	}
	assert.Positive(t, s.Requests()[remoting.LockBatchMQ])
}

// A second consumer of a group gets half the queues after the broker's
// change notice (NOTIFY_CONSUMER_IDS_CHANGED); together they read every
// message.
func TestConsumersShareQueues(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{})
	require.NoError(t, s.CreateTopic("shared", 4))
	p := newProducer(t, s)
	a := pushConsumer(t, s, "g_share", "shared", "*", nil)
	b := pushConsumer(t, s, "g_share", "shared", "*", nil)
	var want []string
	require.Eventually(t, func() bool {
		body := fmt.Sprint(len(want))
		_, err := p.SendSync(t.Context(), primitive.NewMessage("shared", []byte(body)))
		require.NoError(t, err)
		want = append(want, body)
		return len(a.bodies()) > 0 && len(b.bodies()) > 0
	}, wait, 20*time.Millisecond, "both consumers of the group get messages")
	require.Eventually(t, func() bool {
		got := append(a.bodies(), b.bodies()...)
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false
			}
		}
		return true
	}, wait, 10*time.Millisecond)
}

// The request codes the Go client sends were all served.
func TestRequestCodesServed(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{})
	p := newProducer(t, s)
	_, err := p.SendSync(t.Context(), primitive.NewMessage("codes", []byte("one")))
	require.NoError(t, err)
	_, err = p.SendSync(t.Context(), primitive.NewMessage("codes", []byte("a")), primitive.NewMessage("codes", []byte("b")))
	require.NoError(t, err)
	got := pushConsumer(t, s, "g_codes", "codes", "*", nil, consumer.WithConsumerOrder(true))
	require.Eventually(t, func() bool { return has("one", "a", "b")(got) }, wait, 10*time.Millisecond)
	for _, code := range []int16{remoting.GetRouteInfoByTopic, remoting.SendMessage, remoting.SendBatchMessage, remoting.PullMessage,
		remoting.HeartBeat, remoting.GetConsumerListByGroup, remoting.QueryConsumerOffset, remoting.LockBatchMQ} {
		assert.Positive(t, s.Requests()[code], "request code %d", code)
	}
}

// A signed consumer reads from a broker with ACL on; a namespaced one
// reads its namespace's topic.
func TestSignedAndNamespacedConsumers(t *testing.T) {
	s := rocketmq.Start(t, rocketmq.Config{Accounts: map[string]string{"meshd": "s3cret"}})
	require.NoError(t, s.CreateTopic("secured", 1))
	require.NoError(t, s.CreateTopic("tenant%events", 1))
	creds := primitive.Credentials{AccessKey: "meshd", SecretKey: "s3cret"}
	p := newProducer(t, s, producer.WithCredentials(creds))
	_, err := p.SendSync(t.Context(), primitive.NewMessage("secured", []byte("x")))
	require.NoError(t, err)
	nsp := newProducer(t, s, producer.WithCredentials(creds), producer.WithNamespace("tenant"))
	_, err = nsp.SendSync(t.Context(), primitive.NewMessage("events", []byte("scoped")))
	require.NoError(t, err)
	got := pushConsumer(t, s, "g_acl", "secured", "*", nil, consumer.WithCredentials(creds))
	ns := pushConsumer(t, s, "g_ns", "events", "*", nil, consumer.WithCredentials(creds), consumer.WithNamespace("tenant"))
	require.Eventually(t, func() bool { return has("x")(got) && has("scoped")(ns) }, wait, 10*time.Millisecond)
}
