package httpapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
)

// nopBackend accepts every publish.
type nopBackend struct{ recorder }

func (*nopBackend) Publish(context.Context, string, []*event.Event) error { return nil }

func benchRequest(body []byte) *http.Request {
	req := httptest.NewRequest("POST", "/v1/publish/orders.created", bytes.NewReader(body))
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", "0b7b7a3e-6c2f-4b8e-9a5b-0f0e4c3d2b1a")
	req.Header.Set("Ce-Source", "/apps/orders")
	req.Header.Set("Ce-Type", "com.example.order.created")
	req.Header.Set("Ce-Time", "2024-05-06T07:08:09.123Z")
	req.Header.Set("Ce-Myext", "value")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01")
	return req
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkPublishBinary is the handler's cost for a 1 KiB binary-mode
// event, routing and parsing included, the mesh excluded.
func BenchmarkPublishBinary(b *testing.B) {
	h := newHandler(&nopBackend{}, Config{AppID: "orders"}, nil)
	body := jsonBody(1024)
	req := benchRequest(body)
	rd := bytes.NewReader(body)
	req.Body = io.NopCloser(rd)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		rd.Reset(body)
		h.ServeHTTP(w, req)
	}
}

// The two server benchmarks measure requests/s over loopback with 32
// concurrent keep-alive clients: a no-op handler and the publish handler
// with a no-op backend. Compare their ns/op.
func benchServer(b *testing.B, h http.Handler) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	body := jsonBody(1024)
	url := srv.URL + "/v1/publish/orders.created"
	var seq atomic.Int64
	b.SetParallelism((32 + 1) / 2) // GOMAXPROCS=2 here: 32 goroutines
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := benchRequest(body)
			req.Header["Ce-Id"] = []string{strconv.FormatInt(seq.Add(1), 10)} // distinct: the mesh drops duplicates
			req.RequestURI = ""
			req.URL, _ = req.URL.Parse(url)
			req.Host = req.URL.Host
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

func BenchmarkServerNoop(b *testing.B) {
	benchServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
}

func BenchmarkServerPublish(b *testing.B) {
	benchServer(b, newHandler(&nopBackend{recorder{subs: map[string]bridge.Subscription{}}}, Config{AppID: "orders"}, nil))
}

// jsonBody is n bytes of JSON, the data of the events the benchmarks send
// (labeled application/json, so the bridge checks it is JSON).
func jsonBody(n int) []byte {
	return append(append([]byte(`{"d":"`), bytes.Repeat([]byte("x"), n-8)...), '"', '}')
}
