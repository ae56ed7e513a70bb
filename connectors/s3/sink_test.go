package s3

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/test/infra"
)

// testEvents returns n events e-<from+i> with JSON data of about size
// bytes, on topic, with mesh sequences from+i.
func testEvents(topic string, from, n, size int) ([]event.Event, []connectors.Position) {
	evs := make([]event.Event, n)
	pos := make([]connectors.Position, n)
	pad := strings.Repeat("x", max(size-40, 0))
	for i := range n {
		e := event.New()
		e.SetID(fmt.Sprintf("e-%06d", from+i))
		e.SetSource("/test")
		e.SetType("dev.meshd.test")
		e.SetTime(time.Date(2026, 11, 30, 14, 5, 0, 0, time.UTC))
		// As the mesh hands JSON data over: bytes, not base64.
		e.SetDataContentType(event.ApplicationJSON)
		e.DataEncoded = []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, from+i, pad))
		evs[i] = e
		pos[i] = connectors.Position{Topic: topic, Sequence: uint64(from + i)}
	}
	return evs, pos
}

// startSink starts a sink task of connector "test" on bucket.
func startSink(t testing.TB, s *server, bucket string, hc aws.HTTPClient, kv ...any) *SinkTask {
	t.Helper()
	task := &SinkTask{httpClient: hc}
	task.Init(connectortest.TaskContext(nil))
	require.NoError(t, task.Start(t.Context(), s.validated(t, SinkSpec, bucket, kv...)))
	t.Cleanup(func() { _ = task.Stop(context.Background()) })
	return task
}

func put(ctx context.Context, task *SinkTask, evs []event.Event, pos []connectors.Position) error {
	return task.PutPositions(ctx, evs, pos)
}

// requireOnce checks that the bucket holds each of ids exactly once, and
// nothing else.
func requireOnce(t *testing.T, s *server, bucket string, ids []string) {
	t.Helper()
	got := countIDs(s.eventIDs(t, bucket))
	for _, id := range ids {
		require.Equal(t, 1, got[id], "event %s is in the bucket once", id)
	}
	require.Len(t, got, len(ids), "the bucket holds no other events")
}

// requireFailedAlone checks that err fails the event at index i alone,
// for good, saying why.
func requireFailedAlone(t *testing.T, err error, i int, why string) {
	t.Helper()
	var partial *connectors.PartialError
	require.ErrorAs(t, err, &partial)
	require.Len(t, partial.Failed, 1)
	require.ErrorIs(t, partial.Failed[i], bridge.ErrPermanent)
	assert.ErrorContains(t, partial.Failed[i], why)
}

func ids(evs []event.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID()
	}
	return out
}

func TestSink(t *testing.T) {
	s := startServer(t)

	t.Run("Suite", func(t *testing.T) {
		bucket := s.bucket(t)
		proxy := infra.StartProxy(t, strings.TrimPrefix(s.Endpoint, "http://"))
		connectortest.RunSink(t, connectortest.Sink{
			Spec:   SinkSpec,
			Config: s.config(bucket, "http://"+proxy.Addr),
			Received: func() []string {
				var out []string
				for _, ids := range s.eventIDs(t, bucket) {
					out = append(out, ids...)
				}
				return out
			},
			SetFailing: proxy.SetFailing,
		})
	})

	t.Run("KeysAndFormats", func(t *testing.T) {
		for _, tc := range []struct {
			format, compression, key string
			want                     func(t *testing.T, body string)
		}{
			{FormatJSONL, CompressionNone, "orders/2026/11/30/14/orders+00000000000000000010-00000000000000000012.jsonl", func(t *testing.T, body string) {
				lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
				require.Len(t, lines, 3)
				var e event.Event
				require.NoError(t, json.Unmarshal([]byte(lines[0]), &e))
				assert.Equal(t, "e-000010", e.ID())
				assert.JSONEq(t, `{"n":10,"pad":"x"}`, string(e.Data()))
			}},
			{FormatData, CompressionGzip, "orders/2026/11/30/14/orders+00000000000000000010-00000000000000000012.txt.gz", func(t *testing.T, body string) {
				assert.Equal(t, "{\"n\":10,\"pad\":\"x\"}\n{\"n\":11,\"pad\":\"x\"}\n{\"n\":12,\"pad\":\"x\"}\n", body)
			}},
			{FormatJSON, CompressionNone, "orders/2026/11/30/14/orders+00000000000000000010-00000000000000000012.json", func(t *testing.T, body string) {
				var arr []event.Event
				require.NoError(t, json.Unmarshal([]byte(body), &arr))
				require.Len(t, arr, 3)
				assert.Equal(t, "e-000012", arr[2].ID())
			}},
		} {
			t.Run(tc.format+"-"+tc.compression, func(t *testing.T) {
				bucket := s.bucket(t)
				task := startSink(t, s, bucket, nil, FieldFormat, tc.format, FieldCompression, tc.compression)
				evs, pos := testEvents("orders", 10, 3, 41)
				require.NoError(t, put(t.Context(), task, evs, pos))
				require.Equal(t, []string{tc.key}, s.dataKeys(t, bucket))
				tc.want(t, string(s.get(t, bucket, tc.key)))
				head, err := s.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: &tc.key})
				require.NoError(t, err)
				assert.Equal(t, "3", head.Metadata[metaCount])
				if tc.compression == CompressionGzip {
					assert.Equal(t, "gzip", aws.ToString(head.ContentEncoding))
				}
			})
		}
	})

	t.Run("PartitionsByTimeAndTopicAndRolls", func(t *testing.T) {
		bucket := s.bucket(t)
		task := startSink(t, s, bucket, nil, FieldKeyTemplate, "{topic}/{yyyy}{MM}{dd}-{HH}{mm}/{first}-{last}{ext}", FieldFlushCount, 2)
		evs, pos := testEvents("a", 1, 6, 40)
		evs[2].SetTime(time.Date(2026, 12, 1, 0, 0, 0, 0, time.FixedZone("CET", 3600))) // 23:00 UTC the day before
		pos[4].Topic, pos[5].Topic = "b", "b"
		require.NoError(t, put(t.Context(), task, evs, pos))
		assert.ElementsMatch(t, []string{
			"a/20261130-1405/00000000000000000001-00000000000000000002.jsonl", // flush.count 2
			"a/20261130-1405/00000000000000000004-00000000000000000004.jsonl",
			"a/20261130-2300/00000000000000000003-00000000000000000003.jsonl",
			"b/20261130-1405/00000000000000000005-00000000000000000006.jsonl",
		}, s.dataKeys(t, bucket))
		requireOnce(t, s, bucket, ids(evs))
	})

	t.Run("BadEventsFailAlone", func(t *testing.T) {
		bucket := s.bucket(t)
		task := startSink(t, s, bucket, nil, FieldFormat, FormatData)
		evs, pos := testEvents("t", 1, 4, 40)
		require.NoError(t, evs[1].SetData("text/plain", []byte("two\nlines")))
		evs[3].DataEncoded = []byte("{\n  \"pretty\": true\n}") // JSON on several lines: compacted
		requireFailedAlone(t, put(t.Context(), task, evs, pos), 1, "line break")
		keys := s.dataKeys(t, bucket)
		require.Len(t, keys, 1)
		assert.Equal(t, "{\"n\":1,\"pad\":\"\"}\n{\"n\":3,\"pad\":\"\"}\n{\"pretty\":true}\n", string(s.get(t, bucket, keys[0])))
	})

	t.Run("BadJSONDataFailsAloneInJSONLines", func(t *testing.T) {
		bucket := s.bucket(t)
		task := startSink(t, s, bucket, nil)
		evs, pos := testEvents("t", 1, 3, 40)
		evs[0].DataEncoded = []byte("{not json")             // JSON by its content type, but not JSON
		evs[2].DataEncoded = []byte("{\n  \"pretty\": 1\n}") // on several lines: one in the object
		requireFailedAlone(t, put(t.Context(), task, evs, pos), 0, "not the JSON")
		keys := s.dataKeys(t, bucket)
		require.Len(t, keys, 1)
		lines := strings.Split(strings.TrimSuffix(string(s.get(t, bucket, keys[0])), "\n"), "\n")
		require.Len(t, lines, 2)
		assert.Contains(t, lines[1], `"data":{"pretty":1}`)
	})

	t.Run("RedeliveryInOtherBatchesWritesEachEventOnce", func(t *testing.T) {
		bucket := s.bucket(t)
		task := startSink(t, s, bucket, nil)
		evs, pos := testEvents("t", 1, 300, 100)
		require.NoError(t, put(t.Context(), task, evs[:100], pos[:100]))
		// A crash after the object was complete but before the acks: the
		// mesh redelivers those events, mixed with others, in other batches,
		// to a new task (nothing cached).
		task2 := startSink(t, s, bucket, nil)
		require.NoError(t, put(t.Context(), task2, evs[50:150], pos[50:150]))
		mixed := slices.Concat(evs[140:200], evs[20:30], evs[0:1])
		mixedPos := slices.Concat(pos[140:200], pos[20:30], pos[0:1])
		require.NoError(t, put(t.Context(), task2, mixed, mixedPos))
		require.NoError(t, put(t.Context(), task, evs[:100], pos[:100]), "the very batch again")
		require.NoError(t, put(t.Context(), task2, evs[195:300], pos[195:300]))
		requireOnce(t, s, bucket, ids(evs))
		assert.Len(t, s.dataKeys(t, bucket), 4, "objects 1-100, 101-150, 151-200, 201-300")
	})

	t.Run("ManifestWithoutObjectIsNoProof", func(t *testing.T) {
		bucket := s.bucket(t)
		task := startSink(t, s, bucket, nil)
		evs, pos := testEvents("t", 1, 20, 100)
		// A crash after the manifest, before the object was complete.
		seqs := []uint64{1, 2, 3, 4, 5}
		idsOf := make([]uint64, 5)
		for i := range idsOf {
			idsOf[i] = idHash(&evs[i])
		}
		require.NoError(t, task.index.add(t.Context(), "t/never-written.jsonl", seqs, idsOf, setHash(seqs, idsOf)))
		require.NoError(t, put(t.Context(), startSink(t, s, bucket, nil), evs, pos))
		requireOnce(t, s, bucket, ids(evs))
	})

	t.Run("SequencesOfAnotherMeshAreNotTheseEvents", func(t *testing.T) {
		bucket := s.bucket(t)
		task := startSink(t, s, bucket, nil)
		evs, pos := testEvents("t", 1, 10, 100)
		require.NoError(t, put(t.Context(), task, evs, pos))
		// Another meshd (a replica's sidecar, or this one with a new store)
		// numbers its own events 1..10 too.
		other, otherPos := testEvents("t", 1, 10, 100)
		for i := range other {
			other[i].SetSource("/replica-2")
		}
		require.NoError(t, put(t.Context(), startSink(t, s, bucket, nil), other, otherPos))
		require.NoError(t, put(t.Context(), startSink(t, s, bucket, nil), other, otherPos), "a retry finds its object beside")
		keys := s.dataKeys(t, bucket)
		require.Len(t, keys, 2, "the second object is written beside the first: %v", keys)
		assert.Regexp(t, `^t/2026/11/30/14/t\+00000000000000000001-00000000000000000010~[0-9a-f]{32}\.jsonl$`, slices.Max(keys))
		byKey := s.eventIDs(t, bucket)
		for _, k := range keys {
			assert.Len(t, byKey[k], 10)
		}
	})

	t.Run("ExpiredManifestFallsBackToTheKey", func(t *testing.T) {
		bucket := s.bucket(t)
		task := startSink(t, s, bucket, nil)
		evs, pos := testEvents("t", 1, 10, 100)
		require.NoError(t, put(t.Context(), task, evs, pos))
		n, err := task.index.sweep(t.Context(), 0)
		require.NoError(t, err)
		require.Equal(t, 1, n, "the manifest is past a retention of 0")
		// Redelivered as 1..10 again: the key says 1 is written; the rest
		// may be written twice, but nothing is lost.
		require.NoError(t, put(t.Context(), startSink(t, s, bucket, nil), evs, pos))
		got := countIDs(s.eventIDs(t, bucket))
		assert.Equal(t, 1, got["e-000001"])
		for _, id := range ids(evs) {
			assert.GreaterOrEqual(t, got[id], 1, id)
		}
	})

	t.Run("MultipartObject", func(t *testing.T) {
		bucket := s.bucket(t)
		ft := &faultyTransport{}
		task := startSink(t, s, bucket, &http.Client{Transport: ft}, FieldPartSize, MinPartSize, connectors.FieldBatchSize, 20_000)
		evs, pos := testEvents("big", 1, 2400, 5000) // ~12 MiB: three parts
		require.NoError(t, put(t.Context(), task, evs, pos))
		keys := s.dataKeys(t, bucket)
		require.Len(t, keys, 1)
		head, err := s.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: &keys[0]})
		require.NoError(t, err)
		assert.True(t, strings.HasSuffix(aws.ToString(head.ETag), `-3"`), "a multipart ETag of three parts: %s", aws.ToString(head.ETag))
		assert.Greater(t, aws.ToInt64(head.ContentLength), int64(2400*5000))
		parts := 0
		for _, r := range ft.requests() {
			if strings.HasPrefix(r, "PUT ") && strings.Contains(r, "partNumber=") {
				parts++
			}
		}
		assert.Equal(t, 3, parts)
		requireOnce(t, s, bucket, ids(evs))
	})

	t.Run("FailedMultipartIsAborted", func(t *testing.T) {
		for name, fail := range map[string]func(*http.Request) bool{
			"part 2": func(r *http.Request) bool {
				return r.Method == http.MethodPut && strings.Contains(r.URL.RawQuery, "partNumber=2")
			},
			"complete": func(r *http.Request) bool {
				return r.Method == http.MethodPost && strings.Contains(r.URL.RawQuery, "uploadId=")
			},
		} {
			t.Run(name, func(t *testing.T) {
				bucket := s.bucket(t)
				ft := &faultyTransport{}
				task := startSink(t, s, bucket, &http.Client{Transport: ft}, FieldPartSize, MinPartSize, connectors.FieldBatchSize, 20_000)
				ft.setFail(fail)
				evs, pos := testEvents("big", 1, 1300, 5000) // two parts
				err := put(t.Context(), task, evs, pos)
				require.Error(t, err)
				assert.ErrorIs(t, err, bridge.ErrUnavailable)
				assert.Empty(t, s.dataKeys(t, bucket), "no half object")
				uploads, err := s.client.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
				require.NoError(t, err)
				assert.Empty(t, uploads.Uploads, "the failed upload was aborted")
				ft.setFail(nil)
				require.NoError(t, put(t.Context(), task, evs, pos))
				requireOnce(t, s, bucket, ids(evs))
			})
		}
	})

	t.Run("StaleUploadsAreAborted", func(t *testing.T) {
		bucket := s.bucket(t)
		key := "t/2026/11/30/14/t+00000000000000000001-00000000000000000002.jsonl"
		other := "elsewhere/not-ours.bin"
		for _, k := range []string{key, other} {
			_, err := s.client.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String(k)})
			require.NoError(t, err)
		}
		task := &SinkTask{staleAfter: time.Nanosecond}
		task.Init(connectortest.TaskContext(nil))
		require.NoError(t, task.Start(t.Context(), s.validated(t, SinkSpec, bucket)))
		t.Cleanup(func() { _ = task.Stop(context.Background()) })
		// Start's sweep may be at it too: an upload aborted twice is fine.
		require.NoError(t, task.abortStale(t.Context()))
		uploads, err := s.client.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
		require.NoError(t, err)
		require.Len(t, uploads.Uploads, 1)
		assert.Equal(t, other, aws.ToString(uploads.Uploads[0].Key), "only uploads of keys the template makes are aborted")
	})

	t.Run("PutNeedsPositions", func(t *testing.T) {
		task := startSink(t, s, s.bucket(t), nil)
		evs, _ := testEvents("t", 1, 2, 40)
		assert.ErrorContains(t, task.Put(t.Context(), evs), "mesh position")
	})

	t.Run("BucketMissingOrKeysWrong", func(t *testing.T) {
		task := &SinkTask{}
		task.Init(connectortest.TaskContext(nil))
		err := task.Start(t.Context(), s.validated(t, SinkSpec, "no-such-bucket"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "no-such-bucket")
		cfg := s.validated(t, SinkSpec, s.bucket(t))
		cfg[FieldSecretKey] = "wrong-secret-value"
		err = (&SinkTask{}).Start(t.Context(), cfg)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "wrong-secret-value")
	})
}

// ackLossEngine loses the acks of the first batches: a crash after the
// objects were complete, before the mesh learnt it.
type ackLossEngine struct {
	mesh.Engine
	mu   sync.Mutex
	lose int // acks still to lose
}

func (e *ackLossEngine) Consume(ctx context.Context, cfg mesh.ConsumerConfig) (mesh.Consumer, error) {
	c, err := e.Engine.Consume(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &ackLossConsumer{Consumer: c, e: e}, nil
}

type ackLossConsumer struct {
	mesh.Consumer
	e *ackLossEngine
}

func (c *ackLossConsumer) Next(ctx context.Context) (mesh.Message, error) {
	m, err := c.Consumer.Next(ctx)
	if err != nil {
		return nil, err
	}
	return &ackLossMessage{Message: m, e: c.e}, nil
}

type ackLossMessage struct {
	mesh.Message
	e *ackLossEngine
}

func (m *ackLossMessage) Ack(ctx context.Context) error {
	m.e.mu.Lock()
	lose := m.e.lose > 0
	if lose {
		m.e.lose--
	}
	m.e.mu.Unlock()
	if lose {
		return errors.New("ack lost")
	}
	return m.Message.Ack(ctx)
}

// Through the runtime: acks lost after complete objects, a stop and start
// mid-stream and two tasks competing: every event is in exactly one
// object.
func TestSinkExactlyOnceThroughTheRuntime(t *testing.T) {
	s := startServer(t)
	bucket := s.bucket(t)
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	lossy := &ackLossEngine{Engine: eng, lose: 150}
	reg := connectors.NewRegistry()
	reg.Register(SinkSpec)
	fast := bridge.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	opts := worker.Options{Engine: lossy, Registry: reg, Backoff: fast, RestartBackoff: fast, AckWait: time.Second, WebhookListen: "127.0.0.1:0"}
	start := func() *worker.Runtime {
		rt, err := worker.New(opts)
		require.NoError(t, err)
		require.NoError(t, rt.Start(t.Context()))
		return rt
	}
	rt := start()
	cfg := s.config(bucket, "", connectors.FieldConnectorType, SinkType, connectors.FieldTopic, "orders",
		connectors.FieldTasksMax, 2, connectors.FieldBatchSize, 50, connectors.FieldBatchWait, "30ms", connectors.FieldAttempts, 1000)
	_, err = rt.Create(t.Context(), "orders-out", cfg)
	require.NoError(t, err)
	running := func(rt *worker.Runtime) {
		require.Eventually(t, func() bool {
			st, err := rt.Status("orders-out")
			return err == nil && len(st.Tasks) == 2 && st.Tasks[0].State == worker.StateRunning && st.Tasks[1].State == worker.StateRunning
		}, 20*time.Second, 20*time.Millisecond)
	}
	running(rt)

	const n = 1500
	var all []string
	publish := func(from, to int) {
		for i := from; i < to; i += 100 {
			batch := make([]*event.Event, 0, 100)
			for j := i; j < min(i+100, to); j++ {
				e := event.New()
				e.SetID(fmt.Sprintf("o-%05d", j))
				e.SetSource("/orders")
				e.SetType("dev.meshd.order")
				_ = e.SetData(event.ApplicationJSON, map[string]int{"n": j})
				batch = append(batch, &e)
				all = append(all, e.ID())
			}
			require.NoError(t, eng.Publish(t.Context(), "orders", batch))
		}
	}
	publish(0, n/2)
	require.Eventually(t, func() bool { return len(countIDs(s.eventIDs(t, bucket))) > n/4 }, 30*time.Second, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	require.NoError(t, rt.Stop(ctx), "stopping mid-stream")
	cancel()
	rt = start()
	running(rt)
	publish(n/2, n)
	require.Eventually(t, func() bool { return len(countIDs(s.eventIDs(t, bucket))) == n }, 60*time.Second, 100*time.Millisecond,
		"every event reaches the bucket")
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, rt.Stop(ctx))
	lossy.mu.Lock()
	assert.Zero(t, lossy.lose, "acks were lost, so events were redelivered")
	lossy.mu.Unlock()
	requireOnce(t, s, bucket, all)
}
