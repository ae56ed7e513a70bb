// Package s3 is the s3-sink and s3-source connectors, on the S3 API of the
// AWS SDK for Go v2 (any S3-compatible server: AWS, MinIO, versitygw, Ceph
// RGW, with endpoint and path.style).
//
// s3-sink writes the events of each Put as objects (JSON Lines, raw data
// lines or a JSON array, optionally gzipped) under keys made of the topic,
// a date/hour partition and the first and last mesh sequence of the
// object. It writes each event into the bucket exactly once: an object is
// complete (a conditional single PUT, or a completed multipart upload)
// before any of its events is acked, and an index of the sequences each
// object holds (small manifests under index.prefix, written before the
// object) lets a retry after a crash tell the events already in the bucket
// from the others, whatever batches the mesh redelivers them in. See
// sink.go and index.go.
//
// s3-source reads the objects under a list of prefixes in lexical key
// order (ListObjectsV2, then polling with start-after), as JSON Lines of
// CloudEvents, as lines, as fixed-width records or one event per object,
// with an offset per prefix naming the object being read, its ETag and the
// byte position of its next record; a restart resumes with a ranged GET.
// See source.go.
package s3

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd/connectors"
)

// Connector types.
const (
	SinkType   = "s3-sink"
	SourceType = "s3-source"
)

// Config field names.
const (
	FieldBucket       = "bucket"
	FieldEndpoint     = "endpoint"
	FieldRegion       = "region"
	FieldPathStyle    = "path.style"
	FieldAccessKey    = "access.key"
	FieldSecretKey    = "secret.key"
	FieldSessionToken = "session.token"

	FieldKeyTemplate     = "key.template"
	FieldFormat          = "format"
	FieldCompression     = "compression"
	FieldPartitionTime   = "partition.time"
	FieldFlushSize       = "flush.size"
	FieldFlushCount      = "flush.count"
	FieldPartSize        = "part.size"
	FieldUploadParallel  = "upload.concurrency"
	FieldIndexPrefix     = "index.prefix"
	FieldIndexRetention  = "index.retention"
	FieldPrefix          = "prefix"
	FieldReadMode        = "read.mode"
	FieldSchema          = "schema"
	FieldContentType     = "content.type"
	FieldEventType       = "type"
	FieldPollInterval    = "poll.interval"
	FieldAfterRead       = "after.read"
	FieldMovePrefix      = "move.prefix"
	FieldBatchMaxRecords = "batch.max.records"
	FieldRecordMaxSize   = "record.max.size"
)

// Values of enum fields.
const (
	FormatJSONL = "jsonl"
	FormatData  = "data"
	FormatJSON  = "json"

	CompressionNone = "none"
	CompressionGzip = "gzip"
	CompressionAuto = "auto"

	TimeEvent   = "event"
	TimeArrival = "arrival"

	ModeJSONL  = "jsonl"
	ModeLines  = "lines"
	ModeObject = "object"
	ModeFixed  = "fixed"

	AfterKeep   = "keep"
	AfterDelete = "delete"
	AfterMove   = "move"
)

// Defaults.
const (
	DefaultRegion      = "us-east-1"
	DefaultKeyTemplate = "{topic}/{yyyy}/{MM}/{dd}/{HH}/{topic}+{first}-{last}{ext}"
	DefaultIndexPrefix = "_meshd/s3-sink/"
	// DefaultBatchSize and DefaultBatchWait are the sink's batch defaults:
	// one Put is one object (or a few), so batches are large.
	DefaultBatchSize = 10_000
	DefaultBatchWait = 10 * time.Second
	// MinPartSize is S3's least size of a multipart part but the last.
	MinPartSize = 5 << 20
	// MaxPartSize is S3's largest part.
	MaxPartSize = 5 << 30
)

var connFields = []connectors.Field{
	{Name: FieldBucket, Type: connectors.TypeString, Required: true, Description: "Bucket name."},
	{Name: FieldEndpoint, Type: connectors.TypeString, Description: "Base URL of an S3-compatible server (http://127.0.0.1:7070); default: AWS S3 of the region."},
	{Name: FieldRegion, Type: connectors.TypeString, Default: DefaultRegion, Description: "Region requests are signed for."},
	{Name: FieldPathStyle, Type: connectors.TypeBool, Default: false, Description: "Address buckets in the path (endpoint/bucket/key) instead of the host name; most S3-compatible servers need it."},
	{Name: FieldAccessKey, Type: connectors.TypeString, Secret: true, Description: "Access key id; with secret.key. Default: the AWS default credential chain (environment, shared files, web identity, container and instance roles)."},
	{Name: FieldSecretKey, Type: connectors.TypeString, Secret: true, Description: "Secret access key."},
	{Name: FieldSessionToken, Type: connectors.TypeString, Secret: true, Description: "Session token of temporary credentials (optional)."},
}

// SinkSpec is the registered spec of s3-sink.
var SinkSpec = connectors.Spec{
	Name:    SinkType,
	Kind:    connectors.KindSink,
	Summary: "Writes events into S3 objects (JSON Lines, data lines or a JSON array; gzip), each event exactly once.",
	Fields: append(slices.Clone(connFields),
		connectors.Field{Name: FieldKeyTemplate, Type: connectors.TypeString, Default: DefaultKeyTemplate,
			Description: "Object key: text with {topic}, {yyyy}, {MM}, {dd}, {HH}, {mm} (UTC, from partition.time), {first} and {last} (the object's first and last mesh sequence, 20 digits), {ext} (.jsonl, .json, .txt, plus .gz). Must hold {first}."},
		connectors.Field{Name: FieldFormat, Type: connectors.TypeString, Default: FormatJSONL, Enum: []string{FormatJSONL, FormatData, FormatJSON},
			Description: "jsonl: one structured CloudEvent per line; data: each event's data on one line; json: a JSON array of structured CloudEvents."},
		connectors.Field{Name: FieldCompression, Type: connectors.TypeString, Default: CompressionNone, Enum: []string{CompressionNone, CompressionGzip},
			Description: "Compression of objects."},
		connectors.Field{Name: FieldPartitionTime, Type: connectors.TypeString, Default: TimeEvent, Enum: []string{TimeEvent, TimeArrival},
			Description: "Time of the date/hour placeholders: the event's time attribute (the arrival time when it has none), or the arrival time (when the sink writes the batch)."},
		connectors.Field{Name: FieldFlushSize, Type: connectors.TypeInt, Default: int64(64 << 20),
			Description: "Bytes (before compression) after which an object is closed and the next begun."},
		connectors.Field{Name: FieldFlushCount, Type: connectors.TypeInt, Default: int64(0),
			Description: "Most events per object (0: as many as a batch holds, batch.size). Objects also close at the end of each batch: batch.wait is the flush interval."},
		connectors.Field{Name: FieldPartSize, Type: connectors.TypeInt, Default: int64(16 << 20),
			Description: "Objects larger than this go up as multipart uploads in parts of this size (5 MiB to 5 GiB)."},
		connectors.Field{Name: FieldUploadParallel, Type: connectors.TypeInt, Default: int64(2),
			Description: "Parts of one object uploaded at once (memory: this many parts)."},
		connectors.Field{Name: FieldIndexPrefix, Type: connectors.TypeString, Default: DefaultIndexPrefix,
			Description: "Key prefix, in the same bucket, of the index of mesh sequences written (one small manifest per object, under <prefix><connector>/)."},
		connectors.Field{Name: FieldIndexRetention, Type: connectors.TypeDuration, Default: 7 * 24 * time.Hour,
			Description: "How long manifests are kept: a redelivery later than this after its object was written (meshd down longer) may write events twice."},
	),
	Defaults: map[string]any{
		connectors.FieldBatchSize: int64(DefaultBatchSize),
		connectors.FieldBatchWait: DefaultBatchWait,
	},
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &SinkTask{} }, connectors.EveryTask)
	},
	Check: checkSink,
}

// SourceSpec is the registered spec of s3-source.
var SourceSpec = connectors.Spec{
	Name:    SourceType,
	Kind:    connectors.KindSource,
	Summary: "Reads S3 objects in key order as CloudEvents (JSON Lines, lines, fixed-width records or whole objects), resuming mid-object.",
	Fields: append(slices.Clone(connFields),
		connectors.Field{Name: FieldPrefix, Type: connectors.TypeList, Default: []string{""},
			Description: "Key prefixes read (tasks.max splits the list between tasks; no prefix may start another)."},
		connectors.Field{Name: FieldReadMode, Type: connectors.TypeString, Default: ModeJSONL, Enum: []string{ModeJSONL, ModeLines, ModeObject, ModeFixed},
			Description: "jsonl: a structured CloudEvent per line; lines: each line becomes an event's data; object: the whole object is one event; fixed: fixed-width records described by schema."},
		connectors.Field{Name: FieldSchema, Type: connectors.TypeList,
			Description: "fixed mode: the record's fields in order, as name:width (bytes), e.g. id:8,name:20,amount:12."},
		connectors.Field{Name: FieldContentType, Type: connectors.TypeString, Default: "text/plain",
			Description: "lines mode: datacontenttype of the events (application/json: each line must be JSON)."},
		connectors.Field{Name: FieldEventType, Type: connectors.TypeString,
			Description: "CloudEvents type of wrapped records (default dev.meshd.s3.line, dev.meshd.s3.object or dev.meshd.s3.record by mode)."},
		connectors.Field{Name: FieldCompression, Type: connectors.TypeString, Default: CompressionAuto, Enum: []string{CompressionAuto, CompressionNone, CompressionGzip},
			Description: "auto: gzip for keys ending in .gz or objects with Content-Encoding gzip. A gzipped object resumes by reading it again from its start, discarding what was published."},
		connectors.Field{Name: FieldPollInterval, Type: connectors.TypeDuration, Default: 5 * time.Second,
			Description: "Pause between listings that found nothing new."},
		connectors.Field{Name: FieldAfterRead, Type: connectors.TypeString, Default: AfterKeep, Enum: []string{AfterKeep, AfterDelete, AfterMove},
			Description: "What becomes of an object once the offset of its last record is committed: keep, delete, or move (to move.prefix)."},
		connectors.Field{Name: FieldMovePrefix, Type: connectors.TypeString,
			Description: "move: the key prefix read objects are moved under (replacing the read prefix); outside every read prefix."},
		connectors.Field{Name: FieldBatchMaxRecords, Type: connectors.TypeInt, Default: int64(1000),
			Description: "Most records per poll."},
		connectors.Field{Name: FieldRecordMaxSize, Type: connectors.TypeInt, Default: int64(1 << 20),
			Description: "Longest record (line, object or event) in bytes; a longer one is skipped with a warning."},
	),
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &SourceTask{} }, connectors.SplitList(FieldPrefix))
	},
	Check: checkSource,
}

func init() {
	connectors.Register(SinkSpec)
	connectors.Register(SourceSpec)
}

func checkConn(cfg connectors.Config) []connectors.FieldError {
	var errs []connectors.FieldError
	if ep := cfg.String(FieldEndpoint); ep != "" {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, connectors.FieldError{Field: FieldEndpoint, Reason: "want an http:// or https:// base URL"})
		} else if u.User != nil {
			errs = append(errs, connectors.FieldError{Field: FieldEndpoint, Reason: "must not hold credentials; use access.key and secret.key"})
		}
	}
	if (cfg.String(FieldAccessKey) == "") != (cfg.String(FieldSecretKey) == "") {
		errs = append(errs, connectors.FieldError{Field: FieldSecretKey, Reason: "give access.key and secret.key together, or neither for the default credential chain"})
	}
	if cfg.String(FieldRegion) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldRegion, Reason: "required"})
	}
	return errs
}

func checkSink(cfg connectors.Config) []connectors.FieldError {
	errs := checkConn(cfg)
	if _, err := parseTemplate(cfg.String(FieldKeyTemplate)); err != nil {
		errs = append(errs, connectors.FieldError{Field: FieldKeyTemplate, Reason: err.Error()})
	}
	if n := cfg.Int(FieldFlushSize); n < 1 {
		errs = append(errs, connectors.FieldError{Field: FieldFlushSize, Reason: "must be at least 1"})
	}
	if n := cfg.Int(FieldFlushCount); n < 0 {
		errs = append(errs, connectors.FieldError{Field: FieldFlushCount, Reason: "must not be negative"})
	}
	if n := cfg.Int(FieldPartSize); n < MinPartSize || n > MaxPartSize {
		errs = append(errs, connectors.FieldError{Field: FieldPartSize, Reason: fmt.Sprintf("%d is not between %d (5 MiB) and %d (5 GiB)", n, MinPartSize, int64(MaxPartSize))})
	}
	if n := cfg.Int(FieldUploadParallel); n < 1 || n > 64 {
		errs = append(errs, connectors.FieldError{Field: FieldUploadParallel, Reason: fmt.Sprintf("%d is not between 1 and 64", n)})
	}
	ip := cfg.String(FieldIndexPrefix)
	if ip == "" || strings.HasPrefix(ip, "/") {
		errs = append(errs, connectors.FieldError{Field: FieldIndexPrefix, Reason: "want a key prefix like _meshd/s3-sink/"})
	} else if t, err := parseTemplate(cfg.String(FieldKeyTemplate)); err == nil {
		if static := t.staticPrefix(); static != "" && (strings.HasPrefix(static, ip) || strings.HasPrefix(ip, static)) {
			errs = append(errs, connectors.FieldError{Field: FieldIndexPrefix, Reason: "must lie outside the keys of key.template"})
		}
	}
	if cfg.Duration(FieldIndexRetention) < time.Hour {
		errs = append(errs, connectors.FieldError{Field: FieldIndexRetention, Reason: "must be at least 1h"})
	}
	return errs
}

func checkSource(cfg connectors.Config) []connectors.FieldError {
	errs := checkConn(cfg)
	prefixes := cfg.Strings(FieldPrefix)
	if len(prefixes) == 0 {
		errs = append(errs, connectors.FieldError{Field: FieldPrefix, Reason: "give at least one prefix (\"\" for the whole bucket)"})
	}
	for i, a := range prefixes {
		for j, b := range prefixes {
			if i != j && strings.HasPrefix(b, a) {
				errs = append(errs, connectors.FieldError{Field: FieldPrefix, Reason: fmt.Sprintf("%q starts %q: their objects would be read twice", a, b)})
			}
		}
	}
	if cfg.String(FieldReadMode) == ModeFixed {
		if _, err := parseSchema(cfg.Strings(FieldSchema)); err != nil {
			errs = append(errs, connectors.FieldError{Field: FieldSchema, Reason: err.Error()})
		}
	} else if len(cfg.Strings(FieldSchema)) > 0 {
		errs = append(errs, connectors.FieldError{Field: FieldSchema, Reason: "only for read.mode fixed"})
	}
	if cfg.Duration(FieldPollInterval) <= 0 {
		errs = append(errs, connectors.FieldError{Field: FieldPollInterval, Reason: "must be positive"})
	}
	if cfg.Int(FieldBatchMaxRecords) < 1 {
		errs = append(errs, connectors.FieldError{Field: FieldBatchMaxRecords, Reason: "must be at least 1"})
	}
	if cfg.Int(FieldRecordMaxSize) < 1 {
		errs = append(errs, connectors.FieldError{Field: FieldRecordMaxSize, Reason: "must be at least 1"})
	}
	mp := cfg.String(FieldMovePrefix)
	switch {
	case cfg.String(FieldAfterRead) == AfterMove && mp == "":
		errs = append(errs, connectors.FieldError{Field: FieldMovePrefix, Reason: "required with after.read move"})
	case cfg.String(FieldAfterRead) != AfterMove && mp != "":
		errs = append(errs, connectors.FieldError{Field: FieldMovePrefix, Reason: "only with after.read move"})
	case mp != "":
		for _, p := range prefixes {
			if strings.HasPrefix(mp, p) || strings.HasPrefix(p, mp) {
				errs = append(errs, connectors.FieldError{Field: FieldMovePrefix, Reason: fmt.Sprintf("must lie outside the read prefix %q (moved objects would be read again)", p)})
			}
		}
	}
	return errs
}

// schemaField is one field of a fixed-width record.
type schemaField struct {
	name  string
	width int
}

// parseSchema reads name:width items.
func parseSchema(items []string) ([]schemaField, error) {
	if len(items) == 0 {
		return nil, fmt.Errorf("required with read.mode fixed: name:width items, e.g. id:8,name:20")
	}
	out := make([]schemaField, 0, len(items))
	seen := map[string]bool{}
	for _, it := range items {
		name, w, ok := strings.Cut(it, ":")
		name = strings.TrimSpace(name)
		width, err := strconv.Atoi(strings.TrimSpace(w))
		if !ok || name == "" || err != nil || width < 1 {
			return nil, fmt.Errorf("%q: want name:width with a positive width", it)
		}
		if seen[name] {
			return nil, fmt.Errorf("%q: field named twice", name)
		}
		seen[name] = true
		out = append(out, schemaField{name, width})
	}
	return out, nil
}
