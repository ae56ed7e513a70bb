package jdbc

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SinkTask = (*SinkTask)(nil)
)

// SinkTask writes the events of each Put in one transaction, consecutive
// inserts of the same columns as multi-row INSERTs.
type SinkTask struct {
	d       dialect
	db      *sql.DB
	table   string
	pk      []string
	upsert  bool
	create  bool
	deletes bool
	mapping map[string]string
	created bool
}

// Start opens the database.
func (t *SinkTask) Start(ctx context.Context, cfg connectors.Config) error {
	d, db, err := open(ctx, cfg.String(FieldURL))
	if err != nil {
		return err
	}
	t.d, t.db = d, db
	t.table = cfg.String(FieldTable)
	t.pk = cfg.Strings(FieldPKFields)
	t.upsert = cfg.String(FieldInsertMode) == InsertModeUpsert
	t.create = cfg.Bool(FieldAutoCreate)
	t.deletes = cfg.Bool(FieldDeleteEnabled)
	t.mapping = cfg.Map(FieldFieldsMapping)
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
	del  bool
	cols []string
	vals []any
}

// Put writes events in one transaction. Events that cannot become a row
// (data not a JSON object, a tombstone without a usable key) fail for good
// alone; a database error fails the batch, which is retried.
func (t *SinkTask) Put(ctx context.Context, events []event.Event) error {
	ops := make([]*op, len(events))
	failed := map[int]error{}
	for i := range events {
		o, err := t.toOp(&events[i])
		if err != nil {
			failed[i] = fmt.Errorf("event %q: %w: %w", events[i].ID(), err, bridge.ErrPermanent)
			continue
		}
		ops[i] = o
	}
	if len(failed) == len(events) {
		return &connectors.PartialError{Failed: failed}
	}
	if t.create && !t.created {
		for _, o := range ops {
			if o != nil && !o.del {
				if _, err := t.db.ExecContext(ctx, t.d.createSQL(t.table, o.cols, o.vals, t.pk)); err != nil {
					return fmt.Errorf("creating table %q: %w", t.table, err)
				}
				t.created = true
				break
			}
		}
	}
	if err := t.write(ctx, ops); err != nil {
		return err
	}
	if len(failed) > 0 {
		return &connectors.PartialError{Failed: failed}
	}
	return nil
}

func (t *SinkTask) write(ctx context.Context, ops []*op) error {
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning a transaction: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	stmts := map[string]*sql.Stmt{}
	for _, group := range t.statements(ops) {
		var q string
		var args []any
		if o := group[0]; o.del {
			q, args = t.d.deleteSQL(t.table, t.pk), o.vals
		} else {
			q = t.d.insertSQL(t.table, o.cols, t.pk, t.upsert, len(group))
			args = make([]any, 0, len(group)*len(o.cols))
			for _, g := range group {
				args = append(args, g.vals...)
			}
		}
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
		case o.del:
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
	data := bytes.TrimSpace(e.Data())
	if len(data) == 0 || string(data) == "null" {
		if !t.deletes {
			return nil, fmt.Errorf("no data (a tombstone) and delete.enabled is off")
		}
		key, err := t.keyOf(e.Subject())
		if err != nil {
			return nil, err
		}
		return &op{del: true, vals: key}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("data is not a JSON object: %v", err)
	}
	o := &op{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		col := k
		if len(t.mapping) > 0 {
			c, ok := t.mapping[k]
			if !ok {
				continue
			}
			col = c
		}
		v, err := sqlValue(m[k])
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
		o.cols = append(o.cols, col)
		o.vals = append(o.vals, v)
	}
	if len(o.cols) == 0 {
		return nil, fmt.Errorf("no field of the data maps to a column")
	}
	return o, nil
}

// keyOf reads a tombstone's key from its subject.
func (t *SinkTask) keyOf(subject string) ([]any, error) {
	if subject == "" {
		return nil, fmt.Errorf("a tombstone without a subject (the key)")
	}
	if len(t.pk) == 1 {
		return []any{subject}, nil
	}
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(subject))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("the subject of a tombstone is not a JSON object of %v", t.pk)
	}
	out := make([]any, len(t.pk))
	for i, k := range t.pk {
		v, ok := m[k]
		if !ok {
			return nil, fmt.Errorf("the subject of a tombstone has no %q", k)
		}
		var err error
		if out[i], err = sqlValue(v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sqlValue turns a decoded JSON value into a bind parameter: integers
// int64, other numbers float64, objects and arrays their JSON text.
func sqlValue(v any) (any, error) {
	switch v := v.(type) {
	case nil, bool, string:
		return v, nil
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n, nil
		}
		f, err := v.Float64()
		if err != nil {
			return nil, err
		}
		return f, nil
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return string(b), nil
	}
}
