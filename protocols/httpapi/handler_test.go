package httpapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/mesh"
)

// recorder is a backend that stores what it is given.
type recorder struct {
	mu         sync.Mutex
	topic      string
	events     []*event.Event
	publishErr error
	subs       map[string]bridge.Subscription
	revs       map[string]uint64
	rev        uint64
	replays    []string // id=from
}

func (r *recorder) Publish(_ context.Context, topic string, events []*event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.publishErr != nil {
		return r.publishErr
	}
	r.topic = topic
	r.events = append(r.events, events...)
	return nil
}

func (r *recorder) CreateSubscription(_ context.Context, sub bridge.Subscription) (bridge.Subscription, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sub.ID == "" {
		return sub, fmt.Errorf("%w: id: missing", bridge.ErrInvalidSubscription)
	}
	if _, ok := r.subs[sub.ID]; ok {
		return sub, fmt.Errorf("%w: %q", bridge.ErrSubscriptionExists, sub.ID)
	}
	if sub.Group == "" {
		sub.Group = sub.ID
	}
	r.subs[sub.ID] = sub
	r.rev++
	r.revs[sub.ID] = r.rev
	return sub, nil
}

func (r *recorder) LookupSubscription(_ context.Context, id string) (bridge.Subscription, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sub, ok := r.subs[id]
	if !ok {
		return sub, 0, fmt.Errorf("%w: %q", bridge.ErrSubscriptionNotFound, id)
	}
	return sub, r.revs[id], nil
}

func (r *recorder) UpdateSubscription(_ context.Context, sub bridge.Subscription, rev uint64) (bridge.Subscription, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.subs[sub.ID]; !ok {
		return sub, 0, fmt.Errorf("%w: %q", bridge.ErrSubscriptionNotFound, sub.ID)
	}
	if rev != 0 && rev != r.revs[sub.ID] {
		return sub, 0, fmt.Errorf("%w: %q", bridge.ErrSubscriptionChanged, sub.ID)
	}
	r.subs[sub.ID] = sub
	r.rev++
	r.revs[sub.ID] = r.rev
	return sub, r.rev, nil
}

func (r *recorder) ReplaySubscription(_ context.Context, id, from string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.subs[id]; !ok {
		return fmt.Errorf("%w: %q", bridge.ErrSubscriptionNotFound, id)
	}
	r.replays = append(r.replays, id+"="+from)
	return nil
}

func (r *recorder) ListSubscriptions(context.Context) ([]bridge.Subscription, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []bridge.Subscription
	for _, s := range r.subs {
		out = append(out, s)
	}
	return out, nil
}

func (r *recorder) DeleteSubscription(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.subs[id]; !ok {
		return fmt.Errorf("%w: %q", bridge.ErrSubscriptionNotFound, id)
	}
	delete(r.subs, id)
	return nil
}

func newTestHandler(t testing.TB, cfg Config) (*handler, *recorder) {
	t.Helper()
	rec := &recorder{subs: map[string]bridge.Subscription{}, revs: map[string]uint64{}}
	if cfg.AppID == "" {
		cfg.AppID = "orders"
	}
	return newHandler(rec, cfg, slog.New(slog.DiscardHandler)), rec
}

func do(h http.Handler, method, path string, body []byte, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func requireProblem(t *testing.T, w *httptest.ResponseRecorder, status int, code string, detailContains ...string) problem.Problem {
	t.Helper()
	require.Equal(t, status, w.Code, "body: %s", w.Body.String())
	require.Equal(t, problem.ContentType, w.Header().Get("Content-Type"))
	var p problem.Problem
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
	assert.Equal(t, code, p.Code)
	assert.Equal(t, status, p.Status)
	assert.Equal(t, problem.TypeBase+code, p.Type)
	assert.NotEmpty(t, p.Title)
	for _, s := range detailContains {
		assert.Contains(t, p.Detail, s)
	}
	return p
}

func binaryHeaders10() map[string]string {
	return map[string]string{
		"ce-specversion": "1.0",
		"ce-id":          "id-1",
		"ce-source":      "/app/orders",
		"ce-type":        "order.created",
		"Content-Type":   "application/json",
	}
}

func TestPublishBinary(t *testing.T) {
	h, rec := newTestHandler(t, Config{})
	hdr := binaryHeaders10()
	hdr["ce-subject"] = "sub 1"
	hdr["ce-time"] = "2024-05-06T07:08:09.123456789Z"
	hdr["ce-dataschema"] = "https://schemas.example/order.json"
	hdr["ce-myext"] = "hello%20world%25"
	hdr["ce-traceparent"] = "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01"
	hdr["traceparent"] = "00-cccccccccccccccccccccccccccccccc-dddddddddddddddd-01" // event's own wins
	body := []byte(`{"n":1}`)
	w := do(h, "POST", "/v1/publish/orders.created", body, hdr)
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	require.Len(t, rec.events, 1)
	assert.Equal(t, "orders.created", rec.topic)
	e := rec.events[0]
	require.NoError(t, e.Validate())
	assert.Equal(t, "1.0", e.SpecVersion())
	assert.Equal(t, "id-1", e.ID())
	assert.Equal(t, "/app/orders", e.Source())
	assert.Equal(t, "order.created", e.Type())
	assert.Equal(t, "sub 1", e.Subject())
	assert.Equal(t, "2024-05-06T07:08:09.123456789Z", e.Time().Format("2006-01-02T15:04:05.999999999Z07:00"))
	assert.Equal(t, "https://schemas.example/order.json", e.DataSchema())
	assert.Equal(t, "application/json", e.DataContentType())
	assert.Equal(t, "hello world%", e.Extensions()["myext"])
	assert.Equal(t, "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01", e.Extensions()["traceparent"])
	assert.Equal(t, body, e.Data())
}

func TestPublishBinaryV03(t *testing.T) {
	h, rec := newTestHandler(t, Config{})
	hdr := binaryHeaders10()
	hdr["ce-specversion"] = "0.3"
	hdr["ce-schemaurl"] = "/schemas/order"
	hdr["ce-datacontentencoding"] = "base64"
	hdr["Content-Type"] = "application/octet-stream"
	w := do(h, "POST", "/v1/publish/t", []byte("AAEC"), hdr)
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	e := rec.events[0]
	require.NoError(t, e.Validate())
	assert.Equal(t, "0.3", e.SpecVersion())
	ec := e.Context.(*event.EventContextV03)
	require.NotNil(t, ec.SchemaURL)
	assert.Equal(t, "/schemas/order", ec.SchemaURL.String())
	require.NotNil(t, ec.DataContentEncoding)
	assert.Equal(t, "base64", *ec.DataContentEncoding)
	assert.Equal(t, []byte("AAEC"), e.DataEncoded)
}

func TestPublishTraceContextFromHeaders(t *testing.T) {
	h, rec := newTestHandler(t, Config{})
	hdr := binaryHeaders10()
	hdr["traceparent"] = "00-cccccccccccccccccccccccccccccccc-dddddddddddddddd-01"
	hdr["tracestate"] = "k=v"
	w := do(h, "POST", "/v1/publish/t", nil, hdr)
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	ext := rec.events[0].Extensions()
	assert.Equal(t, hdr["traceparent"], ext["traceparent"])
	assert.Equal(t, "k=v", ext["tracestate"])
	assert.Nil(t, rec.events[0].Data())
}

func TestPublishStructured(t *testing.T) {
	h, rec := newTestHandler(t, Config{})
	body := `{"specversion":"1.0","id":"s1","source":"urn:x","type":"t.s","datacontenttype":"application/json","data":{"a":[1,2]},"myext":"v","num":7}`
	w := do(h, "POST", "/v1/publish/t", []byte(body), map[string]string{"Content-Type": "application/cloudevents+json; charset=UTF-8"})
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	e := rec.events[0]
	assert.Equal(t, "s1", e.ID())
	assert.Equal(t, "urn:x", e.Source())
	assert.JSONEq(t, `{"a":[1,2]}`, string(e.Data()))
	assert.Equal(t, "v", e.Extensions()["myext"])
	assert.EqualValues(t, 7, e.Extensions()["num"])
}

func TestPublishBatch(t *testing.T) {
	h, rec := newTestHandler(t, Config{})
	body := `[{"specversion":"1.0","id":"b1","source":"/s","type":"t"},{"specversion":"0.3","id":"b2","source":"/s","type":"t","data":"x","datacontenttype":"text/plain"}]`
	w := do(h, "POST", "/v1/publish/t", []byte(body), map[string]string{"Content-Type": "application/cloudevents-batch+json", "traceparent": "00-cccccccccccccccccccccccccccccccc-dddddddddddddddd-01"})
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	require.Len(t, rec.events, 2)
	assert.Equal(t, "b1", rec.events[0].ID())
	assert.Equal(t, "0.3", rec.events[1].SpecVersion())
	assert.Equal(t, []byte("x"), rec.events[1].Data())
	for _, e := range rec.events {
		assert.Equal(t, "00-cccccccccccccccccccccccccccccccc-dddddddddddddddd-01", e.Extensions()["traceparent"])
	}
}

func TestPublishRaw(t *testing.T) {
	for name, ct := range map[string]string{"with content type": "text/plain; charset=utf-8", "without": ""} {
		t.Run(name, func(t *testing.T) {
			h, rec := newTestHandler(t, Config{AppID: "orders"})
			hdr := map[string]string{}
			if ct != "" {
				hdr["Content-Type"] = ct
			}
			w := do(h, "POST", "/v1/publish/t", []byte("plain body"), hdr)
			require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
			e := rec.events[0]
			require.NoError(t, e.Validate())
			assert.Equal(t, "orders", e.Source())
			assert.Equal(t, DefaultType, e.Type())
			assert.Len(t, e.ID(), 36)
			assert.False(t, e.Time().IsZero())
			assert.Equal(t, ct, e.DataContentType())
			assert.Equal(t, []byte("plain body"), e.Data())
		})
	}
}

func TestPublishRawEmptyBodyAndCustomType(t *testing.T) {
	h, rec := newTestHandler(t, Config{AppID: "my app", DefaultType: "com.example.raw"})
	req := httptest.NewRequest("POST", "/v1/publish/t", nil)
	req.Header.Del("Content-Type")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	e := rec.events[0]
	assert.Equal(t, "my%20app", e.Source())
	assert.Equal(t, "com.example.raw", e.Type())
	assert.Nil(t, e.Data())
}

func TestWrappedSource(t *testing.T) {
	for in, want := range map[string]string{
		"orders":            "orders",
		"":                  "meshd",
		"urn:app:orders":    "urn:app:orders",
		"https://a.example": "https://a.example",
		"my app":            "my%20app",
	} {
		got := wrappedSource(in)
		assert.Equal(t, want, got.String(), in)
	}
}

func TestPublishGzip(t *testing.T) {
	h, rec := newTestHandler(t, Config{})
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte("compressed data"))
	require.NoError(t, zw.Close())
	hdr := binaryHeaders10()
	hdr["Content-Encoding"] = "gzip"
	w := do(h, "POST", "/v1/publish/t", buf.Bytes(), hdr)
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	assert.Equal(t, []byte("compressed data"), rec.events[0].Data())
}

func TestPublishInvalid(t *testing.T) {
	withHeader := func(k, v string) map[string]string {
		h := binaryHeaders10()
		if v == "" {
			delete(h, k)
		} else {
			h[k] = v
		}
		return h
	}
	structured := map[string]string{"Content-Type": "application/cloudevents+json"}
	batch := map[string]string{"Content-Type": "application/cloudevents-batch+json"}
	cases := []struct {
		name   string
		hdr    map[string]string
		body   string
		status int
		code   string
		detail []string
	}{
		{"binary missing specversion", withHeader("ce-specversion", ""), "", 400, problem.CodeInvalidEvent, []string{`"specversion"`, "missing"}},
		{"binary bad specversion", withHeader("ce-specversion", "2.0"), "", 400, problem.CodeInvalidEvent, []string{`"specversion"`, "2.0"}},
		{"binary missing id", withHeader("ce-id", ""), "", 400, problem.CodeInvalidEvent, []string{`"id"`}},
		{"binary missing source", withHeader("ce-source", ""), "", 400, problem.CodeInvalidEvent, []string{`"source"`}},
		{"binary bad source", withHeader("ce-source", "http://[::1"), "", 400, problem.CodeInvalidEvent, []string{`"source"`}},
		{"binary missing type", withHeader("ce-type", ""), "", 400, problem.CodeInvalidEvent, []string{`"type"`}},
		{"binary bad time", withHeader("ce-time", "yesterday"), "", 400, problem.CodeInvalidEvent, []string{`"time"`, "RFC 3339"}},
		{"binary bad dataschema", withHeader("ce-dataschema", "relative/path"), "", 400, problem.CodeInvalidEvent, []string{`"dataschema"`}},
		{"binary bad extension name", withHeader("ce-my-ext", "v"), "", 400, problem.CodeInvalidEvent, []string{`"my-ext"`}},
		{"binary ce-datacontenttype", withHeader("ce-datacontenttype", "text/plain"), "", 400, problem.CodeInvalidEvent, []string{`"datacontenttype"`}},
		{"binary 0.3 bad encoding", func() map[string]string {
			h := withHeader("ce-specversion", "0.3")
			h["ce-datacontentencoding"] = "gzip"
			return h
		}(), "", 400, problem.CodeInvalidEvent, []string{`"datacontentencoding"`}},
		{"structured malformed", structured, `{"specversion":"1.0",`, 400, problem.CodeInvalidRequest, []string{"malformed JSON", "byte"}},
		{"structured syntax", structured, `{"specversion" "1.0"}`, 400, problem.CodeInvalidRequest, []string{"malformed JSON at byte 16"}},
		{"structured not object", structured, `[1]`, 400, problem.CodeInvalidRequest, nil},
		{"structured empty", structured, ``, 400, problem.CodeInvalidRequest, []string{"empty"}},
		{"structured missing specversion", structured, `{"id":"1","source":"/s","type":"t"}`, 400, problem.CodeInvalidEvent, []string{`"specversion"`, "missing"}},
		{"structured bad specversion", structured, `{"specversion":"9","id":"1","source":"/s","type":"t"}`, 400, problem.CodeInvalidEvent, []string{`"specversion"`}},
		{"structured missing id", structured, `{"specversion":"1.0","source":"/s","type":"t"}`, 400, problem.CodeInvalidEvent, []string{`"id"`}},
		{"structured missing source", structured, `{"specversion":"1.0","id":"1","type":"t"}`, 400, problem.CodeInvalidEvent, []string{`"source"`}},
		{"structured missing type", structured, `{"specversion":"1.0","id":"1","source":"/s"}`, 400, problem.CodeInvalidEvent, []string{`"type"`}},
		{"structured bad time", structured, `{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"noon"}`, 400, problem.CodeInvalidEvent, []string{`"time"`}},
		{"structured bad source", structured, `{"specversion":"1.0","id":"1","source":"http://[::1","type":"t"}`, 400, problem.CodeInvalidEvent, []string{`"source"`}},
		{"structured bad ext name", structured, `{"specversion":"1.0","id":"1","source":"/s","type":"t","my_ext":"x"}`, 400, problem.CodeInvalidEvent, []string{`"my_ext"`}},
		{"structured bad ext value", structured, `{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":{"a":1}}`, 400, problem.CodeInvalidEvent, []string{`"ext"`}},
		{"structured bad base64", structured, `{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"!!"}`, 400, problem.CodeInvalidEvent, []string{`"data_base64"`}},
		{"structured id not string", structured, `{"specversion":"1.0","id":1,"source":"/s","type":"t"}`, 400, problem.CodeInvalidEvent, []string{`"id"`}},
		{"batch empty", batch, `[]`, 400, problem.CodeInvalidRequest, []string{"empty"}},
		{"batch not array", batch, `{"a":1}`, 400, problem.CodeInvalidRequest, []string{"batch"}},
		{"batch null", batch, `null`, 400, problem.CodeInvalidRequest, []string{"batch"}},
		{"batch malformed", batch, `[{"specversion":"1.0"`, 400, problem.CodeInvalidRequest, []string{"malformed JSON"}},
		{"batch one invalid", batch, `[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","source":"/s","type":"t","time":"x"}]`, 400, problem.CodeInvalidEvent, []string{"event 1", `"time"`}},
		{"unsupported format", map[string]string{"Content-Type": "application/cloudevents+avro"}, `x`, 415, problem.CodeUnsupportedMediaType, []string{"application/cloudevents+avro"}},
		{"unsupported encoding", map[string]string{"Content-Encoding": "br"}, `x`, 415, problem.CodeUnsupportedMediaType, []string{`"br"`}},
		{"bad gzip", map[string]string{"Content-Encoding": "gzip"}, `not gzip`, 400, problem.CodeInvalidRequest, []string{"gzip"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, rec := newTestHandler(t, Config{})
			w := do(h, "POST", "/v1/publish/t", []byte(tc.body), tc.hdr)
			requireProblem(t, w, tc.status, tc.code, tc.detail...)
			assert.Empty(t, rec.events, "nothing may be published")
		})
	}
}

func TestPublishTooLarge(t *testing.T) {
	h, rec := newTestHandler(t, Config{MaxBodyBytes: 1024})
	body := bytes.Repeat([]byte("x"), 1025)
	// Content-Length known.
	w := do(h, "POST", "/v1/publish/t", body, binaryHeaders10())
	requireProblem(t, w, 413, problem.CodeTooLarge, "1024 bytes")

	// Chunked: length unknown up front.
	req := httptest.NewRequest("POST", "/v1/publish/t", io.MultiReader(bytes.NewReader(body)))
	req.ContentLength = -1
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	requireProblem(t, w, 413, problem.CodeTooLarge, "1024 bytes")

	// Gzip: the limit applies to the decompressed size.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(bytes.Repeat([]byte("x"), 1<<20))
	require.NoError(t, zw.Close())
	w = do(h, "POST", "/v1/publish/t", buf.Bytes(), map[string]string{"Content-Encoding": "gzip"})
	requireProblem(t, w, 413, problem.CodeTooLarge, "1024 bytes")

	// Exactly at the limit is fine.
	w = do(h, "POST", "/v1/publish/t", body[:1024], binaryHeaders10())
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	assert.Len(t, rec.events, 1)
}

func TestPublishBackendErrors(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("storing: %w", mesh.ErrUnavailable), 503, problem.CodeMeshUnavailable},
		{context.DeadlineExceeded, 503, problem.CodeMeshUnavailable},
		{fmt.Errorf("%w %q", mesh.ErrInvalidTopic, "a..b"), 400, problem.CodeInvalidTopic},
		{&bridge.InvalidEventError{Index: 2, Attribute: "time", Reason: "bad"}, 400, problem.CodeInvalidEvent},
		{errors.New("boom"), 500, problem.CodeInternal},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			h, rec := newTestHandler(t, Config{})
			rec.publishErr = tc.err
			w := do(h, "POST", "/v1/publish/t", nil, binaryHeaders10())
			p := requireProblem(t, w, tc.status, tc.code)
			if tc.status == 503 {
				assert.Equal(t, "1", w.Header().Get("Retry-After"))
			}
			if tc.code == problem.CodeInvalidEvent {
				assert.Equal(t, `event 2: attribute "time": bad`, p.Detail)
			}
			if tc.code == problem.CodeInternal {
				assert.NotContains(t, p.Detail, "boom")
			}
		})
	}
}

func TestRouting(t *testing.T) {
	h, _ := newTestHandler(t, Config{})
	w := do(h, "GET", "/v1/publish/t", nil, nil)
	requireProblem(t, w, 405, problem.CodeMethodNotAllowed)
	assert.Equal(t, "POST", w.Header().Get("Allow"))
	w = do(h, "PUT", "/v1/subscriptions", nil, nil)
	requireProblem(t, w, 405, problem.CodeMethodNotAllowed)
	w = do(h, "PATCH", "/v1/subscriptions/x", nil, nil)
	requireProblem(t, w, 405, problem.CodeMethodNotAllowed)
	w = do(h, "GET", "/v2/nothing", nil, nil)
	requireProblem(t, w, 404, problem.CodeNotFound)
	w = do(h, "POST", "/v1/publish/", nil, nil)
	requireProblem(t, w, 404, problem.CodeNotFound)
}

func TestToken(t *testing.T) {
	h, rec := newTestHandler(t, Config{Token: "s3cret"})
	for name, hdr := range map[string]map[string]string{
		"none":         {},
		"wrong bearer": {"Authorization": "Bearer nope"},
		"wrong header": {"meshd-api-token": "s3cre"},
		"basic":        {"Authorization": "Basic s3cret"},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range binaryHeaders10() {
				hdr[k] = v
			}
			w := do(h, "POST", "/v1/publish/t", nil, hdr)
			p := requireProblem(t, w, 401, problem.CodeUnauthorized)
			assert.NotContains(t, p.Detail, "s3cret")
			w = do(h, "GET", "/v1/subscriptions", nil, hdr)
			requireProblem(t, w, 401, problem.CodeUnauthorized)
		})
	}
	for name, hdr := range map[string]map[string]string{
		"bearer": {"Authorization": "Bearer s3cret"},
		"header": {"meshd-api-token": "s3cret"},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range binaryHeaders10() {
				hdr[k] = v
			}
			w := do(h, "POST", "/v1/publish/t", nil, hdr)
			require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
			w = do(h, "GET", "/v1/subscriptions", nil, hdr)
			require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		})
	}
	assert.Len(t, rec.events, 2)
}

func TestSubscriptionsAPI(t *testing.T) {
	h, rec := newTestHandler(t, Config{})
	w := do(h, "GET", "/v1/subscriptions", nil, nil)
	require.Equal(t, 200, w.Code)
	assert.JSONEq(t, `[]`, w.Body.String())

	w = do(h, "POST", "/v1/subscriptions", []byte(`{"id":"s1","topic":"t","sink":"http://127.0.0.1:1/x"}`), jsonCT)
	require.Equal(t, 201, w.Code, w.Body.String())
	assert.Equal(t, "/v1/subscriptions/s1", w.Header().Get("Location"))
	var got bridge.Subscription
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	assert.Equal(t, "s1", got.Group)

	w = do(h, "POST", "/v1/subscriptions", []byte(`{"id":"s1","topic":"t","sink":"http://x"}`), jsonCT)
	requireProblem(t, w, 409, problem.CodeConflict)
	w = do(h, "POST", "/v1/subscriptions", []byte(`{"id":"s2","topic":"t","sink":"http://x","bogus":1}`), jsonCT)
	requireProblem(t, w, 400, problem.CodeInvalidSubscription, `"bogus"`)
	w = do(h, "POST", "/v1/subscriptions", []byte(`{"id":"s2","maxAttempts":"x"}`), jsonCT)
	requireProblem(t, w, 400, problem.CodeInvalidSubscription, "maxAttempts")
	w = do(h, "POST", "/v1/subscriptions", []byte(`{"id":`), jsonCT)
	requireProblem(t, w, 400, problem.CodeInvalidSubscription, "malformed JSON")
	w = do(h, "POST", "/v1/subscriptions", []byte(`{"id":"a"} {"id":"b"}`), jsonCT)
	requireProblem(t, w, 400, problem.CodeInvalidSubscription, "exactly one")
	w = do(h, "POST", "/v1/subscriptions", []byte(`{"topic":"t"}`), jsonCT)
	requireProblem(t, w, 400, problem.CodeInvalidSubscription, "id")

	w = do(h, "GET", "/v1/subscriptions/s1", nil, nil)
	require.Equal(t, 200, w.Code)
	tag := w.Header().Get("ETag")
	assert.Equal(t, `"1"`, tag)
	w = do(h, "GET", "/v1/subscriptions", nil, nil)
	require.Equal(t, 200, w.Code)
	var list []bridge.Subscription
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &list))
	require.Len(t, list, 1)

	// PUT replaces, at the revision of If-Match when given.
	w = do(h, "PUT", "/v1/subscriptions/s1", []byte(`{"topic":"t","sink":"http://127.0.0.1:1/y"}`), map[string]string{"If-Match": tag, "Content-Type": "application/json"})
	require.Equal(t, 200, w.Code, w.Body.String())
	assert.Equal(t, `"2"`, w.Header().Get("ETag"))
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	assert.Equal(t, "s1", got.ID, "the id comes from the path")
	w = do(h, "PUT", "/v1/subscriptions/s1", []byte(`{"topic":"t","sink":"http://127.0.0.1:1/z"}`), map[string]string{"If-Match": tag, "Content-Type": "application/json"})
	requireProblem(t, w, 409, problem.CodeConflict, "s1")
	w = do(h, "PUT", "/v1/subscriptions/s1", []byte(`{"topic":"t","sink":"http://127.0.0.1:1/z"}`), map[string]string{"If-Match": "yesterday", "Content-Type": "application/json"})
	requireProblem(t, w, 400, problem.CodeInvalidRequest, "If-Match")
	w = do(h, "PUT", "/v1/subscriptions/s1", []byte(`{"id":"other","topic":"t","sink":"http://127.0.0.1:1/z"}`), jsonCT)
	requireProblem(t, w, 400, problem.CodeInvalidSubscription, "differs")
	w = do(h, "PUT", "/v1/subscriptions/nope", []byte(`{"topic":"t","sink":"http://127.0.0.1:1/z"}`), jsonCT)
	requireProblem(t, w, 404, problem.CodeNotFound)
	w = do(h, "PUT", "/v1/subscriptions/s1", []byte(`{"topic":"t","sink":"http://127.0.0.1:1/z"}`), map[string]string{"If-Match": "*", "Content-Type": "application/json"})
	require.Equal(t, 200, w.Code, w.Body.String())

	// Replay from a time, a sequence given as a number or a string.
	for body, want := range map[string]string{
		`{"from":"2026-01-02T03:04:05Z"}`: "s1=2026-01-02T03:04:05Z",
		`{"from":42}`:                     "s1=42",
		`{"from":"earliest"}`:             "s1=earliest",
	} {
		w = do(h, "POST", "/v1/subscriptions/s1/replay", []byte(body), jsonCT)
		require.Equal(t, 202, w.Code, w.Body.String())
		assert.Contains(t, rec.replays, want)
	}
	for _, body := range []string{`{}`, `{"from":-1}`, `{"from":1.5}`, `{"from":true}`, `{"since":1}`} {
		w = do(h, "POST", "/v1/subscriptions/s1/replay", []byte(body), jsonCT)
		requireProblem(t, w, 400, problem.CodeInvalidRequest)
	}
	w = do(h, "POST", "/v1/subscriptions/nope/replay", []byte(`{"from":1}`), jsonCT)
	requireProblem(t, w, 404, problem.CodeNotFound)
	w = do(h, "GET", "/v1/subscriptions/s1/replay", nil, nil)
	requireProblem(t, w, 405, problem.CodeMethodNotAllowed)

	w = do(h, "DELETE", "/v1/subscriptions/s1", nil, nil)
	require.Equal(t, 204, w.Code)
	w = do(h, "DELETE", "/v1/subscriptions/s1", nil, nil)
	requireProblem(t, w, 404, problem.CodeNotFound, "s1")
	w = do(h, "GET", "/v1/subscriptions/s1", nil, nil)
	requireProblem(t, w, 404, problem.CodeNotFound)
}

// jsonCT is the Content-Type every JSON endpoint requires.
var jsonCT = map[string]string{"Content-Type": "application/json"}

// A JSON endpoint takes nothing but application/json: text/plain, form
// bodies and no Content-Type at all are what a page of another site can
// send without a CORS preflight.
func TestSubscriptionsRequireJSON(t *testing.T) {
	h, rec := newTestHandler(t, Config{})
	body := []byte(`{"id":"s1","topic":"t","sink":"http://127.0.0.1:1/x"}`)
	for _, ct := range []string{"", "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		hdr := map[string]string{}
		if ct != "" {
			hdr["Content-Type"] = ct
		}
		w := do(h, "POST", "/v1/subscriptions", body, hdr)
		requireProblem(t, w, 415, problem.CodeUnsupportedMediaType, "application/json")
	}
	assert.Empty(t, rec.subs)
}

// The API refuses requests of pages of other origins before anything
// else, answers CORS for allowed ones, and never shows a sink's
// credentials.
func TestOriginsAndCORS(t *testing.T) {
	h, rec := newTestHandler(t, Config{Token: "tok", AllowedOrigins: []string{"https://app.example"}})
	body := []byte(`{"id":"s1","topic":"t","sink":"https://user:pa55@hooks.example/in?token=t0k"}`)
	hdr := map[string]string{"Origin": "https://evil.example", "Content-Type": "application/json", "Authorization": "Bearer tok"}
	for _, m := range []string{"POST", "GET", "DELETE", "OPTIONS"} {
		path := "/v1/subscriptions"
		if m == "DELETE" {
			path += "/s1"
		}
		w := do(h, m, path, body, hdr)
		requireProblem(t, w, 403, problem.CodeForbidden, "evil.example", "api.allowedOrigins")
		assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"))
	}
	w := do(h, "POST", "/v1/publish/orders", []byte("hi"), map[string]string{"Origin": "http://evil.example:10105", "Content-Type": "text/plain", "Authorization": "Bearer tok"})
	requireProblem(t, w, 403, problem.CodeForbidden)
	assert.Empty(t, rec.subs)
	assert.Empty(t, rec.events)

	// The preflight of an allowed page needs no token.
	w = do(h, "OPTIONS", "/v1/subscriptions", nil, map[string]string{
		"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "authorization,content-type", "Access-Control-Request-Private-Network": "true",
	})
	require.Equal(t, 204, w.Code, w.Body.String())
	assert.Equal(t, "https://app.example", w.Header().Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "authorization,content-type", w.Header().Get("Access-Control-Allow-Headers"))
	assert.Contains(t, w.Header().Get("Access-Control-Allow-Methods"), "POST")
	assert.Equal(t, "true", w.Header().Get("Access-Control-Allow-Private-Network"))

	hdr["Origin"] = "https://app.example"
	w = do(h, "POST", "/v1/subscriptions", body, hdr)
	require.Equal(t, 201, w.Code, w.Body.String())
	assert.Equal(t, "https://app.example", w.Header().Get("Access-Control-Allow-Origin"))
	assert.Contains(t, w.Header().Get("Access-Control-Expose-Headers"), "Location")
	assert.Equal(t, "https://user:pa55@hooks.example/in?token=t0k", rec.subs["s1"].Sink, "stored as given")
	for _, w := range []*httptest.ResponseRecorder{w, do(h, "GET", "/v1/subscriptions/s1", nil, hdr), do(h, "GET", "/v1/subscriptions", nil, hdr)} {
		require.Equal(t, w.Code/100, 2, w.Body.String())
		assert.NotContains(t, w.Body.String(), "pa55")
		assert.NotContains(t, w.Body.String(), "t0k")
		assert.Contains(t, w.Body.String(), `https://********@hooks.example/in?token=********`)
	}
}

func TestSubscriptionTooLarge(t *testing.T) {
	h, _ := newTestHandler(t, Config{MaxBodyBytes: 64})
	body := `{"id":"` + strings.Repeat("x", 100) + `"}`
	w := do(h, "POST", "/v1/subscriptions", []byte(body), jsonCT)
	requireProblem(t, w, 413, problem.CodeTooLarge, "64 bytes")
}

func TestPublishFastPathMatchesMux(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/publish/a.b":      "a.b",
		"/v1/publish/a%2Fb":    "",
		"/v1/publish/a/b":      "",
		"/v1/publish/..":       "",
		"/v1/publish/":         "",
		"/v1/publishx/a":       "",
		"/v1/publish/my-topic": "my-topic",
	} {
		r := httptest.NewRequest("POST", path, nil)
		got, ok := publishFastPath(r)
		assert.Equal(t, want != "", ok, path)
		assert.Equal(t, want, got, path)
	}
	// Through the mux a percent-encoded topic still arrives decoded.
	h, rec := newTestHandler(t, Config{})
	w := do(h, "POST", "/v1/publish/a%2Eb", nil, binaryHeaders10())
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	assert.Equal(t, "a.b", rec.topic)
}

// Dot segments get a problem, never the mux's redirect (which turns a POST
// into a GET elsewhere).
func TestDotSegmentsAreProblems(t *testing.T) {
	h, _ := newTestHandler(t, Config{})
	for path, code := range map[string]string{
		"/v1/publish/..":         problem.CodeInvalidTopic,
		"/v1/publish/../admin":   problem.CodeInvalidTopic,
		"/v1/publish/./x":        problem.CodeInvalidTopic,
		"/v1/subscriptions/../x": problem.CodeNotFound,
	} {
		w := do(h, "POST", path, nil, binaryHeaders10())
		assert.NotEqual(t, http.StatusTemporaryRedirect, w.Code, path)
		assert.NotEqual(t, http.StatusMovedPermanently, w.Code, path)
		p := requireProblem(t, w, w.Code, code)
		assert.GreaterOrEqual(t, p.Status, 400, path)
	}
}

// A sink given back as a GET showed it, credentials masked, keeps the
// stored credentials; a new sink replaces it.
func TestPutKeepsMaskedSinkCredentials(t *testing.T) {
	h, rec := newTestHandler(t, Config{})
	secret := "https://user:pa55word@sink.example/in?token=t0ps3cret"
	w := do(h, "POST", "/v1/subscriptions", []byte(`{"id":"s","topic":"t","sink":"`+secret+`"}`), jsonCT)
	require.Equal(t, 201, w.Code, w.Body.String())
	w = do(h, "GET", "/v1/subscriptions/s", nil, nil)
	require.Equal(t, 200, w.Code)
	require.NotContains(t, w.Body.String(), "pa55word")
	var shown bridge.Subscription
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &shown))
	require.NotEqual(t, secret, shown.Sink)

	shown.MaxInFlight = 4
	body, err := json.Marshal(shown)
	require.NoError(t, err)
	w = do(h, "PUT", "/v1/subscriptions/s", body, jsonCT)
	require.Equal(t, 200, w.Code, w.Body.String())
	assert.NotContains(t, w.Body.String(), "pa55word")
	assert.Equal(t, secret, rec.subs["s"].Sink, "the stored credentials are kept")
	assert.Equal(t, 4, rec.subs["s"].MaxInFlight)

	w = do(h, "PUT", "/v1/subscriptions/s", []byte(`{"topic":"t","sink":"https://other.example/in"}`), jsonCT)
	require.Equal(t, 200, w.Code, w.Body.String())
	assert.Equal(t, "https://other.example/in", rec.subs["s"].Sink)
}
