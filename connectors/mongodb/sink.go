package mongodb

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SinkTask = (*SinkTask)(nil)
)

// SinkTask writes each batch with one ordered bulk write: InsertOne models,
// or ReplaceOne models with upsert on the key field.
type SinkTask struct {
	client   *mongo.Client
	coll     *mongo.Collection
	keyField string
	upsert   bool
}

// Start connects.
func (t *SinkTask) Start(ctx context.Context, cfg connectors.Config) error {
	t.keyField = cfg.String(FieldKeyField)
	t.upsert = cfg.Bool(FieldUpsert)
	var err error
	t.client, t.coll, err = connect(ctx, cfg)
	return err
}

// Stop disconnects.
func (t *SinkTask) Stop(ctx context.Context) error {
	err := disconnect(ctx, t.client)
	t.client = nil
	return err
}

// Put writes the batch in order. Events whose data is not a JSON object
// (or lacks the key when upserting) fail permanently; a write error fails
// its event and, the bulk write being ordered, every later one (retried).
func (t *SinkTask) Put(ctx context.Context, events []event.Event) error {
	failed := map[int]error{}
	models := make([]mongo.WriteModel, 0, len(events))
	index := make([]int, 0, len(events)) // model → event
	for i := range events {
		m, err := t.model(&events[i])
		if err != nil {
			failed[i] = &bridge.DeliveryError{Class: bridge.Permanent, Err: err}
			continue
		}
		models = append(models, m)
		index = append(index, i)
	}
	if len(models) > 0 {
		_, err := t.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(true))
		var bwe mongo.BulkWriteException
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 && bwe.WriteConcernError == nil:
			first := len(models)
			for _, we := range bwe.WriteErrors {
				if we.Index < 0 || we.Index >= len(models) {
					continue
				}
				failed[index[we.Index]] = &bridge.DeliveryError{
					Class: classOf(we.Code),
					Err:   fmt.Errorf("writing the document: %s (code %d)", we.Message, we.Code),
				}
				first = min(first, we.Index)
			}
			for j := first + 1; j < len(models); j++ {
				if _, ok := failed[index[j]]; !ok {
					failed[index[j]] = &bridge.DeliveryError{Err: errors.New("not written: an earlier write of the ordered batch failed")}
				}
			}
		default:
			return fmt.Errorf("writing %d document(s): %w", len(models), err)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &connectors.PartialError{Failed: failed}
}

// classOf says which write errors retrying cannot fix: duplicate keys
// and document validation failures.
func classOf(code int) bridge.Class {
	switch code {
	case 11000, 11001, 121, 2, 14, 52, 55, 56, 57:
		return bridge.Permanent
	}
	return bridge.Retry
}

func (t *SinkTask) model(e *event.Event) (mongo.WriteModel, error) {
	doc, err := decodeDocument(e.Data())
	if err != nil {
		return nil, err
	}
	if !t.upsert {
		return mongo.NewInsertOneModel().SetDocument(doc), nil
	}
	for _, el := range doc {
		if el.Key == t.keyField {
			return mongo.NewReplaceOneModel().
				SetFilter(bson.D{{Key: t.keyField, Value: el.Value}}).
				SetReplacement(doc).
				SetUpsert(true), nil
		}
	}
	return nil, fmt.Errorf("the document has no key field %q", t.keyField)
}

// decodeDocument reads JSON (MongoDB Extended JSON, relaxed or canonical:
// {"$date": ...}, {"$oid": ...}, {"$numberLong": ...} are typed) into a
// document.
func decodeDocument(data []byte) (bson.D, error) {
	if len(data) == 0 {
		return nil, errBadData
	}
	var doc bson.D
	if err := bson.UnmarshalExtJSON(data, false, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadData, err)
	}
	return doc, nil
}
