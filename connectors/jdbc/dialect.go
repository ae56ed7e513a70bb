package jdbc

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	// The drivers of the three dialects.
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// dialect is what differs between the databases: driver, quoting,
// placeholders, upsert syntax and column types for auto-create.
type dialect struct {
	name   string // postgres, mysql, sqlite
	driver string
}

var (
	dialectPostgres = dialect{name: "postgres", driver: "pgx"}
	dialectMySQL    = dialect{name: "mysql", driver: "mysql"}
	dialectSQLite   = dialect{name: "sqlite", driver: "sqlite"}
)

// parseURL returns the dialect of a connection URL and the DSN its driver
// takes. Errors never echo the URL (it may hold a password).
func parseURL(raw string) (dialect, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return dialect{}, "", fmt.Errorf("not a URL")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return dialect{}, "", fmt.Errorf("port %q: want 1 to 65535", p)
		}
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		if u.Host == "" {
			return dialect{}, "", fmt.Errorf("postgres URL without a host")
		}
		return dialectPostgres, raw, nil
	case "mysql", "mariadb":
		if u.Host == "" {
			return dialect{}, "", fmt.Errorf("mysql URL without a host")
		}
		var dsn strings.Builder
		if u.User != nil {
			dsn.WriteString(u.User.Username())
			if p, ok := u.User.Password(); ok {
				dsn.WriteString(":" + p)
			}
			dsn.WriteString("@")
		}
		q := u.Query()
		q.Set("parseTime", "true")
		if q.Get("loc") == "" {
			q.Set("loc", "UTC")
		}
		fmt.Fprintf(&dsn, "tcp(%s)/%s?%s", u.Host, strings.TrimPrefix(u.Path, "/"), q.Encode())
		return dialectMySQL, dsn.String(), nil
	case "sqlite", "sqlite3":
		path := u.Path
		if u.Host != "" { // sqlite://relative/file.db
			path = u.Host + u.Path
		}
		if path == "" {
			return dialect{}, "", fmt.Errorf("sqlite URL without a file path (sqlite:///path/file.db)")
		}
		return dialectSQLite, "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_time_format=sqlite", nil
	}
	return dialect{}, "", fmt.Errorf("scheme %q is none of postgres://, mysql://, sqlite://", u.Scheme)
}

// open opens and pings the database of a connection URL.
func open(ctx context.Context, raw string) (dialect, *sql.DB, error) {
	d, dsn, err := parseURL(raw)
	if err != nil {
		return d, nil, err
	}
	db, err := sql.Open(d.driver, dsn)
	if err != nil {
		return d, nil, fmt.Errorf("opening the %s database: %w", d.name, err)
	}
	if d == dialectSQLite {
		db.SetMaxOpenConns(1) // one writer; avoids SQLITE_BUSY between pooled connections
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return d, nil, fmt.Errorf("connecting to the %s database: %w", d.name, err)
	}
	return d, db, nil
}

// quote quotes one identifier; a dotted name (schema.table) is quoted part
// by part.
func (d dialect) quote(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		if d == dialectMySQL {
			parts[i] = "`" + strings.ReplaceAll(p, "`", "``") + "`"
		} else {
			parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
		}
	}
	return strings.Join(parts, ".")
}

func (d dialect) quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = d.quote(n)
	}
	return out
}

// placeholder is the n-th (from 1) bind parameter.
func (d dialect) placeholder(n int) string {
	if d == dialectPostgres {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

func (d dialect) placeholders(from, n int) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = d.placeholder(from + i)
	}
	return strings.Join(ps, ", ")
}

// insertSQL is an INSERT of rows rows of cols (bind parameters row by
// row); with upsert, rows whose key exists are updated instead — with a
// version column, only by a row of a greater version.
func (d dialect) insertSQL(table string, cols, pk []string, upsert bool, version string, rows int) string {
	values := make([]string, rows)
	for i := range values {
		values[i] = "(" + d.placeholders(1+i*len(cols), len(cols)) + ")"
	}
	return d.insertFrom(table, cols, "VALUES "+strings.Join(values, ", "), pk, upsert, version)
}

// insertFrom is an INSERT of the rows of from (VALUES … or a SELECT) into
// table's cols, with insertSQL's upsert.
func (d dialect) insertFrom(table string, cols []string, from string, pk []string, upsert bool, version string) string {
	target := d.quote(table)
	if upsert && version != "" && d == dialectPostgres {
		target += " AS t"
	}
	s := fmt.Sprintf("INSERT INTO %s (%s) %s", target, strings.Join(d.quoteAll(cols), ", "), from)
	if !upsert {
		return s
	}
	isPK := map[string]bool{}
	for _, k := range pk {
		isPK[k] = true
	}
	var sets []string
	var newer string // the condition that the row written is newer than the stored one
	if version != "" {
		v := d.quote(version)
		switch d {
		case dialectMySQL:
			newer = fmt.Sprintf("(%s IS NULL OR %s < VALUES(%s))", v, v, v)
		case dialectPostgres:
			newer = fmt.Sprintf("(t.%s IS NULL OR t.%s < EXCLUDED.%s)", v, v, v)
		default:
			newer = fmt.Sprintf("(%s.%s IS NULL OR %s.%s < excluded.%s)", d.quote(table), v, d.quote(table), v, v)
		}
	}
	for _, c := range cols {
		if isPK[c] || c == version {
			continue
		}
		q := d.quote(c)
		switch {
		case d == dialectMySQL && newer != "":
			sets = append(sets, fmt.Sprintf("%s = IF(%s, VALUES(%s), %s)", q, newer, q, q))
		case d == dialectMySQL:
			sets = append(sets, q+" = VALUES("+q+")")
		default:
			sets = append(sets, q+" = EXCLUDED."+q)
		}
	}
	if version != "" {
		// Last: MySQL evaluates the assignments in order, each seeing the
		// ones before.
		q := d.quote(version)
		if d == dialectMySQL {
			sets = append(sets, fmt.Sprintf("%s = IF(%s, VALUES(%s), %s)", q, newer, q, q))
		} else {
			sets = append(sets, q+" = EXCLUDED."+q)
		}
	}
	if d == dialectMySQL {
		if len(sets) == 0 {
			q := d.quote(pk[0])
			sets = []string{q + " = " + q}
		}
		return s + " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
	}
	conflict := " ON CONFLICT (" + strings.Join(d.quoteAll(pk), ", ") + ")"
	if len(sets) == 0 {
		return s + conflict + " DO NOTHING"
	}
	s += conflict + " DO UPDATE SET " + strings.Join(sets, ", ")
	if newer != "" {
		s += " WHERE " + newer
	}
	return s
}

// olderThan is the condition that column col (quoted) is older than the
// database's current time minus delay. PostgreSQL and MySQL compare with
// CURRENT_TIMESTAMP in the session's time zone; SQLite compares julianday
// values, whatever text format the column holds, with 'now' in UTC.
// timestamp is the expression comparing and ordering timestamps. SQLite
// has no time type: a column holds text in whatever format its writer used
// ('2026-01-01 10:00:00', '2026-01-01T10:00:00.000Z', with an offset), and
// text compares badly across formats, so both sides are normalised by
// SQLite's strftime (UTC, milliseconds: SQLite's time precision).
func (d dialect) timestamp(expr string) string {
	if d == dialectSQLite {
		return "strftime('%Y-%m-%d %H:%M:%f', " + expr + ")"
	}
	return expr
}

// timeArg is the bind parameter of an offset's timestamp.
func (d dialect) timeArg(ts time.Time) any {
	if d == dialectSQLite {
		return ts.UTC().Format(time.RFC3339Nano)
	}
	return ts
}

func (d dialect) olderThan(col string, delay time.Duration) string {
	switch d {
	case dialectPostgres:
		return fmt.Sprintf("%s < CURRENT_TIMESTAMP - INTERVAL '%d microseconds'", col, delay.Microseconds())
	case dialectMySQL:
		return fmt.Sprintf("%s < CURRENT_TIMESTAMP(6) - INTERVAL %d MICROSECOND", col, delay.Microseconds())
	}
	return fmt.Sprintf("julianday(%s) < julianday('now', '-%s seconds')", col, strconv.FormatFloat(delay.Seconds(), 'f', 6, 64))
}

// deleteSQL deletes the row of a key; with a version column only a row
// of a smaller version (the version is the last bind parameter).
func (d dialect) deleteSQL(table string, pk []string, version string) string {
	conds := make([]string, len(pk))
	for i, k := range pk {
		conds[i] = d.quote(k) + " = " + d.placeholder(i+1)
	}
	if version != "" {
		v := d.quote(version)
		conds = append(conds, fmt.Sprintf("(%s IS NULL OR %s < %s)", v, v, d.placeholder(len(pk)+1)))
	}
	return fmt.Sprintf("DELETE FROM %s WHERE %s", d.quote(table), strings.Join(conds, " AND "))
}

// columnType is the column type auto.create gives column col: the one
// auto.create.types names, else one that holds every value of the kind of
// v without rounding — numbers are exact decimals (1 then 1.75 both fit),
// objects and arrays JSON.
func (d dialect) columnType(col string, v any, key bool, types map[string]string) string {
	if t, ok := types[col]; ok {
		return t
	}
	switch v.(type) {
	case bool:
		return "BOOLEAN"
	case json.Number:
		if d == dialectMySQL {
			return "DECIMAL(65,30)"
		}
		return "NUMERIC"
	case map[string]any, []any:
		switch d {
		case dialectPostgres:
			return "JSONB"
		case dialectMySQL:
			return "JSON"
		}
	}
	if d == dialectMySQL {
		if key {
			return "VARCHAR(255)"
		}
		return "LONGTEXT"
	}
	return "TEXT"
}

// createSQL creates table with the columns of one row.
func (d dialect) createSQL(table string, cols []string, vals []any, pk []string, types map[string]string) string {
	isPK := map[string]bool{}
	for _, k := range pk {
		isPK[k] = true
	}
	defs := make([]string, len(cols))
	for i, c := range cols {
		defs[i] = d.quote(c) + " " + d.columnType(c, vals[i], isPK[c], types)
		if isPK[c] {
			defs[i] += " NOT NULL"
		}
	}
	if len(pk) > 0 {
		defs = append(defs, "PRIMARY KEY ("+strings.Join(d.quoteAll(pk), ", ")+")")
	}
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s)", d.quote(table), strings.Join(defs, ", "))
}
