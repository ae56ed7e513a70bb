// Command bench measures a meshd process (bin/meshd, started by the bench on
// the embedded mesh) beside ceilings measured in the same run with the same
// load client:
//
//   - publish: binary-mode events, one per request, beside a no-op net/http
//     handler (what one HTTP request costs here) and plain nats.go clients
//     publishing the same events synchronously to the same JetStream;
//   - batch: structured batches of 100;
//   - delivery: one subscription draining a backlog into a no-op subscriber,
//     beside the same subscriber fed by a plain Go client;
//   - latency from publish to delivery at 1,000 and 5,000 events/s;
//   - memory: meshd's RSS idle, after its first 100,000 events (batches of
//     100, as fast as it takes them) and after the run, and its binary size.
//
// The last line printed is:
//
//	RESULT publish_eps=<n> batch_eps=<n> noop_http_eps=<n> raw_js_eps=<n> ratio=<publish/noop_http>
//	  e2e_p50_ms=<x> e2e_p99_ms=<y> deliver_eps=<n> noop_deliver_eps=<n> deliver_ratio=<x>
//	  e2e5k_p50_ms=<x> e2e5k_p99_ms=<y> rss_idle_mb=<n> rss_loaded_mb=<after 100,000 events>
//	  rss_after_run_mb=<n> binary_mb=<n> binary_lean_mb=<n> rss_idle_lean_mb=<n>
//
// (on one line). With -soak it instead publishes and delivers at -rate for
// that long, prints meshd's RSS over time and fails if an event was lost.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

var (
	meshdBin    = flag.String("meshd", "bin/meshd", "the meshd binary to measure")
	leanBin     = flag.String("lean", "", "a lean build of meshd (make build-lean) whose binary size and idle memory are reported too")
	duration    = flag.Duration("duration", 8*time.Second, "length of each throughput phase")
	clients     = flag.Int("clients", 32, "concurrent keep-alive clients")
	eventSize   = flag.Int("size", 1024, "event data size in bytes")
	batchSize   = flag.Int("batch", 100, "events per batch request")
	latencyRate = flag.Int("rate", 1000, "events/s of the latency phase (and of -soak)")
	latencyFor  = flag.Duration("latency-duration", 5*time.Second, "length of each latency phase")
	backlog     = flag.Int("backlog", 100_000, "events a subscription drains in the delivery phase")
	heapProfile = flag.String("heapprofile", "", "start meshd with admin.pprof, write its heap profile here after the run (and to this path + \".100k\" after the first 100,000 events) and print its Go memory figures")
	cpuProfile  = flag.String("cpuprofile", "", "start meshd with admin.pprof and write its CPU profile of the first 4 s of the delivery phase's drain here")
	soak        = flag.Duration("soak", 0, "instead of the benchmark, publish and deliver at -rate for this long, report meshd's RSS and check nothing is lost")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	data := bytes.Repeat([]byte("x"), *eventSize)
	payload := append(append([]byte(`{"d":"`), data[:max(0, *eventSize-8)]...), '"', '}')

	var leanMB, leanIdle float64
	if *leanBin != "" {
		lean, err := startMeshd(*leanBin)
		if err != nil {
			return err
		}
		time.Sleep(2 * time.Second)
		leanIdle, leanMB = lean.rssMB(), fileMB(*leanBin)
		anon, file := lean.rssSplitMB()
		lean.stop()
		fmt.Printf("lean build  idle RSS %.1f MB (anonymous %.1f MB, the binary's pages and other files %.1f MB), binary %.1f MB\n", leanIdle, anon, file, leanMB)
	}

	m, err := startMeshd(*meshdBin)
	if err != nil {
		return err
	}
	defer m.stop()
	api := "http://" + m.api
	client := newClient()

	if *soak > 0 {
		return runSoak(m, client, api, payload)
	}
	fmt.Printf("meshd bench: %d clients, %d B events, %s per phase, GOMAXPROCS=%d\n", *clients, *eventSize, *duration, runtime.GOMAXPROCS(0))

	time.Sleep(2 * time.Second) // let start-up settle before reading idle memory
	rssIdle := m.rssMB()
	anon, file := m.rssSplitMB()
	binMB := fileMB(*meshdBin)
	fmt.Printf("memory      idle RSS %.1f MB (anonymous %.1f MB, the binary's pages and other files %.1f MB), binary %.1f MB\n", rssIdle, anon, file, binMB)

	// The RSS after the first 100,000 events (issue #18's rss_loaded_mb);
	// the RSS after the whole run, some million events within the
	// duplicate window, is printed as rss_after_run_mb.
	if err := publishN(client, api+"/v1/publish/bench", payload, 100_000); err != nil {
		return fmt.Errorf("publishing the first 100,000 events: %w", err)
	}
	rss100k := m.rssMB()
	fmt.Printf("memory      RSS %.1f MB after 100,000 events\n", rss100k)
	if *heapProfile != "" {
		if err := m.writeHeapProfile(*heapProfile + ".100k"); err != nil {
			return err
		}
	}

	noop, _, err := noopServer()
	if err != nil {
		return err
	}
	defer noop.Close()

	noopEPS, err := load(client, binaryReq("http://"+noop.Addr().String()+"/v1/publish/bench", payload))
	if err != nil {
		return fmt.Errorf("no-op phase: %w", err)
	}
	fmt.Printf("noop_http   %10.0f req/s\n", noopEPS)

	publishEPS, err := load(client, binaryReq(api+"/v1/publish/bench", payload))
	if err != nil {
		return fmt.Errorf("publish phase: %w", err)
	}
	fmt.Printf("publish     %10.0f events/s (binary mode, one event per request)\n", publishEPS)

	batchEPS, err := load(client, batchReq(api+"/v1/publish/bench", payload))
	if err != nil {
		return fmt.Errorf("batch phase: %w", err)
	}
	fmt.Printf("batch       %10.0f events/s (%d events per request)\n", batchEPS, *batchSize)

	// A meshd older than mesh.listen's authentication writes no token.
	token, err := os.ReadFile(filepath.Join(m.dir, "data", "mesh.token"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading the mesh token meshd generated: %w", err)
	}
	rawEPS, err := rawJetStream("nats://"+m.nats, strings.TrimSpace(string(token)), payload)
	if err != nil {
		return fmt.Errorf("raw JetStream phase: %w", err)
	}
	fmt.Printf("raw_js      %10.0f events/s (nats.go, synchronous publish)\n", rawEPS)

	p50, p99, err := latency(client, api, payload, *latencyRate, "latency")
	if err != nil {
		return fmt.Errorf("latency phase: %w", err)
	}
	fmt.Printf("e2e latency p50 %.2f ms, p99 %.2f ms at %d events/s\n", p50, p99, *latencyRate)

	p50k, p99k, err := latency(client, api, payload, 5000, "latency5k")
	if err != nil {
		return fmt.Errorf("latency phase at 5000/s: %w", err)
	}
	fmt.Printf("e2e latency p50 %.2f ms, p99 %.2f ms at 5000 events/s\n", p50k, p99k)

	deliverEPS, noopDeliverEPS, err := delivery(client, api, m.admin, payload)
	if err != nil {
		return fmt.Errorf("delivery phase: %w", err)
	}
	fmt.Printf("deliver     %10.0f events/s (one subscription draining %d events)\n", deliverEPS, *backlog)
	fmt.Printf("noop_deliver%10.0f events/s (the same subscriber fed by a plain Go client)\n", noopDeliverEPS)

	rssLoaded := m.rssMB()
	fmt.Printf("memory      RSS %.1f MB after the run\n", rssLoaded)
	if *heapProfile != "" {
		if err := m.writeHeapProfile(*heapProfile); err != nil {
			return err
		}
	}

	fmt.Printf("RESULT publish_eps=%.0f batch_eps=%.0f noop_http_eps=%.0f raw_js_eps=%.0f ratio=%.3f e2e_p50_ms=%.2f e2e_p99_ms=%.2f"+
		" deliver_eps=%.0f noop_deliver_eps=%.0f deliver_ratio=%.3f e2e5k_p50_ms=%.2f e2e5k_p99_ms=%.2f rss_idle_mb=%.1f rss_loaded_mb=%.1f"+
		" rss_after_run_mb=%.1f binary_mb=%.1f binary_lean_mb=%.1f rss_idle_lean_mb=%.1f\n",
		publishEPS, batchEPS, noopEPS, rawEPS, publishEPS/noopEPS, p50, p99,
		deliverEPS, noopDeliverEPS, deliverEPS/noopDeliverEPS, p50k, p99k, rssIdle, rss100k, rssLoaded, binMB, leanMB, leanIdle)
	return nil
}

// meshdProc is the meshd under test.
type meshdProc struct {
	cmd              *exec.Cmd
	dir              string
	api, admin, nats string
	log              bytes.Buffer
}

func startMeshd(bin string) (*meshdProc, error) {
	dir, err := os.MkdirTemp("", "meshd-bench")
	if err != nil {
		return nil, err
	}
	m := &meshdProc{dir: dir}
	for _, p := range []*string{&m.api, &m.admin, &m.nats} {
		if *p, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	args := []string{"run", "--app.id", "bench", "--data.dir", filepath.Join(dir, "data"),
		"--api.listen", m.api, "--admin.listen", m.admin, "--mesh.listen", m.nats, "--log.level", "warn"}
	if *heapProfile != "" || *cpuProfile != "" {
		args = append(args, "--admin.pprof")
	}
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = &m.log, &m.log
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (run make build first): %w", bin, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + m.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.stop()
	return nil, fmt.Errorf("meshd did not become ready:\n%s", m.log.String())
}

func (m *meshdProc) stop() {
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = m.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = m.cmd.Process.Kill()
		}
	}
	_ = os.RemoveAll(m.dir)
}

// writeHeapProfile saves meshd's heap profile (after a collection) to path
// and prints the Go runtime's view of its memory beside the RSS: what the
// heap holds live, what it keeps from the OS, and what is not heap.
func (m *meshdProc) writeHeapProfile(path string) error {
	get := func(query string) ([]byte, error) {
		resp, err := http.Get("http://" + m.admin + "/debug/pprof/heap?" + query)
		if err != nil {
			return nil, fmt.Errorf("heap profile: %w", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("heap profile: %s: %s", resp.Status, b)
		}
		return b, err
	}
	prof, err := get("gc=1")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, prof, 0o644); err != nil {
		return err
	}
	text, err := get("debug=1")
	if err != nil {
		return err
	}
	stats := map[string]float64{}
	for line := range strings.SplitSeq(string(text), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = "); ok {
			if n, err := strconv.ParseFloat(strings.Fields(v + " x")[0], 64); err == nil {
				stats[k] = n / (1 << 20)
			}
		}
	}
	fmt.Printf("memory      Go heap after a GC: live %.1f MB, in use %.1f MB, held %.1f MB (released %.1f MB); all Go memory %.1f MB; RSS %.1f MB; profile in %s\n",
		stats["HeapAlloc"], stats["HeapInuse"], stats["HeapSys"], stats["HeapReleased"], stats["Sys"], m.rssMB(), path)
	return nil
}

// rssMB is meshd's resident memory now, from /proc.
func (m *meshdProc) rssMB() float64 { return m.statusMB("VmRSS") }

// rssSplitMB splits the RSS into anonymous memory (the Go heap, stacks,
// the runtime's own) and file-backed pages, which at idle are almost all the
// binary's code and tables mapped at start: clean pages the kernel can drop
// and read again, shared by every meshd running the same file.
func (m *meshdProc) rssSplitMB() (anon, file float64) {
	return m.statusMB("RssAnon"), m.statusMB("RssFile") + m.statusMB("RssShmem")
}

// statusMB is one of the kB fields of meshd's /proc/PID/status in MB, -1
// when it cannot be read.
func (m *meshdProc) statusMB(field string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

func fileMB(path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return float64(fi.Size()) / (1 << 20)
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
			MaxIdleConns:        *clients * 4,
			MaxIdleConnsPerHost: *clients * 4,
			// The paced phases start a request on schedule whatever is in
			// flight; when meshd falls behind, they wait for a connection
			// (counted in their latency) instead of opening one each until
			// the file limit (a 5,000 ev/s soak did).
			MaxConnsPerHost: *clients * 4,
			IdleConnTimeout: time.Minute,
		},
	}
}

// noopServer answers every request 204 and counts them.
func noopServer() (net.Listener, *atomic.Int64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	var n atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln, &n, nil
}

func binaryReq(url string, payload []byte) func(seq int64) (*http.Request, int) {
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

// load runs the client pool for the phase duration (after a short warm-up)
// and returns events per second. newReq returns a request and how many
// events it carries.
// publishN publishes n events in batches from *clients workers as fast
// as meshd takes them.
func publishN(client *http.Client, url string, payload []byte, n int) error {
	newReq := batchReq(url, payload)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range *clients {
		wg.Go(func() {
			for seq := next.Add(1); (seq-1)*int64(*batchSize) < int64(n); seq = next.Add(1) {
				req, _ := newReq(-seq) // ids of their own: not duplicates of the batch phase's
				if err := send(client, req); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return nil
}

// send does req and reads its answer; an answer other than 2xx is an error.
func send(client *http.Client, req *http.Request) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

func load(client *http.Client, newReq func(seq int64) (*http.Request, int)) (float64, error) {
	return loadFor(client, *clients, *duration, newReq)
}

func loadFor(client *http.Client, workers int, d time.Duration, newReq func(seq int64) (*http.Request, int)) (float64, error) {
	var seq, events atomic.Int64
	var firstErr atomic.Value
	runPhase := func(d time.Duration, count bool) {
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					req, n := newReq(seq.Add(1))
					if err := send(client, req); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					if count {
						events.Add(int64(n))
					}
				}
			})
		}
		wg.Wait()
	}
	runPhase(time.Second, false)
	start := time.Now()
	runPhase(d, true)
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
func rawJetStream(url, token string, payload []byte) (float64, error) {
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	var jss []nats.JetStreamContext
	for range *clients {
		var opts []nats.Option
		if token != "" {
			opts = append(opts, nats.Token(token))
		}
		nc, err := nats.Connect(url, opts...)
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
			wg.Go(func() {
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
			})
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

func subscribe(client *http.Client, api string, sub map[string]any) error {
	body, _ := json.Marshal(sub)
	resp, err := client.Post(api+"/v1/subscriptions", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(resp.Body)
		if _, ok := sub["startAt"]; ok && resp.StatusCode == http.StatusBadRequest && bytes.Contains(msg, []byte(`unknown field \"startAt\"`)) {
			// A meshd older than startAt, whose subscriptions all start
			// at the oldest event: measured all the same.
			delete(sub, "startAt")
			return subscribe(client, api, sub)
		}
		return fmt.Errorf("creating subscription: %s: %s", resp.Status, msg)
	}
	return nil
}

// paced publishes events at rate for d (open loop: each on its own
// goroutine at its tick) and returns their send times.
func paced(client *http.Client, url string, payload []byte, rate int, d time.Duration, prefix string) (map[string]time.Time, error) {
	sent := map[string]time.Time{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	total := int(d.Seconds() * float64(rate))
	for i := range total {
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
			time.Sleep(wait)
		}
		id := prefix + strconv.Itoa(i)
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
			req.Header["Ce-Specversion"] = []string{"1.0"}
			req.Header["Ce-Id"] = []string{id}
			req.Header["Ce-Source"] = []string{"/bench"}
			req.Header["Ce-Type"] = []string{"com.example.latency"}
			req.Header["Content-Type"] = []string{"application/json"}
			t0 := time.Now()
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
			sent[id] = t0
			mu.Unlock()
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return sent, nil
}

// latency publishes at rate to a topic a subscription delivers to a probe,
// and returns the p50 and p99 of publish-to-delivery times.
func latency(client *http.Client, api string, payload []byte, rate int, topic string) (p50, p99 float64, err error) {
	probe, err := newLatencyProbe()
	if err != nil {
		return 0, 0, err
	}
	defer probe.srv.Close()
	if err := subscribe(client, api, map[string]any{"id": topic, "topic": topic, "sink": "http://" + probe.addr + "/", "maxInFlight": 64}); err != nil {
		return 0, 0, err
	}
	warm, err := paced(client, api+"/v1/publish/"+topic, payload, rate, time.Second, "warm-")
	if err != nil {
		return 0, 0, err
	}
	sent, err := paced(client, api+"/v1/publish/"+topic, payload, rate, *latencyFor, "lat-")
	if err != nil {
		return 0, 0, err
	}
	deadline := time.Now().Add(60 * time.Second)
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
		return 0, 0, fmt.Errorf("%d of %d events were not delivered within 60s", len(sent)-len(ms), len(sent))
	}
	sort.Float64s(ms)
	return ms[len(ms)/2], ms[len(ms)*99/100], nil
}

// delivery stores a backlog on a topic, then measures how fast one
// subscription (startAt earliest) drains it into a no-op subscriber; and,
// as the ceiling, how fast a plain Go client with as many requests in
// flight feeds the same subscriber.
func delivery(client *http.Client, api, admin string, payload []byte) (deliverEPS, noopEPS float64, err error) {
	const inFlight = 64
	sub, count, err := noopServer()
	if err != nil {
		return 0, 0, err
	}
	defer sub.Close()
	batches := (*backlog + *batchSize - 1) / *batchSize
	newBatch := batchReq(api+"/v1/publish/drain", payload)
	for i := range batches {
		req, _ := newBatch(int64(i))
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return 0, 0, fmt.Errorf("storing the backlog: %s", resp.Status)
		}
	}
	total := int64(batches * *batchSize)
	start := time.Now()
	if err := subscribe(client, api, map[string]any{"id": "drain", "topic": "drain", "sink": "http://" + sub.Addr().String() + "/",
		"maxInFlight": inFlight, "startAt": "earliest"}); err != nil {
		return 0, 0, err
	}
	profiled := make(chan error, 1)
	if *cpuProfile != "" {
		go func() { profiled <- saveProfile("http://"+admin+"/debug/pprof/profile?seconds=4", *cpuProfile) }()
	} else {
		profiled <- nil
	}
	deadline := start.Add(5 * time.Minute)
	for count.Load() < total {
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("%d of %d events delivered in 5 minutes", count.Load(), total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	deliverEPS = float64(total) / time.Since(start).Seconds()
	if err := <-profiled; err != nil {
		return 0, 0, fmt.Errorf("CPU profile: %w", err)
	}

	noopEPS, err = loadFor(client, inFlight, *duration, binaryReq("http://"+sub.Addr().String()+"/", payload))
	return deliverEPS, noopEPS, err
}

// runSoak publishes at a fixed rate for *soak, samples meshd's RSS every 10
// s, and checks every event arrives.
func runSoak(m *meshdProc, client *http.Client, api string, payload []byte) error {
	probe, err := newLatencyProbe()
	if err != nil {
		return err
	}
	defer probe.srv.Close()
	if err := subscribe(client, api, map[string]any{"id": "soak", "topic": "soak", "sink": "http://" + probe.addr + "/", "maxInFlight": 64}); err != nil {
		return err
	}
	fmt.Printf("soak: %d events/s for %s\n", *latencyRate, *soak)
	var rss []float64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			r := m.rssMB()
			rss = append(rss, r)
			fmt.Printf("soak: RSS %.1f MB, delivered %d\n", r, probe.count())
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	sent, err := paced(client, api+"/v1/publish/soak", payload, *latencyRate, *soak, "soak-")
	close(stop)
	wg.Wait()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for probe.count() < len(sent) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	maxRSS := 0.0
	for _, r := range rss {
		maxRSS = max(maxRSS, r)
	}
	fmt.Printf("soak: sent %d, delivered %d; RSS first %.1f MB, last %.1f MB, max %.1f MB\n",
		len(sent), probe.count(), rss[0], rss[len(rss)-1], maxRSS)
	printSoakLatency(sent, probe)
	if *heapProfile != "" {
		if err := m.writeHeapProfile(*heapProfile); err != nil {
			return err
		}
	}
	if probe.count() < len(sent) {
		return errors.New("soak lost " + strconv.Itoa(len(sent)-probe.count()) + " events")
	}
	return nil
}

// saveProfile writes what url (a pprof endpoint) answers to path.
func saveProfile(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", resp.Status, b)
	}
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// printSoakLatency prints the publish-to-delivery p50 and p99 of the events
// sent in each minute of a soak: how latency changes as the duplicate
// window and the heap fill.
func printSoakLatency(sent map[string]time.Time, probe *latencyProbe) {
	var start time.Time
	for _, t := range sent {
		if start.IsZero() || t.Before(start) {
			start = t
		}
	}
	var minutes [][]float64
	probe.mu.Lock()
	for id, t0 := range sent {
		t1, ok := probe.arrived[id]
		if !ok {
			continue
		}
		i := int(t0.Sub(start) / time.Minute)
		for len(minutes) <= i {
			minutes = append(minutes, nil)
		}
		minutes[i] = append(minutes[i], float64(t1.Sub(t0).Microseconds())/1000)
	}
	probe.mu.Unlock()
	for i, ms := range minutes {
		if len(ms) == 0 {
			continue
		}
		sort.Float64s(ms)
		fmt.Printf("soak: minute %d: p50 %.2f ms, p99 %.2f ms, max %.1f ms (%d events)\n", i+1, ms[len(ms)/2], ms[len(ms)*99/100], ms[len(ms)-1], len(ms))
	}
}
