package mongodb

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SourceTask  = (*SourceTask)(nil)
	_ connectors.Initializer = (*SourceTask)(nil)
)

// pollWait bounds how long one Poll waits on a change stream.
const pollWait = time.Second

// SourceTask reads a collection by polling or through a change stream.
//
// Poll mode: documents are read in poll.field order (then _id), those after
// the offset {"v": last poll.field value, "id": last _id} (MongoDB canonical
// Extended JSON, so the BSON types survive). Documents must be written with
// increasing values of poll.field: one written later with a smaller value
// is never read.
//
// Change stream mode: the offset is the resume token of the last change.
type SourceTask struct {
	tc        connectors.TaskContext
	client    *mongo.Client
	coll      *mongo.Collection
	partition string
	source    string
	eventType string
	field     string
	interval  time.Duration
	batch     int64
	canonical bool // json.format canonical

	// poll mode: the position after the last document returned.
	lastV, lastID bson.RawValue
	hasLast       bool

	// change stream mode.
	stream *mongo.ChangeStream
}

// Init keeps the task context (offsets).
func (t *SourceTask) Init(tc connectors.TaskContext) { t.tc = tc }

// Start connects and positions the task after its committed offset.
func (t *SourceTask) Start(ctx context.Context, cfg connectors.Config) error {
	db, coll := cfg.String(FieldDatabase), cfg.String(FieldCollection)
	t.partition = "mongodb:" + db + "." + coll
	t.source = "/mongodb/" + db + "/" + coll
	t.eventType = cfg.String(FieldEventType)
	t.field = cfg.String(FieldPollField)
	t.interval = cfg.Duration(FieldPollInterval)
	t.batch = cfg.Int(FieldPollBatch)
	t.canonical = cfg.String(FieldJSONFormat) == JSONCanonical
	var offset string
	if t.tc != nil {
		offset = t.tc.Offsets()[t.partition]
	}
	var err error
	if t.client, t.coll, err = connect(ctx, cfg); err != nil {
		return err
	}
	if cfg.String(FieldMode) == ModeChangeStream {
		return t.openStream(ctx, offset)
	}
	if offset != "" {
		var pos bson.Raw
		if err := bson.UnmarshalExtJSON([]byte(offset), true, &pos); err != nil {
			return fmt.Errorf("reading the committed offset: %w", err)
		}
		t.lastV, t.lastID = pos.Lookup("v"), pos.Lookup("id")
		t.hasLast = true
	}
	return nil
}

func (t *SourceTask) openStream(ctx context.Context, offset string) error {
	opts := options.ChangeStream().SetFullDocument(options.UpdateLookup).SetBatchSize(int32(t.batch))
	if offset != "" {
		var token bson.Raw
		if err := bson.UnmarshalExtJSON([]byte(offset), true, &token); err != nil {
			return fmt.Errorf("reading the committed resume token: %w", err)
		}
		opts.SetResumeAfter(token)
	}
	cs, err := t.coll.Watch(ctx, mongo.Pipeline{}, opts)
	if err != nil {
		return fmt.Errorf("opening a change stream (mode %s needs a replica set or sharded cluster): %w", ModeChangeStream, err)
	}
	t.stream = cs
	return nil
}

// Stop closes the change stream and disconnects.
func (t *SourceTask) Stop(ctx context.Context) error {
	if t.stream != nil {
		_ = t.stream.Close(ctx)
		t.stream = nil
	}
	err := disconnect(ctx, t.client)
	t.client = nil
	return err
}

// Poll returns the next documents or changes, waiting up to poll.interval
// (poll mode) or about a second (change streams) when there are none.
func (t *SourceTask) Poll(ctx context.Context) ([]connectors.Record, error) {
	if t.stream != nil {
		return t.pollStream(ctx)
	}
	recs, err := t.pollQuery(ctx)
	if err != nil || len(recs) > 0 {
		return recs, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(t.interval):
		return nil, nil
	}
}

func (t *SourceTask) pollQuery(ctx context.Context) ([]connectors.Record, error) {
	filter := bson.D{}
	if t.hasLast {
		if t.field == "_id" {
			filter = bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: t.lastV}}}}
		} else {
			filter = bson.D{{Key: "$or", Value: bson.A{
				bson.D{{Key: t.field, Value: bson.D{{Key: "$gt", Value: t.lastV}}}},
				bson.D{{Key: t.field, Value: t.lastV}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: t.lastID}}}},
			}}}
		}
	} else if t.field != "_id" {
		// Documents without the field are never read (they have no place
		// in the order).
		filter = bson.D{{Key: t.field, Value: bson.D{{Key: "$exists", Value: true}}}}
	}
	sort := bson.D{{Key: t.field, Value: 1}}
	if t.field != "_id" {
		sort = append(sort, bson.E{Key: "_id", Value: 1})
	}
	cur, err := t.coll.Find(ctx, filter, options.Find().SetSort(sort).SetLimit(t.batch))
	if err != nil {
		return nil, fmt.Errorf("querying %s: %w", t.partition, err)
	}
	defer cur.Close(ctx)
	var recs []connectors.Record
	for cur.Next(ctx) {
		doc := cur.Current
		v, id := doc.Lookup(t.field), doc.Lookup("_id")
		if v.Type == 0 {
			continue
		}
		pos := bson.D{{Key: "v", Value: v}, {Key: "id", Value: id}}
		offset, err := bson.MarshalExtJSON(pos, true, false)
		if err != nil {
			return nil, fmt.Errorf("encoding the offset: %w", err)
		}
		ev, err := t.newEvent(t.eventID(id, v), doc)
		if err != nil {
			return nil, err
		}
		recs = append(recs, connectors.Record{Event: ev, Partition: t.partition, Offset: string(offset)})
		t.lastV, t.lastID, t.hasLast = v, id, true
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", t.partition, err)
	}
	return recs, nil
}

func (t *SourceTask) pollStream(ctx context.Context) ([]connectors.Record, error) {
	deadline := time.Now().Add(pollWait)
	var recs []connectors.Record
	for int64(len(recs)) < t.batch {
		if !t.stream.TryNext(ctx) {
			if err := t.stream.Err(); err != nil {
				return nil, fmt.Errorf("reading the change stream of %s: %w", t.partition, err)
			}
			if len(recs) > 0 || time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		change := t.stream.Current
		token, err := bson.MarshalExtJSON(t.stream.ResumeToken(), true, false)
		if err != nil {
			return nil, fmt.Errorf("encoding the resume token: %w", err)
		}
		id := string(token)
		if data, ok := change.Lookup("_id", "_data").StringValueOK(); ok {
			id = data
		}
		ev, err := t.newEvent(id, change)
		if err != nil {
			return nil, err
		}
		if op, ok := change.Lookup("operationType").StringValueOK(); ok {
			ev.SetExtension("mongodbop", op)
		}
		recs = append(recs, connectors.Record{Event: ev, Partition: t.partition, Offset: string(token)})
	}
	return recs, nil
}

func (t *SourceTask) newEvent(id string, doc bson.Raw) (event.Event, error) {
	data, err := bson.MarshalExtJSON(doc, t.canonical, false)
	if err != nil {
		return event.Event{}, fmt.Errorf("encoding a document of %s as JSON: %w", t.partition, err)
	}
	ev := event.New()
	ev.SetID(id)
	ev.SetSource(t.source)
	ev.SetType(t.eventType)
	ev.SetTime(time.Now())
	if err := ev.SetData(event.ApplicationJSON, data); err != nil {
		return event.Event{}, fmt.Errorf("setting the event data: %w", err)
	}
	return ev, nil
}

// eventID identifies one version of a document: its _id, and with a
// poll.field other than _id (a document read again after an update) the
// value of that field, so the mesh's duplicate window, which drops a
// second event of one id, keeps every update while a document read twice
// (after a restart) has the same id both times.
func (t *SourceTask) eventID(id, v bson.RawValue) string {
	if t.field == "_id" {
		return idString(id)
	}
	b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, true, false)
	if err != nil {
		return idString(id) + "@" + v.String()
	}
	return idString(id) + "@" + strings.TrimSuffix(strings.TrimPrefix(string(b), `{"v":`), "}")
}

// idString renders a document _id for the event id: the hex of an
// ObjectID, a string as is, anything else as canonical Extended JSON.
func idString(v bson.RawValue) string {
	if oid, ok := v.ObjectIDOK(); ok {
		return oid.Hex()
	}
	if s, ok := v.StringValueOK(); ok && s != "" {
		return s
	}
	b, err := bson.MarshalExtJSON(bson.D{{Key: "id", Value: v}}, true, false)
	if err != nil {
		return v.String()
	}
	return string(b)
}
