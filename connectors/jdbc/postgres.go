package jdbc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
)

// copyMin is the fewest rows of one INSERT that PostgreSQL gets by COPY
// instead: below it, one multi-row INSERT is as fast.
const copyMin = 16

// errNoCopy says a value has no binary form pgx knows: the group is
// written by INSERT, where PostgreSQL parses the text itself.
var errNoCopy = errors.New("no binary form for COPY")

// loadOIDs reads the type of each column for COPY, which sends values in
// PostgreSQL's binary format: the base type of a domain; enums go as their
// text (the same bytes); a column of a type pgx does not know cannot be
// copied.
func (t *SinkTask) loadOIDs(ctx context.Context) error {
	t.oids = map[string]uint32{}
	rows, err := t.db.QueryContext(ctx, `SELECT a.attname, CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE a.atttypid END, ty.typtype
		FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, t.d.quote(t.table))
	if err != nil {
		return fmt.Errorf("reading the column types of %q: %w", t.table, err)
	}
	defer rows.Close()
	types := pgtype.NewMap()
	for rows.Next() {
		var name, kind string
		var oid uint32
		if err := rows.Scan(&name, &oid, &kind); err != nil {
			return fmt.Errorf("reading the column types of %q: %w", t.table, err)
		}
		if _, ok := types.TypeForOID(oid); ok || kind == "e" {
			t.oids[name] = oid
		}
	}
	return rows.Err()
}

// writePostgres writes ops in one transaction over pgx: groups of at
// least copyMin inserts by COPY (upserts: COPY into a temporary table,
// then one INSERT … SELECT … ON CONFLICT), the rest as write does.
func (t *SinkTask) writePostgres(ctx context.Context, ops []*op) error {
	conn, err := t.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connecting to %q: %w", t.table, err)
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		err := pgx.BeginFunc(ctx, pc, func(tx pgx.Tx) error {
			for n, group := range t.statements(ops) {
				if o := group[0]; !o.del && !o.truncate && len(group) >= copyMin {
					err := t.copyGroup(ctx, tx, group, n)
					if !errors.Is(err, errNoCopy) {
						if err != nil {
							return fmt.Errorf("writing to %q: %w", t.table, err)
						}
						continue
					}
				}
				q, args := t.statement(group)
				if _, err := tx.Exec(ctx, q, args...); err != nil {
					return fmt.Errorf("writing to %q: %w", t.table, err)
				}
			}
			return nil
		})
		if err != nil && !strings.Contains(err.Error(), t.table) {
			err = fmt.Errorf("committing to %q: %w", t.table, err)
		}
		return err
	})
}

// copyGroup writes a group of inserts of the same columns by COPY.
func (t *SinkTask) copyGroup(ctx context.Context, tx pgx.Tx, group []*op, n int) error {
	cols := group[0].cols
	types := tx.Conn().TypeMap()
	rows := make([][]any, len(group))
	for i, o := range group {
		r := make([]any, len(cols))
		for j, v := range o.vals {
			x, err := t.copyValue(types, cols[j], v)
			if err != nil {
				return err
			}
			r[j] = x
		}
		rows[i] = r
	}
	t.copies++
	if !t.upsert {
		_, err := tx.CopyFrom(ctx, pgx.Identifier(strings.Split(t.table, ".")), cols, pgx.CopyFromRows(rows))
		return err
	}
	stage := fmt.Sprintf("meshd_stage_%d", n)
	quoted := strings.Join(t.d.quoteAll(cols), ", ")
	if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TEMPORARY TABLE %s ON COMMIT DROP AS SELECT %s FROM %s WITH NO DATA",
		stage, quoted, t.d.quote(t.table))); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{stage}, cols, pgx.CopyFromRows(rows)); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, t.d.insertFrom(t.table, cols, "SELECT "+quoted+" FROM "+stage, t.pk, true, t.version))
	return err
}

// copyValue turns a value as write binds it (text PostgreSQL parses, or
// bytes, integers, booleans) into one pgx writes in binary, parsed by
// pgx's own text decoder of the column's type.
func (t *SinkTask) copyValue(types *pgtype.Map, col string, v any) (any, error) {
	oid, ok := t.oids[col]
	if !ok {
		return nil, errNoCopy
	}
	typ, known := types.TypeForOID(oid)
	s, ok := v.(string)
	if !ok {
		if n, isInt := v.(int64); isInt && known && (typ.Name == "int2" && (n < math.MinInt16 || n > math.MaxInt16) ||
			typ.Name == "int4" && (n < math.MinInt32 || n > math.MaxInt32)) {
			return nil, errNoCopy // out of range: PostgreSQL says so, for this row
		}
		return v, nil // nil, []byte, int64, bool
	}
	if !known {
		return s, nil // an enum: its text is its binary form
	}
	switch typ.Name {
	case "json", "jsonb":
		return json.RawMessage(s), nil
	case "timestamptz", "timestamp":
		if ts, ok := parseTime(s); ok {
			if typ.Name == "timestamp" {
				ts = ts.UTC()
			}
			return ts, nil
		}
	case "text", "varchar", "bpchar", "name":
		return s, nil
	}
	var x any
	if err := types.Scan(oid, pgx.TextFormatCode, []byte(s), &x); err != nil {
		return nil, errNoCopy // PostgreSQL's own parser says what is wrong, by INSERT
	}
	if ts, ok := x.(time.Time); ok && typ.Name == "date" {
		return ts, nil
	}
	return x, nil
}
