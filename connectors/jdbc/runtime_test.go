package jdbc

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/test/infra"
)

// meshEnv is an embedded mesh with a connector runtime running the jdbc
// connectors, retrying fast.
type meshEnv struct {
	t   *testing.T
	eng *embedded.Engine
	rt  *worker.Runtime
	log *infra.SyncBuffer
}

func newMeshEnv(t *testing.T) *meshEnv {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	reg := connectors.NewRegistry()
	reg.Register(SourceSpec)
	reg.Register(SinkSpec)
	fast := bridge.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	e := &meshEnv{t: t, eng: eng, log: &infra.SyncBuffer{}}
	e.rt, err = worker.New(worker.Options{Engine: eng, Registry: reg, Backoff: fast, RestartBackoff: fast,
		AckWait: 5 * time.Second, WebhookListen: "127.0.0.1:0", WorkerID: "test",
		Logger: slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	require.NoError(t, err)
	require.NoError(t, e.rt.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		assert.NoError(t, e.rt.Stop(ctx))
	})
	return e
}

func (e *meshEnv) create(name string, cfg map[string]any) {
	e.t.Helper()
	_, err := e.rt.Create(e.t.Context(), name, cfg)
	require.NoError(e.t, err)
}

// publish publishes one event per data value, ids prefix-0, prefix-1, ...
func (e *meshEnv) publish(topic, prefix string, data ...any) {
	e.t.Helper()
	evs := make([]*event.Event, len(data))
	for i, d := range data {
		ev := event.New()
		ev.SetID(fmt.Sprintf("%s-%d", prefix, i))
		ev.SetSource("/test")
		ev.SetType("t")
		if d != nil {
			require.NoError(e.t, ev.SetData(event.ApplicationJSON, d))
		}
		evs[i] = &ev
	}
	require.NoError(e.t, e.eng.Publish(e.t.Context(), topic, evs))
}

// taskState is the state and last error of an instance's first task.
func (e *meshEnv) taskState(name string) (worker.State, string) {
	st, err := e.rt.Status(name)
	if err != nil || len(st.Tasks) == 0 {
		return "", ""
	}
	ts := st.Tasks[0]
	if ts.Trace != "" {
		return ts.State, ts.Trace
	}
	return ts.State, ts.LastError
}

// collect reads every event of topic from its start.
func (e *meshEnv) collect(topic string) func() []*event.Event {
	e.t.Helper()
	c, err := e.eng.Consume(e.t.Context(), mesh.ConsumerConfig{Topic: topic, Group: "test-reader-" + strings.ReplaceAll(topic, ".", "-")})
	require.NoError(e.t, err)
	var mu sync.Mutex
	var got []*event.Event
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			m, err := c.Next(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, m.Event())
			mu.Unlock()
			_ = m.Ack(ctx)
		}
	})
	e.t.Cleanup(func() { cancel(); wg.Wait(); _ = c.Close() })
	return func() []*event.Event {
		mu.Lock()
		defer mu.Unlock()
		return append([]*event.Event(nil), got...)
	}
}

func countOf(t *testing.T, tg *target, table string) int {
	var n int
	if err := tg.db.QueryRowContext(t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		return -1
	}
	return n
}

func rowsData(prefix string, n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = map[string]any{"id": fmt.Sprintf("%s-%03d", prefix, i), "n": i}
	}
	return out
}

// A PostgreSQL outage longer than max.attempts of backoff loses nothing:
// the sink holds its batch (status DEGRADED with the error) instead of
// spending attempts, nothing is dead-lettered, and every event published
// meanwhile arrives once the database is back.
func TestPostgresOutageLosesNothing(t *testing.T) {
	pg := infra.StartPostgresServer(t)
	tg := openTarget(t, pg.URL)
	tg.exec(t, `CREATE TABLE outage (id TEXT PRIMARY KEY, n BIGINT)`)
	e := newMeshEnv(t)
	dead := e.collect("outage.dlq")
	e.create("pg-out", map[string]any{connectors.FieldConnectorType: SinkType, connectors.FieldTopic: "outage",
		connectors.FieldAttempts: 3, connectors.FieldDeadLetter: "outage.dlq", connectors.FieldBatchSize: 50,
		connectors.FieldBatchWait: "10ms", FieldURL: pg.URL, FieldTable: "outage"})
	require.Eventually(t, func() bool { s, _ := e.taskState("pg-out"); return s == worker.StateRunning }, 30*time.Second, 20*time.Millisecond)
	e.publish("outage", "before", rowsData("before", 20)...)
	require.Eventually(t, func() bool { return countOf(t, tg, "outage") == 20 }, 30*time.Second, 20*time.Millisecond)

	pg.Stop()
	e.publish("outage", "during", rowsData("during", 300)...)
	require.Eventually(t, func() bool { s, _ := e.taskState("pg-out"); return s == worker.StateDegraded }, 30*time.Second, 20*time.Millisecond,
		"a sink whose database is down is DEGRADED")
	_, lastErr := e.taskState("pg-out")
	assert.Contains(t, lastErr, "connect", "the status says why")
	// Three attempts at 20-200 ms of backoff would be spent well within
	// this outage.
	assert.Never(t, func() bool { return len(dead()) > 0 }, 3*time.Second, 50*time.Millisecond, "nothing is dead-lettered during the outage")
	pg.Start()
	require.Eventually(t, func() bool { return countOf(t, tg, "outage") == 320 }, 60*time.Second, 50*time.Millisecond,
		"every event published during the outage arrives")
	assert.Empty(t, dead(), "nothing is dead-lettered")
	require.Eventually(t, func() bool { s, _ := e.taskState("pg-out"); return s == worker.StateRunning }, 30*time.Second, 20*time.Millisecond,
		"RUNNING again once writes succeed")
}

// A sink created while its database is down is FAILED with the reason,
// and the events published meanwhile are kept for it: they arrive once
// the database is back.
func TestSinkCreatedWhileDatabaseDown(t *testing.T) {
	pg := infra.StartPostgresServer(t)
	tg := openTarget(t, pg.URL)
	tg.exec(t, `CREATE TABLE late (id TEXT PRIMARY KEY, n BIGINT)`)
	pg.Stop()
	e := newMeshEnv(t)
	e.create("pg-late", map[string]any{connectors.FieldConnectorType: SinkType, connectors.FieldTopic: "late",
		FieldURL: pg.URL, FieldTable: "late"})
	e.publish("late", "x", rowsData("x", 5)...)
	require.Eventually(t, func() bool { s, _ := e.taskState("pg-late"); return s == worker.StateFailed }, 30*time.Second, 20*time.Millisecond)
	_, trace := e.taskState("pg-late")
	assert.Contains(t, trace, "connecting to the postgres database")
	pg.Start()
	require.Eventually(t, func() bool { return countOf(t, tg, "late") == 5 }, 60*time.Second, 50*time.Millisecond,
		"the events published before the sink could start arrive")
}

// A table that does not exist fails the task with the reason (not a
// retry of every event), and nothing is lost: once the table is created
// the events arrive.
func TestSinkMissingTableFailsWithReason(t *testing.T) {
	tg := openTarget(t, infra.StartPostgres(t))
	e := newMeshEnv(t)
	e.create("pg-notable", map[string]any{connectors.FieldConnectorType: SinkType, connectors.FieldTopic: "notable",
		FieldURL: tg.url, FieldTable: "notable"})
	e.publish("notable", "x", rowsData("x", 3)...)
	require.Eventually(t, func() bool {
		s, trace := e.taskState("pg-notable")
		return s == worker.StateFailed && strings.Contains(trace, `table "notable" does not exist`)
	}, 30*time.Second, 20*time.Millisecond)
	tg.exec(t, `CREATE TABLE notable (id TEXT PRIMARY KEY, n BIGINT)`)
	require.Eventually(t, func() bool { return countOf(t, tg, "notable") == 3 }, 60*time.Second, 50*time.Millisecond)
}

// Upserts end with the latest write of every key, though writes fail now
// and then (a statement trigger raises a serialization failure, which is
// retried) and four tasks are asked for: with version.column the tasks
// write concurrently and a row only moves forward; without it the sink
// runs one task and holds a failed batch until it is written, so no retry
// lands after a later write of its key.
func TestUpsertKeepsTheLatestWrite(t *testing.T) {
	tg := openTarget(t, infra.StartPostgres(t))
	e := newMeshEnv(t)
	const keys, versions = 20, 25
	for _, c := range []struct {
		name    string
		version string
	}{{"versioned", "seq"}, {"ordered", ""}} {
		t.Run(c.name, func(t *testing.T) {
			table := "latest_" + c.name
			tg.exec(t, fmt.Sprintf(`CREATE TABLE %s (id TEXT PRIMARY KEY, n BIGINT, seq BIGINT)`, table))
			tg.exec(t, fmt.Sprintf(`CREATE FUNCTION flaky_%[1]s() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN IF random() < 0.3 THEN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END IF; RETURN NULL; END $$;
				CREATE TRIGGER flaky AFTER INSERT OR UPDATE ON %[1]s FOR EACH STATEMENT EXECUTE FUNCTION flaky_%[1]s()`, table))
			cfg := map[string]any{connectors.FieldConnectorType: SinkType, connectors.FieldTopic: table, connectors.FieldTasksMax: 4,
				connectors.FieldBatchSize: 7, connectors.FieldBatchWait: "5ms", FieldURL: tg.url, FieldTable: table,
				FieldInsertMode: InsertModeUpsert, FieldPKFields: "id"}
			if c.version != "" {
				cfg[FieldVersionColumn] = c.version
			}
			e.create(table, cfg)
			var data []any
			for v := range versions {
				for k := range keys {
					data = append(data, map[string]any{"id": fmt.Sprintf("k%02d", k), "n": v})
				}
			}
			e.publish(table, table, data...)
			want := make([]string, keys)
			for k := range want {
				want[k] = fmt.Sprintf("k%02d:%d", k, versions-1)
			}
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				assert.Equal(c, want, tg.texts("SELECT id || ':' || n FROM "+table+" ORDER BY id"))
			}, 60*time.Second, 100*time.Millisecond, "every key ends with its latest write")
			st, err := e.rt.Status(table)
			require.NoError(t, err)
			if c.version == "" {
				assert.Len(t, st.Tasks, 1, "without a version column, one task")
			} else {
				assert.Len(t, st.Tasks, 4)
			}
			// And stays so: no retry lands later.
			assert.Never(t, func() bool {
				return !slices.Equal(want, tg.texts("SELECT id || ':' || n FROM "+table+" ORDER BY id"))
			}, time.Second, 50*time.Millisecond)
		})
	}
}

// texts returns the one text column of a query's rows; nil on an error
// (for conditions polled from other goroutines).
func (tg *target) texts(q string) []string {
	rows, err := tg.db.Query(q)
	if err != nil {
		return nil
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if rows.Scan(&s) != nil {
			return nil
		}
		out = append(out, s.String)
	}
	return out
}
