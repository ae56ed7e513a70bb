package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SourceTask  = (*SourceTask)(nil)
	_ connectors.Initializer = (*SourceTask)(nil)
)

// offsetColumn is the alias of the increasing column's text form that
// polls add to the row (and take off again).
const offsetColumn = "__meshd_offset"

// offset is a partition's position: the text form (toString) of the last
// value of the increasing column whose rows were all read; nil before the
// first.
type offset struct {
	After *string `json:"after,omitempty"`
}

// source is one polled table or query.
type source struct {
	partition string // the table, or "query"
	from      string // a quoted table or (query)
	incType   string // the increasing column's type, Nullable stripped
	off       offset
}

// SourceTask polls its tables in turn.
type SourceTask struct {
	tc        connectors.TaskContext
	conn      driver.Conn
	inc       string
	pk        []string
	subjectPK bool // pk.fields was given: rows sharing a value are told apart by it
	typ       string
	interval  time.Duration
	limit     int64
	sources   []*source
	next      int
}

// Init keeps the task context (offsets).
func (t *SourceTask) Init(tc connectors.TaskContext) { t.tc = tc }

// Start connects, checks the columns and reads the committed offsets.
func (t *SourceTask) Start(ctx context.Context, cfg connectors.Config) error {
	conn, err := open(ctx, cfg.String(FieldURL))
	if err != nil {
		return err
	}
	t.conn = conn
	t.inc = cfg.String(FieldIncrementing)
	t.pk = cfg.Strings(FieldPKFields)
	t.subjectPK = len(t.pk) > 0
	if !t.subjectPK {
		t.pk = []string{t.inc}
	}
	t.typ = cfg.String(FieldEventType)
	t.interval = cfg.Duration(FieldPollInterval)
	t.limit = cfg.Int(FieldBatchMaxRows)
	var offsets map[string]string
	if t.tc != nil {
		offsets = t.tc.Offsets()
	}
	if q := cfg.String(FieldQuery); q != "" {
		err = t.add(ctx, "query", "("+q+")", offsets)
	} else {
		for _, tb := range cfg.Strings(FieldTable) {
			if err = t.add(ctx, tb, quote(tb), offsets); err != nil {
				break
			}
		}
	}
	if err != nil {
		_ = t.Stop(ctx)
	}
	return err
}

// add checks the columns of one table or query and appends its source.
func (t *SourceTask) add(ctx context.Context, partition, from string, offsets map[string]string) error {
	cols, err := resultColumns(ctx, t.conn, from)
	if err != nil {
		return fmt.Errorf("reading the columns of %q: %w", partition, err)
	}
	s := &source{partition: partition, from: from}
	for _, name := range append([]string{t.inc}, t.pk...) {
		i := slices.IndexFunc(cols, func(c column) bool { return c.name == name })
		if i < 0 {
			return fmt.Errorf("%q has no column %q", partition, name)
		}
		if name == t.inc {
			s.incType = cols[i].typ
			if inner, ok := unwrap(s.incType, "Nullable"); ok {
				s.incType = inner
			}
		}
	}
	if o, ok := offsets[partition]; ok {
		if err := json.Unmarshal([]byte(o), &s.off); err != nil {
			return fmt.Errorf("reading the offset of %q: %w", partition, err)
		}
	}
	t.sources = append(t.sources, s)
	return nil
}

// Stop closes the connection. Idempotent.
func (t *SourceTask) Stop(context.Context) error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	return err
}

// Poll reads the next rows of the sources in turn; when none has new rows
// it waits poll.interval.
func (t *SourceTask) Poll(ctx context.Context) ([]connectors.Record, error) {
	for range t.sources {
		s := t.sources[t.next]
		t.next = (t.next + 1) % len(t.sources)
		recs, err := t.poll(ctx, s)
		if err != nil || len(recs) > 0 {
			return recs, err
		}
	}
	timer := time.NewTimer(t.interval)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, nil
	}
}

// polled is one row read, as JSON-ready values, with the text form of
// its increasing column.
type polled struct {
	row map[string]any
	off string
}

// poll reads the rows after s's offset: at most batch.max.rows, but never
// part of the rows sharing one value of the increasing column — a cut
// group is left for the next poll, or, when it fills the whole batch, read
// whole.
func (t *SourceTask) poll(ctx context.Context, s *source) ([]connectors.Record, error) {
	inc := quoteIdent(t.inc)
	where := inc + " IS NOT NULL"
	var args []any
	if s.off.After != nil {
		where += " AND " + inc + " > CAST(? AS " + s.incType + ")"
		args = append(args, *s.off.After)
	}
	rows, err := t.read(ctx, s, where, " LIMIT "+strconv.FormatInt(t.limit, 10), args)
	if err != nil {
		return nil, err
	}
	if int64(len(rows)) == t.limit {
		last := rows[len(rows)-1].off
		cut := len(rows)
		for cut > 0 && rows[cut-1].off == last {
			cut--
		}
		if cut > 0 {
			rows = rows[:cut]
		} else if rows, err = t.read(ctx, s, inc+" = CAST(? AS "+s.incType+")", "", []any{last}); err != nil {
			return nil, err
		}
	}
	return t.records(s, rows)
}

// read runs one SELECT of s in the order of the increasing column, then of
// the key columns.
func (t *SourceTask) read(ctx context.Context, s *source, where, limit string, args []any) ([]polled, error) {
	order := make([]string, 0, 1+len(t.pk))
	for _, c := range append([]string{t.inc}, t.pk...) {
		if !slices.Contains(order, quoteIdent(c)) {
			order = append(order, quoteIdent(c))
		}
	}
	q := "SELECT *, toString(" + quoteIdent(t.inc) + ") AS " + offsetColumn + " FROM " + s.from +
		" WHERE " + where + " ORDER BY " + strings.Join(order, ", ") + limit
	rows, err := t.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("polling %q: %w", s.partition, err)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var out []polled
	for rows.Next() {
		vals := make([]any, len(types))
		for i, c := range types {
			vals[i] = reflect.New(c.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			return nil, fmt.Errorf("reading a row of %q: %w", s.partition, err)
		}
		p := polled{row: make(map[string]any, len(types)-1)}
		for i, c := range types[:len(types)-1] {
			p.row[c.Name()] = jsonValue(vals[i])
		}
		p.off = fmt.Sprint(jsonValue(vals[len(vals)-1]))
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("polling %q: %w", s.partition, err)
	}
	return out, nil
}

// records makes the events of rows and advances s's offset. A record's
// offset is the value of its group only on the group's last row: a
// restart after part of a group was stored reads the whole group again
// (the event ids make the mesh drop the rows it has).
func (t *SourceTask) records(s *source, rows []polled) ([]connectors.Record, error) {
	recs := make([]connectors.Record, len(rows))
	done, _ := json.Marshal(s.off)
	k := 0 // index of the row in its group
	for i, p := range rows {
		ev := event.New()
		ev.SetType(t.typ)
		ev.SetSource("/clickhouse/" + s.partition)
		ev.SetSubject(t.subject(p.row))
		id := s.partition + "/" + p.off + "/"
		if t.subjectPK {
			id += ev.Subject()
		} else {
			id += "#" + strconv.Itoa(k)
		}
		ev.SetID(id)
		if err := ev.SetData(event.ApplicationJSON, p.row); err != nil {
			return nil, fmt.Errorf("encoding a row of %q: %w", s.partition, err)
		}
		k++
		if i == len(rows)-1 || rows[i+1].off != p.off {
			s.off.After = &rows[i].off
			done, _ = json.Marshal(s.off)
			k = 0
		}
		recs[i] = connectors.Record{Event: ev, Partition: s.partition, Offset: string(done)}
	}
	return recs, nil
}

func (t *SourceTask) subject(row map[string]any) string {
	if len(t.pk) == 1 {
		return fmt.Sprint(row[t.pk[0]])
	}
	m := make(map[string]any, len(t.pk))
	for _, k := range t.pk {
		m[k] = row[k]
	}
	b, _ := json.Marshal(m)
	return string(b)
}
