package e2e

import (
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/ClickHouse/clickhouse-go/v2"
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// A MariaDB table is replicated into PostgreSQL and into ClickHouse with a
// connector config each and nothing else — mysql-cdc-source with unwrap;
// jdbc-sink upserting with a version column and marking rows deleted on
// tombstones; clickhouse-sink into a ReplacingMergeTree by that version,
// tombstones as rows marked deleted — through a
// mixed workload of inserts, updates (the key too), deletes and a
// TRUNCATE, with meshd killed -9 in the middle: at the end the three tables
// hold the same rows, byte for byte in every column (unicode, decimals,
// unsigned 64-bit integers, floats, times, blobs).
//
// After a kill, each sink (one task) gets the events it had taken but not
// acked again before any later one (mesh.ConsumerConfig.RedeliverFirst),
// so a TRUNCATE is not overtaken by the inserts before it; the version
// column makes writing them a second time harmless, and the deleted column
// keeps a replayed upsert from bringing a deleted row back (a hard delete
// could not: the row and its version are gone).
func TestMariaDBReplicatedIntoPostgresAndClickHouse(t *testing.T) {
	dsn := infra.StartMariaDB(t, true) // root@tcp(127.0.0.1:PORT)/meshd
	addr := strings.TrimSuffix(strings.TrimPrefix(dsn, "root@tcp("), ")/"+infra.MariaDBDatabase)
	my, err := sql.Open("mysql", dsn+"?parseTime=true&loc=UTC&charset=utf8mb4")
	require.NoError(t, err)
	t.Cleanup(func() { my.Close() })
	pgURL := infra.StartPostgres(t)
	pg, err := sql.Open("pgx", pgURL)
	require.NoError(t, err)
	t.Cleanup(func() { pg.Close() })
	chURL := "clickhouse://default@" + infra.StartClickHouse(t) + "/default"
	ch, err := sql.Open("clickhouse", chURL)
	require.NoError(t, err)
	t.Cleanup(func() { ch.Close() })

	mustExec(t, my, `CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) CHARACTER SET utf8mb4, price DECIMAL(12,2),
		big BIGINT UNSIGNED, f DOUBLE, at DATETIME(6), data BLOB)`)
	mustExec(t, pg, `CREATE TABLE items (id INT PRIMARY KEY, name TEXT, price NUMERIC(12,2), big NUMERIC(20),
		f DOUBLE PRECISION, at TIMESTAMP(6), data BYTEA, seq BIGINT, deleted BOOLEAN)`)
	// ClickHouse 18.16 has no DateTime64: the time as text, the blob as base64 text.
	mustExec(t, ch, `CREATE TABLE items (id Int32, name String, price Decimal(12, 2), big UInt64, f Float64, at String, data String,
		seq UInt64, deleted UInt8) ENGINE = ReplacingMergeTree(seq) ORDER BY id`)
	// Rows before the connectors exist come with the snapshot.
	w := &workload{db: my, rnd: rand.New(rand.NewPCG(1, 2))}
	for range 30 {
		w.step(t)
	}

	m := newMeshd(t, "replica", fastRetry)
	for name, cfg := range map[string]map[string]any{
		"items-cdc": {"connector.type": "mysql-cdc-source", "topic": "items", "url": "mysql://root@" + addr + "/meshd",
			"tables": "items", "snapshot": true, "unwrap": true},
		"items-pg": {"connector.type": "jdbc-sink", "topic": "items", "url": pgURL, "table": "items",
			"insert.mode": "upsert", "pk.fields": "id", "delete.enabled": true, "truncate.enabled": true, "version.column": "seq", "deleted.column": "deleted"},
		"items-ch": {"connector.type": "clickhouse-sink", "topic": "items", "url": chURL, "table": "items", "batch.wait": "50ms",
			"pk.fields": "id", "delete.enabled": true, "truncate.enabled": true, "version.column": "seq", "deleted.column": "deleted"},
	} {
		code, body := m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": name, "config": cfg})
		require.Equal(t, http.StatusCreated, code, body)
	}
	m.waitConnector("items-cdc", "RUNNING")
	m.waitConnector("items-pg", "RUNNING")
	m.waitConnector("items-ch", "RUNNING")

	for i := range 400 {
		w.step(t)
		if i == 150 {
			mustExec(t, my, "TRUNCATE TABLE items")
		}
		if i == 155 || i == 250 {
			// The first crash comes while the sinks still hold events
			// from before the TRUNCATE.
			m.kill9()
			m.start()
		}
	}
	defer func() {
		if t.Failed() {
			for _, n := range []string{"items-cdc", "items-pg", "items-ch"} {
				_, body := m.adminCall(http.MethodGet, "/v1/connectors/"+n+"/status", nil)
				t.Logf("status of %s: %s", n, body)
			}
			seqs, _ := rowsOf(pg, "SELECT id, seq, deleted FROM items ORDER BY id")
			t.Logf("rows of PostgreSQL (id|seq|deleted): %v", seqs)
			_, offs := m.adminCall(http.MethodGet, "/v1/connectors/items-cdc/offsets", nil)
			t.Logf("offsets of items-cdc: %s", offs)
			ms, _ := rowsOf(my, "SHOW MASTER STATUS")
			t.Logf("binlog position of MariaDB: %v", ms)
			resp, err := http.Get("http://" + m.admin + "/metrics")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				for _, l := range strings.Split(string(b), "\n") {
					if strings.HasPrefix(l, "meshd_connector") || strings.HasPrefix(l, "meshd_events") {
						t.Logf("metric: %s", l)
					}
				}
			}
		}
	}()
	replicated(t, my, pg, ch)
	for _, n := range []string{"items-pg", "items-ch"} {
		code, body := m.adminCall(http.MethodGet, "/v1/connectors/"+n+"/status", nil)
		require.Equal(t, http.StatusOK, code, body)
		assert.NotContains(t, body, "FAILED")
	}
}

// replicated waits until PostgreSQL and ClickHouse hold what MariaDB holds.
func replicated(t *testing.T, my, pg, ch *sql.DB) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		want, err := rowsOf(my, "SELECT id, name, price, big, f, at, data FROM items ORDER BY id")
		require.NoError(c, err)
		got, err := rowsOf(pg, "SELECT id, name, price::text, big::text, f, at, data FROM items WHERE NOT deleted ORDER BY id")
		require.NoError(c, err)
		assert.Equal(c, want, got)
	}, 90*time.Second, 200*time.Millisecond, "PostgreSQL holds what MariaDB holds")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		want, err := rowsOf(my, "SELECT id, name, CAST(price AS CHAR), CAST(big AS CHAR), f, DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f'), TO_BASE64(data) FROM items ORDER BY id")
		require.NoError(c, err)
		got, err := rowsOf(ch, "SELECT id, name, toString(price), toString(big), f, at, data FROM items FINAL WHERE deleted = 0 ORDER BY id")
		require.NoError(c, err)
		assert.Equal(c, want, got)
	}, 90*time.Second, 200*time.Millisecond, "ClickHouse holds what MariaDB holds")
}

// workload changes the items table at random: inserts, updates of values
// and keys, deletes.
type workload struct {
	db   *sql.DB
	rnd  *rand.Rand
	next int
	ids  []int
}

func (w *workload) step(t *testing.T) {
	t.Helper()
	names := []string{"ü 日本 🚀", "plain", "Grüße €", "", "O'Brien"}
	switch r := w.rnd.IntN(10); {
	case r < 5 || len(w.ids) < 3:
		w.next++
		mustExec(t, w.db, "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", w.next, names[w.rnd.IntN(len(names))],
			fmt.Sprintf("%d.%02d", w.rnd.IntN(100000), w.rnd.IntN(100)), uint64(18446744073709551615)-uint64(w.rnd.IntN(1000)),
			w.rnd.Float64()*1e6, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(w.rnd.Int64N(1e15))).Truncate(time.Microsecond),
			[]byte{0, byte(w.rnd.IntN(256)), 0xff, '\\', '\''})
		w.ids = append(w.ids, w.next)
	case r < 8:
		id := w.ids[w.rnd.IntN(len(w.ids))]
		mustExec(t, w.db, "UPDATE items SET name = ?, price = price + 1.5, f = f / 3 WHERE id = ?", names[w.rnd.IntN(len(names))], id)
	case r < 9:
		i := w.rnd.IntN(len(w.ids))
		w.next++
		mustExec(t, w.db, "UPDATE items SET id = ? WHERE id = ?", w.next, w.ids[i])
		w.ids[i] = w.next
	default:
		i := w.rnd.IntN(len(w.ids))
		mustExec(t, w.db, "DELETE FROM items WHERE id = ?", w.ids[i])
		w.ids = append(w.ids[:i], w.ids[i+1:]...)
	}
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	_, err := db.Exec(q, args...)
	require.NoError(t, err, q)
}

// rowsOf renders every row of a query as text, column by column, with
// times in UTC.
func rowsOf(db *sql.DB, q string) ([]string, error) {
	rows, err := db.Query(q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, _ := rows.ColumnTypes()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			switch x := v.(type) {
			case time.Time:
				parts[i] = x.UTC().Format(time.RFC3339Nano)
			case float64:
				parts[i] = strconv.FormatFloat(x, 'g', -1, 64)
			case []byte:
				if t := cols[i].DatabaseTypeName(); t == "DOUBLE" {
					f, err := strconv.ParseFloat(string(x), 64)
					if err != nil {
						return nil, err
					}
					parts[i] = strconv.FormatFloat(f, 'g', -1, 64)
				} else if t == "BLOB" || t == "BYTEA" {
					parts[i] = fmt.Sprintf("%x", x)
				} else {
					parts[i] = string(x)
				}
			default:
				parts[i] = fmt.Sprint(x)
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out, rows.Err()
}

// meshd is killed while jdbc-sink (one task) is writing inserts, held up by
// a table lock, and a TRUNCATE of the source comes after the restart.
// The inserts it had taken come again before the TRUNCATE: it removes
// them. (Were they delivered after it, as JetStream does by itself — once
// their ack wait ran out, behind newer events — the rows would come back
// and stay.)
func TestTruncateAfterACrashIsNotOvertaken(t *testing.T) {
	pgURL := infra.StartPostgres(t)
	pg, err := sql.Open("pgx", pgURL)
	require.NoError(t, err)
	t.Cleanup(func() { pg.Close() })
	mustExec(t, pg, `CREATE TABLE items (id INT PRIMARY KEY, name TEXT, seq BIGINT)`)

	m := newMeshd(t, "truncate", fastRetry) // ack wait 5s
	code, body := m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "items-pg", "config": map[string]any{
		"connector.type": "jdbc-sink", "topic": "items", "url": pgURL, "table": "items", "batch.wait": "50ms",
		"insert.mode": "upsert", "pk.fields": "id", "truncate.enabled": true, "version.column": "seq",
	}})
	require.Equal(t, http.StatusCreated, code, body)
	m.waitConnector("items-pg", "RUNNING")

	lock, err := pg.BeginTx(t.Context(), nil)
	require.NoError(t, err)
	_, err = lock.Exec("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	for i := range 20 {
		m.publishBinary("items", fmt.Sprintf("before-%d", i), "row", fmt.Appendf(nil, `{"id": %d, "name": "before"}`, i))
	}
	require.Eventually(t, func() bool {
		var waiting int
		err := pg.QueryRow(`SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'items'::regclass`).Scan(&waiting)
		return err == nil && waiting > 0
	}, 20*time.Second, 20*time.Millisecond, "the sink writing the inserts, waiting for the table lock")
	m.kill9()
	require.NoError(t, lock.Rollback())

	m.start()
	resp, body := m.post("/v1/publish/items", http.Header{
		"Ce-Specversion": {"1.0"}, "Ce-Id": {"truncate"}, "Ce-Source": {"/e2e"}, "Ce-Type": {"truncate"}, "Ce-Cdcop": {"t"},
	}, nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, body)
	m.publishBinary("items", "after", "row", []byte(`{"id": 100, "name": "after"}`))

	want := []string{"100|after"}
	require.Eventually(t, func() bool {
		rows, err := rowsOf(pg, "SELECT id, name FROM items ORDER BY id")
		return err == nil && slices.Contains(rows, "100|after")
	}, 30*time.Second, 50*time.Millisecond)
	// Past the ack wait of the inserts taken before the kill: none is back.
	for deadline := time.Now().Add(7 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		rows, err := rowsOf(pg, "SELECT id, name FROM items ORDER BY id")
		require.NoError(t, err)
		require.Equal(t, want, rows, "rows from before the TRUNCATE came back")
	}
}
