package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// bucketStore is a versitygw with a client of the test.
type bucketStore struct {
	t      *testing.T
	srv    *infra.S3
	client *s3.Client
}

func newBucketStore(t *testing.T) *bucketStore {
	srv := infra.StartS3(t)
	return &bucketStore{t: t, srv: srv, client: srv.Client()}
}

func (b *bucketStore) create(name string) {
	_, err := b.client.CreateBucket(b.t.Context(), &s3.CreateBucketInput{Bucket: &name})
	require.NoError(b.t, err)
}

// connConfig is the part of an s3 connector config that reaches the
// store, through endpoint.
func (b *bucketStore) connConfig(bucket, endpoint string) map[string]any {
	return map[string]any{"bucket": bucket, "endpoint": endpoint, "path.style": true,
		"access.key": b.srv.AccessKey, "secret.key": b.srv.SecretKey}
}

// objects returns the keys and metadata counts of the objects outside the
// sink's index.
func (b *bucketStore) objects(bucket string) map[string]int {
	out := map[string]int{}
	in := &s3.ListObjectsV2Input{Bucket: &bucket}
	for {
		page, err := b.client.ListObjectsV2(b.t.Context(), in)
		require.NoError(b.t, err)
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); !strings.HasPrefix(k, "_meshd/") {
				out[k] = -1
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			break
		}
		in.ContinuationToken = page.NextContinuationToken
	}
	for k := range out {
		h, err := b.client.HeadObject(b.t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: &k})
		require.NoError(b.t, err)
		out[k], _ = strconv.Atoi(h.Metadata["meshd-count"])
	}
	return out
}

// eventIDs counts the ids of the structured events in the JSON Lines
// objects of bucket, checking each object holds as many lines as its
// metadata says (it is whole).
func (b *bucketStore) eventIDs(bucket string) map[string]int {
	ids := map[string]int{}
	for k, count := range b.objects(bucket) {
		out, err := b.client.GetObject(b.t.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: &k})
		require.NoError(b.t, err)
		sc := bufio.NewScanner(out.Body)
		sc.Buffer(nil, 1<<20)
		lines := 0
		for sc.Scan() {
			var e struct{ ID string }
			require.NoError(b.t, json.Unmarshal(sc.Bytes(), &e), "a line of %s", k)
			ids[e.ID]++
			lines++
		}
		out.Body.Close()
		require.NoError(b.t, sc.Err())
		require.Equal(b.t, count, lines, "object %s is whole", k)
	}
	return ids
}

func (b *bucketStore) openUploads(bucket string) int {
	out, err := b.client.ListMultipartUploads(b.t.Context(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	require.NoError(b.t, err)
	return len(out.Uploads)
}

// slowProxy forwards TCP connections to an S3 server at about rate bytes
// per second each way, so that uploads take a while. Its mode can make a
// write of a data object (a key under dataPrefix) never arrive whole
// (stall), or arrive but its answer never come back (swallow: the object
// is complete, its writer never learns it); either is reported on hit.
type slowProxy struct {
	endpoint   string
	dataPrefix []byte // "PUT /bucket/prefix" of data objects
	mode       atomic.Int32
	hit        chan struct{}
}

// Modes of slowProxy.
const (
	forward int32 = iota
	stall
	swallow
)

func startSlowProxy(t *testing.T, target, bucket, prefix string, rate int) *slowProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &slowProxy{endpoint: "http://" + ln.Addr().String(), dataPrefix: []byte("/" + bucket + "/" + prefix), hit: make(chan struct{}, 16)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	pace := func(dst, src net.Conn, forward func([]byte) bool) {
		defer dst.Close()
		defer src.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && forward(buf[:n]) {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
				time.Sleep(time.Duration(n) * time.Second / time.Duration(rate)) // pacing the bytes, not waiting for an event
			}
			if err != nil {
				return
			}
		}
	}
	// writesData reports whether a request that starts with b writes a
	// data object whole (PutObject) or completes one (multipart).
	writesData := func(b []byte, completing bool) bool {
		line, _, _ := bytes.Cut(b, []byte("\r\n"))
		method, rest, _ := bytes.Cut(line, []byte(" "))
		if !bytes.HasPrefix(rest, p.dataPrefix) {
			return false
		}
		if completing {
			return string(method) == "POST" && bytes.Contains(line, []byte("uploadId=")) ||
				string(method) == "PUT" && !bytes.Contains(line, []byte("uploadId="))
		}
		return string(method) == "PUT"
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			var stalled, swallowed atomic.Bool
			wg.Go(func() {
				pace(s, c, func(b []byte) bool {
					switch mode := p.mode.Load(); {
					case stalled.Load():
						return false
					case mode == stall && writesData(b, false):
						stalled.Store(true)
						p.hit <- struct{}{}
						return false
					case mode == swallow && writesData(b, true):
						swallowed.Store(true)
						p.hit <- struct{}{}
					}
					return true
				})
			})
			wg.Go(func() { pace(c, s, func([]byte) bool { return !swallowed.Load() }) })
		}
	})
	return p
}

func (p *slowProxy) waitHit(t *testing.T) {
	select {
	case <-p.hit:
	case <-time.After(60 * time.Second):
		t.Fatal("no data object was written through the proxy")
	}
}

// publishOrders publishes events o-<from>..o-<to-1> with 1 KiB of data
// each, in batches.
func publishOrders(m *meshd, topic string, from, to int) {
	m.t.Helper()
	pad := strings.Repeat("x", 1024)
	for i := from; i < to; i += 250 {
		var batch []map[string]any
		for j := i; j < min(i+250, to); j++ {
			batch = append(batch, map[string]any{
				"specversion": "1.0", "id": fmt.Sprintf("o-%06d", j), "source": "/e2e/orders", "type": "com.example.order",
				"datacontenttype": "application/json", "data": map[string]any{"n": j, "pad": pad},
			})
		}
		body, err := json.Marshal(batch)
		require.NoError(m.t, err)
		resp, text := m.post("/v1/publish/"+topic, http.Header{"Content-Type": {"application/cloudevents-batch+json"}}, body)
		require.Equal(m.t, http.StatusNoContent, resp.StatusCode, text)
	}
}

// requireExactlyOnce waits until bucket's objects hold n events, checks
// nothing more is written for longer than the mesh's ack wait (when a
// redelivery would come), and that each event is there once.
func requireExactlyOnce(t *testing.T, store *bucketStore, bucket string, n int, prefix string) {
	written := func() int {
		sum := 0
		for _, count := range store.objects(bucket) {
			sum += count
		}
		return sum
	}
	require.Eventually(t, func() bool { return written() >= n }, 120*time.Second, 250*time.Millisecond,
		"every published event reaches the bucket")
	objects := len(store.objects(bucket))
	assert.Never(t, func() bool { return len(store.objects(bucket)) != objects }, 7*time.Second, 250*time.Millisecond,
		"no object is written after the redeliveries (ackWait 5s)")
	ids := store.eventIDs(bucket)
	require.Len(t, ids, n)
	for i := range n {
		id := fmt.Sprintf("%s%06d", prefix, i)
		require.Equal(t, 1, ids[id], "event %s is in exactly one object", id)
	}
}

// kill -9 of meshd while an s3-sink upload is in flight, and again after
// an object is complete but before its events were acked: afterwards
// every published event is in exactly one object, and every object is
// whole.
func TestS3SinkKill9(t *testing.T) {
	store := newBucketStore(t)
	store.create("archive")
	// 20 MB/s: a 7 MB object takes a third of a second to go up.
	proxy := startSlowProxy(t, strings.TrimPrefix(store.srv.Endpoint, "http://"), "archive", "orders/", 20<<20)
	m := newMeshd(t, "s3-sink", fastRetry)
	cfg := store.connConfig("archive", proxy.endpoint)
	for k, v := range map[string]any{"connector.type": "s3-sink", "topic": "orders", "batch.size": 6000, "batch.wait": "1s",
		"part.size": 5 << 20, "maxAttempts": 1000} {
		cfg[k] = v
	}
	code, body := m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "archive", "config": cfg})
	require.Equal(t, http.StatusCreated, code, body)
	m.waitConnector("archive", "RUNNING")
	const n = 30_000
	objects := func() int { return len(store.objects("archive")) }

	publishOrders(m, "orders", 0, n/5)
	require.Eventually(t, func() bool { return objects() > 0 }, 60*time.Second, 10*time.Millisecond)

	// Mid-upload: the next object's bytes never all arrive.
	before := objects()
	proxy.mode.Store(stall)
	publishOrders(m, "orders", n/5, 2*n/5)
	proxy.waitHit(t)
	m.kill9()
	proxy.mode.Store(forward)
	assert.Equal(t, before, objects(), "the object being uploaded is not complete")
	t.Logf("killed mid-upload: %d objects complete, %d multipart uploads left open", before, store.openUploads("archive"))
	m.start()
	m.waitConnector("archive", "RUNNING")

	// After an object is complete, before the acks: the answer to its
	// completion never reaches meshd.
	before = objects()
	proxy.mode.Store(swallow)
	publishOrders(m, "orders", 2*n/5, 3*n/5)
	proxy.waitHit(t)
	require.Eventually(t, func() bool { return objects() > before }, 30*time.Second, 10*time.Millisecond,
		"the object whose answer was dropped is complete")
	m.kill9()
	proxy.mode.Store(forward)
	t.Logf("killed after an object was complete, before its acks: %d objects complete", objects())
	m.start()
	m.waitConnector("archive", "RUNNING")

	publishOrders(m, "orders", 3*n/5, n)
	requireExactlyOnce(t, store, "archive", n, "o-")
	assert.Contains(t, m.logString(), "skipping events already written",
		"the events of the object completed before the kill came again and were found in the bucket")
}

// kill -9 of meshd while s3-source reads a 50 MB object (into s3-sink):
// the restart resumes the object, and every record reaches the output
// bucket once — the records read again after the kill are dropped by the
// mesh as duplicates.
func TestS3SourceKill9MidObject(t *testing.T) {
	store := newBucketStore(t)
	store.create("inbox")
	store.create("outbox")
	const n = 5000
	var obj bytes.Buffer
	pad := strings.Repeat("y", 10_000)
	for i := range n {
		fmt.Fprintf(&obj, `{"specversion":"1.0","id":"r-%06d","source":"/e2e/inbox","type":"com.example.row","datacontenttype":"application/json","data":{"pad":%q}}`+"\n", i, pad)
	}
	require.Greater(t, obj.Len(), 50_000_000)
	_, err := store.client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("inbox"), Key: aws.String("in/0001.jsonl"), Body: bytes.NewReader(obj.Bytes())})
	require.NoError(t, err)

	m := newMeshd(t, "s3-source", fastRetry)
	out := store.connConfig("outbox", store.srv.Endpoint)
	for k, v := range map[string]any{"connector.type": "s3-sink", "topic": "rows", "batch.size": 500, "batch.wait": "200ms", "maxAttempts": 1000} {
		out[k] = v
	}
	code, body := m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "outbox", "config": out})
	require.Equal(t, http.StatusCreated, code, body)
	m.waitConnector("outbox", "RUNNING")
	in := store.connConfig("inbox", store.srv.Endpoint)
	for k, v := range map[string]any{"connector.type": "s3-source", "topic": "rows", "prefix": "in/", "batch.max.records": 100, "poll.interval": "100ms"} {
		in[k] = v
	}
	code, body = m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "inbox", "config": in})
	require.Equal(t, http.StatusCreated, code, body)

	pos := func() int64 {
		code, body := m.adminCall(http.MethodGet, "/v1/connectors/inbox/offsets", nil)
		if code != http.StatusOK {
			return 0
		}
		var offs struct{ Offsets []struct{ Offset string } }
		require.NoError(t, json.Unmarshal([]byte(body), &offs), body)
		if len(offs.Offsets) == 0 {
			return 0
		}
		var o struct{ Pos int64 }
		require.NoError(t, json.Unmarshal([]byte(offs.Offsets[0].Offset), &o))
		return o.Pos
	}
	require.Eventually(t, func() bool { return pos() > int64(obj.Len())/5 }, 60*time.Second, 5*time.Millisecond, "the source reads the object")
	at := pos()
	m.kill9()
	require.Less(t, at, int64(obj.Len()), "killed mid-object")
	t.Logf("killed at byte %d of %d", at, obj.Len())

	m.start()
	m.waitConnector("inbox", "RUNNING")
	requireExactlyOnce(t, store, "outbox", n, "r-")
	// Every line is as long as the others: the restarted source resumed at
	// (or after) the sampled offset, it did not read the object again.
	readAgain := n - int(at/int64(obj.Len()/n))
	published := m.published("inbox")
	require.Positive(t, published)
	assert.LessOrEqual(t, published, readAgain, "the restarted meshd published only what lay after the committed offset")
	t.Logf("the restarted meshd published %d records of %d", published, n)
}

// published returns what meshd_connector_events_published_total says of a
// connector (0 if nothing yet).
func (m *meshd) published(connector string) int {
	m.t.Helper()
	resp, err := http.Get("http://" + m.admin + "/metrics")
	require.NoError(m.t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "meshd_connector_events_published_total{") && strings.Contains(line, `connector="`+connector+`"`) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			require.NoError(m.t, err, line)
			return int(v)
		}
	}
	return 0
}
