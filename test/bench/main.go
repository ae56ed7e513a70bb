// Command bench measures meshd's publish path against two ceilings measured
// in the same run with the same load client: a no-op net/http handler (what
// one HTTP request costs here) and plain nats.go clients publishing the same
// events synchronously to the same embedded JetStream. It also measures
// end-to-end latency from publish to subscriber delivery at a fixed rate.
//
// The last line printed is:
//
//	RESULT publish_eps=<n> batch_eps=<n> noop_http_eps=<n> raw_js_eps=<n> ratio=<publish/noop_http> e2e_p50_ms=<x> e2e_p99_ms=<y>
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshd/meshd/sidecar"
)

var (
	duration    = flag.Duration("duration", 8*time.Second, "length of each throughput phase")
	clients     = flag.Int("clients", 32, "concurrent keep-alive clients")
	eventSize   = flag.Int("size", 1024, "event data size in bytes")
	batchSize   = flag.Int("batch", 100, "events per batch request")
	latencyRate = flag.Int("rate", 1000, "events/s of the latency phase")
	latencyFor  = flag.Duration("latency-duration", 5*time.Second, "length of the latency phase")
	soak        = flag.Duration("soak", 0, "instead of the benchmark, publish and deliver at -rate for this long and check nothing is lost")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	data := bytes.Repeat([]byte("x"), *eventSize)
	payload := append(append([]byte(`{"d":"`), data[:max(0, *eventSize-8)]...), '"', '}')

	natsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "meshd-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := sidecar.Defaults()
	cfg.App.ID = "bench"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Data.Dir = dir
	cfg.Mesh.Listen = natsAddr
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sc, err := sidecar.Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer sc.Shutdown(context.Background())
	api := "http://" + sc.APIAddr()

	if *soak > 0 {
		return runSoak(ctx, api, payload)
	}

	fmt.Printf("meshd bench: %d clients, %d B events, %s per phase, GOMAXPROCS=%d\n", *clients, *eventSize, *duration, runtime.GOMAXPROCS(0))

	noop, err := noopServer()
	if err != nil {
		return err
	}
	defer noop.Close()

	client := newClient()
	binaryReq := func(url string) func(seq int64) (*http.Request, int) {
		return func(seq int64) (*http.Request, int) {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
			req.Header["Ce-Specversion"] = []string{"1.0"}
			req.Header["Ce-Id"] = []string{strconv.FormatInt(seq, 10)}
			req.Header["Ce-Source"] = []string{"/bench"}
			req.Header["Ce-Type"] = []string{"com.example.bench"}
			req.Header["Content-Type"] = []string{"application/json"}
			return req, 1
		}
	}

	noopEPS, err := load(client, binaryReq("http://"+noop.Addr().String()+"/v1/publish/bench"))
	if err != nil {
		return fmt.Errorf("no-op phase: %w", err)
	}
	fmt.Printf("noop_http   %10.0f req/s\n", noopEPS)

	publishEPS, err := load(client, binaryReq(api+"/v1/publish/bench"))
	if err != nil {
		return fmt.Errorf("publish phase: %w", err)
	}
	fmt.Printf("publish     %10.0f events/s (binary mode, one event per request)\n", publishEPS)

	batchEPS, err := load(client, batchReq(api+"/v1/publish/bench", payload))
	if err != nil {
		return fmt.Errorf("batch phase: %w", err)
	}
	fmt.Printf("batch       %10.0f events/s (%d events per request)\n", batchEPS, *batchSize)

	rawEPS, err := rawJetStream("nats://"+natsAddr, payload)
	if err != nil {
		return fmt.Errorf("raw JetStream phase: %w", err)
	}
	fmt.Printf("raw_js      %10.0f events/s (nats.go, synchronous publish)\n", rawEPS)

	p50, p99, err := latency(ctx, client, api, payload)
	if err != nil {
		return fmt.Errorf("latency phase: %w", err)
	}
	fmt.Printf("e2e latency p50 %.2f ms, p99 %.2f ms at %d events/s\n", p50, p99, *latencyRate)

	fmt.Printf("RESULT publish_eps=%.0f batch_eps=%.0f noop_http_eps=%.0f raw_js_eps=%.0f ratio=%.3f e2e_p50_ms=%.2f e2e_p99_ms=%.2f\n",
		publishEPS, batchEPS, noopEPS, rawEPS, publishEPS/noopEPS, p50, p99)
	return nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func newClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        *clients * 2,
			MaxIdleConnsPerHost: *clients * 2,
			IdleConnTimeout:     time.Minute,
		},
	}
}

func noopServer() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln, nil
}

// load runs the client pool for the phase duration (after a short warm-up)
// and returns events per second. newReq returns a request and how many
// events it carries.
func load(client *http.Client, newReq func(seq int64) (*http.Request, int)) (float64, error) {
	var seq, events atomic.Int64
	var firstErr atomic.Value
	runPhase := func(d time.Duration, count bool) {
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for range *clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					req, n := newReq(seq.Add(1))
					resp, err := client.Do(req)
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						firstErr.CompareAndSwap(nil, fmt.Errorf("status %s", resp.Status))
						return
					}
					if count {
						events.Add(int64(n))
					}
				}
			}()
		}
		wg.Wait()
	}
	runPhase(time.Second, false)
	start := time.Now()
	runPhase(*duration, true)
	elapsed := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(events.Load()) / elapsed.Seconds(), nil
}

func batchReq(url string, payload []byte) func(seq int64) (*http.Request, int) {
	return func(seq int64) (*http.Request, int) {
		var b bytes.Buffer
		b.WriteByte('[')
		for i := range *batchSize {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"specversion":"1.0","id":"b%d-%d","source":"/bench","type":"com.example.bench","datacontenttype":"application/json","data":`, seq, i)
			b.Write(payload)
			b.WriteByte('}')
		}
		b.WriteByte(']')
		req, _ := http.NewRequest(http.MethodPost, url, &b)
		req.Header.Set("Content-Type", "application/cloudevents-batch+json")
		return req, *batchSize
	}
}

// rawJetStream publishes the same events with plain nats.go clients, one
// synchronous publish at a time per client, to the stream meshd created.
func rawJetStream(url string, payload []byte) (float64, error) {
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	var jss []nats.JetStreamContext
	for range *clients {
		nc, err := nats.Connect(url)
		if err != nil {
			return 0, err
		}
		conns = append(conns, nc)
		js, err := nc.JetStream()
		if err != nil {
			return 0, err
		}
		jss = append(jss, js)
	}
	var seq, events atomic.Int64
	var firstErr atomic.Value
	phase := func(d time.Duration, count bool) {
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for _, js := range jss {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					msg := nats.NewMsg("meshd.t.rawbench")
					id := strconv.FormatInt(seq.Add(1), 10)
					msg.Header["ce-specversion"] = []string{"1.0"}
					msg.Header["ce-id"] = []string{id}
					msg.Header["ce-source"] = []string{"/bench"}
					msg.Header["ce-type"] = []string{"com.example.bench"}
					msg.Header["content-type"] = []string{"application/json"}
					msg.Header[nats.MsgIdHdr] = []string{"rawbench /bench " + id}
					msg.Data = payload
					if _, err := js.PublishMsg(msg); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					if count {
						events.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}
	phase(time.Second, false)
	start := time.Now()
	phase(*duration, true)
	elapsed := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(events.Load()) / elapsed.Seconds(), nil
}

// latencyProbe is a subscriber sink that records when each event arrived.
type latencyProbe struct {
	mu      sync.Mutex
	arrived map[string]time.Time
	srv     *http.Server
	addr    string
}

func newLatencyProbe() (*latencyProbe, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &latencyProbe{arrived: map[string]time.Time{}, addr: ln.Addr().String()}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		_, _ = io.Copy(io.Discard, r.Body)
		p.mu.Lock()
		if _, seen := p.arrived[r.Header.Get("Ce-Id")]; !seen {
			p.arrived[r.Header.Get("Ce-Id")] = now
		}
		p.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *latencyProbe) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.arrived)
}

func subscribe(client *http.Client, api, id, topic, sink string) error {
	body, _ := json.Marshal(map[string]any{"id": id, "topic": topic, "sink": sink, "maxInFlight": 64})
	resp, err := client.Post(api+"/v1/subscriptions", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("creating subscription: %s: %s", resp.Status, msg)
	}
	return nil
}

// paced publishes events at *latencyRate for d and returns their send times.
func paced(client *http.Client, url string, payload []byte, d time.Duration, prefix string) (map[string]time.Time, error) {
	sent := map[string]time.Time{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr atomic.Value
	interval := time.Second / time.Duration(*latencyRate)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	deadline := time.Now().Add(d)
	for i := 0; time.Now().Before(deadline); i++ {
		<-ticker.C
		id := prefix + strconv.Itoa(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
			req.Header["Ce-Specversion"] = []string{"1.0"}
			req.Header["Ce-Id"] = []string{id}
			req.Header["Ce-Source"] = []string{"/bench"}
			req.Header["Ce-Type"] = []string{"com.example.latency"}
			req.Header["Content-Type"] = []string{"application/json"}
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				firstErr.CompareAndSwap(nil, fmt.Errorf("publish: %s", resp.Status))
				return
			}
			mu.Lock()
			sent[id] = start
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return sent, nil
}

func latency(ctx context.Context, client *http.Client, api string, payload []byte) (p50, p99 float64, err error) {
	probe, err := newLatencyProbe()
	if err != nil {
		return 0, 0, err
	}
	defer probe.srv.Close()
	if err := subscribe(client, api, "latency", "latency", "http://"+probe.addr+"/"); err != nil {
		return 0, 0, err
	}
	warm, err := paced(client, api+"/v1/publish/latency", payload, time.Second, "warm-")
	if err != nil {
		return 0, 0, err
	}
	sent, err := paced(client, api+"/v1/publish/latency", payload, *latencyFor, "lat-")
	if err != nil {
		return 0, 0, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for probe.count() < len(sent)+len(warm) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var ms []float64
	probe.mu.Lock()
	for id, t0 := range sent {
		if t1, ok := probe.arrived[id]; ok {
			ms = append(ms, float64(t1.Sub(t0).Microseconds())/1000)
		}
	}
	probe.mu.Unlock()
	if len(ms) < len(sent) {
		return 0, 0, fmt.Errorf("%d of %d events were not delivered within 30s", len(sent)-len(ms), len(sent))
	}
	sort.Float64s(ms)
	return ms[len(ms)/2], ms[len(ms)*99/100], nil
}

// runSoak publishes at a fixed rate for *soak and checks every event arrives.
func runSoak(ctx context.Context, api string, payload []byte) error {
	client := newClient()
	probe, err := newLatencyProbe()
	if err != nil {
		return err
	}
	defer probe.srv.Close()
	if err := subscribe(client, api, "soak", "soak", "http://"+probe.addr+"/"); err != nil {
		return err
	}
	fmt.Printf("soak: %d events/s for %s\n", *latencyRate, *soak)
	sent, err := paced(client, api+"/v1/publish/soak", payload, *soak, "soak-")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for probe.count() < len(sent) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("soak: sent %d, delivered %d\n", len(sent), probe.count())
	if probe.count() < len(sent) {
		return fmt.Errorf("soak lost %d events", len(sent)-probe.count())
	}
	return nil
}
