package jdbc

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/test/infra"
)

// roundTrip is the types of one database and rows of values of each, the
// edges included; rendered renders a table's rows as text, exactly.
type roundTrip struct {
	columns  string
	rows     []string
	rendered string // a query of one text column, %s the table
}

var roundTrips = map[string]roundTrip{
	"postgres": {
		columns: `id BIGINT PRIMARY KEY, i2 SMALLINT, i8 BIGINT, num NUMERIC(30,10), num_free NUMERIC, f8 DOUBLE PRECISION, f4 REAL,
			b BOOLEAN, t TEXT, vc VARCHAR(20), ts TIMESTAMP(6), tz TIMESTAMPTZ, d DATE, tm TIME, iv INTERVAL, j JSON, jb JSONB,
			by BYTEA, u UUID, ia INT[], ta TEXT[], ja JSONB[], ip INET`,
		rows: []string{
			`(1, -32768, 9223372036854775807, 12345678901234567890.0123456789, 1.50, 1.5, 0.1, true, 'ü 日本 🚀 "q" \n', 'x',
				'2026-11-23 10:00:00.123456', '2026-11-23 10:00:00.123456+05:30', '2026-11-23', '10:11:12.5', '1 day 2 hours',
				'{"b":null,"a":[1,2.50,"x"]}', '{"big": 18446744073709551615, "f": 1.10, "s": "日本"}', '\x00ff5c27', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
				'{1,NULL,3}', '{"a,b","c\"d",NULL}', ARRAY['{"k":1}'::jsonb], '10.0.0.1/8')`,
			`(2, 0, -9223372036854775808, -0.0000000001, 'NaN', 'NaN', '-Infinity', false, '', '', '0001-01-01 00:00:00', '2262-04-11 23:47:16+00', '1970-01-01', '00:00:00', '0',
				'[]', '"just a string"', '', '00000000-0000-0000-0000-000000000000', '{}', '{}', '{}', '::1')`,
			`(3, NULL, NULL, NULL, NULL, 'Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
		},
		rendered: `SELECT %s::text FROM %[1]s ORDER BY id`,
	},
	"mysql": {
		columns: "id BIGINT PRIMARY KEY, i1 TINYINT, u8 BIGINT UNSIGNED, i8 BIGINT, num DECIMAL(30,10), f8 DOUBLE, f4 FLOAT, b BOOLEAN, " +
			"t TEXT CHARACTER SET utf8mb4, vc VARCHAR(20) CHARACTER SET utf8mb4, lt VARCHAR(20) CHARACTER SET latin1, dt DATETIME(6), ts TIMESTAMP(6) NULL, d DATE, tm TIME(3), y YEAR, " +
			"j JSON, bl BLOB, vb VARBINARY(10), e ENUM('red','green'), st SET('a','b','c'), bits BIT(10)",
		rows: []string{
			`(1, -128, 18446744073709551615, 9223372036854775807, 12345678901234567890.0123456789, 1.5, 0.1, true, 'ü 日本 🚀 "q" \n', 'x', 'Grüße €',
				'2026-11-23 10:00:00.123456', '2026-11-23 10:00:00.123456', '2026-11-23', '10:11:12.500', 2026,
				'{"a": [1, 2.50, "x"], "big": 18446744073709551615}', x'00ff5c27', x'0102', 'green', 'a,c', b'1000000001')`,
			`(2, 0, 0, -9223372036854775808, -0.0000000001, -0.0, 3.4e38, false, '', '', '', '1000-01-01 00:00:00', '1970-01-01 00:00:01', '1000-01-01', '-838:59:59', 1901,
				'"just a string"', '', '', 'red', '', b'0')`,
			`(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'null', NULL, NULL, NULL, NULL, NULL)`,
		},
	},
	"sqlite": {
		columns: `id INTEGER PRIMARY KEY, i INTEGER, r REAL, n NUMERIC, t TEXT, bl BLOB, j JSON, ts TEXT, b BOOLEAN`,
		rows: []string{
			`(1, 9223372036854775807, 1.5, 12.50, 'ü 日本 🚀 "q"', x'00ff5c27', '{"b":{"z":1,"a":2},"a":[1,2.50]}', '2026-11-23T10:00:00.123Z', 1)`,
			`(2, -9223372036854775808, -0.0, 1e300, '', x'', '[]', '2026-11-23 10:00:00', 0)`,
			`(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
		},
		rendered: `SELECT typeof(id)||':'||quote(id)||'|'||typeof(i)||':'||quote(i)||'|'||typeof(r)||':'||quote(r)||'|'||typeof(n)||':'||quote(n)||'|'||
			typeof(t)||':'||quote(t)||'|'||typeof(bl)||':'||quote(bl)||'|'||typeof(j)||':'||quote(j)||'|'||typeof(ts)||':'||quote(ts)||'|'||typeof(b)||':'||quote(b) FROM %s ORDER BY id`,
	},
}

// Every type of the three databases goes through jdbc-source → mesh →
// jdbc-sink into a table of the same columns and comes out equal, as the
// database renders it.
func TestRoundTripEveryType(t *testing.T) {
	pg := infra.StartPostgres(t)
	dsn := infra.StartMariaDB(t, false)
	hostPort := strings.TrimSuffix(strings.TrimPrefix(dsn, "root@tcp("), ")/"+infra.MariaDBDatabase)
	urls := map[string]string{"postgres": pg, "mysql": "mysql://root@" + hostPort + "/" + infra.MariaDBDatabase,
		"sqlite": "sqlite://" + filepath.Join(t.TempDir(), "rt.db")}
	e := newMeshEnv(t)
	for name, rt := range roundTrips {
		t.Run(name, func(t *testing.T) {
			tg := openTarget(t, urls[name])
			tg.exec(t, "CREATE TABLE rt_src ("+rt.columns+")")
			tg.exec(t, "CREATE TABLE rt_dst ("+rt.columns+")")
			tg.exec(t, "CREATE TABLE rt_ups ("+rt.columns+", seq BIGINT)")
			// Each row six times (ids n, n+10, ...): batches large enough
			// for PostgreSQL's COPY.
			var rows []string
			for k := range 6 {
				for _, r := range rt.rows {
					id, rest, _ := strings.Cut(strings.TrimPrefix(r, "("), ",")
					var n int
					_, err := fmt.Sscan(id, &n)
					require.NoError(t, err)
					rows = append(rows, fmt.Sprintf("(%d,%s", n+10*k, rest))
				}
			}
			tg.exec(t, "INSERT INTO rt_src VALUES "+strings.Join(rows, ", "))
			// The sinks first: their groups start at the events published
			// after them. One inserts, one upserts with a version column.
			e.create("rt-dst-"+name, map[string]any{connectors.FieldConnectorType: SinkType, connectors.FieldTopic: "rt." + name,
				FieldURL: urls[name], FieldTable: "rt_dst", connectors.FieldBatchWait: "200ms"})
			e.create("rt-ups-"+name, map[string]any{connectors.FieldConnectorType: SinkType, connectors.FieldTopic: "rt." + name,
				FieldURL: urls[name], FieldTable: "rt_ups", connectors.FieldBatchWait: "200ms", FieldInsertMode: InsertModeUpsert,
				FieldPKFields: "id", FieldVersionColumn: "seq"})
			e.create("rt-src-"+name, map[string]any{connectors.FieldConnectorType: SourceType, connectors.FieldTopic: "rt." + name,
				FieldURL: urls[name], FieldTable: "rt_src", FieldMode: ModeIncrementing, FieldIncrementing: "id", FieldPollInterval: "50ms"})
			if !assert.Eventually(t, func() bool {
				return countOf(t, tg, "rt_dst") == len(rows) && countOf(t, tg, "rt_ups") == len(rows)
			}, 30*time.Second, 50*time.Millisecond, "the rows arrive") {
				st, _ := e.rt.Status("rt-dst-" + name)
				src, _ := e.rt.Status("rt-src-" + name)
				t.Fatalf("sink: %+v\nsource: %+v\nlog: %s", st, src, e.log)
			}
			want := tg.render(t, rt, "rt_src")
			assert.Equal(t, want, tg.render(t, rt, "rt_dst"))
			tg.exec(t, "ALTER TABLE rt_ups DROP COLUMN seq")
			assert.Equal(t, want, tg.render(t, rt, "rt_ups"), "upserted")
		})
	}
}

// render renders the rows of table as text.
func (tg *target) render(t *testing.T, rt roundTrip, table string) []string {
	t.Helper()
	if rt.rendered != "" {
		return tg.strings(t, fmt.Sprintf(rt.rendered, table))
	}
	// MySQL: every column's text as the server writes it (the text
	// protocol), hex for binary columns.
	rows, err := tg.db.QueryContext(t.Context(), "SELECT * FROM "+table+" ORDER BY id")
	require.NoError(t, err)
	defer rows.Close()
	cols, err := rows.ColumnTypes()
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		parts := make([]string, len(vals))
		for i, v := range vals {
			if b, ok := v.([]byte); ok && (isBinary(cols[i].DatabaseTypeName()) || cols[i].DatabaseTypeName() == "BIT") {
				parts[i] = fmt.Sprintf("%x", b)
				continue
			}
			if ts, ok := v.(time.Time); ok {
				parts[i] = ts.Format(time.RFC3339Nano)
				continue
			}
			parts[i] = fmt.Sprintf("%s", v)
		}
		out = append(out, strings.Join(parts, "|"))
	}
	require.NoError(t, rows.Err())
	return out
}
