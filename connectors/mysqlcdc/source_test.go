package mysqlcdc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/go-mysql-org/go-mysql/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/mysqlcdc"
)

func TestMySQLCDCSuite(t *testing.T) {
	db := startMariaDBBinlog(t)
	db.exec(t, "CREATE TABLE items (id VARCHAR(64) PRIMARY KEY, n INT)")
	connectortest.RunSource(t, connectortest.Source{
		Spec:   mysqlcdc.Spec,
		Config: map[string]any{"url": db.URL(), "tables": []any{"items"}},
		Produce: func(ctx context.Context, keys []string) error {
			c, err := client.Connect(db.addr(), "app", "app", "meshd")
			if err != nil {
				return err
			}
			defer c.Close()
			for _, k := range keys {
				if _, err := c.Execute("INSERT INTO items VALUES (?, 1)", k); err != nil {
					return fmt.Errorf("inserting %s: %w", k, err)
				}
			}
			return nil
		},
		Key: func(e *event.Event) string { return e.Subject() },
	})
}

// startTask starts a task with offsets (nil: none committed).
func startTask(t *testing.T, cfg map[string]any, offsets map[string]string) *mysqlcdc.Task {
	t.Helper()
	raw := map[string]any{connectors.FieldConnectorType: mysqlcdc.Type, connectors.FieldTopic: "cdc"}
	for k, v := range cfg {
		raw[k] = v
	}
	c, err := mysqlcdc.Spec.Validate(raw)
	require.NoError(t, err)
	task := &mysqlcdc.Task{}
	task.Init(connectortest.TaskContext(offsets))
	require.NoError(t, task.Start(t.Context(), c))
	t.Cleanup(func() { _ = task.Stop(context.Background()) })
	return task
}

// pollN polls until n records arrived, then checks nothing more comes.
func pollN(t *testing.T, task *mysqlcdc.Task, n int) []connectors.Record {
	t.Helper()
	var out []connectors.Record
	deadline := time.Now().Add(20 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		recs, err := task.Poll(t.Context())
		require.NoError(t, err)
		out = append(out, recs...)
	}
	require.Len(t, out, n, "records: %v", subjects(out))
	recs, err := task.Poll(t.Context())
	require.NoError(t, err)
	require.Empty(t, recs, "no more records: %v", subjects(recs))
	return out
}

func subjects(recs []connectors.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = strings.TrimPrefix(r.Event.Type(), "meshd.mysql.row.") + ":" + r.Event.Subject()
	}
	return out
}

type images struct {
	Before map[string]any `json:"before"`
	After  map[string]any `json:"after"`
}

func imagesOf(t *testing.T, r connectors.Record) images {
	t.Helper()
	var im images
	require.NoError(t, json.Unmarshal(r.Event.Data(), &im))
	return im
}

func TestMySQLCDCChanges(t *testing.T) {
	db := startMariaDBBinlog(t)
	db.exec(t, "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(10,2), doc JSON, u INT UNSIGNED, e ENUM('red','green'), ts DATETIME)",
		"CREATE TABLE other (id INT PRIMARY KEY)")
	cfg := map[string]any{"url": db.URL(), "tables": "t"}
	task := startTask(t, cfg, nil)

	db.exec(t, `INSERT INTO t VALUES (1, 'one', 9.50, '{"a":[1,2]}', 4000000000, 'green', '2026-11-23 10:00:00')`,
		"INSERT INTO other VALUES (1)",
		"UPDATE t SET name = 'uno' WHERE id = 1",
		"DELETE FROM t WHERE id = 1")
	recs := pollN(t, task, 3)
	assert.Equal(t, []string{"inserted:1", "updated:1", "deleted:1"}, subjects(recs))
	for _, r := range recs {
		require.NoError(t, r.Event.Validate())
		assert.Equal(t, "mysql://"+db.addr()+"/meshd/t", r.Event.Source())
		assert.Equal(t, db.addr(), r.Partition)
		ext := r.Event.Extensions()
		assert.Equal(t, "meshd", ext["cdcdb"])
		assert.Equal(t, "t", ext["cdctable"])
		assert.Contains(t, ext["cdcpos"], "binlog.")
		assert.NotEmpty(t, ext["cdcxid"])
	}
	ins := imagesOf(t, recs[0])
	assert.Nil(t, ins.Before)
	assert.Equal(t, map[string]any{"id": 1.0, "name": "one", "price": "9.50", "doc": map[string]any{"a": []any{1.0, 2.0}},
		"u": 4000000000.0, "e": "green", "ts": "2026-11-23 10:00:00"}, ins.After)
	upd := imagesOf(t, recs[1])
	assert.Equal(t, "one", upd.Before["name"])
	assert.Equal(t, "uno", upd.After["name"])
	del := imagesOf(t, recs[2])
	assert.Equal(t, "uno", del.Before["name"])
	assert.Nil(t, del.After)
	require.NoError(t, task.Stop(t.Context()))

	t.Run("ResumesInsideATransaction", func(t *testing.T) {
		task := startTask(t, cfg, map[string]string{recs[2].Partition: recs[2].Offset})
		db.exec(t, "BEGIN", "INSERT INTO t (id) VALUES (2)", "INSERT INTO t (id) VALUES (3), (4)", "COMMIT")
		got := pollN(t, task, 3)
		assert.Equal(t, []string{"inserted:2", "inserted:3", "inserted:4"}, subjects(got))
		require.NoError(t, task.Stop(t.Context()))

		// Only the first two were stored: the third comes again, once.
		task = startTask(t, cfg, map[string]string{got[1].Partition: got[1].Offset})
		again := pollN(t, task, 1)
		assert.Equal(t, []string{"inserted:4"}, subjects(again))
		assert.Equal(t, got[2].Event.ID(), again[0].Event.ID(), "the same row has the same event id")
		require.NoError(t, task.Stop(t.Context()))

		// All stored: nothing comes again.
		task = startTask(t, cfg, map[string]string{again[0].Partition: again[0].Offset})
		db.exec(t, "INSERT INTO t (id) VALUES (5)")
		assert.Equal(t, []string{"inserted:5"}, subjects(pollN(t, task, 1)))
		recs = append(recs, again[0])
	})

	t.Run("SurvivesADatabaseRestart", func(t *testing.T) {
		last := map[string]string{db.addr(): ""}
		task := startTask(t, cfg, nil)
		db.exec(t, "INSERT INTO t (id) VALUES (10)")
		got := pollN(t, task, 1)
		last[got[0].Partition] = got[0].Offset

		db.Stop()
		require.Eventually(t, func() bool {
			_, err := task.Poll(t.Context())
			return err != nil
		}, 30*time.Second, 10*time.Millisecond, "the task fails when the server goes away")
		require.NoError(t, task.Stop(t.Context()))
		db.Start()
		db.exec(t, "INSERT INTO t (id) VALUES (11)", "UPDATE t SET name = 'x' WHERE id = 10")

		// The runtime starts a new task from the committed offset.
		task = startTask(t, cfg, last)
		assert.Equal(t, []string{"inserted:11", "updated:10"}, subjects(pollN(t, task, 2)))
	})

	t.Run("Snapshot", func(t *testing.T) {
		db.exec(t, "DELETE FROM t", "INSERT INTO t (id, name) VALUES (20, 'a'), (21, 'b')")
		snap := map[string]any{"url": db.URL(), "tables": []any{"meshd.t"}, "snapshot": true, "type.prefix": "shop.db"}
		task := startTask(t, snap, nil)
		got := pollN(t, task, 2)
		for i, r := range got {
			assert.Equal(t, "shop.db.row.snapshot", r.Event.Type())
			assert.Equal(t, fmt.Sprint(20+i), r.Event.Subject())
			assert.Nil(t, imagesOf(t, r).Before)
		}
		db.exec(t, "INSERT INTO t (id) VALUES (22)")
		ins := pollN(t, task, 1)
		assert.Equal(t, "shop.db.row.inserted", ins[0].Event.Type())
		assert.Equal(t, "22", ins[0].Event.Subject())
		require.NoError(t, task.Stop(t.Context()))

		// After the snapshot was stored, a restart does not take it again.
		task = startTask(t, snap, map[string]string{ins[0].Partition: ins[0].Offset})
		db.exec(t, "DELETE FROM t WHERE id = 20")
		del := pollN(t, task, 1)
		assert.Equal(t, "shop.db.row.deleted", del[0].Event.Type())
		require.NoError(t, task.Stop(t.Context()))

		// A snapshot stored only in part is taken again, and the changes
		// since the first are streamed after it: the delete of row 20,
		// which the first snapshot sent and the second cannot know of.
		task = startTask(t, snap, map[string]string{got[0].Partition: got[0].Offset})
		again := pollN(t, task, 4)
		assert.Equal(t, []string{"snapshot:21", "snapshot:22", "inserted:22", "deleted:20"},
			[]string{strings.TrimPrefix(subjects(again)[0], "shop.db.row."), strings.TrimPrefix(subjects(again)[1], "shop.db.row."),
				strings.TrimPrefix(subjects(again)[2], "shop.db.row."), strings.TrimPrefix(subjects(again)[3], "shop.db.row.")})
		require.NoError(t, task.Stop(t.Context()))

		// Cut short again (after one row): the retaken snapshot still
		// streams from the first snapshot's position.
		task = startTask(t, snap, map[string]string{again[0].Partition: again[0].Offset})
		assert.Len(t, pollN(t, task, 4), 4)
	})
}

// With gtid on, offsets are GTID sets: a task resumes inside a
// transaction from the GTID set alone (the binlog file of the offset is
// wiped, as after a failover to a server with other binlogs), and an offset
// written without gtid is converted.
func TestMySQLCDCGTID(t *testing.T) {
	db := startMariaDBBinlog(t)
	db.exec(t, "CREATE TABLE t (id INT PRIMARY KEY)")
	cfg := map[string]any{"url": db.URL(), "tables": "t", "gtid": true}
	task := startTask(t, cfg, nil)
	db.exec(t, "INSERT INTO t VALUES (1)", "BEGIN", "INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (3), (4)", "COMMIT")
	recs := pollN(t, task, 4)
	assert.Equal(t, []string{"inserted:1", "inserted:2", "inserted:3", "inserted:4"}, subjects(recs))
	var offs []map[string]any
	for _, r := range recs {
		var o map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.Offset), &o))
		offs = append(offs, o)
	}
	require.NotEmpty(t, offs[0]["gtid"], "offset %s", recs[0].Offset)
	assert.NotEqual(t, offs[0]["gtid"], offs[1]["gtid"], "the second transaction starts after the first")
	assert.Equal(t, offs[1]["gtid"], offs[3]["gtid"], "rows of one transaction share the set before it")
	require.NoError(t, task.Stop(t.Context()))

	// Rows 2 and 3 stored: row 4 comes again, found by GTID alone.
	gtidOnly, err := json.Marshal(map[string]any{"gtid": offs[2]["gtid"], "skip": offs[2]["skip"]})
	require.NoError(t, err)
	task = startTask(t, cfg, map[string]string{recs[2].Partition: string(gtidOnly)})
	again := pollN(t, task, 1)
	assert.Equal(t, []string{"inserted:4"}, subjects(again))
	assert.Equal(t, recs[3].Event.ID(), again[0].Event.ID(), "the same row has the same event id")
	require.NoError(t, task.Stop(t.Context()))

	// An offset written with gtid off (file and position) is converted.
	plain := startTask(t, map[string]any{"url": db.URL(), "tables": "t"}, nil)
	db.exec(t, "INSERT INTO t VALUES (5)")
	five := pollN(t, plain, 1)
	require.NoError(t, plain.Stop(t.Context()))
	assert.NotContains(t, five[0].Offset, "gtid")
	task = startTask(t, cfg, map[string]string{five[0].Partition: five[0].Offset})
	db.exec(t, "INSERT INTO t VALUES (6)")
	assert.Equal(t, []string{"inserted:6"}, subjects(pollN(t, task, 1)))
	require.NoError(t, task.Stop(t.Context()))

	// A snapshot's offsets carry the GTID set of the snapshot.
	snap := startTask(t, map[string]any{"url": db.URL(), "tables": "t", "gtid": true, "snapshot": true}, nil)
	rows := pollN(t, snap, 6)
	assert.Contains(t, rows[5].Offset, `"gtid"`)
	require.NoError(t, snap.Stop(t.Context()))
	task = startTask(t, cfg, map[string]string{rows[5].Partition: rows[5].Offset})
	db.exec(t, "DELETE FROM t WHERE id = 1")
	assert.Equal(t, []string{"deleted:1"}, subjects(pollN(t, task, 1)))
}

func TestMySQLCDCConfig(t *testing.T) {
	for name, cfg := range map[string]map[string]any{
		"url":       {"url": "postgres://x@h/db"},
		"no user":   {"url": "mysql://h:3306/db"},
		"server.id": {"url": "mysql://u@h/db", "server.id": 0},
		"flavor":    {"url": "mysql://u@h/db", "flavor": "oracle"},
	} {
		raw := map[string]any{connectors.FieldConnectorType: mysqlcdc.Type, connectors.FieldTopic: "cdc"}
		for k, v := range cfg {
			raw[k] = v
		}
		_, err := mysqlcdc.Spec.Validate(raw)
		var ve *connectors.ValidationError
		require.ErrorAs(t, err, &ve, name)
		field := name
		if name == "no user" {
			field = "url"
		}
		assert.NotEmpty(t, ve.Field(field), name)
		assert.NotContains(t, err.Error(), "secret", name)
	}
}

// execUTF8 runs statements as the application user over a utf8mb4
// connection (the client library's default utf8 has no emoji).
func (m *mariaDB) execUTF8(t *testing.T, stmts ...string) {
	t.Helper()
	c, err := client.Connect(m.addr(), "app", "app", "meshd")
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Execute("SET NAMES utf8mb4")
	require.NoError(t, err)
	for _, s := range stmts {
		_, err := c.Execute(s)
		require.NoError(t, err, "%s", s)
	}
}

// Text arrives as it was written, whatever the column's charset: the
// snapshot reads over utf8mb4 (the server's latin1 default turned
// "ü 日本 🚀" into "� ?? ?"), and binlog text is decoded from each column's
// own charset (latin1 came out as U+FFFD).
func TestMySQLCDCCharsets(t *testing.T) {
	db := startMariaDBBinlog(t, "--character-set-server=latin1", "--collation-server=latin1_swedish_ci")
	db.execUTF8(t, "CREATE TABLE cs (id INT PRIMARY KEY, u VARCHAR(40) CHARACTER SET utf8mb4, l VARCHAR(40) CHARACTER SET latin1, "+
		"g VARCHAR(40) CHARACTER SET cp1251, doc JSON) DEFAULT CHARSET latin1",
		`INSERT INTO cs VALUES (1, 'ü 日本 🚀', 'Grüße €', 'Жук', '{"k": "日本 🚀"}')`)
	want := map[string]any{"id": 1.0, "u": "ü 日本 🚀", "l": "Grüße €", "g": "Жук", "doc": map[string]any{"k": "日本 🚀"}}
	task := startTask(t, map[string]any{"url": db.URL(), "tables": "cs", "snapshot": true}, nil)
	snap := pollN(t, task, 1)
	assert.Equal(t, want, imagesOf(t, snap[0]).After, "the snapshot")
	db.execUTF8(t, `INSERT INTO cs VALUES (2, 'ü 日本 🚀', 'Grüße €', 'Жук', '{"k": "日本 🚀"}')`)
	ins := pollN(t, task, 1)
	want["id"] = 2.0
	assert.Equal(t, want, imagesOf(t, ins[0]).After, "the binlog")
	for _, r := range append(snap, ins...) {
		assert.True(t, utf8.Valid(r.Event.Data()), "valid UTF-8: %q", r.Event.Data())
	}
}

// A connector lagging behind an ALTER TABLE ... DROP COLUMN decodes the
// rows written before it with the columns they were written with (the
// binlog's column names), not the table's current ones.
func TestMySQLCDCDecodesRowsWithTheirOwnColumns(t *testing.T) {
	db := startMariaDBBinlog(t)
	db.exec(t, "CREATE TABLE shape (id INT PRIMARY KEY, a VARCHAR(10), b VARCHAR(10), c INT)")
	task := startTask(t, map[string]any{"url": db.URL(), "tables": "shape"}, nil)
	db.exec(t, "INSERT INTO shape VALUES (0, 'a0', 'b0', 0)")
	first := pollN(t, task, 1)
	require.NoError(t, task.Stop(t.Context()))

	db.exec(t, "INSERT INTO shape VALUES (1, 'a1', 'b1', 1)",
		"ALTER TABLE shape DROP COLUMN b",
		"INSERT INTO shape VALUES (2, 'a2', 2)",
		"ALTER TABLE shape ADD COLUMN d VARCHAR(10) DEFAULT 'dd' AFTER a",
		"INSERT INTO shape (id, a, c) VALUES (3, 'a3', 3)")
	// Resumed after the first row: every later row is read after the DDL.
	lagging := startTask(t, map[string]any{"url": db.URL(), "tables": "shape"}, map[string]string{first[0].Partition: first[0].Offset})
	got := pollN(t, lagging, 3)
	assert.Equal(t, map[string]any{"id": 1.0, "a": "a1", "b": "b1", "c": 1.0}, imagesOf(t, got[0]).After)
	assert.Equal(t, map[string]any{"id": 2.0, "a": "a2", "c": 2.0}, imagesOf(t, got[1]).After)
	assert.Equal(t, map[string]any{"id": 3.0, "a": "a3", "d": "dd", "c": 3.0}, imagesOf(t, got[2]).After)
}

// unwrap: the data is the row after the change; a delete is a tombstone
// keyed by the primary key; an update of the key deletes the old key
// first. Every event says its operation in cdcop, and a TRUNCATE is an
// event of its own.
func TestMySQLCDCUnwrap(t *testing.T) {
	db := startMariaDBBinlog(t)
	db.exec(t, "CREATE TABLE u1 (id INT PRIMARY KEY, name VARCHAR(20))", "CREATE TABLE u2 (a INT, b VARCHAR(5), v INT, PRIMARY KEY (a, b))")
	task := startTask(t, map[string]any{"url": db.URL(), "tables": "u1,u2", "unwrap": true}, nil)
	db.exec(t, "INSERT INTO u1 VALUES (1, 'one')", "UPDATE u1 SET name = 'uno' WHERE id = 1", "UPDATE u1 SET id = 2 WHERE id = 1",
		"DELETE FROM u1 WHERE id = 2", "INSERT INTO u2 VALUES (1, 'x', 7)", "DELETE FROM u2", "TRUNCATE TABLE u1")
	recs := pollN(t, task, 8)
	type got struct{ typ, op, subject, data string }
	var all []got
	for _, r := range recs {
		op, _ := r.Event.Extensions()["cdcop"].(string)
		all = append(all, got{strings.TrimPrefix(r.Event.Type(), "meshd.mysql."), op, r.Event.Subject(), string(r.Event.Data())})
	}
	assert.Equal(t, []got{
		{"row.inserted", "c", "1", `{"id":1,"name":"one"}`},
		{"row.updated", "u", "1", `{"id":1,"name":"uno"}`},
		{"row.deleted", "d", "1", ""},
		{"row.updated", "u", "2", `{"id":2,"name":"uno"}`},
		{"row.deleted", "d", "2", ""},
		{"row.inserted", "c", `{"a":1,"b":"x"}`, `{"a":1,"b":"x","v":7}`},
		{"row.deleted", "d", `{"a":1,"b":"x"}`, ""},
		{"table.truncated", "t", "", ""},
	}, all)
	ids := map[string]bool{}
	for _, r := range recs {
		require.NoError(t, r.Event.Validate())
		ids[r.Event.ID()] = true
	}
	assert.Len(t, ids, len(recs), "every event has its own id")
}
