package jdbc

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd/bridge/jsonscan"
)

// family is how a column's values are written: what JSON values it takes
// and what reaches the driver.
type family int

const (
	famText      family = iota // strings as they are; other JSON values as their JSON text
	famInt                     // integers, exact (also unsigned and beyond 64 bits)
	famDecimal                 // exact decimal text
	famFloat                   // numbers; NaN and ±Infinity as the strings PostgreSQL writes
	famBool                    // true/false, also 0/1 and their strings
	famJSON                    // any JSON value as JSON text
	famBinary                  // base64 text (what jdbc-source writes) as bytes
	famTimestamp               // an RFC 3339 time (a time without a zone is UTC)
	famDate                    // a date, or a time whose UTC date is taken
	famArray                   // PostgreSQL arrays from JSON arrays
)

// sinkColumn is one column of the sink's table.
type sinkColumn struct {
	name string
	typ  string // as the database names it, lower case
	fam  family
	elem family // of an array's elements
}

// loadColumns reads the columns of table; none when it does not exist.
func (d dialect) loadColumns(ctx context.Context, db *sql.DB, table string) (map[string]*sinkColumn, error) {
	var q string
	var args []any
	schema, name, qualified := strings.Cut(table, ".")
	if !qualified {
		name = schema
	}
	switch d {
	case dialectPostgres:
		q = `SELECT column_name, data_type, udt_name FROM information_schema.columns
			WHERE table_schema = ` + map[bool]string{true: "$1", false: "current_schema()"}[qualified] + ` AND table_name = ` + map[bool]string{true: "$2", false: "$1"}[qualified]
	case dialectMySQL:
		q = `SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS
			WHERE TABLE_SCHEMA = ` + map[bool]string{true: "?", false: "DATABASE()"}[qualified] + ` AND TABLE_NAME = ?`
	default:
		q = `SELECT name, type, '' FROM pragma_table_info(?` + map[bool]string{true: ", ?", false: ""}[qualified] + `)`
		if qualified {
			args = []any{name, schema}
		} else {
			args = []any{name}
		}
	}
	if args == nil {
		if qualified {
			args = []any{schema, name}
		} else {
			args = []any{name}
		}
	}
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %q: %w", table, err)
	}
	defer rows.Close()
	cols := map[string]*sinkColumn{}
	for rows.Next() {
		var n, dataType, udt string
		if err := rows.Scan(&n, &dataType, &udt); err != nil {
			return nil, fmt.Errorf("reading the columns of %q: %w", table, err)
		}
		cols[n] = d.column(n, strings.ToLower(dataType), strings.ToLower(udt))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the columns of %q: %w", table, err)
	}
	return cols, nil
}

// column describes a column from its type: PostgreSQL's data_type and
// udt_name, MySQL's DATA_TYPE and COLUMN_TYPE, SQLite's declared type.
func (d dialect) column(name, dataType, extra string) *sinkColumn {
	c := &sinkColumn{name: name, typ: dataType}
	switch d {
	case dialectPostgres:
		if dataType == "array" {
			c.typ = extra
			c.fam = famArray
			c.elem = pgFamily(strings.TrimPrefix(extra, "_"))
			return c
		}
		c.fam = pgFamily(extra)
	case dialectMySQL:
		c.typ = extra
		c.fam = mysqlFamily(dataType, extra)
	default:
		c.fam = sqliteFamily(dataType)
	}
	return c
}

func pgFamily(udt string) family {
	switch udt {
	case "int2", "int4", "int8", "oid":
		return famInt
	case "numeric":
		return famDecimal
	case "float4", "float8":
		return famFloat
	case "bool":
		return famBool
	case "json", "jsonb":
		return famJSON
	case "bytea":
		return famBinary
	case "timestamp", "timestamptz":
		return famTimestamp
	case "date":
		return famDate
	}
	return famText
}

func mysqlFamily(dataType, columnType string) family {
	switch dataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year", "bit":
		return famInt
	case "decimal", "numeric":
		return famDecimal
	case "float", "double", "real":
		return famFloat
	case "json":
		return famJSON
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
		return famBinary
	case "datetime", "timestamp":
		return famTimestamp
	case "date":
		return famDate
	case "bool", "boolean":
		return famBool
	}
	_ = columnType
	return famText
}

// sqliteFamily follows SQLite's type affinity rules
// (https://www.sqlite.org/datatype3.html#determination_of_column_affinity).
func sqliteFamily(declared string) family {
	t := strings.ToLower(declared)
	switch {
	case strings.Contains(t, "int"):
		return famInt
	case strings.Contains(t, "char"), strings.Contains(t, "clob"), strings.Contains(t, "text"):
		return famText
	case strings.Contains(t, "blob"):
		return famBinary
	case strings.Contains(t, "real"), strings.Contains(t, "floa"), strings.Contains(t, "doub"):
		return famFloat
	case strings.Contains(t, "bool"):
		return famBool
	case strings.Contains(t, "json"):
		return famJSON
	case t == "":
		return famText
	}
	return famDecimal
}

// errNull is a JSON null given for a value that must not be null (a key).
var errNull = errors.New("null")

// value converts a decoded JSON value (UseNumber) into what the driver of
// dialect d writes to c, or says why it does not fit. Nothing is rounded
// or truncated: a value that does not fit fails.
func (c *sinkColumn) value(d dialect, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch c.fam {
	case famInt:
		return intValue(d, v)
	case famDecimal:
		s, ok := numberText(v)
		if !ok {
			return nil, fmt.Errorf("want a number, got %s", jsonscan.Kind(v))
		}
		if _, ok := new(big.Float).SetString(s); !ok && !(d == dialectPostgres && isNonFinite(s)) {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		return s, nil
	case famFloat:
		return floatValue(d, v)
	case famBool:
		return boolValue(d, v)
	case famJSON:
		return jsonText(v)
	case famBinary:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want base64 text, got %s", jsonscan.Kind(v))
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("want base64 text: %v", err)
		}
		return b, nil
	case famTimestamp, famDate:
		return timeValue(d, c, v)
	case famArray:
		if d != dialectPostgres {
			break
		}
		list, ok := v.([]any)
		if !ok {
			if s, ok := v.(string); ok && strings.HasPrefix(s, "{") {
				return s, nil // already a PostgreSQL array literal
			}
			return nil, fmt.Errorf("want an array, got %s", jsonscan.Kind(v))
		}
		return pgArray(list, c.elem)
	}
	if _, ok := v.(string); ok {
		return v, nil // as it came: a string put in an interface again would be copied
	}
	return jsonText(v)
}

// numberText is the text of a JSON number, or of a string holding one
// (large integers and decimals travel as strings).
func numberText(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return x.String(), true
	case string:
		return strings.TrimSpace(x), true
	}
	return "", false
}

func isNonFinite(s string) bool {
	switch strings.ToLower(s) {
	case "nan", "infinity", "+infinity", "-infinity", "inf", "+inf", "-inf":
		return true
	}
	return false
}

func intValue(d dialect, v any) (any, error) {
	if b, ok := v.(bool); ok { // MySQL's booleans are TINYINT(1)
		if b {
			return int64(1), nil
		}
		return int64(0), nil
	}
	s, ok := numberText(v)
	if !ok {
		return nil, fmt.Errorf("want an integer, got %s", jsonscan.Kind(v))
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil // the common case; big.Rat reads such text the same
	}
	if strings.ContainsAny(s, "eE") {
		// An exponent (1e+21, how some encoders write large numbers):
		// read as a float, taken when it is an exact integer. Never a
		// big.Rat of it: 1e999999999 would take the memory of its digits.
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, fmt.Errorf("%s is not an integer (not rounded)", s)
		}
		s = strconv.FormatFloat(f, 'f', -1, 64)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || !r.IsInt() {
		return nil, fmt.Errorf("%s is not an integer (not rounded)", s)
	}
	n := r.Num()
	if n.IsInt64() {
		return n.Int64(), nil
	}
	if d == dialectSQLite {
		return nil, fmt.Errorf("%s does not fit SQLite's 64-bit integers (use a TEXT column)", s)
	}
	return n.String(), nil // the server parses it exactly (NUMERIC, BIGINT UNSIGNED)
}

func floatValue(d dialect, v any) (any, error) {
	s, ok := numberText(v)
	if !ok {
		return nil, fmt.Errorf("want a number, got %s", jsonscan.Kind(v))
	}
	f, err := strconv.ParseFloat(s, 64) // also NaN, Inf, Infinity, with a sign, any case
	if err != nil {
		return nil, fmt.Errorf("%q is not a number", s)
	}
	switch {
	case math.IsNaN(f) && d != dialectPostgres:
		return nil, fmt.Errorf("NaN: %s stores no NaN (only PostgreSQL does)", d.name)
	case math.IsInf(f, 0) && d == dialectMySQL:
		return nil, fmt.Errorf("%s: MySQL/MariaDB store no infinity", s)
	}
	if d == dialectPostgres {
		return strconv.FormatFloat(f, 'g', -1, 64), nil // NaN, +Inf, -Inf: PostgreSQL reads them
	}
	return f, nil
}

func boolValue(d dialect, v any) (any, error) {
	var b bool
	switch x := v.(type) {
	case bool:
		b = x
	case json.Number, string:
		s, _ := numberText(x)
		switch strings.ToLower(s) {
		case "1", "true", "t":
			b = true
		case "0", "false", "f":
		default:
			return nil, fmt.Errorf("%q is not a boolean", s)
		}
	default:
		return nil, fmt.Errorf("want a boolean, got %s", jsonscan.Kind(v))
	}
	if d == dialectPostgres {
		return b, nil
	}
	if b {
		return int64(1), nil
	}
	return int64(0), nil
}

// jsonText is the JSON text of v. A string that holds a JSON object or
// array (a JSON column read by a source that has no JSON type, like
// MariaDB's) is that JSON; other strings are JSON strings.
func jsonText(v any) (any, error) {
	if r, ok := v.(rawJSON); ok {
		if s, ok := jsonscan.Decode(r); ok == nil {
			if str, isStr := s.(string); isStr {
				return jsonText(str) // a string holding JSON: that JSON
			}
		}
		return string(r), nil
	}
	if s, ok := v.(string); ok {
		t := strings.TrimSpace(s)
		if (strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[")) && jsonscan.Valid([]byte(t)) {
			return t, nil
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05.999999999", "2006-01-02"}

func parseTime(s string) (time.Time, bool) {
	for _, layout := range timeLayouts {
		if ts, err := time.Parse(layout, s); err == nil {
			return ts, true
		}
	}
	return time.Time{}, false
}

// timeValue writes times as text each database reads: PostgreSQL its own
// input (with the zone, so timestamptz is exact; timestamp drops it: a
// time in UTC is written as its UTC wall clock), MySQL and SQLite the
// time in UTC without a zone.
func timeValue(d dialect, c *sinkColumn, v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("want a time, got %s", jsonscan.Kind(v))
	}
	ts, ok := parseTime(s)
	if !ok {
		if d == dialectPostgres {
			return s, nil // PostgreSQL's own forms ('infinity', '2026-01-01 10:00 CET'); it says if not
		}
		return nil, fmt.Errorf("%q is not an RFC 3339 time or date", s)
	}
	if c.fam == famDate {
		return ts.UTC().Format("2006-01-02"), nil
	}
	if d == dialectPostgres {
		if c.typ == "timestamp" {
			return ts.UTC().Format("2006-01-02 15:04:05.999999"), nil
		}
		return ts.Format(time.RFC3339Nano), nil
	}
	if d == dialectSQLite {
		return s, nil // SQLite has no time type: the text as it came
	}
	return ts.UTC().Format("2006-01-02 15:04:05.999999"), nil
}

// pgArray writes a JSON array as a PostgreSQL array literal.
func pgArray(list []any, elem family) (string, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, x := range list {
		if i > 0 {
			b.WriteByte(',')
		}
		switch y := x.(type) {
		case nil:
			b.WriteString("NULL")
		case []any:
			s, err := pgArray(y, elem)
			if err != nil {
				return "", err
			}
			b.WriteString(s)
		default:
			c := &sinkColumn{fam: elem}
			if elem == famArray {
				c.fam = famText
			}
			v, err := c.value(dialectPostgres, y)
			if err != nil {
				return "", fmt.Errorf("[%d]: %w", i, err)
			}
			var s string
			switch z := v.(type) {
			case string:
				s = z
			case []byte:
				s = `\x` + fmt.Sprintf("%x", z)
			default:
				s = fmt.Sprint(z)
			}
			b.WriteByte('"')
			b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s))
			b.WriteByte('"')
		}
	}
	b.WriteByte('}')
	return b.String(), nil
}

// boolValue is a boolean as the dialect's driver writes it.
func (d dialect) boolValue(b bool) any {
	if d == dialectPostgres {
		return b
	}
	if b {
		return int64(1)
	}
	return int64(0)
}
