package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/test/infra"
)

// server is one ClickHouse server shared by the subtests (it takes about
// ten seconds to start); each subtest works in its own database.
type server struct {
	addr string
	conn driver.Conn
}

func (s *server) url(db string) string { return "clickhouse://default@" + s.addr + "/" + db }

// database creates a database for one subtest and runs ddl in it.
func (s *server) database(t *testing.T, name string, ddl ...string) {
	t.Helper()
	s.exec(t, "CREATE DATABASE "+name)
	for _, q := range ddl {
		s.exec(t, strings.ReplaceAll(q, "$db", name))
	}
}

func (s *server) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	require.NoError(t, s.conn.Exec(t.Context(), q, args...), q)
}

// strings returns the one String column of a query's rows.
func (s *server) strings(t *testing.T, q string) []string {
	t.Helper()
	rows, err := s.conn.Query(t.Context(), q)
	require.NoError(t, err, q)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		require.NoError(t, rows.Scan(&v))
		out = append(out, v)
	}
	require.NoError(t, rows.Err())
	return out
}

// insert inserts rows of values into table's columns in one block.
func (s *server) insert(ctx context.Context, table, cols string, rows ...[]any) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+cols+")")
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := b.Append(r...); err != nil {
			return err
		}
	}
	return b.Send()
}

func TestClickHouse(t *testing.T) {
	s := &server{addr: infra.StartClickHouse(t)}
	conn, err := open(t.Context(), s.url("default"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	s.conn = conn
	t.Run("SinkSuite", func(t *testing.T) { sinkSuite(t, s) })
	t.Run("SourceSuite", func(t *testing.T) { sourceSuite(t, s) })
	t.Run("SourceSuiteTies", func(t *testing.T) { sourceSuiteTies(t, s) })
	t.Run("SinkTypes", func(t *testing.T) { testSinkTypes(t, s) })
	t.Run("SinkColumns", func(t *testing.T) { testSinkColumns(t, s) })
	t.Run("SinkConfigErrors", func(t *testing.T) { testSinkConfigErrors(t, s) })
	t.Run("SinkUnreachableHolds", func(t *testing.T) { testSinkUnreachable(t, s) })
	t.Run("SinkReplica", func(t *testing.T) { testSinkReplica(t, s) })
	t.Run("SourceTypes", func(t *testing.T) { testSourceTypes(t, s) })
	t.Run("SourceOffsets", func(t *testing.T) { testSourceOffsets(t, s) })
}

func sinkSuite(t *testing.T, s *server) {
	s.database(t, "suite_sink", "CREATE TABLE $db.events (id String, n Int64) ENGINE = MergeTree ORDER BY id")
	// The sink reaches the server through a proxy that can cut it off.
	p := infra.StartProxy(t, s.addr)
	connectortest.RunSink(t, connectortest.Sink{
		Spec:       SinkSpec,
		Config:     map[string]any{FieldURL: "clickhouse://default@" + p.Addr + "/suite_sink?dial_timeout=2s", FieldTable: "events"},
		Received:   func() []string { return s.strings(t, "SELECT id FROM suite_sink.events") },
		SetFailing: p.SetFailing,
	})
}

func sourceSuite(t *testing.T, s *server) {
	s.database(t, "suite_src", "CREATE TABLE $db.rows (seq UInt64, key String) ENGINE = MergeTree ORDER BY seq")
	var seq atomic.Uint64
	connectortest.RunSource(t, connectortest.Source{
		Spec: SourceSpec,
		Config: map[string]any{FieldURL: s.url("suite_src"), FieldTable: "rows", FieldIncrementing: "seq",
			FieldPollInterval: "50ms"},
		Produce: func(ctx context.Context, keys []string) error {
			rows := make([][]any, len(keys))
			for i, k := range keys {
				rows[i] = []any{seq.Add(1), k}
			}
			return s.insert(ctx, "suite_src.rows", "seq, key", rows...)
		},
		Key: dataKey,
	})
}

// Pairs of rows share a DateTime; batch.max.rows 3 cuts some pairs, which
// the source must not split between polls.
func sourceSuiteTies(t *testing.T, s *server) {
	s.database(t, "suite_ties", "CREATE TABLE $db.rows (at DateTime, key String) ENGINE = MergeTree ORDER BY at")
	var calls atomic.Int64
	connectortest.RunSource(t, connectortest.Source{
		Spec: SourceSpec,
		Config: map[string]any{FieldURL: s.url("suite_ties"), FieldTable: "rows", FieldIncrementing: "at",
			FieldPKFields: "key", FieldPollInterval: "50ms", FieldBatchMaxRows: 3},
		Produce: func(ctx context.Context, keys []string) error {
			// Ties inside one insert, never with an earlier insert: a row
			// that arrives after the source read its value's group would
			// be missed (documented: such a column needs a delay).
			base := 1_700_000_000 + calls.Add(1)*1000
			rows := make([][]any, len(keys))
			for i, k := range keys {
				rows[i] = []any{time.Unix(base+int64(i+1)/2, 0), k}
			}
			return s.insert(ctx, "suite_ties.rows", "at, key", rows...)
		},
		Key: dataKey,
	})
}

func dataKey(e *event.Event) string {
	var d struct{ Key string }
	_ = json.Unmarshal(e.Data(), &d)
	return d.Key
}

func newSink(t *testing.T, kv ...any) *SinkTask {
	t.Helper()
	task := &SinkTask{}
	require.NoError(t, task.Start(t.Context(), connectortest.Config(t, SinkSpec, kv...)))
	t.Cleanup(func() { _ = task.Stop(context.Background()) })
	return task
}

func ev(id string, data string) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/test")
	e.SetType("t")
	if data != "" {
		if err := e.SetData(event.ApplicationJSON, []byte(data)); err != nil {
			panic(err)
		}
	}
	return e
}

// failedOf returns the index → error of a Put's PartialError (none: nil).
func failedOf(t *testing.T, err error) map[int]error {
	t.Helper()
	if err == nil {
		return nil
	}
	var pe *connectors.PartialError
	require.ErrorAs(t, err, &pe)
	return pe.Failed
}

// Every type the sink converts arrives as the server stores it; a value
// that does not fit fails its event alone, for good, and the rest of the
// batch is written.
func testSinkTypes(t *testing.T, s *server) {
	s.database(t, "types", "CREATE TABLE $db.t (id UInt64, i8 Int8, f Float64, s String, fs FixedString(3), "+
		"d Date, dt DateTime, dec Decimal(18, 4), u UUID, e Enum8('a' = 1, 'b' = 2), n Nullable(Int32), "+
		"arr Array(Nullable(String)), flag UInt8) ENGINE = MergeTree ORDER BY id")
	task := newSink(t, FieldURL, s.url("types"), FieldTable, "t")
	err := task.Put(t.Context(), []event.Event{
		ev("ok1", `{"id": 1, "i8": -5, "f": 1.5, "s": {"nested": true}, "fs": "abc", "d": "2026-11-23", "dt": "2026-11-23T10:00:00+01:00", `+
			`"dec": "12.34567", "u": "2b0e7a0a-0000-4000-8000-000000000001", "e": "b", "n": null, "arr": ["x", null], "flag": true}`),
		ev("bad-fs", `{"id": 2, "fs": "abcd"}`),
		ev("ok2", `{"id": "3", "n": 7, "dt": 1700000000, "e": 1}`),
		ev("bad-date", `{"id": 4, "dt": "2300-01-01T00:00:00Z"}`),
		ev("bad-dec", `{"id": 5, "dec": 1e15}`),
		ev("bad-enum", `{"id": 6, "e": "c"}`),
		ev("bad-int", `{"id": 7, "i8": 128}`),
		ev("not-object", `[1, 2]`),
		ev("tombstone", ``),
		ev("unknown", `{"id": 8, "nope": 1}`),
	})
	failed := failedOf(t, err)
	for _, i := range []int{1, 3, 4, 5, 6, 7, 8, 9} {
		require.Contains(t, failed, i)
		assert.ErrorIs(t, failed[i], bridge.ErrPermanent, "event %d", i)
	}
	assert.Len(t, failed, 8)
	assert.ErrorContains(t, failed[1], `event "bad-fs": field "fs"`, "the error names the event and the field")
	assert.ErrorContains(t, failed[9], `field "nope"`)
	assert.Equal(t, []string{
		`1|-5|1.5|{"nested":true}|abc|2026-11-23|2026-11-23 09:00:00|12.3457|2b0e7a0a-0000-4000-8000-000000000001|b|\N|['x',NULL]|1`,
		`3|0|0||000|0000-00-00|2023-11-14 22:13:20|0.0000|00000000-0000-0000-0000-000000000000|a|7|[]|0`,
	}, s.strings(t, "SELECT concat(toString(id), '|', toString(i8), '|', toString(f), '|', s, '|', replaceAll(fs, '\\0', '0'), '|', toString(d), '|', "+
		"toString(dt), '|', toString(dec), '|', toString(u), '|', toString(e), '|', ifNull(toString(n), '\\\\N'), '|', "+
		"toString(arr), '|', toString(flag)) FROM types.t ORDER BY id"))
}

// Events carrying different columns go in separate blocks, and columns an
// event leaves out get the table's defaults; fields.mapping renames and
// selects fields; skip.unknown.fields ignores the rest; the sink rereads
// the table after it changed.
func testSinkColumns(t *testing.T, s *server) {
	s.database(t, "cols", "CREATE TABLE $db.t (id UInt64, name String DEFAULT 'anon', score Float64, "+
		"doubled Float64 MATERIALIZED score * 2) ENGINE = MergeTree ORDER BY id")
	task := newSink(t, FieldURL, s.url("cols"), FieldTable, "cols.t")
	require.NoError(t, task.Put(t.Context(), []event.Event{
		ev("1", `{"id": 1, "name": "ann", "score": 1}`),
		ev("2", `{"id": 2, "score": 2}`),
		ev("3", `{"score": 3, "id": 3, "name": "cy"}`),
	}))
	assert.Equal(t, []string{"1 ann 1 2", "2 anon 2 4", "3 cy 3 6"},
		s.strings(t, "SELECT concat(toString(id), ' ', name, ' ', toString(score), ' ', toString(doubled)) FROM cols.t ORDER BY id"))

	err := task.Put(t.Context(), []event.Event{ev("4", `{"id": 4, "doubled": 1}`)})
	assert.ErrorContains(t, failedOf(t, err)[0], `field "doubled"`, "a MATERIALIZED column is not written")

	mapped := newSink(t, FieldURL, s.url("cols"), FieldTable, "t", FieldFieldsMapping, map[string]any{"userId": "id", "userName": "name"})
	require.NoError(t, mapped.Put(t.Context(), []event.Event{ev("5", `{"userId": 5, "userName": "eve", "other": true}`)}))
	assert.Equal(t, []string{"5 eve 0"}, s.strings(t, "SELECT concat(toString(id), ' ', name, ' ', toString(score)) FROM cols.t WHERE id = 5"))

	skip := newSink(t, FieldURL, s.url("cols"), FieldTable, "t", FieldSkipUnknownFields, true)
	require.NoError(t, skip.Put(t.Context(), []event.Event{ev("6", `{"id": 6, "extra": 1}`)}))
	assert.Equal(t, []string{"6"}, s.strings(t, "SELECT toString(id) FROM cols.t WHERE id = 6"))

	// A column added while the task runs is found on a later Put.
	s.exec(t, "ALTER TABLE cols.t ADD COLUMN tag String")
	task.loaded = time.Time{} // as if the last read were long ago
	require.NoError(t, task.Put(t.Context(), []event.Event{ev("7", `{"id": 7, "tag": "new"}`)}))
	assert.Equal(t, []string{"new"}, s.strings(t, "SELECT tag FROM cols.t WHERE id = 7"))
}

func testSinkConfigErrors(t *testing.T, s *server) {
	s.database(t, "cfg", "CREATE TABLE $db.t (id UInt64, tup Tuple(UInt8, String)) ENGINE = MergeTree ORDER BY id")
	start := func(kv ...any) error {
		task := &SinkTask{}
		defer task.Stop(context.Background())
		return task.Start(t.Context(), connectortest.Config(t, SinkSpec, kv...))
	}
	assert.ErrorContains(t, start(FieldURL, s.url("cfg"), FieldTable, "missing"), `reading the columns of "missing"`)
	assert.ErrorContains(t, start(FieldURL, s.url("cfg"), FieldTable, "t", FieldFieldsMapping, map[string]any{"a": "b"}), `"b", which is not a column of "t"`)
	assert.ErrorContains(t, start(FieldURL, s.url("cfg"), FieldTable, "t", FieldFieldsMapping, map[string]any{"a": "tup"}), "does not write columns of type Tuple")

	task := newSink(t, FieldURL, s.url("cfg"), FieldTable, "t")
	err := task.Put(t.Context(), []event.Event{ev("1", `{"id": 1, "tup": [1, "a"]}`), ev("2", `{"id": 2}`)})
	failed := failedOf(t, err)
	require.Len(t, failed, 1)
	assert.ErrorContains(t, failed[0], "does not write columns of type Tuple(UInt8, String)")
	assert.Equal(t, []string{"2"}, s.strings(t, "SELECT toString(id) FROM cfg.t"))

	_, err = SinkSpec.Validate(map[string]any{connectors.FieldConnectorType: SinkType, connectors.FieldTopic: "x", FieldURL: "http://default:pw@h/db", FieldTable: "t"})
	assert.ErrorContains(t, err, "not clickhouse://")
	cfg := connectortest.Config(t, SinkSpec, FieldURL, s.url("cfg"), FieldTable, "t")
	assert.Equal(t, int64(DefaultBatchSize), cfg.Int(connectors.FieldBatchSize), "large batches by default")
	assert.Equal(t, DefaultBatchWait, cfg.Duration(connectors.FieldBatchWait))
}

// A server that cannot be reached holds the batch (bridge.Unavailable: no
// attempt spent) instead of failing its events one attempt at a time.
func testSinkUnreachable(t *testing.T, s *server) {
	s.database(t, "down", "CREATE TABLE $db.t (id UInt64) ENGINE = MergeTree ORDER BY id")
	p := infra.StartProxy(t, s.addr)
	task := newSink(t, FieldURL, "clickhouse://default@"+p.Addr+"/down?dial_timeout=1s", FieldTable, "t")
	p.SetFailing(true)
	failed := failedOf(t, task.Put(t.Context(), []event.Event{ev("1", `{"id": 1}`), ev("2", `{"id": 2}`)}))
	require.Len(t, failed, 2)
	for i, err := range failed {
		class, _ := bridge.Classify(err)
		assert.Equal(t, bridge.Unavailable, class, "event %d: %v", i, err)
	}
	p.SetFailing(false)
	require.Eventually(t, func() bool { return task.Put(t.Context(), []event.Event{ev("3", `{"id": 3}`)}) == nil },
		30*time.Second, 100*time.Millisecond, "writes again once the server is back")
}

// A replica table (ReplacingMergeTree by the version column): read FINAL
// WHERE deleted = 0 it holds the latest write of every key, whatever order
// the events come in; tombstones and a TRUNCATE hide older rows, even ones
// that arrive after them.
func testSinkReplica(t *testing.T, s *server) {
	s.database(t, "replica", "CREATE TABLE $db.t (id Int32, n Int64, seq UInt64, deleted UInt8) ENGINE = ReplacingMergeTree(seq) ORDER BY id")
	task := newSink(t, FieldURL, s.url("replica"), FieldTable, "t", FieldPKFields, "id", FieldDeleteEnabled, true,
		FieldTruncateEnabled, true, FieldVersionColumn, "seq", FieldDeletedColumn, "deleted")
	put := func(seq uint64, e event.Event) {
		t.Helper()
		require.NoError(t, task.PutPositions(t.Context(), []event.Event{e}, []connectors.Position{{Topic: "t", Sequence: seq}}))
	}
	rows := func() []string {
		return s.strings(t, "SELECT concat(toString(id), ':', toString(n), ':', toString(seq)) FROM replica.t FINAL WHERE deleted = 0 ORDER BY id")
	}
	tomb := ev("bd", "")
	tomb.SetSubject("2")
	put(10, ev("a1", `{"id": 1, "n": 1}`))
	put(30, ev("a3", `{"id": 1, "n": 3}`))
	put(20, ev("a2", `{"id": 1, "n": 2}`)) // late
	put(11, ev("b1", `{"id": 2, "n": 1}`))
	put(40, tomb)
	put(11, ev("b1", `{"id": 2, "n": 1}`)) // redelivered after its tombstone
	assert.Equal(t, []string{"1:3:30"}, rows())
	truncate := ev("tr", "")
	truncate.SetExtension("cdcop", "t")
	require.NoError(t, task.PutPositions(t.Context(), []event.Event{ev("c1", `{"id": 3, "n": 1}`), truncate, ev("a3", `{"id": 1, "n": 3}`)},
		[]connectors.Position{{Sequence: 50}, {Sequence: 45}, {Sequence: 30}}), "a TRUNCATE redelivered after c was written, then a row from before it")
	assert.Equal(t, []string{"3:1:50"}, rows())
}

// Rows become JSON with proper types.
func testSourceTypes(t *testing.T, s *server) {
	s.database(t, "srctypes", "CREATE TABLE $db.t (id UInt64, big UInt64, f Float64, dec Decimal(18, 4), dt DateTime, d Date, "+
		"u UUID, n Nullable(Int32), arr Array(String), e Enum8('a' = 1, 'b' = 2), s String) ENGINE = MergeTree ORDER BY id")
	// (INSERT ... VALUES through the driver hangs on ClickHouse 18.16: a block it is.)
	u := uuid.MustParse("2b0e7a0a-0000-4000-8000-000000000001")
	require.NoError(t, s.insert(t.Context(), "srctypes.t", "id, big, f, dec, dt, d, u, n, arr, e, s", []any{uint64(1), uint64(math.MaxUint64), 1.5,
		decimal.RequireFromString("12.5"), time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC),
		u, (*int32)(nil), []string{"x", "y"}, "b", "hé"}))
	task := &SourceTask{}
	task.Init(connectortest.TaskContext(nil))
	require.NoError(t, task.Start(t.Context(), connectortest.Config(t, SourceSpec, FieldURL, s.url("srctypes"), FieldTable, "t", FieldIncrementing, "id")))
	defer task.Stop(context.Background())
	recs, err := task.Poll(t.Context())
	require.NoError(t, err)
	require.Len(t, recs, 1)
	e := recs[0].Event
	assert.JSONEq(t, `{"id": 1, "big": 18446744073709551615, "f": 1.5, "dec": "12.5000", "dt": "2026-11-23T10:00:00Z",
		"d": "2026-11-23T00:00:00Z", "u": "2b0e7a0a-0000-4000-8000-000000000001", "n": null, "arr": ["x", "y"], "e": "b", "s": "hé"}`, string(e.Data()))
	assert.Equal(t, "1", e.Subject())
	assert.Equal(t, "/clickhouse/t", e.Source())
	assert.Equal(t, DefaultEventType, e.Type())
	assert.NoError(t, e.Validate())
}

// A new task resumes after the committed offset; rows sharing a value are
// never split, even when they outnumber batch.max.rows; a query can be
// polled instead of a table.
func testSourceOffsets(t *testing.T, s *server) {
	s.database(t, "offs", "CREATE TABLE $db.t (ts DateTime, k String) ENGINE = MergeTree ORDER BY ts")
	at := func(sec int) time.Time { return time.Unix(1_700_000_000+int64(sec), 0) }
	require.NoError(t, s.insert(t.Context(), "offs.t", "ts, k",
		[]any{at(1), "a"}, []any{at(2), "b1"}, []any{at(2), "b2"}, []any{at(2), "b3"}, []any{at(3), "c"}))
	start := func(offsets map[string]string, kv ...any) *SourceTask {
		task := &SourceTask{}
		task.Init(connectortest.TaskContext(offsets))
		require.NoError(t, task.Start(t.Context(), connectortest.Config(t, SourceSpec, append([]any{FieldURL, s.url("offs"),
			FieldIncrementing, "ts", FieldPKFields, "k", FieldPollInterval, "10ms"}, kv...)...)))
		t.Cleanup(func() { _ = task.Stop(context.Background()) })
		return task
	}
	poll := func(task *SourceTask) (keys []string, recs []connectors.Record) {
		recs, err := task.Poll(t.Context())
		require.NoError(t, err)
		for _, r := range recs {
			keys = append(keys, r.Event.Subject())
		}
		return keys, recs
	}

	task := start(nil, FieldTable, "t", FieldBatchMaxRows, 2)
	got, recs := poll(task)
	assert.Equal(t, []string{"a"}, got, "the cut group of ts 2 waits for the next poll")
	got, recs2 := poll(task)
	assert.Equal(t, []string{"b1", "b2", "b3"}, got, "a group larger than batch.max.rows is read whole")
	assert.Equal(t, recs[0].Offset, recs2[0].Offset, "rows before the last of a group keep the previous offset")
	assert.Equal(t, recs[0].Offset, recs2[1].Offset)
	assert.NotEqual(t, recs[0].Offset, recs2[2].Offset, "the group's last row moves the offset")
	assert.Equal(t, "t", recs2[2].Partition)
	ids := map[string]bool{}
	for _, r := range recs2 {
		ids[r.Event.ID()] = true
	}
	assert.Len(t, ids, 3, "rows sharing a value have distinct ids")

	// A restart after b1 was stored (its offset is the one before ts 2)
	// reads the group again: same events, same ids.
	again := start(map[string]string{"t": recs2[0].Offset}, FieldTable, "t")
	got, recs3 := poll(again)
	assert.Equal(t, []string{"b1", "b2", "b3", "c"}, got)
	assert.Equal(t, recs2[0].Event.ID(), recs3[0].Event.ID())

	after := start(map[string]string{"t": recs2[2].Offset}, FieldTable, "t")
	got, _ = poll(after)
	assert.Equal(t, []string{"c"}, got, "a new task resumes after the committed offset")

	q := start(nil, FieldQuery, "SELECT ts, upper(k) AS k FROM offs.t WHERE ts < toDateTime(1700000003)")
	got, recs = poll(q)
	assert.Equal(t, []string{"A", "B1", "B2", "B3"}, got)
	assert.Equal(t, "query", recs[0].Partition)
	assert.Equal(t, fmt.Sprintf("query/%s/A", "2023-11-14 22:13:21"), recs[0].Event.ID())
}
