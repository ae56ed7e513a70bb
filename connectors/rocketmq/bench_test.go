package rocketmq_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/rocketmq"
	rmq "github.com/meshd/meshd/test/infra/rocketmq"
)

const benchBatch = 100

// BenchmarkSinkPut measures rocketmq-sink's Put of 100-event batches (1 KiB
// of data each) into the test server, beside the same messages (body and
// properties) built by hand and sent as one batch by the client's producer
// (the baseline, measured in the same run), and reports both rates and
// their ratio.
func BenchmarkSinkPut(b *testing.B) {
	s := rmq.Start(b, rmq.Config{})
	require.NoError(b, s.CreateTopic("bench", 4))
	cfg := connectortest.Config(b, rocketmq.SinkSpec, rocketmq.FieldNameServers, s.NameServer(), rocketmq.FieldRocketTopic, "bench")
	conn := rocketmq.SinkSpec.New()
	require.NoError(b, conn.Start(b.Context(), cfg))
	b.Cleanup(func() { _ = conn.Stop(context.Background()) })
	task := conn.NewTask().(connectors.SinkTask)
	task.(connectors.Initializer).Init(connectortest.TaskContext(nil))
	require.NoError(b, task.Start(b.Context(), cfg))
	data := make([]byte, 1024)
	evs := make([]event.Event, benchBatch)
	for i := range evs {
		evs[i] = event.New()
		evs[i].SetID(fmt.Sprint(i))
		evs[i].SetSource("/bench")
		evs[i].SetType("bench")
		require.NoError(b, evs[i].SetData("application/octet-stream", data))
	}
	p := producerFor(b, s)
	baseline := func() {
		msgs := make([]*primitive.Message, benchBatch)
		for i := range msgs {
			msgs[i] = primitive.NewMessage("bench", data)
			msgs[i].WithProperties(map[string]string{"CE_specversion": "1.0", "CE_id": evs[i].ID(), "CE_source": "/bench", "CE_type": "bench",
				"CE_contenttype": "application/octet-stream", "KEYS": evs[i].ID(), "UNIQ_KEY": primitive.CreateUniqID()})
		}
		_, err := p.SendSync(b.Context(), msgs...)
		require.NoError(b, err)
	}
	baseline() // warm both paths up
	require.NoError(b, task.Put(b.Context(), evs))

	start := time.Now()
	for b.Loop() {
		require.NoError(b, task.Put(b.Context(), evs))
	}
	sink := time.Since(start)
	start = time.Now()
	for range b.N {
		baseline()
	}
	report(b, b.N*benchBatch, sink, time.Since(start), "rocketmq-sink Put", "client producer SendSync")
}

// report prints the rates of n messages handled in d by what is measured
// and in base by the baseline, and their ratio.
func report(b *testing.B, n int, d, base time.Duration, what, baseline string) {
	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	b.ReportMetric(rate(d), "events/s")
	b.ReportMetric(rate(base), "baseline-msgs/s")
	b.ReportMetric(rate(d)/rate(base), "ratio")
	b.Logf("%s: %.0f events/s; %s (baseline): %.0f msgs/s; ratio %.2f", what, rate(d), baseline, rate(base), rate(d)/rate(base))
}

// BenchmarkSourcePoll measures rocketmq-source reading 4 queues of 1 KiB
// messages, beside the client's pull consumer reading the same queues
// with PullFrom (the baseline), and reports both rates and their ratio.
func BenchmarkSourcePoll(b *testing.B) {
	s := rmq.Start(b, rmq.Config{})
	require.NoError(b, s.CreateTopic("benchsrc", 4))
	p := producerFor(b, s)
	data := make([]byte, 1024)
	const total = 4000
	for range total / benchBatch {
		msgs := make([]*primitive.Message, benchBatch)
		for i := range msgs {
			msgs[i] = primitive.NewMessage("benchsrc", data)
		}
		_, err := p.SendSync(b.Context(), msgs...)
		require.NoError(b, err)
	}
	cfg := connectortest.Config(b, rocketmq.SourceSpec, rocketmq.FieldNameServers, s.NameServer(), rocketmq.FieldRocketTopic, "benchsrc",
		rocketmq.FieldConsumeFrom, "first")
	readSource := func() {
		task := &rocketmq.SourceTask{}
		task.Init(connectortest.TaskContext(map[string]string{}))
		require.NoError(b, task.Start(b.Context(), cfg))
		defer task.Stop(context.Background())
		for n := 0; n < total; {
			recs, err := task.Poll(b.Context())
			require.NoError(b, err)
			n += len(recs)
		}
	}
	pc, err := consumer.NewPullConsumer(consumer.WithNameServer([]string{s.NameServer()}), consumer.WithGroupName("bench_pull"),
		consumer.WithInstance(fmt.Sprintf("bench-%d", instances.Add(1))))
	require.NoError(b, err)
	require.NoError(b, pc.Subscribe("benchsrc", consumer.MessageSelector{}))
	require.NoError(b, pc.Start())
	b.Cleanup(func() { _ = pc.Shutdown() })
	readBaseline := func() {
		for q := range 4 {
			mq := &primitive.MessageQueue{Topic: "benchsrc", BrokerName: s.BrokerName(), QueueId: q}
			for off := int64(0); off < s.MaxOffset("benchsrc", q); {
				res, err := pc.PullFrom(b.Context(), mq, off, 32)
				require.NoError(b, err)
				off = res.NextBeginOffset
			}
		}
	}
	start := time.Now()
	for b.Loop() {
		readSource()
	}
	src := time.Since(start)
	start = time.Now()
	for range b.N {
		readBaseline()
	}
	report(b, b.N*total, src, time.Since(start), "rocketmq-source Poll", "client PullFrom")
}
