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
// of data each) into the test server, beside the same messages sent as one
// batch by the client's producer (the baseline, measured in the same run),
// and reports both rates and their ratio.
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
	base := time.Since(start)
	rate := func(d time.Duration) float64 { return float64(b.N*benchBatch) / d.Seconds() }
	b.ReportMetric(rate(sink), "events/s")
	b.ReportMetric(rate(base), "baseline-msgs/s")
	b.ReportMetric(rate(sink)/rate(base), "ratio")
	b.Logf("rocketmq-sink Put: %.0f events/s; client producer SendSync (baseline): %.0f msgs/s; ratio %.2f", rate(sink), rate(base), rate(sink)/rate(base))
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
	base := time.Since(start)
	rate := func(d time.Duration) float64 { return float64(b.N*total) / d.Seconds() }
	b.ReportMetric(rate(src), "events/s")
	b.ReportMetric(rate(base), "baseline-msgs/s")
	b.ReportMetric(rate(src)/rate(base), "ratio")
	b.Logf("rocketmq-source Poll: %.0f events/s; client PullFrom (baseline): %.0f msgs/s; ratio %.2f", rate(src), rate(base), rate(src)/rate(base))
}
