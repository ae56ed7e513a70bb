// Package clickhouse is the clickhouse-sink and clickhouse-source
// connectors, on the native protocol of clickhouse-go/v2.
//
// clickhouse-sink writes the JSON data of events as rows of a table, one
// INSERT block per Put and column set; ClickHouse wants large blocks, so
// the type's batch defaults are large (batch.size 10000, batch.wait 1s).
// Values are converted to each column's type before they reach the driver:
// the driver refuses a whole block for one bad value and silently wraps
// some out-of-range ones (dates past 2106, decimals beyond their
// precision), so a value that does not fit fails its event alone.
//
// clickhouse-source polls tables or a query by an increasing column and
// publishes one event per row, never splitting rows of one column value
// between polls, so the last value read is an exact offset.
//
// Both keep to what ClickHouse 18.16 (Debian's package, the test server)
// and current releases accept: the native protocol, INSERT with an
// explicit column list, SELECT with CAST and LIMIT, system.columns.
package clickhouse

import (
	"time"

	"github.com/meshd/meshd/connectors"
)

// Connector types.
const (
	SinkType   = "clickhouse-sink"
	SourceType = "clickhouse-source"
)

// Config field names.
const (
	FieldURL               = "url"
	FieldTable             = "table"
	FieldQuery             = "query"
	FieldFieldsMapping     = "fields.mapping"
	FieldSkipUnknownFields = "skip.unknown.fields"
	FieldIncrementing      = "incrementing.column.name"
	FieldPKFields          = "pk.fields"
	FieldEventType         = "type"
	FieldPollInterval      = "poll.interval"
	FieldBatchMaxRows      = "batch.max.rows"
	FieldDeleteEnabled     = "delete.enabled"
	FieldTruncateEnabled   = "truncate.enabled"
	FieldVersionColumn     = "version.column"
	FieldDeletedColumn     = "deleted.column"
)

// DefaultEventType is the CloudEvents type of source events.
const DefaultEventType = "dev.meshd.clickhouse.row"

// Batch defaults of the sink: ClickHouse prefers few large inserts.
const (
	DefaultBatchSize = 10_000
	DefaultBatchWait = time.Second
)

var urlField = connectors.Field{Name: FieldURL, Type: connectors.TypeString, Required: true, Secret: true,
	Description: "Native protocol URL: clickhouse://user:password@host:9000/database?dial_timeout=10s (clickhouse-go DSN options allowed). Secret: it may hold a password."}

// SinkSpec is the registered spec of clickhouse-sink.
var SinkSpec = connectors.Spec{
	Name:    SinkType,
	InOrder: true,
	Kind:    connectors.KindSink,
	Summary: "Writes events' JSON data as rows of a ClickHouse table in large native-protocol inserts.",
	Fields: []connectors.Field{
		urlField,
		{Name: FieldTable, Type: connectors.TypeString, Required: true, Description: "Table written (database.table allowed; default database: the URL's)."},
		{Name: FieldFieldsMapping, Type: connectors.TypeMap, Description: "Explicit mapping data field → column; only mapped fields are written. Default: every top-level field to the column of its name."},
		{Name: FieldSkipUnknownFields, Type: connectors.TypeBool, Default: false, Description: "Ignore data fields that are not columns of the table (default: such an event is dead-lettered)."},
		{Name: FieldVersionColumn, Type: connectors.TypeString, Description: "UInt64 column written with each event's mesh sequence: the version of a ReplacingMergeTree(version) table, so the latest write of each key wins whatever order rows arrive in."},
		{Name: FieldPKFields, Type: connectors.TypeList, Description: "Key columns (the table's ORDER BY): the key of a tombstone, from the event subject (several: a JSON object). Needed by delete.enabled."},
		{Name: FieldDeleteEnabled, Type: connectors.TypeBool, Default: false, Description: "A tombstone (an event without data) inserts a row of its key with deleted.column 1 and its version: read the table FINAL WHERE deleted = 0. Needs pk.fields, version.column, deleted.column."},
		{Name: FieldDeletedColumn, Type: connectors.TypeString, Description: "UInt8 column: 1 on a tombstone's row, 0 on the others."},
		{Name: FieldTruncateEnabled, Type: connectors.TypeBool, Default: false, Description: "On an event with the extension cdcop=t (mysql-cdc-source's TRUNCATE), mark deleted every key whose row is older. Needs what delete.enabled needs."},
	},
	Defaults: map[string]any{
		connectors.FieldBatchSize: int64(DefaultBatchSize),
		connectors.FieldBatchWait: DefaultBatchWait,
	},
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &SinkTask{} }, connectors.EveryTask)
	},
	Check: checkSink,
}

// SourceSpec is the registered spec of clickhouse-source.
var SourceSpec = connectors.Spec{
	Name:    SourceType,
	Kind:    connectors.KindSource,
	Summary: "Polls ClickHouse tables or a query by an increasing column and publishes one CloudEvent per row.",
	Fields: []connectors.Field{
		urlField,
		{Name: FieldTable, Type: connectors.TypeList, Description: "Tables to poll (tasks.max splits the list between tasks). One of table and query."},
		{Name: FieldQuery, Type: connectors.TypeString, Description: "A SELECT to poll instead of tables; it becomes a subquery the connector filters and orders. One of table and query."},
		{Name: FieldIncrementing, Type: connectors.TypeString, Required: true, Description: "Column whose value only grows as rows are added (a number, DateTime or string); rows are read in its order."},
		{Name: FieldPKFields, Type: connectors.TypeList, Description: "Columns that identify a row: the event subject (several: a JSON object) and the order of rows sharing a value of the increasing column. Default: the increasing column."},
		{Name: FieldEventType, Type: connectors.TypeString, Default: DefaultEventType, Description: "CloudEvents type of the events."},
		{Name: FieldPollInterval, Type: connectors.TypeDuration, Default: time.Second, Description: "Pause between polls that found nothing."},
		{Name: FieldBatchMaxRows, Type: connectors.TypeInt, Default: int64(1000), Description: "Most rows read per query (rows sharing the last value are all read, even beyond it)."},
	},
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &SourceTask{} }, connectors.SplitList(FieldTable)) // tasks.max splits a list of tables
	},
	Check: checkSource,
}

func init() {
	connectors.Register(SinkSpec)
	connectors.Register(SourceSpec)
}

func checkURL(cfg connectors.Config) []connectors.FieldError {
	if _, err := parseURL(cfg.String(FieldURL)); err != nil {
		return []connectors.FieldError{{Field: FieldURL, Reason: err.Error()}}
	}
	return nil
}

func checkSink(cfg connectors.Config) []connectors.FieldError {
	errs := checkURL(cfg)
	deletes := cfg.Bool(FieldDeleteEnabled) || cfg.Bool(FieldTruncateEnabled)
	if deletes {
		for _, f := range []string{FieldVersionColumn, FieldDeletedColumn} {
			if cfg.String(f) == "" {
				errs = append(errs, connectors.FieldError{Field: f, Reason: "required by " + FieldDeleteEnabled + " and " + FieldTruncateEnabled})
			}
		}
		if len(cfg.Strings(FieldPKFields)) == 0 {
			errs = append(errs, connectors.FieldError{Field: FieldPKFields, Reason: "required by " + FieldDeleteEnabled + " and " + FieldTruncateEnabled})
		}
	}
	if cfg.String(FieldDeletedColumn) != "" && cfg.String(FieldVersionColumn) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldDeletedColumn, Reason: "needs " + FieldVersionColumn})
	}
	return errs
}

func checkSource(cfg connectors.Config) []connectors.FieldError {
	errs := checkURL(cfg)
	if (len(cfg.Strings(FieldTable)) == 0) == (cfg.String(FieldQuery) == "") {
		errs = append(errs, connectors.FieldError{Field: FieldTable, Reason: "give either table or query"})
	}
	if cfg.Duration(FieldPollInterval) <= 0 {
		errs = append(errs, connectors.FieldError{Field: FieldPollInterval, Reason: "must be positive"})
	}
	if cfg.Int(FieldBatchMaxRows) < 1 {
		errs = append(errs, connectors.FieldError{Field: FieldBatchMaxRows, Reason: "must be at least 1"})
	}
	return errs
}
