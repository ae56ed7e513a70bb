package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/test/infra"
)

const (
	benchRows  = 100_000
	benchBatch = DefaultBatchSize
)

// BenchmarkSinkPut compares clickhouse-sink's Put with the driver alone,
// writing the same rows into one ClickHouse server in the same run:
//
//   - sink: benchRows events with JSON data {"id", "n", "s": 100 bytes,
//     "at": RFC 3339} handed to SinkTask.Put in batches of batch.size's
//     default (10000): JSON decoding, conversion, one INSERT block each.
//   - driver: the same rows as Go values (string, int64, string,
//     time.Time) appended to PrepareBatch blocks of 10000 and sent.
//
// It reports sink_eps and driver_eps (rows per second) and ratio =
// sink_eps/driver_eps: the cost of taking rows as JSON events. The mesh and
// the runtime are not part of it (connectors/jdbc's BenchmarkSinkPostgres
// measures those). Run it with -benchtime 1x (make bench does).
func BenchmarkSinkPut(b *testing.B) {
	s := &server{addr: infra.StartClickHouse(b)}
	ctx := context.Background()
	conn, err := open(ctx, s.url("default"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	pad := strings.Repeat("x", 100)
	for iter := 0; b.Loop(); iter++ {
		sinkTable, rawTable := fmt.Sprintf("bench_sink_%d", iter), fmt.Sprintf("bench_raw_%d", iter)
		for _, tb := range []string{sinkTable, rawTable} {
			if err := conn.Exec(ctx, "CREATE TABLE "+tb+" (id String, n Int64, s String, at DateTime) ENGINE = MergeTree ORDER BY id"); err != nil {
				b.Fatalf("creating %s: %v", tb, err)
			}
		}

		start := time.Now()
		for from := 0; from < benchRows; from += benchBatch {
			blk, err := conn.PrepareBatch(ctx, "INSERT INTO "+rawTable+" (id, n, s, at)")
			if err != nil {
				b.Fatalf("driver: %v", err)
			}
			for i := from; i < from+benchBatch; i++ {
				if err := blk.Append(fmt.Sprintf("e-%d", i), int64(i), pad, at); err != nil {
					b.Fatalf("driver: %v", err)
				}
			}
			if err := blk.Send(); err != nil {
				b.Fatalf("driver: %v", err)
			}
		}
		rawTime := time.Since(start)

		evs := make([]event.Event, benchRows)
		for n := range evs {
			e := event.New()
			e.SetID(fmt.Sprintf("e-%d", n))
			e.SetSource("/bench")
			e.SetType("dev.meshd.bench")
			_ = e.SetData(event.ApplicationJSON, []byte(fmt.Sprintf(`{"id":"e-%d","n":%d,"s":"%s","at":"%s"}`, n, n, pad, at.Format(time.RFC3339))))
			evs[n] = e
		}
		task := &SinkTask{}
		if err := task.Start(ctx, connectortest.Config(b, SinkSpec, FieldURL, s.url("default"), FieldTable, sinkTable)); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		for from := 0; from < benchRows; from += benchBatch {
			if err := task.Put(ctx, evs[from:from+benchBatch]); err != nil {
				b.Fatalf("sink: %v", err)
			}
		}
		sinkTime := time.Since(start)
		_ = task.Stop(ctx)

		for tb, want := range map[string]int{sinkTable: benchRows, rawTable: benchRows} {
			var n uint64
			if err := conn.QueryRow(ctx, "SELECT count() FROM "+tb).Scan(&n); err != nil || int(n) != want {
				b.Fatalf("%s holds %d rows (%v), want %d", tb, n, err, want)
			}
		}
		sinkEPS, rawEPS := benchRows/sinkTime.Seconds(), benchRows/rawTime.Seconds()
		b.ReportMetric(sinkEPS, "sink_eps")
		b.ReportMetric(rawEPS, "driver_eps")
		b.ReportMetric(sinkEPS/rawEPS, "ratio")
	}
}
