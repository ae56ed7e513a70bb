package worker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
)

const benchEvents = 50_000

// BenchmarkSinkDelivery measures the runtime's ceiling for one sink task:
// benchEvents events published first, then delivered to a sink task whose
// Put does nothing (batch.size 1000), beside a plain consumer of the same
// engine reading and acking the same events one by one (raw_eps). ratio =
// sink_eps/raw_eps.
func BenchmarkSinkDelivery(b *testing.B) {
	ctx := context.Background()
	eng, err := embedded.Open(ctx, embedded.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	var got atomic.Int64
	reg := connectors.NewRegistry()
	reg.Register(connectors.Spec{Name: "nop-sink", Kind: connectors.KindSink, New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task {
			return &testSinkTask{put: func(evs []event.Event) error { got.Add(int64(len(evs))); return nil }}
		}, connectors.EveryTask)
	}})
	rt, err := worker.New(worker.Options{Engine: eng, Registry: reg, WebhookListen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	if err := rt.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer rt.Stop(context.Background())
	evs := make([]*event.Event, benchEvents)
	for i := range evs {
		e := event.New()
		e.SetID(fmt.Sprint(i))
		e.SetSource("/bench")
		e.SetType("t")
		_ = e.SetData(event.ApplicationJSON, []byte(`{"n":1,"s":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`))
		evs[i] = &e
	}
	for iter := 0; b.Loop(); iter++ {
		topic, name := fmt.Sprintf("bench.%d", iter), fmt.Sprintf("nop-%d", iter)
		for _, g := range []string{worker.GroupName(name), "raw"} {
			c, err := eng.Consume(ctx, mesh.ConsumerConfig{Topic: topic, Group: g})
			if err != nil {
				b.Fatal(err)
			}
			_ = c.Close()
		}
		if err := eng.Publish(ctx, topic, evs); err != nil {
			b.Fatal(err)
		}

		start := time.Now()
		c, err := eng.Consume(ctx, mesh.ConsumerConfig{Topic: topic, Group: "raw", MaxInFlight: 2000})
		if err != nil {
			b.Fatal(err)
		}
		for range benchEvents {
			m, err := c.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Ack(ctx); err != nil {
				b.Fatal(err)
			}
		}
		raw := time.Since(start)
		_ = c.Close()

		got.Store(0)
		start = time.Now()
		if _, err := rt.Create(ctx, name, map[string]any{connectors.FieldConnectorType: "nop-sink", connectors.FieldTopic: topic, connectors.FieldBatchSize: 1000}); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for got.Load() < benchEvents {
			if time.Now().After(deadline) {
				b.Fatalf("the sink got %d of %d events in 2 minutes", got.Load(), benchEvents)
			}
			time.Sleep(5 * time.Millisecond)
		}
		sink := time.Since(start)
		_ = rt.Delete(ctx, name)
		b.ReportMetric(benchEvents/sink.Seconds(), "sink_eps")
		b.ReportMetric(benchEvents/raw.Seconds(), "raw_eps")
		b.ReportMetric(raw.Seconds()/sink.Seconds(), "ratio")
	}
}
