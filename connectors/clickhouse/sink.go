package clickhouse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/jsonscan"
	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SinkTask       = (*SinkTask)(nil)
	_ connectors.PositionedSink = (*SinkTask)(nil)
)

// reloadEvery bounds how often a sink rereads its table's columns after a
// field without a column or a failed insert (the table may have changed).
const reloadEvery = 5 * time.Second

// SinkTask inserts the events of each Put as rows of one table.
type SinkTask struct {
	conn        driver.Conn
	table       string // as configured, for messages
	from        string // quoted
	mapping     map[string]string
	skipUnknown bool
	cols        map[string]*sinkColumn
	loaded      time.Time

	// A replica of a keyed table (see the doc): pk, tombstones as rows
	// marked deleted, each row versioned by its event's mesh sequence.
	pk                []string
	deletes, truncate bool
	version, deleted  string
}

// sinkColumn is a column of the table with its conversion.
type sinkColumn struct {
	column
	index   int // position in the table
	conv    convert
	convErr error // set when meshd does not write the column's type
}

// errUnknownField marks data naming no column: the table may have
// changed since the columns were read.
var errUnknownField = errors.New("no column of that name")

// Start connects and reads the table's columns.
func (t *SinkTask) Start(ctx context.Context, cfg connectors.Config) error {
	conn, err := open(ctx, cfg.String(FieldURL))
	if err != nil {
		return err
	}
	t.conn = conn
	t.table = cfg.String(FieldTable)
	t.from = quote(t.table)
	t.mapping = cfg.Map(FieldFieldsMapping)
	t.skipUnknown = cfg.Bool(FieldSkipUnknownFields)
	t.pk = cfg.Strings(FieldPKFields)
	t.deletes, t.truncate = cfg.Bool(FieldDeleteEnabled), cfg.Bool(FieldTruncateEnabled)
	t.version, t.deleted = cfg.String(FieldVersionColumn), cfg.String(FieldDeletedColumn)
	if err := t.checkTable(ctx); err != nil {
		_ = t.Stop(ctx)
		return err
	}
	return nil
}

// checkTable reads the table's columns and checks fields.mapping against
// them.
func (t *SinkTask) checkTable(ctx context.Context) error {
	if err := t.load(ctx); err != nil {
		return err
	}
	for field, col := range t.mapping {
		c, ok := t.cols[col]
		if !ok {
			return fmt.Errorf("%s maps field %q to %q, which is not a column of %q that an insert can name", FieldFieldsMapping, field, col, t.table)
		}
		if c.convErr != nil {
			return fmt.Errorf("%s maps field %q to %q: %w", FieldFieldsMapping, field, col, c.convErr)
		}
	}
	for _, col := range append(slices.Clone(t.pk), t.version, t.deleted) {
		if c, ok := t.cols[col]; col != "" && (!ok || c.convErr != nil) {
			return fmt.Errorf("table %q has no column %q that an insert can name (named by %s, %s or %s)", t.table, col, FieldPKFields, FieldVersionColumn, FieldDeletedColumn)
		}
	}
	return nil
}

// load (re)reads the columns of the table.
func (t *SinkTask) load(ctx context.Context) error {
	cols, err := resultColumns(ctx, t.conn, t.from)
	if err != nil {
		return fmt.Errorf("reading the columns of %q: %w", t.table, err)
	}
	t.cols = make(map[string]*sinkColumn, len(cols))
	for i, c := range cols {
		sc := &sinkColumn{column: c, index: i}
		sc.conv, sc.convErr = converter(c.typ, c.scan)
		t.cols[c.name] = sc
	}
	t.loaded = time.Now()
	return nil
}

// Stop closes the connection. Idempotent.
func (t *SinkTask) Stop(context.Context) error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	return err
}

// row is one event as values of some columns, in table order.
type row struct {
	event    int // index in the Put
	cols     []*sinkColumn
	vals     []any
	seq      uint64
	truncate bool // a TRUNCATE: no values
}

// Put inserts the events (see PutPositions); without positions there is
// no version to write.
func (t *SinkTask) Put(ctx context.Context, events []event.Event) error {
	return t.PutPositions(ctx, events, nil)
}

// PutPositions inserts the events, one INSERT block per set of columns the
// events carry (columns an event leaves out get the table's defaults). An
// event that cannot become a row fails for good alone; a failed insert
// fails the events of its block, which are retried (held while the server
// cannot be reached); blocks sent are acked. A TRUNCATE splits the batch:
// the rows before it are sent first.
func (t *SinkTask) PutPositions(ctx context.Context, events []event.Event, pos []connectors.Position) error {
	if t.version != "" && len(pos) != len(events) {
		return bridge.PermanentError(fmt.Errorf("%s needs the events' mesh positions", FieldVersionColumn))
	}
	rows, failed := t.rows(events, pos)
	if t.unknownFields(failed) && time.Since(t.loaded) > reloadEvery {
		if err := t.load(ctx); err != nil {
			return failure(err)
		}
		rows, failed = t.rows(events, pos)
	}
	for i, err := range failed {
		failed[i] = fmt.Errorf("event %q: %w: %w", events[i].ID(), err, bridge.ErrPermanent)
	}
	var sendErr error
	fail := func(rs []row, err error) {
		sendErr = err
		for _, r := range rs {
			if _, ok := failed[r.event]; !ok {
				failed[r.event] = err
			}
		}
	}
	for from := 0; from < len(rows); {
		to := slices.IndexFunc(rows[from:], func(r row) bool { return r.truncate })
		if to < 0 {
			to = len(rows)
		} else {
			to += from
		}
		for _, block := range groupByColumns(rows[from:to]) {
			if err := t.insert(ctx, block, failed); err != nil {
				fail(block, failure(err))
			}
		}
		if to == len(rows) {
			break
		}
		if sendErr != nil {
			fail(rows[to:], sendErr) // nothing after a failed block passes it
			break
		}
		if err := t.markOlderDeleted(ctx, rows[to].seq); err != nil {
			fail(rows[to:], failure(err))
			break
		}
		from = to + 1
	}
	if sendErr != nil && time.Since(t.loaded) > reloadEvery {
		_ = t.load(ctx) // a changed table; the next try uses what is there now
	}
	if len(failed) > 0 {
		return &connectors.PartialError{Failed: failed}
	}
	return nil
}

func (t *SinkTask) unknownFields(failed map[int]error) bool {
	for _, err := range failed {
		if errors.Is(err, errUnknownField) {
			return true
		}
	}
	return false
}

// rows converts events to rows; failed holds why the others cannot be.
func (t *SinkTask) rows(events []event.Event, pos []connectors.Position) ([]row, map[int]error) {
	rows := make([]row, 0, len(events))
	failed := map[int]error{}
	for i := range events {
		var seq uint64
		if pos != nil {
			seq = pos[i].Sequence
		}
		r, err := t.toReplicaRow(&events[i], seq)
		if err != nil {
			failed[i] = err
			continue
		}
		r.event, r.seq = i, seq
		rows = append(rows, r)
	}
	return rows, failed
}

// toReplicaRow is toRow plus what a replica writes: the version and
// deleted columns, tombstones as rows of their key, TRUNCATE markers.
func (t *SinkTask) toReplicaRow(e *event.Event, seq uint64) (row, error) {
	if op, _ := e.Extensions()["cdcop"].(string); op == "t" {
		if !t.truncate {
			return row{}, fmt.Errorf("a TRUNCATE of the source table (cdcop t) and %s is off", FieldTruncateEnabled)
		}
		return row{truncate: true}, nil
	}
	var r row
	var err error
	tomb := len(bytes.TrimSpace(e.Data())) == 0 || string(bytes.TrimSpace(e.Data())) == "null"
	if tomb && t.deletes {
		r, err = t.keyRow(e.Subject())
	} else {
		r, err = t.toRow(e)
	}
	if err != nil {
		return row{}, err
	}
	extra := map[string]string{}
	if t.version != "" {
		extra[t.version] = strconv.FormatUint(seq, 10)
	}
	if t.deleted != "" {
		extra[t.deleted] = map[bool]string{true: "1", false: "0"}[tomb]
	}
	for col, v := range extra {
		sc := t.cols[col]
		x, err := sc.conv(json.Number(v))
		if err != nil {
			return row{}, fmt.Errorf("column %q: %w", col, err)
		}
		if i := slices.Index(r.cols, sc); i >= 0 {
			r.vals[i] = x // the sink's value, not the data's
			continue
		}
		r.cols = append(r.cols, sc)
		r.vals = append(r.vals, x)
	}
	sortRow(&r)
	return r, nil
}

// keyRow is the row of a tombstone: its key, from the event subject (one
// key column: the value; several: a JSON object).
func (t *SinkTask) keyRow(subject string) (row, error) {
	if subject == "" {
		return row{}, errors.New("a tombstone without a subject (the key)")
	}
	key := map[string]any{}
	if len(t.pk) == 1 {
		key[t.pk[0]] = subject
	} else {
		dec := json.NewDecoder(strings.NewReader(subject))
		dec.UseNumber()
		if err := dec.Decode(&key); err != nil {
			return row{}, fmt.Errorf("the subject of a tombstone is not a JSON object of %v", t.pk)
		}
	}
	var r row
	for _, k := range t.pk {
		v, ok := key[k]
		if !ok {
			return row{}, fmt.Errorf("the subject of a tombstone has no %q", k)
		}
		sc := t.cols[k]
		x, err := sc.conv(v)
		if err != nil {
			return row{}, fmt.Errorf("key %q of the tombstone: %w", k, err)
		}
		r.cols = append(r.cols, sc)
		r.vals = append(r.vals, x)
	}
	return r, nil
}

// markOlderDeleted applies a TRUNCATE of version seq: every key whose
// latest row is older gets a row marked deleted of that version, so a row
// written before the TRUNCATE and arriving after it stays hidden.
func (t *SinkTask) markOlderDeleted(ctx context.Context, seq uint64) error {
	keys := make([]string, len(t.pk))
	for i, k := range t.pk {
		keys[i] = quoteIdent(k)
	}
	v, d := quoteIdent(t.version), quoteIdent(t.deleted)
	q := fmt.Sprintf("INSERT INTO %s (%s, %s, %s) SELECT %s, toUInt64(%d), toUInt8(1) FROM %s FINAL WHERE %s < %d",
		t.from, strings.Join(keys, ", "), v, d, strings.Join(keys, ", "), seq, t.from, v, seq)
	if err := t.conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("marking the rows of %q deleted (a TRUNCATE): %w", t.table, err)
	}
	return nil
}

func (t *SinkTask) toRow(e *event.Event) (row, error) {
	data := bytes.TrimSpace(e.Data())
	if len(data) == 0 || string(data) == "null" {
		return row{}, errors.New("no data (a tombstone): nothing to insert")
	}
	var buf [16]jsonscan.Member // events have few fields
	fields, err := jsonscan.Members(buf[:0], data)
	if err != nil {
		return row{}, fmt.Errorf("data is not a JSON object: %v", err)
	}
	n := len(fields) + 2 // and toReplicaRow's version and deleted columns
	r := row{cols: make([]*sinkColumn, 0, n), vals: make([]any, 0, n)}
	for _, f := range fields { // by name: the first bad field is always the same
		var sc *sinkColumn
		col := ""
		if len(t.mapping) > 0 {
			var ok bool
			if col, ok = t.mapping[string(f.Name)]; !ok {
				continue
			}
			sc = t.cols[col]
		} else {
			sc = t.cols[string(f.Name)]
		}
		if sc == nil {
			if t.skipUnknown {
				continue
			}
			return row{}, fmt.Errorf("field %q: %w in %q (set %s to ignore such fields)", f.Name, errUnknownField, t.table, FieldSkipUnknownFields)
		}
		if sc.convErr != nil {
			return row{}, fmt.Errorf("field %q: %w", f.Name, sc.convErr)
		}
		v, err := jsonscan.Decode(f.Value)
		if err != nil {
			return row{}, fmt.Errorf("field %q: %v", f.Name, err)
		}
		x, err := sc.conv(v)
		if err != nil {
			return row{}, fmt.Errorf("field %q → column %q (%s): %w", f.Name, sc.name, sc.typ, err)
		}
		r.cols = append(r.cols, sc)
		r.vals = append(r.vals, x)
	}
	if len(r.cols) == 0 {
		return row{}, errors.New("no field of the data maps to a column")
	}
	sortRow(&r)
	return r, nil
}

// sortRow puts a row's columns in table order, in place (an insertion
// sort: rows have few columns, and data usually names them in table order).
func sortRow(r *row) {
	for i := 1; i < len(r.cols); i++ {
		for j := i; j > 0 && r.cols[j].index < r.cols[j-1].index; j-- {
			r.cols[j], r.cols[j-1] = r.cols[j-1], r.cols[j]
			r.vals[j], r.vals[j-1] = r.vals[j-1], r.vals[j]
		}
	}
}

// groupByColumns splits rows into blocks of the same columns, in order of
// first appearance.
func groupByColumns(rows []row) [][]row {
	var blocks [][]row
	byKey := map[string]int{}
	last := -1
	for _, r := range rows {
		if last >= 0 && slices.Equal(r.cols, blocks[last][0].cols) {
			blocks[last] = append(blocks[last], r) // the usual case: the columns of the row before
			continue
		}
		var key strings.Builder
		for _, c := range r.cols {
			key.WriteString(strconv.Itoa(c.index))
			key.WriteByte(',')
		}
		i, ok := byKey[key.String()]
		if !ok {
			i = len(blocks)
			byKey[key.String()] = i
			blocks = append(blocks, nil)
		}
		blocks[i] = append(blocks[i], r)
		last = i
	}
	return blocks
}

// insert sends one block. A row the driver refuses (which the conversions
// should have caught) fails for good and the block is rebuilt without it:
// the driver refuses a whole block after one bad value.
func (t *SinkTask) insert(ctx context.Context, block []row, failed map[int]error) error {
	names := make([]string, len(block[0].cols))
	for i, c := range block[0].cols {
		names[i] = quoteIdent(c.name)
	}
	q := "INSERT INTO " + t.from + " (" + strings.Join(names, ", ") + ")"
	for len(block) > 0 {
		b, err := t.conn.PrepareBatch(ctx, q)
		if err != nil {
			return fmt.Errorf("inserting into %q: %w", t.table, err)
		}
		bad := -1
		for i, r := range block {
			if err := b.Append(r.vals...); err != nil {
				failed[r.event] = fmt.Errorf("the driver refused the row: %w: %w", err, bridge.ErrPermanent)
				bad = i
				break
			}
		}
		if bad < 0 {
			if err := b.Send(); err != nil {
				return fmt.Errorf("inserting into %q: %w", t.table, err)
			}
			return nil
		}
		_ = b.Abort()
		block = slices.Delete(block, bad, bad+1)
	}
	return nil
}
