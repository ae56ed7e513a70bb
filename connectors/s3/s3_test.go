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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/test/infra"
)

// server is one versitygw shared by the subtests of a test; each subtest
// works in buckets of its own.
type server struct {
	*infra.S3
	client  *s3.Client
	buckets atomic.Int64
}

func startServer(t testing.TB) *server {
	t.Helper()
	srv := infra.StartS3(t)
	return &server{S3: srv, client: srv.Client()}
}

// bucket creates a new bucket.
func (s *server) bucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("bkt-%d", s.buckets.Add(1))
	_, err := s.client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &name})
	require.NoError(t, err)
	return name
}

// config is a connector config for bucket on s (through endpoint when
// given, e.g. a proxy) with the given field/value pairs.
func (s *server) config(bucket, endpoint string, kv ...any) map[string]any {
	if endpoint == "" {
		endpoint = s.Endpoint
	}
	cfg := map[string]any{
		FieldBucket: bucket, FieldEndpoint: endpoint, FieldPathStyle: true,
		FieldAccessKey: s.AccessKey, FieldSecretKey: s.SecretKey,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		cfg[kv[i].(string)] = kv[i+1]
	}
	return cfg
}

// validated validates a config of spec holding s.config's fields, topic
// "test" and the given ones.
func (s *server) validated(t testing.TB, spec connectors.Spec, bucket string, kv ...any) connectors.Config {
	t.Helper()
	raw := s.config(bucket, "", kv...)
	raw[connectors.FieldConnectorType] = spec.Name
	raw[connectors.FieldTopic] = "test"
	if spec.Kind == connectors.KindSink {
		raw[connectors.FieldTopic] = []string{"test"}
	}
	cfg, err := spec.Validate(raw)
	require.NoError(t, err)
	return cfg
}

// keys lists the keys under prefix.
func (s *server) keys(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	var out []string
	in := &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix}
	for {
		page, err := s.client.ListObjectsV2(context.Background(), in)
		require.NoError(t, err)
		for _, o := range page.Contents {
			out = append(out, aws.ToString(o.Key))
		}
		if !aws.ToBool(page.IsTruncated) {
			return out
		}
		in.ContinuationToken = page.NextContinuationToken
	}
}

// dataKeys lists the keys outside the sink's index.
func (s *server) dataKeys(t testing.TB, bucket string) []string {
	return slices.DeleteFunc(s.keys(t, bucket, ""), func(k string) bool { return strings.HasPrefix(k, DefaultIndexPrefix) })
}

func (s *server) get(t testing.TB, bucket, key string) []byte {
	t.Helper()
	out, err := s.client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	require.NoError(t, err, key)
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	require.NoError(t, err)
	if strings.HasSuffix(key, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		require.NoError(t, err, key)
		b, err = io.ReadAll(zr)
		require.NoError(t, err, key)
	}
	return b
}

func (s *server) put(t testing.TB, bucket, key string, body []byte) {
	t.Helper()
	_, err := s.client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)})
	require.NoError(t, err, key)
}

// eventIDs reads the JSON Lines objects the sink wrote and returns the id
// of every event in them, by object key (an event twice is there twice).
func (s *server) eventIDs(t testing.TB, bucket string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, k := range s.dataKeys(t, bucket) {
		sc := bufio.NewScanner(bytes.NewReader(s.get(t, bucket, k)))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e event.Event
			require.NoError(t, json.Unmarshal(sc.Bytes(), &e), "a line of %s", k)
			out[k] = append(out[k], e.ID())
		}
		require.NoError(t, sc.Err())
	}
	return out
}

// countIDs counts how often each id is in the bucket.
func countIDs(byKey map[string][]string) map[string]int {
	n := map[string]int{}
	for _, ids := range byKey {
		for _, id := range ids {
			n[id]++
		}
	}
	return n
}

// faultyTransport refuses the requests fail picks (with a 403 of its own;
// they are not sent) and records every request.
type faultyTransport struct {
	mu   sync.Mutex
	fail func(*http.Request) bool
	reqs []string // method, path and query, Range header
}

func (f *faultyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+" range="+r.Header.Get("Range"))
	fail := f.fail != nil && f.fail(r)
	f.mu.Unlock()
	if fail {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		// A refusal the SDK does not retry (it would retry a transport
		// error, with backoff).
		body := "<Error><Code>AccessDenied</Code><Message>injected failure</Message></Error>"
		return &http.Response{
			StatusCode: http.StatusForbidden, Status: "403 Forbidden", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/xml"}},
			Body:   io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r,
		}, nil
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (f *faultyTransport) setFail(fn func(*http.Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

func (f *faultyTransport) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}
