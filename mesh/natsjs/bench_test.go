package natsjs_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

// clients is the concurrency of the parallel benchmarks (the HTTP API
// target is measured with 32 concurrent clients).
const clients = 32

func benchEvent(id string, data []byte) *event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/bench")
	e.SetType("bench.event")
	_ = e.SetData("application/octet-stream", data)
	return &e
}

// BenchmarkPublish measures Publish of 1 KiB events on the embedded engine:
// one event per call from 32 goroutines (the HTTP API's hot path), and
// batches of 100 from one goroutine.
func BenchmarkPublish(b *testing.B) {
	eng := openEmbedded(b)
	data := bytes.Repeat([]byte("x"), 1024)
	var seq atomic.Int64

	b.Run("single/parallel", func(b *testing.B) {
		b.SetParallelism(max(1, clients/runtimeProcs()))
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				e := benchEvent(strconv.FormatInt(seq.Add(1), 10), data)
				if err := eng.Publish(b.Context(), "bench.single", []*event.Event{e}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("batch100", func(b *testing.B) {
		evs := make([]*event.Event, 100)
		b.SetBytes(int64(len(data) * len(evs)))
		b.ReportAllocs()
		for b.Loop() {
			for i := range evs {
				evs[i] = benchEvent(strconv.FormatInt(seq.Add(1), 10), data)
			}
			if err := eng.Publish(b.Context(), "bench.batch", evs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHTTP compares a no-op HTTP handler with one that publishes the
// request body as an event, both driven by 32 concurrent clients: the
// ratio of their ns/op is what the HTTP API's target (≥ 50%) is about.
func BenchmarkHTTP(b *testing.B) {
	eng := openEmbedded(b)
	var seq atomic.Int64
	handlers := map[string]http.HandlerFunc{
		"noop": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		},
		"publish": func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			if err := eng.Publish(r.Context(), "bench.http", []*event.Event{benchEvent(strconv.FormatInt(seq.Add(1), 10), body)}); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		},
	}
	data := bytes.Repeat([]byte("x"), 1024)
	for _, name := range []string{"noop", "publish"} {
		b.Run(name, func(b *testing.B) {
			srv := httptest.NewServer(handlers[name])
			defer srv.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			b.SetParallelism(max(1, clients/runtimeProcs()))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Post(srv.URL, "application/octet-stream", bytes.NewReader(data))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusNoContent {
						b.Error(fmt.Errorf("status %d", resp.StatusCode))
						return
					}
				}
			})
		})
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
