package s3

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
)

// jsonLines returns structured CloudEvents with the given ids, one a line,
// each with data of about pad bytes.
func jsonLines(ids []string, pad int) []byte {
	var b bytes.Buffer
	p := strings.Repeat("x", pad)
	for _, id := range ids {
		fmt.Fprintf(&b, `{"specversion":"1.0","id":%q,"source":"/s3test","type":"dev.meshd.test","datacontenttype":"application/json","data":{"pad":%q}}`+"\n", id, p)
	}
	return b.Bytes()
}

// numbered returns format with 0..n-1.
func numbered(format string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

// startSource starts a source task with these committed offsets.
func startSource(t testing.TB, s *server, bucket string, offsets map[string]string, hc aws.HTTPClient, kv ...any) *SourceTask {
	t.Helper()
	task := &SourceTask{httpClient: hc}
	task.Init(connectortest.TaskContext(offsets))
	require.NoError(t, task.Start(t.Context(), s.validated(t, SourceSpec, bucket, append([]any{FieldPollInterval, "20ms"}, kv...)...)))
	t.Cleanup(func() { _ = task.Stop(context.Background()) })
	return task
}

// pollN polls until n records came (committing each poll, as the runtime
// does once the mesh stored them) and returns them.
func pollN(t *testing.T, task *SourceTask, n int) []connectors.Record {
	t.Helper()
	var out []connectors.Record
	deadline := time.Now().Add(20 * time.Second)
	for len(out) < n {
		require.True(t, time.Now().Before(deadline), "got %d of %d records", len(out), n)
		recs, err := task.Poll(t.Context())
		require.NoError(t, err)
		require.NoError(t, task.Commit(t.Context(), recs))
		out = append(out, recs...)
	}
	require.Len(t, out, n)
	return out
}

// pollNone checks that polls for a while bring nothing.
func pollNone(t *testing.T, task *SourceTask) {
	t.Helper()
	for range 3 {
		recs, err := task.Poll(t.Context())
		require.NoError(t, err)
		require.Empty(t, recs)
	}
}

func recordIDs(recs []connectors.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Event.ID()
	}
	return out
}

func offsetOf(t *testing.T, r connectors.Record) offset {
	t.Helper()
	var o offset
	require.NoError(t, json.Unmarshal([]byte(r.Offset), &o))
	return o
}

func (s *server) exists(t *testing.T, bucket, key string) bool {
	t.Helper()
	_, err := s.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if isNotFound(err) {
		return false
	}
	require.NoError(t, err)
	return true
}

func TestSource(t *testing.T) {
	s := startServer(t)

	t.Run("Suite", func(t *testing.T) {
		bucket := s.bucket(t)
		var n atomic.Int64
		connectortest.RunSource(t, connectortest.Source{
			Spec:   SourceSpec,
			Config: s.config(bucket, "", FieldPrefix, "in/", FieldPollInterval, "50ms"),
			Produce: func(ctx context.Context, keys []string) error {
				key := fmt.Sprintf("in/obj-%06d.jsonl", n.Add(1))
				_, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(jsonLines(keys, 10))})
				return err
			},
		})
	})

	t.Run("JSONLinesSkipsWhatIsNoEvent", func(t *testing.T) {
		bucket := s.bucket(t)
		body := string(jsonLines([]string{"a"}, 5)) + "\n   \nnot json\n" +
			`{"specversion":"1.0","id":"no-type","source":"/x"}` + "\n" + string(jsonLines([]string{"b"}, 5))
		s.put(t, bucket, "x/1.jsonl", []byte(strings.TrimSuffix(body, "\n"))) // the last line without its line break
		recs := pollN(t, startSource(t, s, bucket, nil, nil), 2)
		assert.Equal(t, []string{"a", "b"}, recordIDs(recs))
		last := offsetOf(t, recs[1])
		assert.True(t, last.Done)
		assert.Equal(t, int64(len(body)-1), last.Pos)
		assert.Equal(t, Partition(bucket, ""), recs[1].Partition)
	})

	t.Run("LinesObjectFixedAndGzip", func(t *testing.T) {
		bucket := s.bucket(t)
		s.put(t, bucket, "lines/1.txt", []byte("first line\r\nsecond\n"))
		_, err := s.client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("obj/photo.png"), Body: bytes.NewReader([]byte{0x89, 'P', 'N', 'G', 0, 1, 2}), ContentType: aws.String("image/png")})
		require.NoError(t, err)
		s.put(t, bucket, "fixed/1.dat", []byte("00000001Alice     0000012.50\n00000002Bob       0000000.99\r\n00000003Carol     00000"))
		s.put(t, bucket, "fixed/2.dat", []byte("00000004Dan       0000001.0000000005Eve       0000002.00"))
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		_, _ = zw.Write(jsonLines([]string{"z1", "z2"}, 5))
		require.NoError(t, zw.Close())
		s.put(t, bucket, "gz/1.jsonl.gz", gz.Bytes())

		recs := pollN(t, startSource(t, s, bucket, nil, nil, FieldPrefix, "lines/", FieldReadMode, ModeLines), 2)
		assert.Equal(t, "first line", string(recs[0].Event.Data()))
		assert.Equal(t, "second", string(recs[1].Event.Data()))
		assert.Equal(t, TypeLine, recs[0].Event.Type())
		assert.Equal(t, "s3://"+bucket+"/lines/1.txt", recs[0].Event.Source())
		assert.Equal(t, "lines/1.txt", recs[0].Event.Subject())
		assert.True(t, strings.HasSuffix(recs[1].Event.ID(), ":12"), "the id names the line's byte position: %s", recs[1].Event.ID())

		recs = pollN(t, startSource(t, s, bucket, nil, nil, FieldPrefix, "obj/", FieldReadMode, ModeObject), 1)
		assert.Equal(t, []byte{0x89, 'P', 'N', 'G', 0, 1, 2}, recs[0].Event.Data())
		assert.Equal(t, "image/png", recs[0].Event.DataContentType())
		assert.True(t, offsetOf(t, recs[0]).Done)

		recs = pollN(t, startSource(t, s, bucket, nil, nil, FieldPrefix, "fixed/", FieldReadMode, ModeFixed, FieldSchema, "id:8,name:10,amount:10"), 4)
		var rows []map[string]string
		for _, r := range recs {
			var m map[string]string
			require.NoError(t, json.Unmarshal(r.Event.Data(), &m))
			rows = append(rows, m)
		}
		assert.Equal(t, []map[string]string{
			{"id": "00000001", "name": "Alice", "amount": "0000012.50"},
			{"id": "00000002", "name": "Bob", "amount": "0000000.99"},
			{"id": "00000004", "name": "Dan", "amount": "0000001.00"},
			{"id": "00000005", "name": "Eve", "amount": "0000002.00"},
		}, rows, "records with and without line breaks; a record cut short is dropped")

		recs = pollN(t, startSource(t, s, bucket, nil, nil, FieldPrefix, "gz/"), 2)
		assert.Equal(t, []string{"z1", "z2"}, recordIDs(recs))
	})

	t.Run("ResumesAtTheOffsetWithARangedGET", func(t *testing.T) {
		bucket := s.bucket(t)
		ids := numbered("r-%d", 10)
		s.put(t, bucket, "a.jsonl", jsonLines(ids, 20))
		recs := pollN(t, startSource(t, s, bucket, nil, nil, FieldBatchMaxRecords, 4), 4)
		o := offsetOf(t, recs[3])
		require.False(t, o.Done)
		ft := &faultyTransport{}
		task := startSource(t, s, bucket, map[string]string{recs[3].Partition: recs[3].Offset}, &http.Client{Transport: ft})
		rest := pollN(t, task, 6)
		assert.Equal(t, ids[4:], recordIDs(rest), "never re-reads, never skips")
		var gets []string
		for _, r := range ft.requests() {
			if strings.HasPrefix(r, "GET /"+bucket+"/a.jsonl") {
				gets = append(gets, r)
			}
		}
		require.Len(t, gets, 1)
		assert.Contains(t, gets[0], fmt.Sprintf("range=bytes=%d-", o.Pos))
		pollNone(t, task)
	})

	t.Run("ReplacedObjectIsReadAgain", func(t *testing.T) {
		bucket := s.bucket(t)
		s.put(t, bucket, "a.jsonl", jsonLines([]string{"v1-a", "v1-b", "v1-c"}, 5))
		task := startSource(t, s, bucket, nil, nil, FieldBatchMaxRecords, 2)
		first := pollN(t, task, 2)
		// Replaced after its end was read: read again from its start.
		rest := pollN(t, task, 1)
		assert.Equal(t, []string{"v1-a", "v1-b", "v1-c"}, recordIDs(append(first, rest...)))
		s.put(t, bucket, "a.jsonl", jsonLines([]string{"v2-a", "v2-b"}, 5))
		assert.Equal(t, []string{"v2-a", "v2-b"}, recordIDs(pollN(t, task, 2)))
		pollNone(t, task)

		// Replaced mid-way, while meshd was down: the committed offset's
		// ETag no longer holds; read from the start.
		mid := first[1]
		s.put(t, bucket, "a.jsonl", jsonLines([]string{"v3-a", "v3-b", "v3-c"}, 5))
		again := startSource(t, s, bucket, map[string]string{mid.Partition: mid.Offset}, nil)
		assert.Equal(t, []string{"v3-a", "v3-b", "v3-c"}, recordIDs(pollN(t, again, 3)))
	})

	t.Run("AfterReadOnlyOnceCommitted", func(t *testing.T) {
		for _, mode := range []string{AfterDelete, AfterMove} {
			t.Run(mode, func(t *testing.T) {
				bucket := s.bucket(t)
				s.put(t, bucket, "in/1.jsonl", jsonLines([]string{"a", "b", "c"}, 5))
				s.put(t, bucket, "in/2 ü+%.jsonl", jsonLines([]string{"d"}, 5)) // a key to escape
				kv := []any{FieldPrefix, "in/", FieldAfterRead, mode, FieldBatchMaxRecords, 2}
				if mode == AfterMove {
					kv = append(kv, FieldMovePrefix, "done/")
				}
				task := startSource(t, s, bucket, nil, nil, kv...)
				recs, err := task.Poll(t.Context())
				require.NoError(t, err)
				require.Len(t, recs, 2)
				require.NoError(t, task.Commit(t.Context(), recs))
				assert.True(t, s.exists(t, bucket, "in/1.jsonl"), "a record of the object is not polled yet")
				recs, err = task.Poll(t.Context())
				require.NoError(t, err)
				require.Equal(t, []string{"c", "d"}, recordIDs(recs))
				assert.True(t, s.exists(t, bucket, "in/1.jsonl"), "its last record's offset is not committed yet")
				require.NoError(t, task.Commit(t.Context(), recs))
				assert.False(t, s.exists(t, bucket, "in/1.jsonl"))
				assert.False(t, s.exists(t, bucket, "in/2 ü+%.jsonl"))
				if mode == AfterMove {
					assert.Equal(t, string(jsonLines([]string{"a", "b", "c"}, 5)), string(s.get(t, bucket, "done/1.jsonl")))
					assert.True(t, s.exists(t, bucket, "done/2 ü+%.jsonl"))
				}
				pollNone(t, task)

				// Stopped after the commit, before the action: the restart does it.
				s.put(t, bucket, "in/3.jsonl", jsonLines([]string{"e"}, 5))
				done, err := json.Marshal(offset{Key: "in/3.jsonl", ETag: etag(t, s, bucket, "in/3.jsonl"), Pos: 100, Done: true})
				require.NoError(t, err)
				restarted := startSource(t, s, bucket, map[string]string{Partition(bucket, "in/"): string(done)}, nil, kv...)
				pollNone(t, restarted)
				assert.False(t, s.exists(t, bucket, "in/3.jsonl"))
			})
		}
	})

	t.Run("ListsPageByPage", func(t *testing.T) {
		bucket := s.bucket(t)
		want := numbered("p-%05d", listPage+100)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for i, id := range want {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				s.put(t, bucket, fmt.Sprintf("k/%05d.jsonl", i), jsonLines([]string{id}, 1))
			})
		}
		wg.Wait()
		recs := pollN(t, startSource(t, s, bucket, nil, nil, FieldPrefix, "k/"), len(want))
		assert.Equal(t, want, recordIDs(recs), "every object once, in key order, across listing pages")
	})

	t.Run("ConnectionDropsMidObject", func(t *testing.T) {
		bucket := s.bucket(t)
		ids := numbered("d-%04d", 2000)
		s.put(t, bucket, "a.jsonl", jsonLines(ids, 500))
		ft := &faultyTransport{}
		cut := &cutTransport{faultyTransport: ft, after: 300_000}
		task := startSource(t, s, bucket, nil, &http.Client{Transport: cut})
		recs := pollN(t, task, len(ids))
		assert.Equal(t, ids, recordIDs(recs))
		require.Equal(t, int64(1), cut.cuts.Load())
		var ranged []string
		for _, r := range ft.requests() {
			if strings.HasPrefix(r, "GET /"+bucket+"/a.jsonl") && !strings.HasSuffix(r, "range=") {
				ranged = append(ranged, r)
			}
		}
		assert.Len(t, ranged, 1, "the object is opened again once, at its next record")
	})
}

// cutTransport cuts the first GET body after `after` bytes.
type cutTransport struct {
	*faultyTransport
	after int
	cuts  atomic.Int64
}

func (c *cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.faultyTransport.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || c.cuts.Load() > 0 || !strings.HasSuffix(r.URL.Path, ".jsonl") {
		return resp, err
	}
	c.cuts.Add(1)
	resp.Body = &cutBody{ReadCloser: resp.Body, left: c.after}
	return resp, nil
}

type cutBody struct {
	io.ReadCloser
	left int
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("connection reset (injected)")
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= n
	return n, err
}

func (b *cutBody) Close() error { return b.ReadCloser.Close() }

func etag(t *testing.T, s *server, bucket, key string) string {
	t.Helper()
	h, err := s.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	require.NoError(t, err)
	return aws.ToString(h.ETag)
}

// counter reads a topic and counts each event id.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func count(t *testing.T, eng mesh.Engine, topic string) *counter {
	c := &counter{n: map[string]int{}}
	cons, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: topic, Group: "counter"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			m, err := cons.Next(ctx)
			if err != nil {
				return
			}
			c.mu.Lock()
			c.n[m.Event().ID()]++
			c.mu.Unlock()
			_ = m.Ack(ctx)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait(); _ = cons.Close() })
	return c
}

func (c *counter) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}

func (c *counter) twice() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for id, n := range c.n {
		if n > 1 {
			out = append(out, id)
		}
	}
	return out
}

// runtimeEnv is an embedded mesh and a runtime on it whose s3 tasks use
// hc.
type runtimeEnv struct {
	t    *testing.T
	eng  mesh.Engine
	opts worker.Options
	rt   *worker.Runtime
}

func newRuntimeEnv(t *testing.T, hc aws.HTTPClient) *runtimeEnv {
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	spec := SourceSpec
	spec.New = func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &SourceTask{httpClient: hc} }, connectors.SplitList(FieldPrefix))
	}
	reg := connectors.NewRegistry()
	reg.Register(spec)
	fast := bridge.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	e := &runtimeEnv{t: t, eng: eng, opts: worker.Options{Engine: eng, Registry: reg, Backoff: fast, RestartBackoff: fast, WebhookListen: "127.0.0.1:0"}}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *runtimeEnv) start() {
	rt, err := worker.New(e.opts)
	require.NoError(e.t, err)
	require.NoError(e.t, rt.Start(e.t.Context()))
	e.rt = rt
}

func (e *runtimeEnv) stop() {
	if e.rt == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	assert.NoError(e.t, e.rt.Stop(ctx))
	e.rt = nil
}

// A 50 MB object, stopped mid-way and resumed: a ranged GET at the
// committed position, every record once.
func TestSourceResumes50MBObject(t *testing.T) {
	s := startServer(t)
	bucket := s.bucket(t)
	const n = 5_000 // of 10 kB
	ids := numbered("big-%06d", n)
	body := jsonLines(ids, 10_000)
	require.Greater(t, len(body), 50_000_000)
	s.put(t, bucket, "big/0001.jsonl", body)

	ft := &faultyTransport{}
	e := newRuntimeEnv(t, &http.Client{Transport: ft})
	got := count(t, e.eng, "big")
	cfg := s.config(bucket, "", connectors.FieldConnectorType, SourceType, connectors.FieldTopic, "big", FieldPrefix, "big/", FieldPollInterval, "50ms")
	_, err := e.rt.Create(t.Context(), "big-in", cfg)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return got.distinct() >= n/5 }, 60*time.Second, 10*time.Millisecond)
	require.NoError(t, e.rt.Pause(t.Context(), "big-in")) // its task stops; its offsets stay
	offs, err := e.rt.Offsets(t.Context(), "big-in")
	require.NoError(t, err)
	require.Len(t, offs, 1)
	e.stop()
	var o offset
	require.Equal(t, Partition(bucket, "big/"), offs[0].Partition)
	require.NoError(t, json.Unmarshal([]byte(offs[0].Offset), &o))
	require.False(t, o.Done)
	require.Greater(t, o.Pos, int64(0))
	t.Logf("stopped at byte %d of %d, %d events published", o.Pos, len(body), got.distinct())
	before := len(ft.requests())

	e.start()
	require.NoError(t, e.rt.Resume(t.Context(), "big-in"))
	require.Eventually(t, func() bool { return got.distinct() == n }, 120*time.Second, 50*time.Millisecond, "every record arrives")
	assert.Empty(t, got.twice(), "no record is published twice")
	var gets []string
	for _, r := range ft.requests()[before:] {
		if strings.HasPrefix(r, "GET /"+bucket+"/big/0001.jsonl") {
			gets = append(gets, r)
		}
	}
	require.NotEmpty(t, gets)
	assert.Contains(t, gets[0], fmt.Sprintf("range=bytes=%d-", o.Pos), "the restart resumes with a ranged GET at the committed position")
}

// tasks.max 2 deals the prefixes out; no object is read twice.
func TestSourceTasksSplitPrefixes(t *testing.T) {
	s := startServer(t)
	bucket := s.bucket(t)
	var all []string
	for _, p := range []string{"a/", "b/", "c/"} {
		for i := range 5 {
			ids := []string{fmt.Sprintf("%s%d-x", p, i), fmt.Sprintf("%s%d-y", p, i)}
			all = append(all, ids...)
			s.put(t, bucket, fmt.Sprintf("%s%03d.jsonl", p, i), jsonLines(ids, 10))
		}
	}
	e := newRuntimeEnv(t, nil)
	got := count(t, e.eng, "split")
	cfg := s.config(bucket, "", connectors.FieldConnectorType, SourceType, connectors.FieldTopic, "split",
		FieldPrefix, []any{"a/", "b/", "c/"}, connectors.FieldTasksMax, 2, FieldPollInterval, "50ms")
	_, err := e.rt.Create(t.Context(), "split-in", cfg)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := e.rt.Status("split-in")
		return err == nil && len(st.Tasks) == 2
	}, 20*time.Second, 20*time.Millisecond, "two tasks run")
	require.Eventually(t, func() bool { return got.distinct() == len(all) }, 30*time.Second, 20*time.Millisecond)
	assert.Empty(t, got.twice())
	tasks, err := e.rt.Tasks("split-in")
	require.NoError(t, err)
	require.Len(t, tasks, 2)
	assert.Equal(t, []string{"a/", "c/"}, tasks[0].Config[FieldPrefix])
	assert.Equal(t, []string{"b/"}, tasks[1].Config[FieldPrefix])
}

// Lines longer than the read buffer come whole; one over the limit is
// skipped with its bytes counted, and the next line is read.
func TestReadLine(t *testing.T) {
	long := strings.Repeat("a", 3*readBuffer)
	huge := strings.Repeat("b", 5*readBuffer)
	br := bufio.NewReaderSize(strings.NewReader(long+"\r\n"+huge+"\nlast"), readBuffer)
	line, n, err := readLine(br, 4*readBuffer)
	require.NoError(t, err)
	assert.Equal(t, long, string(line))
	assert.Equal(t, len(long)+2, n)
	_, n, err = readLine(br, 4*readBuffer)
	require.ErrorIs(t, err, errTooLong)
	assert.Equal(t, len(huge)+1, n)
	line, n, err = readLine(br, 4*readBuffer)
	require.NoError(t, err)
	assert.Equal(t, "last", string(line))
	assert.Equal(t, 4, n)
	_, n, err = readLine(br, 4*readBuffer)
	assert.ErrorIs(t, err, io.EOF)
	assert.Zero(t, n)
}
