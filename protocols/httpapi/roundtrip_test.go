package httpapi

// Round trips through the real bridge and the embedded mesh engine: what the
// handler answers 204 for is stored, and comes out of the mesh unchanged.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
)

type meshEnv struct {
	engine *embedded.Engine
	bridge *bridge.Bridge
	srv    *httptest.Server
}

func newMeshEnv(t *testing.T, cfg Config, sender bridge.Sender) *meshEnv {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	b, err := bridge.New(bridge.Options{Engine: eng, Logger: logger, Sender: sender, Backoff: bridge.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2}})
	require.NoError(t, err)
	require.NoError(t, b.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
	})
	if cfg.AppID == "" {
		cfg.AppID = "orders"
	}
	srv := httptest.NewServer(NewHandler(b, cfg, logger))
	t.Cleanup(srv.Close)
	return &meshEnv{engine: eng, bridge: b, srv: srv}
}

func (m *meshEnv) post(t *testing.T, path string, header http.Header, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", m.srv.URL+path, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// consume returns the next n events of topic for a fresh group.
func (m *meshEnv) consume(t *testing.T, topic, group string, n int) []*event.Event {
	t.Helper()
	c, err := m.engine.Consume(t.Context(), mesh.ConsumerConfig{Topic: topic, Group: group})
	require.NoError(t, err)
	defer c.Close()
	var out []*event.Event
	for range n {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		msg, err := c.Next(ctx)
		cancel()
		require.NoError(t, err)
		require.NoError(t, msg.Ack(t.Context()))
		out = append(out, msg.Event())
	}
	return out
}

func requireStatus(t *testing.T, resp *http.Response, status int) {
	t.Helper()
	if resp.StatusCode != status {
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, status, resp.StatusCode, "body: %s", b)
	}
}

func TestRoundTripBinary(t *testing.T) {
	m := newMeshEnv(t, Config{}, nil)
	body := []byte("\x00\x01binary payload\xff")
	h := http.Header{
		"Ce-Specversion": {"1.0"},
		"Ce-Id":          {"rt-1"},
		"Ce-Source":      {"https://orders.example/app"},
		"Ce-Type":        {"order.created"},
		"Ce-Subject":     {"order 42 \u00e9"},
		"Ce-Time":        {"2024-05-06T07:08:09.123456789Z"},
		"Ce-Dataschema":  {"https://schemas.example/order"},
		"Ce-Myext":       {"ext value"},
		"Ce-Other":       {"h%C3%A9"},
		"Content-Type":   {"application/octet-stream"},
		"Traceparent":    {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		"Tracestate":     {"congo=t61rcWkgMzE"},
	}
	requireStatus(t, m.post(t, "/v1/publish/orders.created", h, body), http.StatusNoContent)
	e := m.consume(t, "orders.created", "g", 1)[0]
	assert.Equal(t, "1.0", e.SpecVersion())
	assert.Equal(t, "rt-1", e.ID())
	assert.Equal(t, "https://orders.example/app", e.Source())
	assert.Equal(t, "order.created", e.Type())
	assert.Equal(t, "order 42 \u00e9", e.Subject())
	assert.True(t, time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC).Equal(e.Time()), e.Time())
	assert.Equal(t, "https://schemas.example/order", e.DataSchema())
	assert.Equal(t, "application/octet-stream", e.DataContentType())
	ext := e.Extensions()
	assert.Equal(t, "ext value", ext["myext"])
	assert.Equal(t, "hé", ext["other"])
	assert.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ext["traceparent"])
	assert.Equal(t, "congo=t61rcWkgMzE", ext["tracestate"])
	assert.Equal(t, body, e.Data())
}

func TestRoundTripBinaryV03(t *testing.T) {
	m := newMeshEnv(t, Config{}, nil)
	h := http.Header{
		"Ce-Specversion":         {"0.3"},
		"Ce-Id":                  {"rt-03"},
		"Ce-Source":              {"/legacy"},
		"Ce-Type":                {"legacy.t"},
		"Ce-Schemaurl":           {"/schemas/legacy"},
		"Ce-Datacontentencoding": {"base64"},
		"Content-Type":           {"text/plain"},
	}
	requireStatus(t, m.post(t, "/v1/publish/legacy", h, []byte("aGVsbG8=")), http.StatusNoContent)
	e := m.consume(t, "legacy", "g", 1)[0]
	assert.Equal(t, "0.3", e.SpecVersion())
	assert.Equal(t, "rt-03", e.ID())
	assert.Equal(t, "/legacy", e.Source())
	assert.Equal(t, "/schemas/legacy", e.DataSchema())
	assert.Equal(t, "text/plain", e.DataContentType())
	assert.Equal(t, "base64", e.DeprecatedDataContentEncoding())
	assert.Equal(t, []byte("aGVsbG8="), e.DataEncoded)
}

func TestRoundTripStructuredAndBatch(t *testing.T) {
	m := newMeshEnv(t, Config{}, nil)
	one := `{"specversion":"1.0","id":"s-1","source":"/s","type":"t.one","datacontenttype":"application/json","data":{"a":1,"b":[true,null]},"color":"red"}`
	requireStatus(t, m.post(t, "/v1/publish/mixed", http.Header{"Content-Type": {"application/cloudevents+json; charset=utf-8"}}, []byte(one)), http.StatusNoContent)
	batch := `[{"specversion":"1.0","id":"b-1","source":"/s","type":"t.b","data_base64":"AAEC"},
	           {"specversion":"0.3","id":"b-2","source":"/s","type":"t.b","datacontenttype":"text/plain","data":"hi"}]`
	requireStatus(t, m.post(t, "/v1/publish/mixed", http.Header{"Content-Type": {"application/cloudevents-batch+json"}}, []byte(batch)), http.StatusNoContent)

	got := m.consume(t, "mixed", "g", 3)
	assert.Equal(t, "s-1", got[0].ID())
	assert.JSONEq(t, `{"a":1,"b":[true,null]}`, string(got[0].Data()))
	assert.Equal(t, "red", got[0].Extensions()["color"])
	assert.Equal(t, "b-1", got[1].ID())
	assert.Equal(t, []byte{0, 1, 2}, got[1].Data())
	assert.Equal(t, "b-2", got[2].ID())
	assert.Equal(t, "0.3", got[2].SpecVersion())
	assert.Equal(t, []byte("hi"), got[2].Data())
}

func TestRoundTripRaw(t *testing.T) {
	m := newMeshEnv(t, Config{AppID: "billing"}, nil)
	requireStatus(t, m.post(t, "/v1/publish/raw", http.Header{"Content-Type": {"text/csv"}}, []byte("a,b\n1,2\n")), http.StatusNoContent)
	requireStatus(t, m.post(t, "/v1/publish/raw", nil, nil), http.StatusNoContent)
	got := m.consume(t, "raw", "g", 2)
	assert.Equal(t, "billing", got[0].Source())
	assert.Equal(t, DefaultType, got[0].Type())
	assert.Equal(t, "text/csv", got[0].DataContentType())
	assert.Equal(t, []byte("a,b\n1,2\n"), got[0].Data())
	assert.NotEqual(t, got[0].ID(), got[1].ID())
	assert.Empty(t, got[1].Data())
}

func TestRoundTripInvalidBatchPublishesNothing(t *testing.T) {
	m := newMeshEnv(t, Config{}, nil)
	for name, bad := range map[string]string{
		"rejected by the parser": `{"specversion":"1.0","id":"bad","source":"/s","type":"t","time":"never"}`,
		"rejected by the bridge": `{"specversion":"1.0","id":"bad","source":"/s","type":"t","datacontenttype":"no media type"}`,
	} {
		batch := `[{"specversion":"1.0","id":"ok","source":"/s","type":"t"},` + bad + `]`
		resp := m.post(t, "/v1/publish/atomic", http.Header{"Content-Type": {"application/cloudevents-batch+json"}}, []byte(batch))
		requireStatus(t, resp, http.StatusBadRequest)
		var p problem.Problem
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
		assert.Equal(t, problem.CodeInvalidEvent, p.Code, name)
		assert.Contains(t, p.Detail, "event 1", name)
		t.Log(name, ":", p.Detail)
	}

	requireStatus(t, m.post(t, "/v1/publish/atomic", http.Header{"Content-Type": {"application/cloudevents+json"}},
		[]byte(`{"specversion":"1.0","id":"sentinel","source":"/s","type":"t"}`)), http.StatusNoContent)
	got := m.consume(t, "atomic", "g", 1)
	assert.Equal(t, "sentinel", got[0].ID(), "the rejected batch stored nothing")
}

// The largest body the API accepts (4 MiB by default) fits in the
// embedded mesh: a 3 MiB event is stored; before, the mesh's 1 MiB limit
// made every event between 1 and 4 MiB a retryable 503 forever. A batch
// whose events together exceed that is fine too: the limit is per event.
func TestRoundTripLargeEvents(t *testing.T) {
	m := newMeshEnv(t, Config{}, nil)
	hdr := http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"big"}, "Ce-Source": {"/s"}, "Ce-Type": {"t"},
		"Content-Type": {"application/octet-stream"}}
	requireStatus(t, m.post(t, "/v1/publish/large", hdr, make([]byte, 3<<20)), http.StatusNoContent)
	got := m.consume(t, "large", "g", 1)
	assert.Len(t, got[0].Data(), 3<<20)
}

func TestRoundTripErrors(t *testing.T) {
	m := newMeshEnv(t, Config{}, nil)
	hdr := http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/s"}, "Ce-Type": {"t"}}

	resp := m.post(t, "/v1/publish/bad..topic", hdr, nil)
	requireStatus(t, resp, http.StatusBadRequest)
	var p problem.Problem
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
	assert.Equal(t, problem.CodeInvalidTopic, p.Code)

	require.NoError(t, m.engine.Close())
	resp = m.post(t, "/v1/publish/fine", hdr, nil)
	requireStatus(t, resp, http.StatusServiceUnavailable)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
	assert.Equal(t, problem.CodeMeshUnavailable, p.Code)
}

// TestRoundTripDelivery goes all the way: subscription created through the
// API, event published through the API, delivered by the bridge with the
// HTTP Sender to a sink.
func TestRoundTripDelivery(t *testing.T) {
	type delivery struct {
		header http.Header
		body   []byte
	}
	got := make(chan delivery, 8)
	sinkSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{r.Header.Clone(), b}
	}))
	defer sinkSrv.Close()
	sender := cehttp.NewSender(cehttp.ClientConfig{Timeout: 5 * time.Second})
	defer sender.Close()
	m := newMeshEnv(t, Config{Token: "tok"}, sender)

	auth := http.Header{"Authorization": {"Bearer tok"}, "Content-Type": {"application/json"}}
	sub := `{"id":"push","topic":"orders","sink":"` + sinkSrv.URL + `/hook"}`
	resp := m.post(t, "/v1/subscriptions", auth, []byte(sub))
	requireStatus(t, resp, http.StatusCreated)
	assert.Equal(t, "/v1/subscriptions/push", resp.Header.Get("Location"))

	hdr := http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"d-1"}, "Ce-Source": {"/s"}, "Ce-Type": {"t"},
		"Ce-Note": {"two words"}, "Content-Type": {"application/json"}, "Meshd-Api-Token": {"tok"}}
	requireStatus(t, m.post(t, "/v1/publish/orders", hdr, []byte(`{"n":1}`)), http.StatusNoContent)

	select {
	case d := <-got:
		assert.Equal(t, "d-1", d.header.Get("Ce-Id"))
		assert.Equal(t, "1.0", d.header.Get("Ce-Specversion"))
		assert.Equal(t, "two%20words", d.header.Get("Ce-Note"))
		assert.Equal(t, "application/json", d.header.Get("Content-Type"))
		assert.Equal(t, `{"n":1}`, string(d.body))
	case <-time.After(15 * time.Second):
		t.Fatal("no delivery")
	}

	req, _ := http.NewRequestWithContext(t.Context(), "GET", m.srv.URL+"/v1/subscriptions", nil)
	req.Header.Set("Authorization", "Bearer tok")
	lr, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer lr.Body.Close()
	var list []bridge.Subscription
	require.NoError(t, json.NewDecoder(lr.Body).Decode(&list))
	require.Len(t, list, 1)
	assert.Equal(t, "push", list[0].ID)

	req, _ = http.NewRequestWithContext(t.Context(), "DELETE", m.srv.URL+"/v1/subscriptions/push", strings.NewReader(""))
	req.Header.Set("meshd-api-token", "tok")
	dr, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	dr.Body.Close()
	assert.Equal(t, http.StatusNoContent, dr.StatusCode)
}

// BenchmarkServerPublishMesh is BenchmarkServerPublish with the real bridge
// and embedded engine behind the handler: 32 keep-alive clients, 1 KiB
// binary-mode events, each answered 204 only once stored.
func BenchmarkServerPublishMesh(b *testing.B) {
	logger := slog.New(slog.DiscardHandler)
	eng, err := embedded.Open(b.Context(), embedded.Config{DataDir: b.TempDir()})
	require.NoError(b, err)
	defer eng.Close()
	br, err := bridge.New(bridge.Options{Engine: eng, Logger: logger})
	require.NoError(b, err)
	benchServer(b, NewHandler(br, Config{AppID: "orders"}, logger))
}

// Two concurrent PUTs of one subscription, each at the revision it read:
// one replaces it, the other loses the race with 409 and changes nothing.
func TestRoundTripConcurrentPutsConflict(t *testing.T) {
	sender := cehttp.NewSender(cehttp.ClientConfig{Timeout: 5 * time.Second})
	defer sender.Close()
	m := newMeshEnv(t, Config{}, sender)
	do := func(method, path, ifMatch, body string) *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), method, m.srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := do("POST", "/v1/subscriptions", "", `{"id":"s","topic":"orders","sink":"http://127.0.0.1:1/first"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	resp = do("GET", "/v1/subscriptions/s", "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	tag := resp.Header.Get("ETag")
	require.NotEmpty(t, tag)

	for round := range 5 {
		statuses := make(chan int, 2)
		sinks := []string{fmt.Sprintf("http://127.0.0.1:1/a%d", round), fmt.Sprintf("http://127.0.0.1:1/b%d", round)}
		start := make(chan struct{})
		for _, sink := range sinks {
			go func() {
				<-start
				r := do("PUT", "/v1/subscriptions/s", tag, `{"topic":"orders","sink":"`+sink+`"}`)
				statuses <- r.StatusCode
			}()
		}
		close(start)
		got := []int{<-statuses, <-statuses}
		assert.ElementsMatch(t, []int{http.StatusOK, http.StatusConflict}, got, "round %d", round)
		resp = do("GET", "/v1/subscriptions/s", "", "")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var sub bridge.Subscription
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&sub))
		assert.Contains(t, sinks, sub.Sink)
		assert.NotEqual(t, tag, resp.Header.Get("ETag"))
		tag = resp.Header.Get("ETag")
	}
}
