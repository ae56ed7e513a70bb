// Package mongodb holds the mongodb-sink and mongodb-source connectors,
// built on the official driver (go.mongodb.org/mongo-driver/v2).
//
// The sink writes each event's JSON data as a document: inserted, or
// upserted (replaced) by a key field. The source polls a collection on an
// increasing field (_id by default, or a timestamp field with _id as the tie
// breaker) or, on servers that have them (a MongoDB replica set or sharded
// cluster), follows a change stream; the offset is the last value read, or
// the change stream's resume token.
package mongodb

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/meshd/meshd/connectors"
)

// Connector types.
const (
	SinkType   = "mongodb-sink"
	SourceType = "mongodb-source"
)

// Config field names.
const (
	FieldURI          = "uri"
	FieldDatabase     = "database"
	FieldCollection   = "collection"
	FieldTimeout      = "timeout"
	FieldKeyField     = "key.field"
	FieldUpsert       = "upsert"
	FieldMode         = "mode"
	FieldPollField    = "poll.field"
	FieldPollInterval = "poll.interval"
	FieldPollBatch    = "poll.batch"
	FieldEventType    = "event.type"
	FieldJSONFormat   = "json.format"
)

// Extended JSON formats of the source's events.
const (
	JSONRelaxed   = "relaxed"
	JSONCanonical = "canonical"
)

// Source modes.
const (
	ModePoll         = "poll"
	ModeChangeStream = "changestream"
)

// DefaultEventType is the type of the source's events.
const DefaultEventType = "dev.meshd.mongodb.document"

func commonFields() []connectors.Field {
	return []connectors.Field{
		{Name: FieldURI, Type: connectors.TypeString, Required: true, Secret: true, Description: "MongoDB connection string (mongodb:// or mongodb+srv://); may carry the password."},
		{Name: FieldDatabase, Type: connectors.TypeString, Required: true, Description: "Database name."},
		{Name: FieldCollection, Type: connectors.TypeString, Required: true, Description: "Collection name."},
		{Name: FieldTimeout, Type: connectors.TypeDuration, Default: 10 * time.Second, Description: "Timeout of one operation (connect, write, query)."},
	}
}

// SinkSpec is the registered spec of mongodb-sink.
var SinkSpec = connectors.Spec{
	Name:    SinkType,
	InOrder: true,
	Kind:    connectors.KindSink,
	Summary: "Writes each event's JSON data as a MongoDB document: insert, or upsert by a key field.",
	Fields: append(commonFields(),
		connectors.Field{Name: FieldKeyField, Type: connectors.TypeString, Default: "_id", Description: "Top-level document field that identifies a document when upsert is on."},
		connectors.Field{Name: FieldUpsert, Type: connectors.TypeBool, Default: false, Description: "Replace the document whose key.field equals the event's (insert it if none); off: insert every event."},
	),
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &SinkTask{} }, splitSink)
	},
	Check: checkSink,
}

// SourceSpec is the registered spec of mongodb-source.
var SourceSpec = connectors.Spec{
	Name:    SourceType,
	Kind:    connectors.KindSource,
	Summary: "Reads a MongoDB collection: polls on an increasing field, or follows a change stream.",
	Fields: append(commonFields(),
		connectors.Field{Name: FieldMode, Type: connectors.TypeString, Default: ModePoll, Enum: []string{ModePoll, ModeChangeStream}, Description: "poll: query on poll.field; changestream: watch the collection (replica sets and sharded clusters only)."},
		connectors.Field{Name: FieldPollField, Type: connectors.TypeString, Default: "_id", Description: "Increasing field polled on (_id, or e.g. an indexed timestamp; _id breaks ties)."},
		connectors.Field{Name: FieldPollInterval, Type: connectors.TypeDuration, Default: time.Second, Description: "Pause between polls that found nothing."},
		connectors.Field{Name: FieldPollBatch, Type: connectors.TypeInt, Default: int64(500), Description: "Most documents (or changes) per poll (1 to 10000)."},
		connectors.Field{Name: FieldEventType, Type: connectors.TypeString, Default: DefaultEventType, Description: "CloudEvents type of the events."},
		connectors.Field{Name: FieldJSONFormat, Type: connectors.TypeString, Default: JSONRelaxed, Enum: []string{JSONRelaxed, JSONCanonical}, Description: "MongoDB Extended JSON of the data: relaxed (numbers as plain JSON numbers: an Int64 that fits 32 bits comes back from mongodb-sink as an Int32) or canonical (every BSON type kept: {\"$numberLong\": \"5\"}, {\"$numberDouble\": \"2.0\"})."},
	),
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &SourceTask{} }, connectors.OneTask) // a collection is read by one task
	},
	Check: checkSource,
}

func init() {
	connectors.Register(SinkSpec)
	connectors.Register(SourceSpec)
}

// splitSink runs tasks.max tasks, or one when upserting: writes of one key
// must land in order, and the tasks of a sink share one consumer group.
func splitSink(cfg connectors.Config, maxTasks int) []connectors.Config {
	if cfg.Bool(FieldUpsert) {
		maxTasks = 1
	}
	return connectors.EveryTask(cfg, maxTasks)
}

func checkCommon(cfg connectors.Config) []connectors.FieldError {
	var errs []connectors.FieldError
	// The URI is never echoed: it may carry a password.
	if _, err := connstring.ParseAndValidate(cfg.String(FieldURI)); err != nil {
		errs = append(errs, connectors.FieldError{Field: FieldURI, Reason: "want a mongodb:// or mongodb+srv:// connection string"})
	}
	if cfg.String(FieldDatabase) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldDatabase, Reason: "must not be empty"})
	}
	if cfg.String(FieldCollection) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldCollection, Reason: "must not be empty"})
	}
	if cfg.Duration(FieldTimeout) <= 0 {
		errs = append(errs, connectors.FieldError{Field: FieldTimeout, Reason: "must be positive"})
	}
	return errs
}

func checkSink(cfg connectors.Config) []connectors.FieldError {
	errs := checkCommon(cfg)
	if cfg.Bool(FieldUpsert) && cfg.String(FieldKeyField) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldKeyField, Reason: "required when upsert is on"})
	}
	return errs
}

func checkSource(cfg connectors.Config) []connectors.FieldError {
	errs := checkCommon(cfg)
	if cfg.String(FieldPollField) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldPollField, Reason: "must not be empty"})
	}
	if cfg.Duration(FieldPollInterval) <= 0 {
		errs = append(errs, connectors.FieldError{Field: FieldPollInterval, Reason: "must be positive"})
	}
	if n := cfg.Int(FieldPollBatch); n < 1 || n > 10000 {
		errs = append(errs, connectors.FieldError{Field: FieldPollBatch, Reason: "must be between 1 and 10000"})
	}
	if cfg.String(FieldEventType) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldEventType, Reason: "must not be empty"})
	}
	return errs
}
