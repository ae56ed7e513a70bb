package jdbc

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/jsonscan"
	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SourceTask  = (*SourceTask)(nil)
	_ connectors.Initializer = (*SourceTask)(nil)
)

// offset is a partition's position: the last incrementing value and/or
// timestamp read.
type offset struct {
	Inc *int64     `json:"inc,omitempty"`
	TS  *time.Time `json:"ts,omitempty"`
}

// source is one polled table or query.
type source struct {
	partition string // the table, or "query"
	from      string // FROM clause: a quoted table or (query) AS q
	off       offset
}

// SourceTask polls its tables in turn.
type SourceTask struct {
	tc       connectors.TaskContext
	d        dialect
	db       *sql.DB
	mode     string
	inc, ts  string
	delay    time.Duration // timestamp.delay
	pk       []string
	typ      string
	interval time.Duration
	limit    int64
	sources  []*source
	next     int
	lastBulk time.Time
}

// Init keeps the task context (offsets).
func (t *SourceTask) Init(tc connectors.TaskContext) { t.tc = tc }

// Start opens the database and reads the committed offsets.
func (t *SourceTask) Start(ctx context.Context, cfg connectors.Config) error {
	d, db, err := open(ctx, cfg.String(FieldURL))
	if err != nil {
		return err
	}
	t.d, t.db = d, db
	t.mode = cfg.String(FieldMode)
	t.inc, t.ts = cfg.String(FieldIncrementing), cfg.String(FieldTimestamp)
	t.delay = cfg.Duration(FieldTimestampDelay)
	t.pk = cfg.Strings(FieldPKFields)
	if len(t.pk) == 0 && t.inc != "" {
		t.pk = []string{t.inc}
	}
	t.typ = cfg.String(FieldEventType)
	t.interval = cfg.Duration(FieldPollInterval)
	t.limit = cfg.Int(FieldBatchMaxRows)
	var offsets map[string]string
	if t.tc != nil {
		offsets = t.tc.Offsets()
	}
	add := func(partition, from string) error {
		s := &source{partition: partition, from: from}
		if o, ok := offsets[partition]; ok && t.mode != ModeBulk {
			if err := json.Unmarshal([]byte(o), &s.off); err != nil {
				return fmt.Errorf("reading the offset of %q: %w", partition, err)
			}
		}
		t.sources = append(t.sources, s)
		return nil
	}
	if q := cfg.String(FieldQuery); q != "" {
		err = add("query", "("+q+") AS q")
	} else {
		for _, tb := range cfg.Strings(FieldTable) {
			if err = add(tb, d.quote(tb)); err != nil {
				break
			}
		}
	}
	if err != nil {
		db.Close()
		t.db = nil
	}
	return err
}

// Stop closes the database. Idempotent.
func (t *SourceTask) Stop(context.Context) error {
	if t.db == nil {
		return nil
	}
	err := t.db.Close()
	t.db = nil
	return err
}

// Poll reads the next rows of the sources in turn; when none has new rows
// it waits poll.interval.
func (t *SourceTask) Poll(ctx context.Context) ([]connectors.Record, error) {
	if t.mode == ModeBulk {
		if wait := time.Until(t.lastBulk.Add(t.interval)); wait > 0 {
			if !bridge.Sleep(ctx, wait) {
				return nil, ctx.Err()
			}
		}
		t.lastBulk = time.Now()
		var recs []connectors.Record
		for _, s := range t.sources {
			r, err := t.poll(ctx, s)
			if err != nil {
				return nil, err
			}
			recs = append(recs, r...)
		}
		return recs, nil
	}
	for range t.sources {
		s := t.sources[t.next]
		t.next = (t.next + 1) % len(t.sources)
		recs, err := t.poll(ctx, s)
		if err != nil || len(recs) > 0 {
			return recs, err
		}
	}
	bridge.Sleep(ctx, t.interval)
	return nil, ctx.Err()
}

// query builds the SELECT of one poll of s.
func (t *SourceTask) query(s *source) (string, []any) {
	inc, ts := t.d.quote(t.inc), t.d.timestamp(t.d.quote(t.ts))
	var conds []string
	var args []any
	var order string
	limit := false
	switch t.mode {
	case ModeIncrementing:
		if s.off.Inc != nil {
			conds = append(conds, inc+" > "+t.d.placeholder(1))
			args = append(args, *s.off.Inc)
		}
		order, limit = inc, true
	case ModeTimestamp:
		if s.off.TS != nil {
			conds = append(conds, ts+" > "+t.d.timestamp(t.d.placeholder(1)))
			args = append(args, t.d.timeArg(*s.off.TS))
		}
		order = ts
	case ModeTimestampIncrementing:
		if s.off.TS != nil && s.off.Inc != nil {
			conds = append(conds, fmt.Sprintf("(%s > %s OR (%s = %s AND %s > %s))",
				ts, t.d.timestamp(t.d.placeholder(1)), ts, t.d.timestamp(t.d.placeholder(2)), inc, t.d.placeholder(3)))
			args = append(args, t.d.timeArg(*s.off.TS), t.d.timeArg(*s.off.TS), *s.off.Inc)
		}
		order, limit = ts+", "+inc, true
	}
	if t.delay > 0 { // timestamp modes only (checkSource)
		conds = append(conds, t.d.olderThan(t.d.quote(t.ts), t.delay))
	}
	q := "SELECT * FROM " + s.from
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	if order != "" {
		q += " ORDER BY " + order
	}
	if limit {
		q += " LIMIT " + strconv.FormatInt(t.limit, 10)
	}
	return q, args
}

func (t *SourceTask) poll(ctx context.Context, s *source) ([]connectors.Record, error) {
	q, args := t.query(s)
	rows, err := t.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("polling %q: %w", s.partition, err)
	}
	defer rows.Close()
	cols, err := rows.ColumnTypes()
	if err != nil {
		return nil, fmt.Errorf("polling %q: %w", s.partition, err)
	}
	var recs []connectors.Record
	off := s.off // s.off advances once every row is read
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("reading a row of %q: %w", s.partition, err)
		}
		row := make(map[string]any, len(cols))
		for i, c := range cols {
			row[c.Name()] = jsonValue(vals[i], c.DatabaseTypeName())
		}
		rec, err := t.record(s.partition, &off, row)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("polling %q: %w", s.partition, err)
	}
	s.off = off
	return recs, nil
}

// record makes the event of one row and advances s's offset past it.
func (t *SourceTask) record(partition string, off *offset, row map[string]any) (connectors.Record, error) {
	ev := event.New()
	ev.SetType(t.typ)
	ev.SetSource("/jdbc/" + t.d.name + "/" + partition)
	ev.SetSubject(t.subject(row))
	rec := connectors.Record{}
	if t.mode != ModeBulk {
		if t.inc != "" {
			n, err := toInt(row[t.inc])
			if err != nil {
				return rec, fmt.Errorf("incrementing column %q of %q: %w", t.inc, partition, err)
			}
			off.Inc = &n
		}
		if t.ts != "" {
			ts, err := toTime(row[t.ts])
			if err != nil {
				return rec, fmt.Errorf("timestamp column %q of %q: %w", t.ts, partition, err)
			}
			off.TS = &ts
		}
		b, _ := json.Marshal(*off)
		rec.Partition, rec.Offset = partition, string(b)
		id := partition + "/" + string(b)
		if t.mode == ModeTimestamp {
			id += "/" + ev.Subject()
		}
		ev.SetID(id)
	} else {
		var r [12]byte
		_, _ = rand.Read(r[:])
		ev.SetID(partition + "/" + hex.EncodeToString(r[:]))
	}
	if err := ev.SetData(event.ApplicationJSON, row); err != nil {
		return rec, fmt.Errorf("encoding a row of %q: %w", partition, err)
	}
	rec.Event = ev
	return rec, nil
}

func (t *SourceTask) subject(row map[string]any) string {
	switch len(t.pk) {
	case 0:
		return ""
	case 1:
		return fmt.Sprint(row[t.pk[0]])
	}
	m := make(map[string]any, len(t.pk))
	for _, k := range t.pk {
		m[k] = row[k]
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func toInt(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case json.Number:
		return v.Int64()
	case string:
		return strconv.ParseInt(v, 10, 64)
	case float64:
		if v == math.Trunc(v) {
			return int64(v), nil
		}
	}
	return 0, fmt.Errorf("%v (%T) is not an integer", v, v)
}

func toTime(v any) (time.Time, error) {
	if s, ok := v.(string); ok {
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999", "2006-01-02"} {
			if ts, err := time.Parse(layout, s); err == nil {
				return ts, nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("%v (%T) is not a timestamp", v, v)
}

// jsonValue maps a scanned column to its JSON form: numbers as numbers,
// decimals as strings, timestamps RFC 3339, bytes base64, NULL null.
func jsonValue(v any, dbType string) any {
	typ := strings.ToUpper(dbType)
	typ = strings.TrimPrefix(typ, "UNSIGNED ")
	switch v := v.(type) {
	case nil:
		return nil
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return strconv.FormatFloat(v, 'g', -1, 64)
		}
		return v
	case float32:
		return float64(v)
	case []byte:
		switch {
		case typ == "JSON" || typ == "JSONB":
			if jsonscan.Valid(v) {
				return json.RawMessage(v)
			}
		case typ == "BIT" && len(v) <= 8: // MySQL: big-endian bits
			var n uint64
			for _, b := range v {
				n = n<<8 | uint64(b)
			}
			return n
		case isBinary(typ):
			return base64.StdEncoding.EncodeToString(v)
		case isInt(typ):
			if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				return n
			}
			return json.Number(v) // beyond int64: still a number
		case typ == "FLOAT" || typ == "DOUBLE" || typ == "REAL":
			if f, err := strconv.ParseFloat(string(v), 64); err == nil {
				return jsonValue(f, typ)
			}
		case typ == "DATETIME" || typ == "TIMESTAMP" || typ == "DATE":
			if ts, err := toTime(string(v)); err == nil {
				return ts.UTC().Format(time.RFC3339Nano)
			}
		}
		return string(v)
	case string:
		if (typ == "JSON" || typ == "JSONB") && jsonscan.Valid([]byte(v)) {
			return json.RawMessage(v)
		}
		if typ == "DATETIME" || typ == "TIMESTAMP" {
			if ts, err := toTime(v); err == nil {
				return ts.UTC().Format(time.RFC3339Nano)
			}
		}
		return v
	}
	return v
}

func isBinary(typ string) bool {
	switch typ {
	case "BYTEA", "BLOB", "TINYBLOB", "MEDIUMBLOB", "LONGBLOB", "BINARY", "VARBINARY":
		return true
	}
	return false
}

func isInt(typ string) bool {
	switch typ {
	case "INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "MEDIUMINT", "INT2", "INT4", "INT8", "YEAR":
		return true
	}
	return false
}
