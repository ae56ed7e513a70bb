// Package jdbc is the jdbc-source and jdbc-sink connectors. Go has no JDBC:
// the name stays because users search for it. Both use database/sql with
// pgx (postgres://), go-sql-driver/mysql (mysql://, MySQL and MariaDB) and
// the pure-Go modernc.org/sqlite (sqlite:///path/file.db); the dialect
// comes from the connection URL.
//
// jdbc-source polls tables (or one query) in the modes of Kafka Connect's
// JDBC source — incrementing, timestamp, timestamp+incrementing and bulk —
// and publishes one CloudEvent per row; its offsets live in the mesh KV
// through the runtime. jdbc-sink inserts, upserts or deletes (on a
// tombstone: an event without data) rows, one transaction per Put.
package jdbc

import (
	"slices"
	"time"

	"github.com/meshd/meshd/connectors"
)

// Connector types.
const (
	SourceType = "jdbc-source"
	SinkType   = "jdbc-sink"
)

// Config field names.
const (
	FieldURL             = "url"
	FieldTable           = "table"
	FieldQuery           = "query"
	FieldMode            = "mode"
	FieldIncrementing    = "incrementing.column.name"
	FieldTimestamp       = "timestamp.column.name"
	FieldTimestampDelay  = "timestamp.delay"
	FieldPKFields        = "pk.fields"
	FieldEventType       = "type"
	FieldPollInterval    = "poll.interval"
	FieldBatchMaxRows    = "batch.max.rows"
	FieldInsertMode      = "insert.mode"
	FieldAutoCreate      = "auto.create"
	FieldDeleteEnabled   = "delete.enabled"
	FieldFieldsMapping   = "fields.mapping"
	FieldVersionColumn   = "version.column"
	FieldAutoCreateTypes = "auto.create.types"
	FieldTruncateEnabled = "truncate.enabled"
	FieldDeletedColumn   = "deleted.column"
)

// Source modes.
const (
	ModeIncrementing          = "incrementing"
	ModeTimestamp             = "timestamp"
	ModeTimestampIncrementing = "timestamp+incrementing"
	ModeBulk                  = "bulk"
)

// Insert modes of the sink.
const (
	InsertModeInsert = "insert"
	InsertModeUpsert = "upsert"
)

// DefaultEventType is the CloudEvents type of source events.
const DefaultEventType = "dev.meshd.jdbc.row"

var urlField = connectors.Field{Name: FieldURL, Type: connectors.TypeString, Required: true, Secret: true,
	Description: "Connection URL: postgres://user:pass@host:port/db?sslmode=disable, mysql://user:pass@host:port/db (MySQL, MariaDB) or sqlite:///path/file.db. Secret: it may hold a password."}

// SourceSpec is the registered spec of jdbc-source.
var SourceSpec = connectors.Spec{
	Name:    SourceType,
	Kind:    connectors.KindSource,
	Summary: "Polls SQL tables or a query (PostgreSQL, MySQL/MariaDB, SQLite) and publishes one CloudEvent per row.",
	Fields: []connectors.Field{
		urlField,
		{Name: FieldTable, Type: connectors.TypeList, Description: "Tables to poll (tasks.max splits the list between tasks). One of table and query."},
		{Name: FieldQuery, Type: connectors.TypeString, Description: "A SELECT to poll instead of tables; the mode's WHERE and ORDER BY are added around it. One of table and query."},
		{Name: FieldMode, Type: connectors.TypeString, Required: true, Enum: []string{ModeIncrementing, ModeTimestamp, ModeTimestampIncrementing, ModeBulk}, Description: "How new rows are found: a strictly increasing column, a last-modified timestamp column, both, or every row at every poll."},
		{Name: FieldIncrementing, Type: connectors.TypeString, Description: "Strictly increasing column (modes incrementing, timestamp+incrementing)."},
		{Name: FieldTimestamp, Type: connectors.TypeString, Description: "Last-modified timestamp column (modes timestamp, timestamp+incrementing)."},
		{Name: FieldTimestampDelay, Type: connectors.TypeDuration, Default: time.Duration(0), Description: "Modes timestamp, timestamp+incrementing: read only rows whose timestamp is older than the database's current time minus this, so rows of transactions still in flight, committed later with older timestamps, are not skipped. 0: no bound."},
		{Name: FieldPKFields, Type: connectors.TypeList, Description: "Primary-key columns, the event subject (several: a JSON object). Default: the incrementing column."},
		{Name: FieldEventType, Type: connectors.TypeString, Default: DefaultEventType, Description: "CloudEvents type of the events."},
		{Name: FieldPollInterval, Type: connectors.TypeDuration, Default: time.Second, Description: "Pause between polls that found nothing (bulk: between full reads)."},
		{Name: FieldBatchMaxRows, Type: connectors.TypeInt, Default: int64(500), Description: "Most rows read per query (incrementing modes)."},
	},
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &SourceTask{} }, connectors.SplitList(FieldTable)) // a query runs in one task
	},
	Check: checkSource,
}

// SinkSpec is the registered spec of jdbc-sink.
var SinkSpec = connectors.Spec{
	Name:    SinkType,
	InOrder: true,
	Kind:    connectors.KindSink,
	Summary: "Writes events' JSON data as rows of an SQL table (PostgreSQL, MySQL/MariaDB, SQLite): insert, upsert, delete on tombstone.",
	Fields: []connectors.Field{
		urlField,
		{Name: FieldTable, Type: connectors.TypeString, Required: true, Description: "Table written (schema.table allowed)."},
		{Name: FieldInsertMode, Type: connectors.TypeString, Default: InsertModeInsert, Enum: []string{InsertModeInsert, InsertModeUpsert}, Description: "insert, or upsert (ON CONFLICT / ON DUPLICATE KEY) on pk.fields."},
		{Name: FieldPKFields, Type: connectors.TypeList, Description: "Primary-key columns: the upsert conflict target, the key of deletes and of auto-created tables."},
		{Name: FieldAutoCreate, Type: connectors.TypeBool, Default: false, Description: "Create the table (IF NOT EXISTS) when it does not exist, and add the columns events name that it lacks: typed by auto.create.types, else numbers NUMERIC (MySQL DECIMAL(65,30)), booleans BOOLEAN, objects and arrays JSONB/JSON, the rest TEXT."},
		{Name: FieldAutoCreateTypes, Type: connectors.TypeMap, Description: "Column → SQL type for auto.create, e.g. {\"id\": \"BIGINT\", \"price\": \"NUMERIC(12,2)\"}."},
		{Name: FieldDeleteEnabled, Type: connectors.TypeBool, Default: false, Description: "Delete the row of a tombstone (an event without data); the key is the event subject (several pk.fields: a JSON object)."},
		{Name: FieldTruncateEnabled, Type: connectors.TypeBool, Default: false, Description: "Delete every row of the table on an event with the extension cdcop=t (mysql-cdc-source's TRUNCATE); off, such an event fails for good."},
		{Name: FieldFieldsMapping, Type: connectors.TypeMap, Description: "Explicit mapping data field → column; only mapped fields are written. Default: every top-level field to the column of its name."},
		{Name: FieldDeletedColumn, Type: connectors.TypeString, Description: "Boolean column: a tombstone marks the key's row deleted (true; written rows false) instead of deleting it, so no older write redelivered after a crash brings it back; needs version.column and insert.mode upsert. Read the table WHERE NOT <column>."},
		{Name: FieldVersionColumn, Type: connectors.TypeString, Description: "Integer column written with each event's mesh sequence: upserts and deletes only move a row forward, so retries and tasks.max > 1 keep the latest write of each key. Without it, upserts and deletes run one task, in order."},
	},
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &SinkTask{} }, splitSink)
	},
	Check: checkSink,
}

func init() {
	connectors.Register(SourceSpec)
	connectors.Register(SinkSpec)
}

func checkURL(cfg connectors.Config) []connectors.FieldError {
	if _, _, err := parseURL(cfg.String(FieldURL)); err != nil {
		return []connectors.FieldError{{Field: FieldURL, Reason: err.Error()}}
	}
	return nil
}

func checkSource(cfg connectors.Config) []connectors.FieldError {
	errs := checkURL(cfg)
	tables, query := cfg.Strings(FieldTable), cfg.String(FieldQuery)
	if (len(tables) == 0) == (query == "") {
		errs = append(errs, connectors.FieldError{Field: FieldTable, Reason: "give either table or query"})
	}
	mode := cfg.String(FieldMode)
	if (mode == ModeIncrementing || mode == ModeTimestampIncrementing) && cfg.String(FieldIncrementing) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldIncrementing, Reason: "required by mode " + mode})
	}
	if (mode == ModeTimestamp || mode == ModeTimestampIncrementing) && cfg.String(FieldTimestamp) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldTimestamp, Reason: "required by mode " + mode})
	}
	if d := cfg.Duration(FieldTimestampDelay); d < 0 {
		errs = append(errs, connectors.FieldError{Field: FieldTimestampDelay, Reason: "must not be negative"})
	} else if d > 0 && mode != ModeTimestamp && mode != ModeTimestampIncrementing {
		errs = append(errs, connectors.FieldError{Field: FieldTimestampDelay, Reason: "only read by modes timestamp and timestamp+incrementing"})
	}
	if cfg.Duration(FieldPollInterval) <= 0 {
		errs = append(errs, connectors.FieldError{Field: FieldPollInterval, Reason: "must be positive"})
	}
	if cfg.Int(FieldBatchMaxRows) < 1 {
		errs = append(errs, connectors.FieldError{Field: FieldBatchMaxRows, Reason: "must be at least 1"})
	}
	return errs
}

// splitSink runs tasks.max tasks, or one when the order of writes matters
// and no version column guards it (see ordered).
func splitSink(cfg connectors.Config, maxTasks int) []connectors.Config {
	if ordered(cfg) {
		maxTasks = 1
	}
	return connectors.EveryTask(cfg, maxTasks)
}

func checkSink(cfg connectors.Config) []connectors.FieldError {
	errs := checkURL(cfg)
	pk := cfg.Strings(FieldPKFields)
	if cfg.String(FieldInsertMode) == InsertModeUpsert && len(pk) == 0 {
		errs = append(errs, connectors.FieldError{Field: FieldPKFields, Reason: "required by insert.mode upsert"})
	}
	if cfg.Bool(FieldDeleteEnabled) && len(pk) == 0 {
		errs = append(errs, connectors.FieldError{Field: FieldPKFields, Reason: "required by delete.enabled"})
	}
	if v := cfg.String(FieldVersionColumn); v != "" && slices.Contains(pk, v) {
		errs = append(errs, connectors.FieldError{Field: FieldVersionColumn, Reason: "must not be a key column"})
	}
	if d := cfg.String(FieldDeletedColumn); d != "" {
		switch {
		case cfg.String(FieldVersionColumn) == "":
			errs = append(errs, connectors.FieldError{Field: FieldDeletedColumn, Reason: "needs " + FieldVersionColumn})
		case cfg.String(FieldInsertMode) != InsertModeUpsert:
			errs = append(errs, connectors.FieldError{Field: FieldDeletedColumn, Reason: "needs insert.mode upsert"})
		case slices.Contains(pk, d) || d == cfg.String(FieldVersionColumn):
			errs = append(errs, connectors.FieldError{Field: FieldDeletedColumn, Reason: "must be a column of its own"})
		}
	}
	return errs
}
