package mongodb_test

import (
	"context"
	"encoding/json"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/mongodb"
	"github.com/meshd/meshd/test/infra"
)

func client(t *testing.T, uri string) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

func TestMongoDBSinkSuite(t *testing.T) {
	uri := infra.StartFerretDB(t)
	coll := client(t, uri).Database("meshd").Collection("sink")
	// The sink reaches the server through a proxy that can cut it off.
	u, err := url.Parse(uri)
	require.NoError(t, err)
	p := infra.StartProxy(t, u.Host)
	connectortest.RunSink(t, connectortest.Sink{
		Spec:   mongodb.SinkSpec,
		Config: map[string]any{"uri": "mongodb://" + p.Addr + "/", "database": "meshd", "collection": "sink", "upsert": true, "key.field": "id", "timeout": "2s"},
		Received: func() []string {
			cur, err := coll.Find(t.Context(), bson.D{})
			if err != nil {
				return nil
			}
			var docs []struct {
				ID string `bson:"id"`
			}
			if err := cur.All(t.Context(), &docs); err != nil {
				return nil
			}
			out := make([]string, len(docs))
			for i, d := range docs {
				out[i] = d.ID
			}
			return out
		},
		SetFailing: p.SetFailing,
	})
}

func TestMongoDBSourceSuite(t *testing.T) {
	uri := infra.StartFerretDB(t)
	coll := client(t, uri).Database("meshd").Collection("source")
	connectortest.RunSource(t, connectortest.Source{
		Spec:   mongodb.SourceSpec,
		Config: map[string]any{"uri": uri, "database": "meshd", "collection": "source", "poll.interval": "50ms"},
		Produce: func(ctx context.Context, keys []string) error {
			docs := make([]any, len(keys))
			for i, k := range keys {
				docs[i] = bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "key", Value: k}}
			}
			_, err := coll.InsertMany(ctx, docs)
			return err
		},
		Key: dataKey,
	})
}

// The source polls a timestamp field with _id as the tie breaker.
func TestMongoDBSourceSuiteTimestampField(t *testing.T) {
	uri := infra.StartFerretDB(t)
	coll := client(t, uri).Database("meshd").Collection("events")
	var n atomic.Int64
	connectortest.RunSource(t, connectortest.Source{
		Spec: mongodb.SourceSpec,
		Config: map[string]any{"uri": uri, "database": "meshd", "collection": "events",
			"poll.field": "at", "poll.interval": "50ms", "poll.batch": 2},
		Produce: func(ctx context.Context, keys []string) error {
			// Pairs of documents share a timestamp; poll.batch 2 splits some
			// pairs across polls, so ties must be resumed by _id (which
			// grows: ObjectIDs of one client).
			for _, k := range keys {
				at := time.UnixMilli(1_700_000_000_000 + n.Add(1)/2*1000)
				if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "at", Value: at}, {Key: "key", Value: k}}); err != nil {
					return err
				}
			}
			return nil
		},
		Key: dataKey,
	})
}

func dataKey(e *event.Event) string {
	var d struct{ Key string }
	_ = json.Unmarshal(e.Data(), &d)
	return d.Key
}

func newSinkTask(t *testing.T, raw map[string]any) *mongodb.SinkTask {
	t.Helper()
	raw["connector.type"] = mongodb.SinkType
	raw["topic"] = "t"
	cfg, err := mongodb.SinkSpec.Validate(raw)
	require.NoError(t, err)
	task := &mongodb.SinkTask{}
	require.NoError(t, task.Start(t.Context(), cfg))
	t.Cleanup(func() { _ = task.Stop(context.Background()) })
	return task
}

func jsonEvent(t *testing.T, id, data string) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource("/test")
	e.SetType("test")
	require.NoError(t, e.SetData(event.ApplicationJSON, []byte(data)))
	return e
}

func TestMongoDBSinkUpsertByKeyAndTypes(t *testing.T) {
	uri := infra.StartFerretDB(t)
	coll := client(t, uri).Database("meshd").Collection("upsert")
	task := newSinkTask(t, map[string]any{"uri": uri, "database": "meshd", "collection": "upsert", "upsert": true, "key.field": "sku"})

	require.NoError(t, task.Put(t.Context(), []event.Event{
		jsonEvent(t, "1", `{"sku": "a", "qty": 1}`),
		jsonEvent(t, "2", `{"sku": "b", "qty": 2}`),
		jsonEvent(t, "3", `{"sku": "a", "qty": 3, "price": 2.5, "ok": true, "tags": ["x", "y"], "dim": {"w": 7}, "big": {"$numberLong": "9007199254740993"}, "at": {"$date": "2026-11-23T10:00:00.123Z"}, "none": null}`),
	}))
	n, err := coll.CountDocuments(t.Context(), bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(2), n, "the second write of sku a replaced the first")

	var got bson.M
	require.NoError(t, coll.FindOne(t.Context(), bson.D{{Key: "sku", Value: "a"}}).Decode(&got))
	assert.Equal(t, int32(3), got["qty"])
	assert.Equal(t, 2.5, got["price"])
	assert.Equal(t, true, got["ok"])
	assert.Equal(t, bson.A{"x", "y"}, got["tags"])
	assert.Equal(t, bson.D{{Key: "w", Value: int32(7)}}, got["dim"])
	assert.Equal(t, int64(9007199254740993), got["big"])
	assert.Equal(t, bson.DateTime(time.Date(2026, 11, 23, 10, 0, 0, 123e6, time.UTC).UnixMilli()), got["at"])
	assert.Nil(t, got["none"])
	assert.Contains(t, got, "none")

	// Bad data fails its event permanently; the rest is written.
	err = task.Put(t.Context(), []event.Event{
		jsonEvent(t, "4", `[1, 2]`),
		jsonEvent(t, "5", `{"qty": 5}`),
		jsonEvent(t, "6", `{"sku": "c"}`),
	})
	var pe *connectors.PartialError
	require.ErrorAs(t, err, &pe)
	assert.Len(t, pe.Failed, 2)
	assert.Contains(t, pe.Failed, 0)
	assert.Contains(t, pe.Failed, 1)
	require.NoError(t, coll.FindOne(t.Context(), bson.D{{Key: "sku", Value: "c"}}).Err())
}

func TestMongoDBSinkInsert(t *testing.T) {
	uri := infra.StartFerretDB(t)
	coll := client(t, uri).Database("meshd").Collection("insert")
	task := newSinkTask(t, map[string]any{"uri": uri, "database": "meshd", "collection": "insert"})
	require.NoError(t, task.Put(t.Context(), []event.Event{
		jsonEvent(t, "1", `{"v": 1}`), jsonEvent(t, "2", `{"v": 1}`), jsonEvent(t, "3", `{"_id": "fixed", "v": 2}`),
	}))
	n, err := coll.CountDocuments(t.Context(), bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)
	// A duplicate _id is a permanent failure of that event only.
	err = task.Put(t.Context(), []event.Event{jsonEvent(t, "4", `{"_id": "fixed"}`)})
	var pe *connectors.PartialError
	require.ErrorAs(t, err, &pe)
	assert.Len(t, pe.Failed, 1)
}

// FerretDB has no change streams: the changestream mode fails at start
// with a clear error, and poll mode is the one this server allows.
func TestMongoDBSourceChangeStreamRefusedByFerretDB(t *testing.T) {
	uri := infra.StartFerretDB(t)
	cfg, err := mongodb.SourceSpec.Validate(map[string]any{"connector.type": mongodb.SourceType, "topic": "t",
		"uri": uri, "database": "meshd", "collection": "cs", "mode": "changestream"})
	require.NoError(t, err)
	task := &mongodb.SourceTask{}
	err = task.Start(t.Context(), cfg)
	if err == nil {
		_ = task.Stop(context.Background())
		t.Fatal("FerretDB accepted a change stream")
	}
	assert.Contains(t, err.Error(), "change stream")
	require.NoError(t, task.Stop(context.Background()))
}

func TestMongoDBBadConfig(t *testing.T) {
	for _, tc := range []struct {
		spec  connectors.Spec
		raw   map[string]any
		field string
	}{
		{mongodb.SinkSpec, map[string]any{"uri": "http://user:pw@x", "database": "d", "collection": "c"}, "uri"},
		{mongodb.SinkSpec, map[string]any{"uri": "mongodb://x", "collection": "c"}, "database"},
		{mongodb.SinkSpec, map[string]any{"uri": "mongodb://x", "database": "d", "collection": ""}, "collection"},
		{mongodb.SinkSpec, map[string]any{"uri": "mongodb://x", "database": "d", "collection": "c", "upsert": true, "key.field": ""}, "key.field"},
		{mongodb.SinkSpec, map[string]any{"uri": "mongodb://x", "database": "d", "collection": "c", "timeout": "0s"}, "timeout"},
		{mongodb.SourceSpec, map[string]any{"uri": "mongodb://x", "database": "d", "collection": "c", "mode": "tail"}, "mode"},
		{mongodb.SourceSpec, map[string]any{"uri": "mongodb://x", "database": "d", "collection": "c", "poll.field": ""}, "poll.field"},
		{mongodb.SourceSpec, map[string]any{"uri": "mongodb://x", "database": "d", "collection": "c", "poll.interval": "-1s"}, "poll.interval"},
		{mongodb.SourceSpec, map[string]any{"uri": "mongodb://x", "database": "d", "collection": "c", "poll.batch": 0}, "poll.batch"},
	} {
		t.Run(tc.field, func(t *testing.T) {
			tc.raw["connector.type"] = tc.spec.Name
			tc.raw["topic"] = "t"
			_, err := tc.spec.Validate(tc.raw)
			var ve *connectors.ValidationError
			require.ErrorAs(t, err, &ve)
			assert.NotEmpty(t, ve.Field(tc.field), "error names %s: %v", tc.field, err)
			assert.NotContains(t, err.Error(), "pw", "the URI is not echoed")
		})
	}
}

// Polling a timestamp field, each update of a document is an event of its
// own id (the mesh drops a second event of one id within its duplicate
// window, which lost every update made within two minutes of the last),
// and a version read again after a restart has the same id.
func TestMongoDBSourceUpdatesHaveTheirOwnIDs(t *testing.T) {
	uri := infra.StartFerretDB(t)
	coll := client(t, uri).Database("meshd").Collection("updates")
	cfg, err := mongodb.SourceSpec.Validate(map[string]any{"connector.type": mongodb.SourceType, "topic": "t",
		"uri": uri, "database": "meshd", "collection": "updates", "poll.field": "at", "poll.interval": "10ms"})
	require.NoError(t, err)
	start := func(offsets map[string]string) *mongodb.SourceTask {
		task := &mongodb.SourceTask{}
		task.Init(connectortest.TaskContext(offsets))
		require.NoError(t, task.Start(t.Context(), cfg))
		t.Cleanup(func() { _ = task.Stop(context.Background()) })
		return task
	}
	task := start(nil)
	at := time.UnixMilli(1_700_000_000_000)
	_, err = coll.InsertOne(t.Context(), bson.D{{Key: "_id", Value: "doc"}, {Key: "at", Value: at}, {Key: "n", Value: 0}})
	require.NoError(t, err)
	var recs []connectors.Record
	for i := 1; i <= 3; i++ {
		got, err := task.Poll(t.Context())
		require.NoError(t, err)
		require.Len(t, got, 1)
		recs = append(recs, got...)
		_, err = coll.UpdateOne(t.Context(), bson.D{{Key: "_id", Value: "doc"}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "at", Value: at.Add(time.Duration(i) * time.Second)}, {Key: "n", Value: i}}}})
		require.NoError(t, err)
	}
	got, err := task.Poll(t.Context())
	require.NoError(t, err)
	require.Len(t, got, 1)
	recs = append(recs, got...)
	ids := map[string]bool{}
	for _, r := range recs {
		ids[r.Event.ID()] = true
		assert.Contains(t, r.Event.ID(), "doc@")
	}
	assert.Len(t, ids, 4, "each version has its own id: %v", ids)
	restart := start(nil)
	got, err = restart.Poll(t.Context())
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, recs[3].Event.ID(), got[0].Event.ID(), "a version read again has the same id")
}

// A server that cannot be reached holds the batch (bridge.Unavailable:
// no attempt spent) instead of failing its events one attempt at a time.
func TestMongoDBSinkUnreachableHolds(t *testing.T) {
	uri := infra.StartFerretDB(t)
	u, err := url.Parse(uri)
	require.NoError(t, err)
	p := infra.StartProxy(t, u.Host)
	task := newSinkTask(t, map[string]any{"uri": "mongodb://" + p.Addr + "/", "database": "meshd", "collection": "down", "timeout": "1s"})
	p.SetFailing(true)
	err = task.Put(t.Context(), []event.Event{jsonEvent(t, "1", `{"v": 1}`), jsonEvent(t, "2", `{"v": 2}`)})
	require.Error(t, err)
	var pe *connectors.PartialError
	require.ErrorAs(t, err, &pe)
	for i := range 2 {
		class, _ := bridge.Classify(pe.Failed[i])
		assert.Equal(t, bridge.Unavailable, class, "event %d: %v", i, pe.Failed[i])
	}
	p.SetFailing(false)
	require.Eventually(t, func() bool { return task.Put(t.Context(), []event.Event{jsonEvent(t, "3", `{"v": 3}`)}) == nil },
		30*time.Second, 100*time.Millisecond, "writes again once the server is back")
}

// With json.format canonical every BSON type survives mongodb-source →
// mongodb-sink: Int64 stays Int64 (relaxed JSON brings a small one back as
// Int32), a double 2.0 stays a double, a decimal keeps its trailing zero.
func TestMongoDBCanonicalRoundTrip(t *testing.T) {
	uri := infra.StartFerretDB(t)
	db := client(t, uri).Database("meshd")
	doc := bson.D{{Key: "_id", Value: "k"}, {Key: "i64", Value: int64(5)}, {Key: "i32", Value: int32(6)}, {Key: "d", Value: 2.0},
		{Key: "at", Value: bson.DateTime(1_700_000_000_123)}, {Key: "arr", Value: bson.A{int64(1), "x"}}}
	_, err := db.Collection("canon_src").InsertOne(t.Context(), doc)
	require.NoError(t, err)
	for _, c := range []struct {
		format  string
		wantI64 any
	}{{"canonical", int64(5)}, {"relaxed", int32(5)}} {
		t.Run(c.format, func(t *testing.T) {
			cfg, err := mongodb.SourceSpec.Validate(map[string]any{"connector.type": mongodb.SourceType, "topic": "t",
				"uri": uri, "database": "meshd", "collection": "canon_src", "json.format": c.format})
			require.NoError(t, err)
			src := &mongodb.SourceTask{}
			src.Init(connectortest.TaskContext(nil))
			require.NoError(t, src.Start(t.Context(), cfg))
			defer src.Stop(context.Background())
			recs, err := src.Poll(t.Context())
			require.NoError(t, err)
			require.Len(t, recs, 1)
			sink := newSinkTask(t, map[string]any{"uri": uri, "database": "meshd", "collection": "canon_" + c.format})
			require.NoError(t, sink.Put(t.Context(), []event.Event{recs[0].Event}))
			var got bson.D
			require.NoError(t, db.Collection("canon_"+c.format).FindOne(t.Context(), bson.D{}).Decode(&got))
			m := bson.M{}
			for _, e := range got {
				m[e.Key] = e.Value
			}
			assert.Equal(t, c.wantI64, m["i64"])
			assert.Equal(t, int32(6), m["i32"])
			assert.Equal(t, 2.0, m["d"])
			assert.Equal(t, bson.DateTime(1_700_000_000_123), m["at"])
			if c.format == "canonical" {
				assert.Equal(t, doc, got, "the document, type for type")
			}
		})
	}
}
