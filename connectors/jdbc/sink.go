package jdbc

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/jsonscan"
	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SinkTask       = (*SinkTask)(nil)
	_ connectors.PositionedSink = (*SinkTask)(nil)
)

// reloadEvery bounds how often the sink rereads its table's columns when
// an event names a field the table has no column for.
const reloadEvery = time.Second

// SinkTask writes the events of each Put in one transaction, consecutive
// inserts of the same columns as multi-row INSERTs. Values are converted
// to the type of their column first (see sinkColumn.value), so a value that
// does not fit fails its event alone.
//
// A write the database refuses because of a row (bad data, a constraint)
// is split in halves, and those again, until only the refused rows fail
// (for good; the others are written). A database that cannot take writes
// at all (down, out of connections, the table or a grant missing) holds
// the batch: nothing is taken meanwhile and no attempt is spent.
type SinkTask struct {
	d        dialect
	db       *sql.DB
	table    string
	pk       []string
	upsert   bool
	create   bool
	types    map[string]string // auto.create.types
	deletes  bool
	truncate bool
	mapping  map[string]string
	version  string // version.column
	deleted  string // deleted.column
	// ordered: upserts or deletes without a version column, whose order
	// matters: every failure but a refused row holds the batch, so a
	// retry never lands after a later write of its key.
	ordered bool

	cols    map[string]*sinkColumn // nil: the table does not exist (yet)
	oids    map[string]uint32      // PostgreSQL: the type of each column COPY can write
	copies  int                    // groups written by COPY (for tests)
	loaded  time.Time
	unknown []map[string]any // fields without a column of the events being prepared, for auto.create
}

// Start opens the database and reads the table's columns. A table that
// does not exist fails the start (its reason in the task's status) unless
// auto.create makes it.
func (t *SinkTask) Start(ctx context.Context, cfg connectors.Config) error {
	t.table = cfg.String(FieldTable)
	t.pk = cfg.Strings(FieldPKFields)
	t.upsert = cfg.String(FieldInsertMode) == InsertModeUpsert
	t.create = cfg.Bool(FieldAutoCreate)
	t.types = cfg.Map(FieldAutoCreateTypes)
	t.deletes = cfg.Bool(FieldDeleteEnabled)
	t.truncate = cfg.Bool(FieldTruncateEnabled)
	t.mapping = cfg.Map(FieldFieldsMapping)
	t.version = cfg.String(FieldVersionColumn)
	t.deleted = cfg.String(FieldDeletedColumn)
	t.ordered = ordered(cfg)
	d, db, err := open(ctx, cfg.String(FieldURL))
	if err != nil {
		return err
	}
	t.d, t.db = d, db
	if err := t.load(ctx); err != nil {
		t.Stop(ctx) //nolint:errcheck // the load error says more
		return err
	}
	if t.cols == nil && !t.create {
		t.Stop(ctx) //nolint:errcheck
		return fmt.Errorf("%s: table %q does not exist (create it, or set %s)", FieldTable, t.table, FieldAutoCreate)
	}
	if t.cols != nil {
		for _, k := range append(slices.Clone(t.pk), t.version, t.deleted) {
			if _, ok := t.cols[k]; k != "" && !ok {
				field := FieldPKFields
				switch k {
				case t.version:
					field = FieldVersionColumn
				case t.deleted:
					field = FieldDeletedColumn
				}
				t.Stop(ctx) //nolint:errcheck
				return fmt.Errorf("table %q has no column %q (named by %s)", t.table, k, field)
			}
		}
	}
	return nil
}

// ordered reports whether a sink config writes keys whose order matters
// without a version column to guard it.
func ordered(cfg connectors.Config) bool {
	return (cfg.String(FieldInsertMode) == InsertModeUpsert || cfg.Bool(FieldDeleteEnabled)) && cfg.String(FieldVersionColumn) == ""
}

// load (re)reads the table's columns.
func (t *SinkTask) load(ctx context.Context) error {
	cols, err := t.d.loadColumns(ctx, t.db, t.table)
	if err != nil {
		return err
	}
	t.cols = cols
	if len(cols) == 0 {
		t.cols = nil
	}
	t.loaded = time.Now()
	if t.d == dialectPostgres && t.cols != nil {
		return t.loadOIDs(ctx)
	}
	return nil
}

// Stop closes the database. Idempotent.
func (t *SinkTask) Stop(context.Context) error {
	if t.db == nil {
		return nil
	}
	err := t.db.Close()
	t.db = nil
	return err
}

// op is one event turned into a statement.
type op struct {
	event    int // index in the Put
	del      bool
	truncate bool
	cols     []string
	vals     []any
	raw      []any // the JSON values, for auto.create
	seq      uint64
}

// errMissingColumn marks a field the table has no column for.
var errMissingColumn = errors.New("no such column")

// Put writes events (see PutPositions); without positions there is no
// version to write.
func (t *SinkTask) Put(ctx context.Context, events []event.Event) error {
	return t.PutPositions(ctx, events, nil)
}

// PutPositions writes events in order, in as few transactions as the
// database lets it (see SinkTask). pos gives each event's mesh sequence,
// written to version.column.
func (t *SinkTask) PutPositions(ctx context.Context, events []event.Event, pos []connectors.Position) error {
	if t.version != "" && len(pos) != len(events) {
		return bridge.PermanentError(fmt.Errorf("%s needs the events' mesh positions", FieldVersionColumn))
	}
	ops, failed, err := t.prepare(ctx, events, pos)
	if err != nil {
		return err
	}
	t.writeAll(ctx, ops, failed)
	if len(failed) > 0 {
		return &connectors.PartialError{Failed: failed}
	}
	return nil
}

// prepare turns events into ops. An event that cannot become a row fails
// for good; one naming a field the table lacks waits (the table may get
// the column: an ALTER TABLE, or auto.create adding it).
func (t *SinkTask) prepare(ctx context.Context, events []event.Event, pos []connectors.Position) ([]*op, map[int]error, error) {
	for try := 0; ; try++ {
		ops, failed, missing := t.ops(events, pos)
		if len(missing) == 0 {
			return ops, failed, nil
		}
		switch {
		case try == 0 && t.create:
			if err := t.evolve(ctx, ops, missing); err != nil {
				return nil, nil, t.failure(err)
			}
			continue
		case try == 0 && time.Since(t.loaded) > reloadEvery:
			if err := t.load(ctx); err != nil {
				return nil, nil, t.failure(err)
			}
			continue
		}
		for i, err := range missing {
			failed[i] = bridge.UnavailableError(err, 0)
		}
		kept := ops[:0]
		for _, o := range ops {
			if _, ok := failed[o.event]; !ok {
				kept = append(kept, o)
			}
		}
		if t.ordered {
			// Nothing after a waiting event may be written before it.
			first := slices.Min(slices.Collect(maps.Keys(missing)))
			for _, o := range kept {
				if o.event > first {
					failed[o.event] = bridge.UnavailableError(fmt.Errorf("waiting for event %d (the write order of keys)", first), 0)
				}
			}
			kept = slices.DeleteFunc(kept, func(o *op) bool { return o.event > first })
		}
		return kept, failed, nil
	}
}

// ops converts every event; missing holds those naming a field without a
// column.
func (t *SinkTask) ops(events []event.Event, pos []connectors.Position) (ops []*op, failed, missing map[int]error) {
	failed, missing = map[int]error{}, map[int]error{}
	t.unknown = nil
	for i := range events {
		o, err := t.toOp(&events[i])
		switch {
		case errors.Is(err, errMissingColumn):
			missing[i] = fmt.Errorf("event %q: %w", events[i].ID(), err)
			continue
		case err != nil:
			failed[i] = bridge.PermanentError(fmt.Errorf("event %q: %w", events[i].ID(), err))
			continue
		}
		o.event = i
		if pos != nil {
			o.seq = pos[i].Sequence
		}
		tomb := o.del
		if t.deleted != "" && o.del {
			// A soft delete: the key's row marked deleted (kept, with
			// its version, so no older write brings it back).
			o.del = false
			o.cols = slices.Clone(t.pk)
			o.raw = make([]any, len(t.pk))
		}
		if t.deleted != "" && !o.truncate {
			o.cols = append(o.cols, t.deleted)
			o.vals = append(o.vals, t.d.boolValue(tomb))
			o.raw = append(o.raw, nil)
		}
		if t.version != "" && !o.del && !o.truncate {
			o.cols = append(o.cols, t.version)
			o.vals = append(o.vals, int64(o.seq))
			o.raw = append(o.raw, nil)
		}
		ops = append(ops, o)
	}
	return ops, failed, missing
}

// writeAll writes ops in order. A write refused because of a row is split
// until the refused rows are alone; they fail for good. Any other failure
// fails the ops not written yet, in order: held while the database is
// down (and, when ordered, always), otherwise retried.
func (t *SinkTask) writeAll(ctx context.Context, ops []*op, failed map[int]error) {
	if len(ops) == 0 {
		return
	}
	pending := [][]*op{ops}
	for len(pending) > 0 {
		cur := pending[0]
		pending = pending[1:]
		err := t.write(ctx, cur)
		if err == nil {
			continue
		}
		if ctx.Err() == nil && t.d.classify(err) == failRow {
			if len(cur) > 1 {
				mid := len(cur) / 2
				pending = append([][]*op{cur[:mid], cur[mid:]}, pending...)
				continue
			}
			failed[cur[0].event] = bridge.PermanentError(fmt.Errorf("the database refused the row: %w", err))
			continue
		}
		err = t.failure(err)
		for _, p := range append(pending, cur) {
			for _, o := range p {
				failed[o.event] = err
			}
		}
		return
	}
}

// failure classifies an error of the database as a whole: held while it
// cannot take writes (and for an ordered sink, whatever it is), else
// retried.
func (t *SinkTask) failure(err error) error {
	if t.ordered || t.d.classify(err) == failDown {
		return bridge.UnavailableError(err, 0)
	}
	return err
}

// evolve creates the table (auto.create) or adds the columns events name
// that it lacks, typed from auto.create.types or the first value seen.
func (t *SinkTask) evolve(ctx context.Context, ops []*op, missing map[int]error) error {
	if len(missing) == 0 {
		return nil
	}
	// The first non-null value of each field, from every event.
	sample := map[string]any{}
	var order []string
	for _, o := range ops {
		for i, c := range o.cols {
			if _, ok := sample[c]; !ok || sample[c] == nil {
				if !ok {
					order = append(order, c)
				}
				sample[c] = o.raw[i]
			}
		}
	}
	for _, o := range t.unknown {
		for _, c := range slices.Sorted(maps.Keys(o)) {
			if _, ok := sample[c]; !ok || sample[c] == nil {
				if !ok {
					order = append(order, c)
				}
				sample[c] = o[c]
			}
		}
	}
	t.unknown = nil
	for col, typ := range map[string]string{t.version: "BIGINT", t.deleted: "BOOLEAN"} {
		if _, ok := sample[col]; col == "" || ok {
			continue
		}
		order = append(order, col)
		sample[col] = nil
		if _, ok := t.types[col]; !ok {
			t.types = maps.Clone(t.types)
			if t.types == nil {
				t.types = map[string]string{}
			}
			t.types[col] = typ
		}
	}
	if t.cols == nil {
		vals := make([]any, len(order))
		for i, c := range order {
			vals[i] = sample[c]
		}
		if _, err := t.db.ExecContext(ctx, t.d.createSQL(t.table, order, vals, t.pk, t.types)); err != nil {
			return fmt.Errorf("creating table %q: %w", t.table, err)
		}
	} else {
		for _, c := range order {
			if _, ok := t.cols[c]; ok {
				continue
			}
			q := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", t.d.quote(t.table), t.d.quote(c), t.d.columnType(c, sample[c], false, t.types))
			if _, err := t.db.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("adding column %q to %q: %w", c, t.table, err)
			}
		}
	}
	return t.load(ctx)
}

// write writes ops in one transaction.
func (t *SinkTask) write(ctx context.Context, ops []*op) error {
	if t.d == dialectPostgres {
		return t.writePostgres(ctx, ops)
	}
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning a transaction: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	stmts := map[string]*sql.Stmt{}
	for _, group := range t.statements(ops) {
		q, args := t.statement(group)
		st, ok := stmts[q]
		if !ok {
			if st, err = tx.PrepareContext(ctx, q); err != nil {
				return fmt.Errorf("preparing a statement on %q: %w", t.table, err)
			}
			stmts[q] = st
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("writing to %q: %w", t.table, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing to %q: %w", t.table, err)
	}
	return nil
}

// statement is the SQL and bind parameters of one group of statements().
func (t *SinkTask) statement(group []*op) (q string, args []any) {
	switch o := group[0]; {
	case o.truncate && t.deleted != "":
		v, d := t.d.quote(t.version), t.d.quote(t.deleted)
		q = fmt.Sprintf("UPDATE %s SET %s = %s, %s = %s WHERE %s IS NULL OR %s < %s", t.d.quote(t.table),
			d, t.d.placeholder(1), v, t.d.placeholder(2), v, v, t.d.placeholder(3))
		args = []any{t.d.boolValue(true), int64(o.seq), int64(o.seq)}
	case o.truncate:
		q = "DELETE FROM " + t.d.quote(t.table)
		if t.version != "" {
			// Only rows written before the TRUNCATE: one redelivered
			// after a crash must not wipe later rows.
			v := t.d.quote(t.version)
			q += fmt.Sprintf(" WHERE %s IS NULL OR %s < %s", v, v, t.d.placeholder(1))
			args = []any{int64(o.seq)}
		}
	case o.del:
		q, args = t.d.deleteSQL(t.table, t.pk, t.version), o.vals
		if t.version != "" {
			args = append(slices.Clone(args), int64(o.seq))
		}
	default:
		q = t.d.insertSQL(t.table, o.cols, t.pk, t.upsert, t.version, len(group))
		args = make([]any, 0, len(group)*len(o.cols))
		for _, g := range group {
			args = append(args, g.vals...)
		}
	}
	return q, args
}

// maxParams bounds the bind parameters of one statement: SQLite's limit,
// the lowest of the three (PostgreSQL and MySQL allow 65535).
const maxParams = 32766

// statements groups ops, in their order, into the statements write runs:
// a delete alone; consecutive inserts of the same columns in one multi-row
// INSERT of at most maxParams bind parameters, which with upsert holds a
// key once (PostgreSQL refuses to update a row twice in one statement).
func (t *SinkTask) statements(ops []*op) [][]*op {
	var out [][]*op
	var cur []*op
	keys := map[string]bool{} // of cur, with upsert
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
		}
		cur = nil
		clear(keys)
	}
	for _, o := range ops {
		switch {
		case o == nil:
			continue
		case o.del || o.truncate:
			flush()
			out = append(out, []*op{o})
			continue
		}
		var key string
		if t.upsert {
			key = t.key(o)
		}
		if len(cur) > 0 && (!slices.Equal(cur[0].cols, o.cols) || (len(cur)+1)*len(o.cols) > maxParams || keys[key]) {
			flush()
		}
		cur = append(cur, o)
		if t.upsert {
			keys[key] = true
		}
	}
	flush()
	return out
}

// key is the text of an insert's pk.fields values.
func (t *SinkTask) key(o *op) string {
	var b strings.Builder
	for _, k := range t.pk {
		if i := slices.Index(o.cols, k); i >= 0 {
			fmt.Fprint(&b, o.vals[i])
		}
		b.WriteByte(0)
	}
	return b.String()
}

func (t *SinkTask) toOp(e *event.Event) (*op, error) {
	if cdcop, _ := e.Extensions()["cdcop"].(string); cdcop == "t" {
		if !t.truncate {
			return nil, fmt.Errorf("a TRUNCATE of the source table (cdcop t) and %s is off", FieldTruncateEnabled)
		}
		return &op{truncate: true}, nil
	}
	data := bytes.TrimSpace(e.Data())
	if len(data) == 0 || string(data) == "null" {
		if !t.deletes {
			return nil, fmt.Errorf("no data (a tombstone) and %s is off", FieldDeleteEnabled)
		}
		key, err := t.keyOf(e.Subject())
		if err != nil {
			return nil, err
		}
		return &op{del: true, vals: key}, nil
	}
	var buf [16]jsonscan.Member // events have few fields
	fields, err := jsonscan.Members(buf[:0], data)
	if err != nil {
		return nil, fmt.Errorf("data is not a JSON object: %v", err)
	}
	n := len(fields) + 2 // and ops' version and deleted columns
	o := &op{cols: make([]string, 0, n), vals: make([]any, 0, n), raw: make([]any, 0, n)}
	var unknown map[string]any
	for _, f := range fields { // sorted by name: ops of the same fields get the same columns
		var c *sinkColumn
		var col string
		if len(t.mapping) > 0 {
			var ok bool
			if col, ok = t.mapping[string(f.Name)]; !ok {
				continue
			}
			c = t.cols[col]
		} else if c = t.cols[string(f.Name)]; c != nil {
			col = c.name
		} else {
			col = string(f.Name)
		}
		if col != "" && (col == t.version || col == t.deleted) {
			continue // written by the sink
		}
		raw, err := jsonscan.Decode(f.Value)
		if err != nil {
			return nil, fmt.Errorf("field %q: %v", f.Name, err)
		}
		if c == nil {
			if unknown == nil {
				unknown = map[string]any{}
			}
			unknown[col] = raw
			continue
		}
		var v any
		if c.fam == famJSON && raw != nil {
			v, err = jsonText(rawJSON(f.Value))
		} else {
			v, err = c.value(t.d, raw)
		}
		if err != nil {
			return nil, fmt.Errorf("field %q → column %q (%s): %w", f.Name, col, c.typ, err)
		}
		o.cols = append(o.cols, col)
		o.vals = append(o.vals, v)
		o.raw = append(o.raw, raw)
	}
	if len(unknown) > 0 {
		t.unknown = append(t.unknown, unknown)
		return nil, fmt.Errorf("fields %v: %w in %q", slices.Sorted(maps.Keys(unknown)), errMissingColumn, t.table)
	}
	if len(o.cols) == 0 {
		return nil, fmt.Errorf("no field of the data maps to a column")
	}
	for _, k := range t.pk {
		if i := slices.Index(o.cols, k); t.upsert && (i < 0 || o.vals[i] == nil) {
			return nil, fmt.Errorf("no value for the key column %q", k)
		}
	}
	return o, nil
}

// keyOf reads a tombstone's key from its subject, converted to the key
// columns' types.
func (t *SinkTask) keyOf(subject string) ([]any, error) {
	if subject == "" {
		return nil, fmt.Errorf("a tombstone without a subject (the key)")
	}
	raw := map[string]any{}
	if len(t.pk) == 1 {
		raw[t.pk[0]] = subject
	} else {
		dec := json.NewDecoder(strings.NewReader(subject))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("the subject of a tombstone is not a JSON object of %v", t.pk)
		}
	}
	out := make([]any, len(t.pk))
	for i, k := range t.pk {
		v, ok := raw[k]
		if !ok || v == nil {
			return nil, fmt.Errorf("the subject of a tombstone has no %q", k)
		}
		c, ok := t.cols[k]
		if !ok {
			out[i] = v
			continue
		}
		var err error
		if out[i], err = c.value(t.d, v); err != nil {
			return nil, fmt.Errorf("key %q of the tombstone: %w", k, err)
		}
	}
	return out, nil
}

// rawJSON is JSON text kept as it came (its key order, its numbers) for a
// JSON column.
type rawJSON json.RawMessage
