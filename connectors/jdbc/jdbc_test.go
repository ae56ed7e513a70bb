package jdbc

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/test/infra"
)

// target is one database under test.
type target struct {
	url string
	d   dialect
	db  *sql.DB
	// ddl of the tables the tests use.
	srcTable, sinkTable, typesTable, typesInsert string
}

func (tg *target) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	_, err := tg.db.ExecContext(t.Context(), tg.rebind(q), args...)
	require.NoError(t, err, q)
}

// rebind turns ? placeholders into $n for PostgreSQL.
func (tg *target) rebind(q string) string {
	if tg.d != dialectPostgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (tg *target) strings(t *testing.T, q string) []string {
	t.Helper()
	rows, err := tg.db.QueryContext(t.Context(), q)
	require.NoError(t, err, q)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		require.NoError(t, rows.Scan(&s))
		out = append(out, s.String)
	}
	require.NoError(t, rows.Err())
	return out
}

func openTarget(t *testing.T, url string) *target {
	t.Helper()
	d, db, err := open(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	tg := &target{url: url, d: d, db: db}
	switch d {
	case dialectPostgres:
		tg.srcTable = `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL, ts TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP)`
		tg.sinkTable = `CREATE TABLE %s (id VARCHAR(100) PRIMARY KEY, n BIGINT)`
		tg.typesTable = `CREATE TABLE types (id BIGINT PRIMARY KEY, i INT, big BIGINT, f DOUBLE PRECISION, dec NUMERIC(20,6), ts TIMESTAMPTZ, b BYTEA, s TEXT, flag BOOLEAN, nul TEXT)`
		tg.typesInsert = `INSERT INTO types VALUES (1, 42, 9007199254740993, 1.5, 12345678901234.123456, '2026-11-23T10:00:00.123456Z', '\x0102ff', 'hé', true, NULL)`
	case dialectMySQL:
		tg.srcTable = `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, k VARCHAR(100) NOT NULL, ts DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))`
		tg.sinkTable = `CREATE TABLE %s (id VARCHAR(100) PRIMARY KEY, n BIGINT)`
		tg.typesTable = "CREATE TABLE types (id BIGINT PRIMARY KEY, i INT, big BIGINT, f DOUBLE, `dec` DECIMAL(20,6), ts DATETIME(6), b VARBINARY(10), s TEXT, flag BOOLEAN, nul TEXT)"
		tg.typesInsert = `INSERT INTO types VALUES (1, 42, 9007199254740993, 1.5, 12345678901234.123456, '2026-11-23 10:00:00.123456', x'0102ff', 'hé', true, NULL)`
	case dialectSQLite:
		tg.srcTable = `CREATE TABLE %s (id INTEGER PRIMARY KEY AUTOINCREMENT, k TEXT NOT NULL, ts TEXT NOT NULL DEFAULT (strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ','now')))`
		tg.sinkTable = `CREATE TABLE %s (id TEXT PRIMARY KEY, n INTEGER)`
	}
	return tg
}

func TestPostgres(t *testing.T) {
	runAll(t, openTarget(t, infra.StartPostgres(t)))
}

func TestMariaDB(t *testing.T) {
	dsn := infra.StartMariaDB(t, false) // root@tcp(127.0.0.1:PORT)/meshd
	hostPort := strings.TrimSuffix(strings.TrimPrefix(dsn, "root@tcp("), ")/"+infra.MariaDBDatabase)
	runAll(t, openTarget(t, "mysql://root@"+hostPort+"/"+infra.MariaDBDatabase))
}

func TestSQLite(t *testing.T) {
	runAll(t, openTarget(t, "sqlite://"+filepath.Join(t.TempDir(), "meshd.db")))
}

func runAll(t *testing.T, tg *target) {
	t.Run("SourceSuite", func(t *testing.T) { sourceSuite(t, tg) })
	t.Run("SinkSuite", func(t *testing.T) { sinkSuite(t, tg) })
	t.Run("Upsert", func(t *testing.T) { testUpsert(t, tg) })
	t.Run("PutBeyondOneStatement", func(t *testing.T) { testLargePut(t, tg) })
	t.Run("DeleteOnTombstone", func(t *testing.T) { testDelete(t, tg) })
	t.Run("AutoCreate", func(t *testing.T) { testAutoCreate(t, tg) })
	t.Run("BadRowsFailAlone", func(t *testing.T) { testBadRows(t, tg) })
	t.Run("VersionGuard", func(t *testing.T) { testVersionGuard(t, tg) })
	if tg.typesTable != "" {
		t.Run("Types", func(t *testing.T) { testTypes(t, tg) })
	}
	t.Run("Modes", func(t *testing.T) { testModes(t, tg) })
}

func sourceSuite(t *testing.T, tg *target) {
	tg.exec(t, fmt.Sprintf(tg.srcTable, "suite_src"))
	connectortest.RunSource(t, connectortest.Source{
		Spec: SourceSpec,
		Config: map[string]any{FieldURL: tg.url, FieldTable: "suite_src", FieldMode: ModeIncrementing,
			FieldIncrementing: "id", FieldPKFields: "k", FieldPollInterval: "50ms"},
		Produce: func(ctx context.Context, keys []string) error {
			for _, k := range keys {
				if _, err := tg.db.ExecContext(ctx, tg.rebind("INSERT INTO suite_src (k) VALUES (?)"), k); err != nil {
					return err
				}
			}
			return nil
		},
		Key: func(e *event.Event) string { return e.Subject() },
	})
}

func sinkSuite(t *testing.T, tg *target) {
	tg.exec(t, fmt.Sprintf(tg.sinkTable, "suite_sink"))
	connectortest.RunSink(t, connectortest.Sink{
		Spec: SinkSpec,
		Config: map[string]any{FieldURL: tg.url, FieldTable: "suite_sink", FieldInsertMode: InsertModeUpsert,
			FieldPKFields: "id"},
		Received: func() []string {
			for _, tb := range []string{"suite_sink", "suite_sink_off"} {
				rows, err := tg.db.Query("SELECT id FROM " + tb)
				if err != nil {
					continue
				}
				var ids []string
				for rows.Next() {
					var id string
					if rows.Scan(&id) == nil {
						ids = append(ids, id)
					}
				}
				rows.Close()
				return ids
			}
			return nil
		},
		SetFailing: func(failing bool) {
			from, to := "suite_sink", "suite_sink_off"
			if !failing {
				from, to = to, from
			}
			_, _ = tg.db.Exec(fmt.Sprintf("ALTER TABLE %s RENAME TO %s", from, to)) // no-op when already so
		},
	})
}

func newSink(t *testing.T, kv ...any) *SinkTask {
	t.Helper()
	task := &SinkTask{}
	require.NoError(t, task.Start(t.Context(), connectortest.Config(t, SinkSpec, kv...)))
	t.Cleanup(func() { _ = task.Stop(context.Background()) })
	return task
}

func ev(id, subject string, data any) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/test")
	e.SetType("t")
	if subject != "" {
		e.SetSubject(subject)
	}
	if data != nil {
		if err := e.SetData(event.ApplicationJSON, data); err != nil {
			panic(err)
		}
	}
	return e
}

func testUpsert(t *testing.T, tg *target) {
	tg.exec(t, fmt.Sprintf(tg.sinkTable, "up"))
	task := newSink(t, FieldURL, tg.url, FieldTable, "up", FieldInsertMode, "upsert", FieldPKFields, "id")
	require.NoError(t, task.Put(t.Context(), []event.Event{
		ev("1", "", map[string]any{"id": "a", "n": 1}),
		ev("2", "", map[string]any{"id": "b", "n": 2}),
		ev("3", "", map[string]any{"id": "a", "n": 3}),
	}))
	assert.Equal(t, []string{"a:3", "b:2"}, tg.strings(t, "SELECT "+concat(tg.d, "id", "n")+" FROM up ORDER BY id"))

	// insert mode: a duplicate key fails its event alone, for good; the
	// rest of the batch is written.
	ins := newSink(t, FieldURL, tg.url, FieldTable, "up")
	err := ins.Put(t.Context(), []event.Event{ev("4", "", map[string]any{"id": "c", "n": 4}), ev("5", "", map[string]any{"id": "a", "n": 5})})
	var pe *connectors.PartialError
	require.ErrorAs(t, err, &pe)
	require.Len(t, pe.Failed, 1)
	assert.ErrorIs(t, pe.Failed[1], bridge.ErrPermanent)
	assert.Equal(t, []string{"a:3", "b:2", "c:4"}, tg.strings(t, "SELECT "+concat(tg.d, "id", "n")+" FROM up ORDER BY id"))
}

// testLargePut writes a Put of more rows than one INSERT may bind.
func testLargePut(t *testing.T, tg *target) {
	tg.exec(t, fmt.Sprintf(tg.sinkTable, "large"))
	task := newSink(t, FieldURL, tg.url, FieldTable, "large")
	n := maxParams/2 + 100 // two columns a row: two statements
	evs := make([]event.Event, n)
	for i := range evs {
		id := strconv.Itoa(i)
		evs[i] = ev(id, "", map[string]any{"id": id, "n": i})
	}
	require.NoError(t, task.Put(t.Context(), evs))
	assert.Equal(t, []string{strconv.Itoa(n)}, tg.strings(t, "SELECT COUNT(*) FROM large"))
	if tg.d == dialectPostgres {
		assert.Positive(t, task.copies, "PostgreSQL gets large inserts by COPY")
		ups := newSink(t, FieldURL, tg.url, FieldTable, "large", FieldInsertMode, InsertModeUpsert, FieldPKFields, "id")
		for i := range evs {
			evs[i] = ev(strconv.Itoa(i), "", map[string]any{"id": strconv.Itoa(i), "n": -i})
		}
		require.NoError(t, ups.Put(t.Context(), evs))
		assert.Positive(t, ups.copies, "and upserts by COPY into a temporary table")
		assert.Equal(t, []string{strconv.Itoa(n)}, tg.strings(t, "SELECT COUNT(*) FROM large WHERE n <= 0"))
	}
}

func TestStatementsGroupInserts(t *testing.T) {
	ins := func(cols []string, vals ...any) *op { return &op{cols: cols, vals: vals} }
	idn, idns := []string{"id", "n"}, []string{"id", "n", "s"}
	a1, b2, c3, a4 := ins(idn, "a", 1), ins(idn, "b", 2), ins(idn, "c", 3), ins(idn, "a", 4)
	wide, del := ins(idns, "d", 5, "x"), &op{del: true, vals: []any{"b"}}
	sizes := func(groups [][]*op) (out []int) {
		for _, g := range groups {
			out = append(out, len(g))
		}
		return out
	}

	insert := &SinkTask{pk: []string{"id"}}
	got := insert.statements([]*op{a1, b2, nil, c3, a4, wide, del, b2})
	assert.Equal(t, [][]*op{{a1, b2, c3, a4}, {wide}, {del}, {b2}}, got,
		"consecutive inserts of the same columns share a statement; a failed event (nil) is skipped; a delete stands alone, in order")

	upsert := &SinkTask{pk: []string{"id"}, upsert: true}
	assert.Equal(t, [][]*op{{a1, b2, c3}, {a4}}, upsert.statements([]*op{a1, b2, c3, a4}),
		"an upsert statement holds a key once")

	many := make([]*op, maxParams/2+1)
	for i := range many {
		many[i] = ins(idn, strconv.Itoa(i), i)
	}
	assert.Equal(t, []int{maxParams / 2, 1}, sizes(insert.statements(many)), "a statement binds at most maxParams values")
}

func concat(d dialect, a, b string) string {
	if d == dialectMySQL {
		return fmt.Sprintf("CONCAT(%s, ':', %s)", a, b)
	}
	return fmt.Sprintf("%s || ':' || %s", a, b)
}

func testDelete(t *testing.T, tg *target) {
	tg.exec(t, fmt.Sprintf(tg.sinkTable, "del"))
	task := newSink(t, FieldURL, tg.url, FieldTable, "del", FieldInsertMode, "upsert", FieldPKFields, "id", FieldDeleteEnabled, true)
	require.NoError(t, task.Put(t.Context(), []event.Event{
		ev("1", "", map[string]any{"id": "a", "n": 1}),
		ev("2", "", map[string]any{"id": "b", "n": 2}),
		ev("3", "a", nil), // tombstone
	}))
	assert.Equal(t, []string{"b"}, tg.strings(t, "SELECT id FROM del ORDER BY id"))

	// A tombstone without a subject fails alone, for good.
	err := task.Put(t.Context(), []event.Event{ev("4", "", nil), ev("5", "", map[string]any{"id": "c", "n": 3})})
	var pe *connectors.PartialError
	require.ErrorAs(t, err, &pe)
	require.Len(t, pe.Failed, 1)
	assert.ErrorIs(t, pe.Failed[0], bridge.ErrPermanent)
	assert.Equal(t, []string{"b", "c"}, tg.strings(t, "SELECT id FROM del ORDER BY id"))
}

// One batch of 289 events of which 63 cannot be written: NaN or infinity
// in a column of a database that stores neither (refused before the
// database sees them; PostgreSQL stores them), or a value the table's
// CHECK refuses (found by splitting the failed write). The 226 others are
// written; only the bad ones fail, for good.
func testBadRows(t *testing.T, tg *target) {
	tg.exec(t, `CREATE TABLE badrows (id VARCHAR(20) PRIMARY KEY, f DOUBLE PRECISION, n INT CHECK (n >= 0))`)
	task := newSink(t, FieldURL, tg.url, FieldTable, "badrows")
	var evs []event.Event
	bad := map[int]bool{}
	for i := range 289 {
		data := map[string]any{"id": strconv.Itoa(i), "f": 1.5, "n": i}
		switch {
		case i%7 == 3 && tg.d != dialectPostgres:
			data["f"] = []string{"NaN", "Infinity", "-Infinity"}[i%3]
			if tg.d == dialectSQLite && data["f"] != "NaN" {
				data["n"] = -1 // SQLite stores infinities: refused by the CHECK instead
			}
			bad[i] = true
		case i%7 == 3 || i%11 == 5:
			data["n"] = -i
			bad[i] = i != 0
		}
		evs = append(evs, ev(strconv.Itoa(i), "", data))
	}
	require.Len(t, bad, 63)
	err := task.Put(t.Context(), evs)
	var pe *connectors.PartialError
	require.ErrorAs(t, err, &pe)
	for i := range evs {
		if bad[i] {
			assert.ErrorIs(t, pe.Failed[i], bridge.ErrPermanent, "event %d", i)
		} else {
			assert.NotContains(t, pe.Failed, i, "event %d", i)
		}
	}
	assert.Equal(t, []string{"226"}, tg.strings(t, "SELECT COUNT(*) FROM badrows"))
}

// With version.column a write only moves a row forward, whatever order
// the events come in (a retry, a redelivery after a crash, another task);
// with deleted.column too, a deleted row stays deleted against older
// writes, and a TRUNCATE marks only the rows written before it.
func testVersionGuard(t *testing.T, tg *target) {
	tg.exec(t, `CREATE TABLE vg (id VARCHAR(20) PRIMARY KEY, n BIGINT, seq BIGINT, deleted BOOLEAN)`)
	task := newSink(t, FieldURL, tg.url, FieldTable, "vg", FieldInsertMode, "upsert", FieldPKFields, "id", FieldDeleteEnabled, true,
		FieldTruncateEnabled, true, FieldVersionColumn, "seq", FieldDeletedColumn, "deleted")
	put := func(seq uint64, e event.Event) {
		t.Helper()
		require.NoError(t, task.PutPositions(t.Context(), []event.Event{e}, []connectors.Position{{Topic: "t", Sequence: seq}}))
	}
	rows := func() []string {
		return tg.strings(t, "SELECT "+concat(tg.d, "id", concat(tg.d, "n", concat(tg.d, "seq", "CASE WHEN deleted THEN 'x' ELSE '-' END")))+" FROM vg ORDER BY id")
	}
	put(10, ev("a1", "", map[string]any{"id": "a", "n": 1}))
	put(30, ev("a3", "", map[string]any{"id": "a", "n": 3}))
	put(20, ev("a2", "", map[string]any{"id": "a", "n": 2})) // late: skipped
	put(11, ev("b1", "", map[string]any{"id": "b", "n": 1}))
	put(40, ev("bd", "b", nil))                              // tombstone: b marked deleted
	put(11, ev("b1", "", map[string]any{"id": "b", "n": 1})) // redelivered: b stays deleted
	assert.Equal(t, []string{"a:3:30:-", "b:1:40:x"}, rows())
	truncate := ev("tr", "", nil)
	truncate.SetExtension("cdcop", "t")
	put(50, ev("c1", "", map[string]any{"id": "c", "n": 1}))
	put(45, truncate)                                        // a TRUNCATE redelivered after c was written
	put(30, ev("a3", "", map[string]any{"id": "a", "n": 3})) // and a redelivery from before it
	assert.Equal(t, []string{"a:3:45:x", "b:1:45:x", "c:1:50:-"}, rows())
}

func testAutoCreate(t *testing.T, tg *target) {
	task := newSink(t, FieldURL, tg.url, FieldTable, "auto", FieldAutoCreate, true, FieldPKFields, "key",
		FieldInsertMode, "upsert", FieldFieldsMapping, map[string]any{"id": "key", "name": "name", "score": "score", "ok": "ok"})
	require.NoError(t, task.Put(t.Context(), []event.Event{
		ev("1", "", map[string]any{"id": "x", "name": "first", "score": 1.5, "ok": true, "ignored": 1}),
		ev("2", "", map[string]any{"id": "y", "name": "second", "score": 2, "ok": false}),
	}))
	assert.Equal(t, []string{"x:first", "y:second"}, tg.strings(t, "SELECT "+concat(tg.d, tg.d.quote("key"), "name")+" FROM auto ORDER BY "+tg.d.quote("key")))
	_, err := tg.db.ExecContext(t.Context(), "SELECT ignored FROM auto")
	assert.Error(t, err, "unmapped fields get no column")
}

func testTypes(t *testing.T, tg *target) {
	tg.exec(t, tg.typesTable)
	tg.exec(t, tg.typesInsert)
	task := &SourceTask{}
	require.NoError(t, task.Start(t.Context(), connectortest.Config(t, SourceSpec, FieldURL, tg.url, FieldTable, "types",
		FieldMode, ModeIncrementing, FieldIncrementing, "id")))
	defer task.Stop(context.Background())
	recs, err := task.Poll(t.Context())
	require.NoError(t, err)
	require.Len(t, recs, 1)
	flag := "true"
	if tg.d == dialectMySQL {
		flag = "1" // BOOLEAN is TINYINT(1)
	}
	want := `{"id":1,"i":42,"big":9007199254740993,"f":1.5,"dec":"12345678901234.123456",
		"ts":"2026-11-23T10:00:00.123456Z","b":"AQL/","s":"hé","flag":` + flag + `,"nul":null}`
	assert.JSONEq(t, want, string(recs[0].Event.Data()))
	assert.Contains(t, string(recs[0].Event.Data()), `"big":9007199254740993`, "big integers keep their digits")
	assert.Equal(t, "1", recs[0].Event.Subject())
	assert.Equal(t, DefaultEventType, recs[0].Event.Type())
}

// testModes polls a table through a task in each mode the dialect is
// tested with.
func testModes(t *testing.T, tg *target) {
	start := func(t *testing.T, table string, offsets map[string]string, kv ...any) *SourceTask {
		task := &SourceTask{}
		task.Init(connectortest.TaskContext(offsets))
		require.NoError(t, task.Start(t.Context(), connectortest.Config(t, SourceSpec, append([]any{FieldURL, tg.url, FieldTable, table, FieldPollInterval, "10ms", FieldPKFields, "k"}, kv...)...)))
		t.Cleanup(func() { _ = task.Stop(context.Background()) })
		return task
	}
	poll := func(t *testing.T, task *SourceTask) (keys []string, last connectors.Record) {
		recs, err := task.Poll(t.Context())
		require.NoError(t, err)
		for _, r := range recs {
			keys = append(keys, r.Event.Subject())
			last = r
		}
		return keys, last
	}
	insert := func(t *testing.T, table string, keys ...string) {
		for _, k := range keys {
			tg.exec(t, "INSERT INTO "+table+" (k) VALUES (?)", k)
		}
	}

	t.Run("Incrementing", func(t *testing.T) {
		tg.exec(t, fmt.Sprintf(tg.srcTable, "m_inc"))
		insert(t, "m_inc", "a", "b", "c")
		task := start(t, "m_inc", nil, FieldMode, ModeIncrementing, FieldIncrementing, "id", FieldBatchMaxRows, 2)
		got, _ := poll(t, task)
		assert.Equal(t, []string{"a", "b"}, got, "batch.max.rows bounds a poll")
		got, last := poll(t, task)
		assert.Equal(t, []string{"c"}, got)
		insert(t, "m_inc", "d")
		task2 := start(t, "m_inc", map[string]string{last.Partition: last.Offset}, FieldMode, ModeIncrementing, FieldIncrementing, "id")
		got, _ = poll(t, task2)
		assert.Equal(t, []string{"d"}, got, "a new task resumes from the offset")
	})

	t.Run("TimestampDelay", func(t *testing.T) {
		const delay = time.Second
		for _, c := range []struct {
			table string
			kv    []any
		}{
			{"m_delay_ts", []any{FieldMode, ModeTimestamp}},
			{"m_delay_tsi", []any{FieldMode, ModeTimestampIncrementing, FieldIncrementing, "id"}},
		} {
			t.Run(c.kv[1].(string), func(t *testing.T) {
				tg.exec(t, fmt.Sprintf(tg.srcTable, c.table))
				tg.exec(t, "INSERT INTO "+c.table+" (k, ts) VALUES ('old', '2000-01-01 00:00:01')")
				task := start(t, c.table, nil, append(c.kv, FieldTimestamp, "ts", FieldTimestampDelay, delay.String())...)
				before := time.Now()
				tg.exec(t, "INSERT INTO "+c.table+" (k) VALUES ('new')") // ts: the database's clock
				got, _ := poll(t, task)
				assert.Equal(t, []string{"old"}, got, "a row newer than timestamp.delay is not read")
				require.EventuallyWithT(t, func(c *assert.CollectT) {
					recs, err := task.Poll(t.Context())
					require.NoError(c, err)
					require.Len(c, recs, 1)
					assert.Equal(c, "new", recs[0].Event.Subject())
				}, 10*time.Second, 50*time.Millisecond, "the new row is read once timestamp.delay passed")
				// SQLite's timestamps are in milliseconds, hence the margin.
				assert.GreaterOrEqual(t, time.Since(before), delay-5*time.Millisecond, "and not before")
			})
		}
	})

	t.Run("Timestamp", func(t *testing.T) {
		tg.exec(t, fmt.Sprintf(tg.srcTable, "m_ts"))
		tg.exec(t, "INSERT INTO m_ts (k, ts) VALUES ('a', '2026-01-01 00:00:01'), ('b', '2026-01-01 00:00:02')")
		task := start(t, "m_ts", nil, FieldMode, ModeTimestamp, FieldTimestamp, "ts")
		got, last := poll(t, task)
		assert.Equal(t, []string{"a", "b"}, got)
		assert.JSONEq(t, `{"ts":"2026-01-01T00:00:02Z"}`, last.Offset)
		tg.exec(t, "UPDATE m_ts SET ts = '2026-01-01 00:00:03.5' WHERE k = 'a'")
		got, _ = poll(t, task)
		assert.Equal(t, []string{"a"}, got, "an updated row is read again")
		got, _ = poll(t, task)
		assert.Empty(t, got)
	})

	// Rows stamped by the table's default (SQLite: text like
	// 2026-11-23T10:00:00.123Z, unlike the offset's format) are read once.
	t.Run("TimestampDefaultFormat", func(t *testing.T) {
		tg.exec(t, fmt.Sprintf(tg.srcTable, "m_tsd"))
		insert(t, "m_tsd", "a", "b")
		task := start(t, "m_tsd", nil, FieldMode, ModeTimestamp, FieldTimestamp, "ts")
		got, _ := poll(t, task)
		assert.Equal(t, []string{"a", "b"}, got)
		got, _ = poll(t, task)
		assert.Empty(t, got, "rows already read are not read again")
		time.Sleep(5 * time.Millisecond) // a later timestamp, at SQLite's millisecond precision
		insert(t, "m_tsd", "c")
		got, _ = poll(t, task)
		assert.Equal(t, []string{"c"}, got)
	})

	t.Run("TimestampIncrementing", func(t *testing.T) {
		tg.exec(t, fmt.Sprintf(tg.srcTable, "m_tsi"))
		tg.exec(t, "INSERT INTO m_tsi (k, ts) VALUES ('a', '2026-01-01 00:00:01'), ('b', '2026-01-01 00:00:01'), ('c', '2026-01-01 00:00:01')")
		task := start(t, "m_tsi", nil, FieldMode, ModeTimestampIncrementing, FieldTimestamp, "ts", FieldIncrementing, "id", FieldBatchMaxRows, 2)
		got, last := poll(t, task)
		assert.Equal(t, []string{"a", "b"}, got)
		task2 := start(t, "m_tsi", map[string]string{last.Partition: last.Offset}, FieldMode, ModeTimestampIncrementing, FieldTimestamp, "ts", FieldIncrementing, "id")
		got, _ = poll(t, task2)
		assert.Equal(t, []string{"c"}, got, "rows of the same timestamp after the offset's id are read")
		tg.exec(t, "UPDATE m_tsi SET ts = '2026-01-01 00:00:05' WHERE k = 'a'")
		got, _ = poll(t, task2)
		assert.Equal(t, []string{"a"}, got)
	})

	t.Run("Bulk", func(t *testing.T) {
		tg.exec(t, fmt.Sprintf(tg.srcTable, "m_bulk"))
		insert(t, "m_bulk", "a", "b")
		task := start(t, "m_bulk", nil, FieldMode, ModeBulk)
		got, _ := poll(t, task)
		assert.Equal(t, []string{"a", "b"}, slices.Sorted(slices.Values(got)))
		got, _ = poll(t, task)
		assert.Len(t, got, 2, "bulk reads every row at every poll")
	})
}

func TestTaskConfigsSplitTables(t *testing.T) {
	c := SourceSpec.New()
	require.NoError(t, c.Start(t.Context(), connectortest.Config(t, SourceSpec, FieldURL, "sqlite:///x.db", FieldTable, "a,b,c", FieldMode, ModeBulk)))
	cfgs, err := c.TaskConfigs(2)
	require.NoError(t, err)
	require.Len(t, cfgs, 2)
	assert.Equal(t, []string{"a", "c"}, cfgs[0].Strings(FieldTable))
	assert.Equal(t, []string{"b"}, cfgs[1].Strings(FieldTable))
	cfgs, err = c.TaskConfigs(8)
	require.NoError(t, err)
	assert.Len(t, cfgs, 3, "no more tasks than tables")
}

func TestBadConfigNamesTheField(t *testing.T) {
	cases := []struct {
		spec  connectors.Spec
		raw   map[string]any
		field string
	}{
		{SinkSpec, map[string]any{FieldURL: "oracle://x", FieldTable: "t"}, FieldURL},
		{SinkSpec, map[string]any{FieldURL: "postgres://u:pw@localhost:99999/db", FieldTable: "t"}, FieldURL},
		{SinkSpec, map[string]any{FieldURL: "sqlite:///x.db", FieldTable: "t", FieldInsertMode: "upsert", FieldPKFields: "id", FieldDeletedColumn: "d"}, FieldDeletedColumn},
		{SinkSpec, map[string]any{FieldURL: "sqlite:///x.db", FieldTable: "t", FieldInsertMode: "upsert", FieldPKFields: "id", FieldVersionColumn: "id"}, FieldVersionColumn},
		{SinkSpec, map[string]any{FieldURL: "sqlite:///x.db", FieldTable: "t", FieldInsertMode: "upsert"}, FieldPKFields},
		{SinkSpec, map[string]any{FieldURL: "sqlite:///x.db", FieldTable: "t", FieldInsertMode: "merge"}, FieldInsertMode},
		{SinkSpec, map[string]any{FieldURL: "sqlite:///x.db"}, FieldTable},
		{SourceSpec, map[string]any{FieldURL: "sqlite:///x.db", FieldTable: "t", FieldMode: ModeIncrementing}, FieldIncrementing},
		{SourceSpec, map[string]any{FieldURL: "sqlite:///x.db", FieldTable: "t", FieldMode: ModeTimestamp}, FieldTimestamp},
		{SourceSpec, map[string]any{FieldURL: "sqlite:///x.db", FieldMode: ModeBulk}, FieldTable},
		{SourceSpec, map[string]any{FieldURL: "sqlite:///x.db", FieldTable: "t", FieldMode: "cdc"}, FieldMode},
		{SourceSpec, map[string]any{FieldURL: "sqlite:///x.db", FieldTable: "t", FieldMode: ModeTimestamp, FieldTimestamp: "ts", FieldTimestampDelay: "-1s"}, FieldTimestampDelay},
		{SourceSpec, map[string]any{FieldURL: "sqlite:///x.db", FieldTable: "t", FieldMode: ModeIncrementing, FieldIncrementing: "id", FieldTimestampDelay: "1s"}, FieldTimestampDelay},
	}
	for _, c := range cases {
		raw := map[string]any{connectors.FieldConnectorType: c.spec.Name, connectors.FieldTopic: "t"}
		for k, v := range c.raw {
			raw[k] = v
		}
		_, err := c.spec.Validate(raw)
		var ve *connectors.ValidationError
		require.ErrorAs(t, err, &ve, "%v", c.raw)
		var fields []string
		for _, f := range ve.Fields {
			fields = append(fields, f.Field)
		}
		assert.Contains(t, fields, c.field, "%v: %v", c.raw, err)
		assert.NotContains(t, err.Error(), "oracle://x", "the URL is not echoed")
	}
}

func TestIntegerValues(t *testing.T) {
	for in, want := range map[string]any{"5": int64(5), "2.0": int64(2), "1e3": int64(1000), "-9223372036854775808": int64(-9223372036854775808),
		"18446744073709551615": "18446744073709551615", "1e+21": nil, "1.75": nil, "1e999999999": nil, "abc": nil} {
		got, err := intValue(dialectPostgres, json.Number(in))
		if want == nil {
			assert.Error(t, err, in)
			continue
		}
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
}
