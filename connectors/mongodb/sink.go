package mongodb

import (
	"context"
	"errors"
	"fmt"
	"strings"

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
// (or lacks the key when upserting) fail for good; so does a write the
// server refuses for good (a duplicate key, a validation), and the writes
// after it are sent again at once. A server that cannot be reached holds
// the batch; other failures are retried — held too when upserting, so a
// retry never lands after a later write of its key.
func (t *SinkTask) Put(ctx context.Context, events []event.Event) error {
	failed := map[int]error{}
	models := make([]mongo.WriteModel, 0, len(events))
	index := make([]int, 0, len(events)) // model → event
	for i := range events {
		m, err := t.model(&events[i])
		if err != nil {
			failed[i] = bridge.PermanentError(err)
			continue
		}
		models = append(models, m)
		index = append(index, i)
	}
	for from := 0; from < len(models); {
		_, err := t.coll.BulkWrite(ctx, models[from:], options.BulkWrite().SetOrdered(true))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var bwe mongo.BulkWriteException
		if errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 && bwe.WriteConcernError == nil {
			we := bwe.WriteErrors[0] // ordered: the first is the only one
			at := from + we.Index
			if we.Index >= 0 && at < len(models) && classOf(we.Code) == bridge.Permanent {
				failed[index[at]] = bridge.PermanentError(fmt.Errorf("writing the document: %s (code %d)", we.Message, we.Code))
				from = at + 1
				continue
			}
			if we.Index >= 0 && at < len(models) {
				from = at // written before it: acked
			}
		}
		err = t.failure(fmt.Errorf("writing %d document(s): %w", len(models)-from, err))
		for j := from; j < len(models); j++ {
			failed[index[j]] = err
		}
		break
	}
	if len(failed) == 0 {
		return nil
	}
	return &connectors.PartialError{Failed: failed}
}

// failure classifies a failed write: a server that cannot be reached or
// cannot take writes now holds the batch, as does any failure of an
// upserting sink (order); others are retried.
func (t *SinkTask) failure(err error) error {
	if t.upsert || unavailable(err) {
		return bridge.UnavailableError(err, 0)
	}
	return err
}

// unavailable reports errors of the server as a whole: unreachable,
// shutting down, not primary, not authorised.
func unavailable(err error) bool {
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, mongo.ErrClientDisconnected) {
		return true
	}
	var se mongo.ServerError
	if errors.As(err, &se) {
		for _, code := range []int{6, 7, 13, 18, 89, 91, 189, 10107, 11600, 11602, 13435, 13436} {
			if se.HasErrorCode(code) {
				return true
			}
		}
		if se.HasErrorLabel("RetryableWriteError") {
			return true
		}
	}
	return strings.Contains(err.Error(), "server selection")
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
