package jdbc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/test/infra"
)

const (
	// benchRows is the number of rows each side writes per iteration.
	benchRows = 100000
	// benchBatch is the sink's batch.size and the rows per transaction of
	// the pgx baseline.
	benchBatch = 1000
	// benchWait bounds every step of the benchmark that waits.
	benchWait = 2 * time.Minute
	// benchTick is how often the row count is polled.
	benchTick = 20 * time.Millisecond
)

// BenchmarkSinkPostgres compares jdbc-sink with plain pgx, writing the same
// rows into one PostgreSQL server in the same run:
//
//   - sink: benchRows events, JSON objects {"id": "...", "n": i, "s": 100
//     bytes}, are published to a topic of an embedded mesh first. Then a
//     jdbc-sink instance (insert mode, batch.size 1000, tasks.max 1) is
//     created on the connector runtime, and the clock runs from its
//     creation until SELECT count(*) of its table reaches benchRows. Its
//     consumer group is created before the events are published: a new sink
//     group starts at events published after it (StartAtNew).
//
//   - pgx: the same rows inserted into another table over one pgx
//     connection, in transactions of 1000 rows, each a pgx.Batch of 1000
//     single-row INSERTs (one round trip per batch).
//
//   - copy: the same rows copied into a third table with pgx's CopyFrom, 1000
//     rows a transaction (what jdbc-sink does for PostgreSQL batches).
//
// It reports sink_eps, pgx_eps and copy_eps (rows per second), ratio =
// sink_eps/pgx_eps and ratio_copy = sink_eps/copy_eps. An iteration takes seconds; run it with -benchtime 1x
// (make bench does).
func BenchmarkSinkPostgres(b *testing.B) {
	url := infra.StartPostgres(b)
	ctx, cancel := context.WithTimeout(b.Context(), benchWait)
	conn, err := pgx.Connect(ctx, url)
	cancel()
	if err != nil {
		b.Fatalf("connecting to postgres: %v", err)
	}
	b.Cleanup(func() { _ = conn.Close(context.Background()) })
	env := newBenchEnv(b)

	var sinkTime, pgxTime, copyTime time.Duration
	b.ResetTimer()
	for i := range b.N {
		rows := benchData(i)
		pgxTime += benchPgx(b, conn, fmt.Sprintf("bench_pgx_%d", i), rows)
		copyTime += benchCopy(b, conn, fmt.Sprintf("bench_copy_%d", i), rows)
		sinkTime += env.run(b, conn, url, i, rows)
	}
	b.StopTimer()
	total := float64(b.N * benchRows)
	sinkEPS, pgxEPS, copyEPS := total/sinkTime.Seconds(), total/pgxTime.Seconds(), total/copyTime.Seconds()
	b.ReportMetric(sinkEPS, "sink_eps")
	b.ReportMetric(pgxEPS, "pgx_eps")
	b.ReportMetric(copyEPS, "copy_eps")
	b.ReportMetric(sinkEPS/pgxEPS, "ratio")
	b.ReportMetric(sinkEPS/copyEPS, "ratio_copy")
}

// benchCopy copies rows into a new table with pgx's CopyFrom, in
// transactions of benchBatch rows, and returns how long that took.
func benchCopy(b *testing.B, conn *pgx.Conn, table string, rows []benchRow) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), benchWait)
	defer cancel()
	if _, err := conn.Exec(ctx, fmt.Sprintf(benchTable, table)); err != nil {
		b.Fatalf("copy: creating table %s: %v", table, err)
	}
	start := time.Now()
	for from := 0; from < len(rows); from += benchBatch {
		part := rows[from:min(from+benchBatch, len(rows))]
		src := pgx.CopyFromSlice(len(part), func(i int) ([]any, error) { return []any{part[i].ID, part[i].N, part[i].S}, nil })
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "n", "s"}, src); err != nil {
			b.Fatalf("copy: rows %d to %d into %s: %v", from, from+len(part), table, err)
		}
	}
	elapsed := time.Since(start)
	if n := countRows(b, conn, table); n != len(rows) {
		b.Fatalf("copy: %s holds %d rows, want %d", table, n, len(rows))
	}
	return elapsed
}

// benchRow is one row of both tables and the data of one event.
type benchRow struct {
	ID string `json:"id"`
	N  int64  `json:"n"`
	S  string `json:"s"`
}

const benchTable = `CREATE TABLE %s (id TEXT PRIMARY KEY, n BIGINT NOT NULL, s TEXT NOT NULL)`

func benchData(iter int) []benchRow {
	s := strings.Repeat("meshd-bench ", 9)[:100]
	rows := make([]benchRow, benchRows)
	for i := range rows {
		rows[i] = benchRow{ID: fmt.Sprintf("r%d-%06d", iter, i), N: int64(i), S: s}
	}
	return rows
}

// benchPgx inserts rows into a new table and returns how long the inserts
// took (the CREATE TABLE excluded).
func benchPgx(b *testing.B, conn *pgx.Conn, table string, rows []benchRow) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), benchWait)
	defer cancel()
	if _, err := conn.Exec(ctx, fmt.Sprintf(benchTable, table)); err != nil {
		b.Fatalf("pgx: creating table %s: %v", table, err)
	}
	insert := "INSERT INTO " + table + " (id, n, s) VALUES ($1, $2, $3)"
	start := time.Now()
	for from := 0; from < len(rows); from += benchBatch {
		batch := &pgx.Batch{}
		for _, r := range rows[from:min(from+benchBatch, len(rows))] {
			batch.Queue(insert, r.ID, r.N, r.S)
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			return tx.SendBatch(ctx, batch).Close()
		})
		if err != nil {
			b.Fatalf("pgx: inserting rows %d to %d into %s (%s since the start): %v", from, from+batch.Len(), table, time.Since(start), err)
		}
	}
	elapsed := time.Since(start)
	if n := countRows(b, conn, table); n != len(rows) {
		b.Fatalf("pgx: %s holds %d rows, want %d", table, n, len(rows))
	}
	return elapsed
}

// benchEnv is an embedded mesh and a connector runtime on it.
type benchEnv struct {
	eng *embedded.Engine
	rt  *worker.Runtime
	log *lastRecord // the runtime's last warning, for failure messages
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), benchWait)
	defer cancel()
	eng, err := embedded.Open(ctx, embedded.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatalf("opening the embedded mesh: %v", err)
	}
	b.Cleanup(func() { _ = eng.Close() })
	reg := connectors.NewRegistry()
	reg.Register(SinkSpec)
	e := &benchEnv{eng: eng, log: &lastRecord{}}
	e.rt, err = worker.New(worker.Options{
		Engine:        eng,
		Registry:      reg,
		Logger:        slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelWarn})),
		WorkerID:      "bench",
		WebhookListen: "127.0.0.1:0",
	})
	if err != nil {
		b.Fatalf("creating the connector runtime: %v", err)
	}
	if err := e.rt.Start(ctx); err != nil {
		b.Fatalf("starting the connector runtime: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), benchWait)
		defer cancel()
		if err := e.rt.Stop(ctx); err != nil {
			b.Errorf("stopping the connector runtime: %v", err)
		}
	})
	return e
}

// run publishes rows as events, then creates a jdbc-sink instance writing
// them into a new table and returns the time from its creation until the
// table holds every row.
func (e *benchEnv) run(b *testing.B, conn *pgx.Conn, url string, iter int, rows []benchRow) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), benchWait)
	defer cancel()
	name, topic, table := fmt.Sprintf("bench-sink-%d", iter), fmt.Sprintf("bench.sink.%d", iter), fmt.Sprintf("bench_sink_%d", iter)
	if _, err := conn.Exec(ctx, fmt.Sprintf(benchTable, table)); err != nil {
		b.Fatalf("sink: creating table %s: %v", table, err)
	}
	// The group the instance will consume with, created at the topic's
	// start so the instance reads the backlog.
	group, err := e.eng.Consume(ctx, mesh.ConsumerConfig{Topic: topic, Group: worker.GroupName(name)})
	if err != nil {
		b.Fatalf("sink: creating consumer group %s: %v", worker.GroupName(name), err)
	}
	_ = group.Close()
	evs := make([]*event.Event, len(rows))
	for i, r := range rows {
		ev := event.New()
		ev.SetID(r.ID)
		ev.SetSource("/bench")
		ev.SetType("dev.meshd.bench")
		if err := ev.SetData(event.ApplicationJSON, r); err != nil {
			b.Fatalf("sink: encoding event %d: %v", i, err)
		}
		evs[i] = &ev
	}
	if err := e.eng.Publish(ctx, topic, evs); err != nil {
		b.Fatalf("sink: publishing %d events: %v", len(evs), err)
	}

	start := time.Now()
	_, err = e.rt.Create(ctx, name, map[string]any{
		connectors.FieldConnectorType: SinkType,
		connectors.FieldTopic:         topic,
		connectors.FieldBatchSize:     benchBatch,
		FieldURL:                      url,
		FieldTable:                    table,
		FieldInsertMode:               InsertModeInsert,
	})
	if err != nil {
		b.Fatalf("sink: creating instance %s: %v", name, err)
	}
	for {
		n := countRows(b, conn, table)
		if n == len(rows) {
			break
		}
		st, err := e.rt.Status(name)
		failed := err == nil && st.Connector.State == worker.StateFailed
		for _, ts := range st.Tasks {
			failed = failed || ts.State == worker.StateFailed
		}
		if err != nil || failed || ctx.Err() != nil {
			b.Fatalf("sink: waiting for %s to hold %d rows: %d after %s; status of %s: %+v (err %v); last runtime warning: %s",
				table, len(rows), n, time.Since(start).Round(time.Millisecond), name, st, err, e.log)
		}
		select {
		case <-ctx.Done():
		case <-time.After(benchTick):
		}
	}
	elapsed := time.Since(start)
	if err := e.rt.Delete(ctx, name); err != nil {
		b.Fatalf("sink: deleting instance %s: %v", name, err)
	}
	return elapsed
}

// countRows returns SELECT count(*) of table, within benchWait.
func countRows(b *testing.B, conn *pgx.Conn, table string) int {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), benchWait)
	defer cancel()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		b.Fatalf("counting the rows of %s: %v", table, err)
	}
	return n
}

// lastRecord is a slog handler's writer that keeps the last record (a
// handler writes each record with one Write).
type lastRecord struct{ p atomic.Pointer[string] }

func (l *lastRecord) Write(p []byte) (int, error) {
	s := string(p)
	l.p.Store(&s)
	return len(p), nil
}

func (l *lastRecord) String() string {
	if s := l.p.Load(); s != nil {
		return *s
	}
	return "none"
}

// BenchmarkTableCopyPostgres copies a table of benchRows rows from one
// PostgreSQL database into another of the same server, in the same run:
//
//   - pipe: COPY (SELECT …) TO STDOUT piped straight into COPY … FROM STDIN
//     (pgconn, one connection to each database): the ceiling.
//   - meshd: a jdbc-sink instance (insert, batch.size 1000) and a
//     jdbc-source instance (incrementing on id, batch.max.rows 1000) on the
//     connector runtime, timed from the source's creation until the target
//     holds every row.
//
// It reports meshd_rps and pipe_rps (rows per second) and ratio.
func BenchmarkTableCopyPostgres(b *testing.B) {
	url := infra.StartPostgres(b)
	ctx, cancel := context.WithTimeout(b.Context(), benchWait)
	defer cancel()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatalf("connecting to postgres: %v", err)
	}
	defer admin.Close(context.Background())
	for _, db := range []string{"src", "dst"} {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			b.Fatalf("creating database %s: %v", db, err)
		}
	}
	srcURL, dstURL := strings.Replace(url, "/postgres?", "/src?", 1), strings.Replace(url, "/postgres?", "/dst?", 1)
	src, err := pgx.Connect(ctx, srcURL)
	if err != nil {
		b.Fatalf("connecting to src: %v", err)
	}
	defer src.Close(context.Background())
	dst, err := pgx.Connect(ctx, dstURL)
	if err != nil {
		b.Fatalf("connecting to dst: %v", err)
	}
	defer dst.Close(context.Background())
	const table = `CREATE TABLE %s (id BIGINT PRIMARY KEY, k TEXT NOT NULL, n BIGINT NOT NULL, s TEXT NOT NULL, at TIMESTAMPTZ NOT NULL)`
	if _, err := src.Exec(ctx, fmt.Sprintf(table, "rows")+`; INSERT INTO rows SELECT i, 'key-' || i, i * 7, repeat('x', 100), now() FROM generate_series(1, `+fmt.Sprint(benchRows)+`) i`); err != nil {
		b.Fatalf("filling the source table: %v", err)
	}
	env := newBenchEnv(b)
	env.rt.Registry().Register(SourceSpec)

	var meshTime, pipeTime time.Duration
	b.ResetTimer()
	for i := range b.N {
		pipeTime += benchPipe(b, src, dst, fmt.Sprintf("pipe_%d", i), table)
		meshTime += env.copyTable(b, dst, srcURL, dstURL, i, table)
	}
	b.StopTimer()
	total := float64(b.N * benchRows)
	meshRPS, pipeRPS := total/meshTime.Seconds(), total/pipeTime.Seconds()
	b.ReportMetric(meshRPS, "meshd_rps")
	b.ReportMetric(pipeRPS, "pipe_rps")
	b.ReportMetric(meshRPS/pipeRPS, "ratio")
}

// benchPipe copies the source table into a new table of dst through a
// COPY pipe and returns how long that took.
func benchPipe(b *testing.B, src, dst *pgx.Conn, name, table string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), benchWait)
	defer cancel()
	if _, err := dst.Exec(ctx, fmt.Sprintf(table, name)); err != nil {
		b.Fatalf("pipe: creating %s: %v", name, err)
	}
	start := time.Now()
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := src.PgConn().CopyTo(ctx, w, "COPY rows TO STDOUT")
		w.CloseWithError(err)
		done <- err
	}()
	if _, err := dst.PgConn().CopyFrom(ctx, r, "COPY "+name+" FROM STDIN"); err != nil {
		b.Fatalf("pipe: copying into %s: %v", name, err)
	}
	if err := <-done; err != nil {
		b.Fatalf("pipe: copying out of rows: %v", err)
	}
	elapsed := time.Since(start)
	if n := countRows(b, dst, name); n != benchRows {
		b.Fatalf("pipe: %s holds %d rows, want %d", name, n, benchRows)
	}
	return elapsed
}

// copyTable copies the source table into a new table of dst through a
// jdbc-source and a jdbc-sink instance and returns the time from the
// source's creation until the table holds every row.
func (e *benchEnv) copyTable(b *testing.B, dst *pgx.Conn, srcURL, dstURL string, iter int, table string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), benchWait)
	defer cancel()
	name, topic := fmt.Sprintf("copy_%d", iter), fmt.Sprintf("bench.copy.%d", iter)
	if _, err := dst.Exec(ctx, fmt.Sprintf(table, name)); err != nil {
		b.Fatalf("meshd: creating %s: %v", name, err)
	}
	if _, err := e.rt.Create(ctx, "copy-sink-"+fmt.Sprint(iter), map[string]any{connectors.FieldConnectorType: SinkType,
		connectors.FieldTopic: topic, connectors.FieldBatchSize: benchBatch, FieldURL: dstURL, FieldTable: name}); err != nil {
		b.Fatalf("meshd: creating the sink: %v", err)
	}
	start := time.Now()
	if _, err := e.rt.Create(ctx, "copy-source-"+fmt.Sprint(iter), map[string]any{connectors.FieldConnectorType: SourceType,
		connectors.FieldTopic: topic, FieldURL: srcURL, FieldTable: "rows", FieldMode: ModeIncrementing,
		FieldIncrementing: "id", FieldBatchMaxRows: benchBatch, FieldPollInterval: "10ms"}); err != nil {
		b.Fatalf("meshd: creating the source: %v", err)
	}
	for countRows(b, dst, name) < benchRows {
		if ctx.Err() != nil {
			b.Fatalf("meshd: %s holds %d of %d rows after %s; last runtime warning: %s", name, countRows(b, dst, name), benchRows, time.Since(start), e.log)
		}
		select {
		case <-ctx.Done():
		case <-time.After(benchTick):
		}
	}
	elapsed := time.Since(start)
	for _, n := range []string{"copy-source-", "copy-sink-"} {
		if err := e.rt.Delete(ctx, n+fmt.Sprint(iter)); err != nil {
			b.Fatalf("meshd: deleting %s: %v", n, err)
		}
	}
	return elapsed
}
