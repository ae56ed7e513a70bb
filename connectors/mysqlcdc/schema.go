package mysqlcdc

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/meshd/meshd/bridge/jsonscan"
)

// column is one column of a captured table, from information_schema.
type column struct {
	name     string
	dataType string // lowercase, like int, varchar, json
	unsigned bool
	enum     []string // values of an enum or set column, for the binlog's indexes
	charset  string   // of a character column, lowercase, like utf8mb4, latin1
}

// table is the shape of a captured table.
type table struct {
	cols []column
	pk   []int // indexes of the primary key columns
}

// schemas reads and caches table shapes over one connection, reconnecting
// on error. Its methods are called by the task's reader goroutine only; mu
// guards conn against Close from Stop.
type schemas struct {
	d       dsn
	timeout time.Duration

	mu         sync.Mutex
	conn       *client.Conn
	tables     map[string]*table // by db.table
	collations map[uint64]string // collation id → charset
}

func (s *schemas) connect(ctx context.Context) (*client.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return s.conn, nil
	}
	c, err := connect(ctx, s.d, s.timeout)
	if err != nil {
		return nil, err
	}
	s.conn = c
	return c, nil
}

// execute runs a query, dropping the connection after an error.
func (s *schemas) execute(ctx context.Context, q string, args ...any) ([][]any, error) {
	c, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	res, err := c.Execute(q, args...)
	if err != nil {
		s.Close()
		return nil, err
	}
	defer res.Close()
	rows := make([][]any, res.RowNumber())
	for i := range rows {
		rows[i] = make([]any, res.ColumnNumber())
		for j := range rows[i] {
			v, _ := res.GetValue(i, j)
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			rows[i][j] = v
		}
	}
	return rows, nil
}

// Close closes the connection; the next call reconnects.
func (s *schemas) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}

// forget drops the cached shapes (after DDL).
func (s *schemas) forget() { s.tables = nil }

// charsetOf returns the charset of a collation id ("" if unknown).
func (s *schemas) charsetOf(ctx context.Context, id uint64) string {
	if cs, ok := s.collations[id]; ok {
		return cs
	}
	rows, err := s.execute(ctx, "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS")
	if err != nil {
		return ""
	}
	s.collations = map[uint64]string{}
	for _, r := range rows {
		var n uint64
		_, _ = fmt.Sscan(str(r[0]), &n)
		s.collations[n] = strings.ToLower(str(r[1]))
	}
	return s.collations[id]
}

// table returns the shape of db.tb, reading it again when the binlog's
// column count differs from the cached one (cols < 0: any count).
func (s *schemas) table(ctx context.Context, db, tb string, cols int) (*table, error) {
	key := db + "." + tb
	if t, ok := s.tables[key]; ok && (cols < 0 || len(t.cols) == cols) {
		return t, nil
	}
	rows, err := s.execute(ctx, `SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, COLUMN_KEY, CHARACTER_SET_NAME FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, db, tb)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", key, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("reading the columns of %s: no such table", key)
	}
	t := &table{}
	for i, r := range rows {
		ct := strings.ToLower(str(r[2]))
		c := column{name: str(r[0]), dataType: strings.ToLower(str(r[1])), unsigned: strings.Contains(ct, "unsigned"), charset: strings.ToLower(str(r[4]))}
		if c.dataType == "enum" || c.dataType == "set" {
			c.enum = enumValues(ct)
		}
		if str(r[3]) == "PRI" {
			t.pk = append(t.pk, i)
		}
		t.cols = append(t.cols, c)
	}
	s.markJSON(ctx, db, tb, t)
	if s.tables == nil {
		s.tables = map[string]*table{}
	}
	s.tables[key] = t
	return t, nil
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// enumValues parses enum('a','b') or set('a','b').
func enumValues(ct string) []string {
	open, end := strings.IndexByte(ct, '('), strings.LastIndexByte(ct, ')')
	if open < 0 || end < open {
		return nil
	}
	var out []string
	for _, p := range strings.Split(ct[open+1:end], ",") {
		p = strings.TrimSpace(p)
		p = strings.TrimSuffix(strings.TrimPrefix(p, "'"), "'")
		out = append(out, strings.ReplaceAll(p, "''", "'"))
	}
	return out
}

// value turns a value decoded from the binlog or a snapshot row into a
// JSON-ready value of the column's type. Text from the binlog is in the
// column's charset and decoded from it; a snapshot reads UTF-8 (its
// connection's utf8mb4).
func (c column) value(v any, binlog bool) (any, error) {
	if x, ok := v.(string); ok && binlog && c.isText() {
		s, err := decodeCharset(c.charset, []byte(x))
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", c.name, err)
		}
		v = s
	}
	return c.convert(v), nil
}

// isText says whether the column holds character data (text the binlog
// writes in the column's charset).
func (c column) isText() bool {
	switch c.dataType {
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext", "json":
		return c.charset != "" && c.charset != "binary"
	}
	return false
}

func (c column) convert(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case []byte:
		return c.bytes(x)
	case string:
		return c.text(x)
	case int8:
		if c.unsigned {
			return uint8(x)
		}
		return c.index(int64(x))
	case int16:
		if c.unsigned {
			return uint16(x)
		}
		return c.index(int64(x))
	case int32:
		if c.unsigned {
			return uint32(x)
		}
		return c.index(int64(x))
	case int64:
		if c.unsigned {
			return uint64(x)
		}
		return c.index(x)
	}
	return v
}

func (c column) bytes(b []byte) any {
	switch c.dataType {
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "bit", "geometry":
		return b // base64 in JSON
	}
	return c.text(string(b))
}

// text converts the text form (snapshot rows, decimals, times) to the
// column's JSON type.
func (c column) text(s string) any {
	switch c.dataType {
	case "json":
		if jsonscan.Valid([]byte(s)) {
			return json.RawMessage(s)
		}
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year":
		if c.unsigned {
			if n, err := strconv.ParseUint(s, 10, 64); err == nil {
				return n
			}
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	case "float", "double", "real":
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	}
	return s
}

// index maps the binlog's 1-based enum index (or set bitmap) to its value.
func (c column) index(n int64) any {
	switch c.dataType {
	case "enum":
		if n >= 1 && int(n) <= len(c.enum) {
			return c.enum[n-1]
		}
		if n == 0 {
			return ""
		}
	case "set":
		var out []string
		for i, v := range c.enum {
			if n&(1<<i) != 0 {
				out = append(out, v)
			}
		}
		return strings.Join(out, ",")
	}
	return n
}

// markJSON finds MariaDB's JSON columns: longtext with a json_valid check.
// MySQL has a real json type (and CHECK_CONSTRAINTS without TABLE_NAME, so
// the query fails there and is ignored).
func (s *schemas) markJSON(ctx context.Context, db, tb string, t *table) {
	if !slices.ContainsFunc(t.cols, func(c column) bool { return c.dataType == "longtext" }) {
		return
	}
	rows, err := s.execute(ctx, `SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
		WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?`, db, tb)
	if err != nil {
		return
	}
	for _, r := range rows {
		clause := strings.ReplaceAll(strings.ToLower(str(r[0])), " ", "")
		for i, c := range t.cols {
			if c.dataType == "longtext" && clause == "json_valid(`"+strings.ToLower(c.name)+"`)" {
				t.cols[i].dataType = "json"
			}
		}
	}
}
