package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// publishTimeout is how long meshd waits for the mesh to store an event
// (natsjs.DefaultPublishTimeout); slack covers the HTTP round trip on a
// loaded machine.
const (
	publishTimeout = 5 * time.Second
	publishSlack   = 2 * time.Second
)

// pubResult is one publish of the load.
type pubResult struct {
	sidecar    string
	id         string
	status     int // 0: the request failed
	err        error
	retryAfter string
	start, end time.Time
}

// load publishes one event after another to each sidecar, paced, and
// records every answer.
type load struct {
	mu      sync.Mutex
	results []pubResult
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(topic string, every time.Duration, ms ...*meshd) *load {
	l := &load{stop: make(chan struct{})}
	client := &http.Client{Timeout: 30 * time.Second}
	for _, m := range ms {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				r := pubResult{sidecar: m.name, id: fmt.Sprintf("%s-%05d", m.name, i), start: time.Now()}
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+m.api+"/v1/publish/"+topic, strings.NewReader(`{"i":1}`))
				req.Header = http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {r.id}, "Ce-Source": {"/e2e/load"},
					"Ce-Type": {"load"}, "Content-Type": {"application/json"}}
				resp, err := client.Do(req)
				r.end = time.Now()
				if err != nil {
					r.err = err
				} else {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					r.status, r.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
				}
				l.mu.Lock()
				l.results = append(l.results, r)
				l.mu.Unlock()
				time.Sleep(every) // pacing the load, not waiting for anything
			}
		})
	}
	return l
}

func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) snapshot() []pubResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// storedSince counts, for each sidecar, the 204s of publishes started at or
// after since, and returns the smallest count.
func (l *load) storedSince(since time.Time, sidecars ...string) int {
	n := map[string]int{}
	for _, r := range l.snapshot() {
		if r.status == http.StatusNoContent && !r.start.Before(since) {
			n[r.sidecar]++
		}
	}
	least := -1
	for _, s := range sidecars {
		if least < 0 || n[s] < least {
			least = n[s]
		}
	}
	return least
}

// outage describes what the load saw of one failure, for the test log.
type outage struct {
	name    string
	at      time.Time
	refused int           // 503s of publishes started after at
	gap     time.Duration // from at to the first 204 of a publish started after it, longest over the sidecars
}

func (l *load) describe(name string, at, until time.Time, sidecars ...string) outage {
	o := outage{name: name, at: at}
	first := map[string]time.Time{}
	for _, r := range l.snapshot() {
		if r.start.Before(at) || !r.start.Before(until) {
			continue
		}
		if r.status == http.StatusServiceUnavailable {
			o.refused++
		}
		if r.status == http.StatusNoContent {
			if f, ok := first[r.sidecar]; !ok || r.end.Before(f) {
				first[r.sidecar] = r.end
			}
		}
	}
	for _, s := range sidecars {
		if f, ok := first[s]; ok {
			o.gap = max(o.gap, f.Sub(at))
		} else {
			o.gap = until.Sub(at)
		}
	}
	return o
}

func (m *meshd) ready() int {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + m.admin + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// fleetYAML is the config of a sidecar of a fleet on cluster.
func fleetYAML(cluster *infra.NATSCluster, subscriptions string) string {
	return fmt.Sprintf("mesh:\n  url: %s\n  replicas: 3\n%ssubscriptions:\n%s", cluster.URL(), fastRetry, subscriptions)
}

// Two sidecars of one app on a 3-node JetStream cluster (R3), under a
// steady publish load from both: kill -9 of the stream leader, then of the
// new leader (the stream loses its quorum), both restarted; then the whole
// cluster down and back. Every publish answered 204 reaches the
// subscriber; a publish that cannot be stored gets 503 with Retry-After
// within the publish timeout, never a hang; /readyz says not ready while
// the mesh cannot store, and the sidecars carry on by themselves. The
// figures go to the test log. FLEET_LONG=1 runs each phase longer (make
// soak).
func TestFleetSurvivesClusterFailures(t *testing.T) {
	phase, every := 2*time.Second, 20*time.Millisecond
	if os.Getenv("FLEET_LONG") != "" {
		phase = 20 * time.Second
	}
	cluster := infra.StartNATSCluster(t, 3)
	out := newSink(t, http.StatusNoContent)
	yaml := fleetYAML(cluster, subscriptionYAML("fleet", "fleet", out.url()))
	a := newMeshdOf(t, "fleet-a", "fleet", yaml, nil)
	b := newMeshdOf(t, "fleet-b", "fleet", yaml, nil)
	names := []string{a.name, b.name}
	began := time.Now()
	l := startLoad("fleet", every, a, b)
	halted := false
	defer func() {
		if !halted {
			l.halt()
		}
	}()
	steady := func(since time.Time, what string) {
		t.Helper()
		require.Eventually(t, func() bool { return l.storedSince(since, names...) >= int(phase/every)/2 }, 60*time.Second, 20*time.Millisecond,
			"both sidecars store again %s", what)
	}
	steady(began, "at first")

	// kill -9 of the stream leader: another is elected.
	first := cluster.StreamLeader("MESHD")
	killedLeader := time.Now()
	cluster.Kill9(first)
	t.Logf("killed node %d, the leader of stream MESHD", first)
	steady(killedLeader, "after kill -9 of the leader")
	recovered := time.Now()

	// kill -9 of a second node (the new leader): one of three left, no
	// quorum, nothing can be stored until a node is back.
	second := cluster.StreamLeader("MESHD")
	require.NotEqual(t, first, second)
	killedSecond := time.Now()
	cluster.Kill9(second)
	t.Logf("killed node %d, the new leader", second)
	require.Eventually(t, func() bool {
		o := l.describe("", killedSecond, time.Now(), names...)
		return o.refused >= 4
	}, 30*time.Second, 20*time.Millisecond, "publishes are refused without a quorum")
	time.Sleep(phase) // the outage being measured
	restarted := time.Now()
	cluster.Start(first)
	t.Logf("node %d back after %s", first, time.Since(killedLeader).Round(time.Millisecond))
	steady(restarted, "once a quorum is back")
	cluster.Start(second)
	steady(time.Now(), "with every node back")
	l.halt()
	halted = true
	ended := time.Now()

	results := l.snapshot()
	stored := map[string]bool{}
	var slowest time.Duration
	for _, r := range results {
		took := r.end.Sub(r.start)
		slowest = max(slowest, took)
		assert.Less(t, took, publishTimeout+publishSlack, "publish %s answered %d after %s: longer than the publish timeout", r.id, r.status, took)
		switch r.status {
		case http.StatusNoContent:
			stored[r.id] = true
		case http.StatusServiceUnavailable:
			assert.NotEmpty(t, r.retryAfter, "503 for %s without Retry-After", r.id)
		default:
			t.Errorf("publish %s: status %d, error %v; want 204 or 503", r.id, r.status, r.err)
		}
	}
	leaderLoss := l.describe("kill -9 of the stream leader", killedLeader, recovered, names...)
	quorumLoss := l.describe("kill -9 of a second node (no quorum) until the first is back", killedSecond, ended, names...)
	for _, o := range []outage{leaderLoss, quorumLoss} {
		t.Logf("%s: %d publishes refused with 503; longest gap without a 204 on a sidecar %s", o.name, o.refused, o.gap.Round(time.Millisecond))
	}
	t.Logf("no quorum for %s; %d publishes in all, %d answered 204, slowest answer %s",
		restarted.Sub(killedSecond).Round(time.Millisecond), len(results), len(stored), slowest.Round(time.Millisecond))

	awaitDelivered(t, out, stored)

	// The whole cluster down: not ready, publishes refused at once; back:
	// ready, storing and delivering again without a restart of meshd.
	for i := range cluster.Size() {
		cluster.Kill9(i)
	}
	down := time.Now()
	for _, m := range []*meshd{a, b} {
		require.Eventually(t, func() bool { return m.ready() == http.StatusServiceUnavailable }, 15*time.Second, 50*time.Millisecond,
			"%s says not ready while the mesh is down", m.name)
		start := time.Now()
		resp, text := m.post("/v1/publish/fleet", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"while-down"}, "Ce-Source": {"/e2e"},
			"Ce-Type": {"t"}, "Content-Type": {"application/json"}}, []byte(`{}`))
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, text)
		assert.NotEmpty(t, resp.Header.Get("Retry-After"))
		assert.Less(t, time.Since(start), publishTimeout+publishSlack)
	}
	t.Logf("both sidecars not ready %s after the cluster went down", time.Since(down).Round(time.Millisecond))
	restart := time.Now()
	cluster.StartAll()
	back := time.Now()
	t.Logf("the restarted cluster was current %s after its processes started", back.Sub(restart).Round(time.Millisecond))
	after := map[string]bool{}
	for _, m := range []*meshd{a, b} {
		require.Eventually(t, func() bool { return m.ready() == http.StatusOK }, 60*time.Second, 50*time.Millisecond,
			"%s ready again once the cluster is back", m.name)
		id := "after-" + m.name
		require.Eventually(t, func() bool {
			resp, _ := m.post("/v1/publish/fleet", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {id}, "Ce-Source": {"/e2e/load"},
				"Ce-Type": {"t"}, "Content-Type": {"application/json"}}, []byte(`{}`))
			return resp.StatusCode == http.StatusNoContent
		}, 30*time.Second, 100*time.Millisecond, "%s stores again", m.name)
		after[id] = true
	}
	t.Logf("both sidecars ready and storing %s after the cluster was back", time.Since(back).Round(time.Millisecond))
	awaitDelivered(t, out, after)
	t.Logf("delivered %s after the cluster was back", time.Since(back).Round(time.Millisecond))

	// State is live after the outage: a subscription created through one
	// sidecar runs on the other; two concurrent changes at one revision,
	// one through each sidecar: one wins, the other gets 409.
	late := newSink(t, http.StatusNoContent)
	refused := 0
	require.Eventually(t, func() bool {
		// The buckets' streams may still be electing leaders: 503, retry.
		resp, text := a.do(http.MethodPost, "/v1/subscriptions", "", `{"id":"late","topic":"late","sink":"`+late.url()+`"}`)
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable:
			refused++
			return false
		case resp.StatusCode == http.StatusConflict && refused > 0: // stored by an attempt answered 503
			return true
		}
		require.Equal(t, http.StatusCreated, resp.StatusCode, text)
		return true
	}, 30*time.Second, 200*time.Millisecond)
	took := b.waitLog(15*time.Second, "subscription created elsewhere; started", "subscription=late")
	t.Logf("a subscription created through a after the outage (%d attempts refused first) started on b within %s", refused, took.Round(time.Millisecond))
	resp, _ := b.do(http.MethodGet, "/v1/subscriptions/late", "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	tag := resp.Header.Get("ETag")
	statuses := make(chan int, 2)
	for i, m := range []*meshd{a, b} {
		go func() {
			resp, _, err := m.request(http.MethodPut, "/v1/subscriptions/late", tag, fmt.Sprintf(`{"topic":"late","sink":"%s?by=%d"}`, late.url(), i))
			if err != nil {
				statuses <- 0
				return
			}
			statuses <- resp.StatusCode
		}()
	}
	assert.ElementsMatch(t, []int{http.StatusOK, http.StatusConflict}, []int{<-statuses, <-statuses}, "two PUTs at one revision: one wins, one 409")
	t.Logf("whole run %s", time.Since(began).Round(time.Second))
}

// awaitDelivered waits until every event in ids reached out, and logs the
// duplicates (at-least-once).
func awaitDelivered(t *testing.T, out *sink, ids map[string]bool) {
	t.Helper()
	var missing []string
	ok := assert.Eventually(t, func() bool {
		got, _ := out.ids()
		missing = missing[:0]
		for id := range ids {
			if got[id] == 0 {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	}, 60*time.Second, 100*time.Millisecond)
	if !ok {
		slices.Sort(missing)
		t.Fatalf("%d events answered 204 never reached the subscriber: %v", len(missing), missing[:min(20, len(missing))])
	}
	got, total := out.ids()
	t.Logf("all %d events answered 204 delivered; %d deliveries of %d distinct events (duplicates: %d)", len(ids), total, len(got), total-len(got))
}

// do sends a request to the app API with an optional If-Match.
func (m *meshd) do(method, path, ifMatch, body string) (*http.Response, string) {
	m.t.Helper()
	resp, text, err := m.request(method, path, ifMatch, body)
	require.NoError(m.t, err)
	return resp, text
}

// request is do for any goroutine: it returns the error.
func (m *meshd) request(method, path, ifMatch, body string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, "http://"+m.api+path, strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(bytes.TrimSpace(b)), nil
}

// lose forgets what s received: a subscriber that lost its data.
func (s *sink) lose() {
	s.mu.Lock()
	s.got = nil
	s.mu.Unlock()
}

// waitLog waits until m's log holds every one of parts on one line.
func (m *meshd) waitLog(within time.Duration, parts ...string) time.Duration {
	m.t.Helper()
	began := time.Now()
	require.Eventually(m.t, func() bool {
		for _, l := range strings.Split(m.logString(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(l, p)
			}
			if all {
				return true
			}
		}
		return false
	}, within, 5*time.Millisecond, "meshd %s should log %q", m.name, parts)
	return time.Since(began)
}

// twoOnNATS starts a nats-server and two meshds on it, of the app ids given.
func twoOnNATS(t *testing.T, nameA, appA, nameB, appB string) (*meshd, *meshd) {
	t.Helper()
	url, _, _ := infra.StartNATS(t)
	yaml := "mesh:\n  url: " + url + "\n" + fastRetry
	return newMeshdOf(t, nameA, appA, yaml, nil), newMeshdOf(t, nameB, appB, yaml, nil)
}

// Subscriptions and connector instances created, changed or deleted
// through one sidecar of an app are applied by the other within a second,
// without a restart.
func TestFleetStateIsLive(t *testing.T) {
	a, b := twoOnNATS(t, "live-a", "live", "live-b", "live")
	out := newSink(t, http.StatusNoContent)
	const within = time.Second

	resp, text := a.do(http.MethodPost, "/v1/subscriptions", "", `{"id":"s","topic":"live","sink":"`+out.url()+`"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode, text)
	took := b.waitLog(within, "subscription created elsewhere; started", "subscription=s")
	t.Logf("subscription created through a, started on b within %s", took.Round(time.Millisecond))

	resp, text = b.do(http.MethodPut, "/v1/subscriptions/s", "", `{"topic":"live","sink":"`+out.url()+`?v=2"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, text)
	took = a.waitLog(within, "subscription changed elsewhere; restarted", "subscription=s")
	t.Logf("subscription changed through b, restarted on a within %s", took.Round(time.Millisecond))
	for i := range 10 {
		a.publishBinary("live", fmt.Sprintf("l-%d", i), "t", []byte(`{}`))
	}
	require.Eventually(t, func() bool { ids, _ := out.ids(); return len(ids) == 10 }, 10*time.Second, 20*time.Millisecond)
	for _, d := range out.deliveries() {
		assert.Equal(t, "2", d.query.Get("v"), "delivered with the changed settings, by either sidecar")
	}

	resp, text = a.do(http.MethodDelete, "/v1/subscriptions/s", "", "")
	require.Equal(t, http.StatusNoContent, resp.StatusCode, text)
	took = b.waitLog(within, "subscription deleted elsewhere; stopped", "subscription=s")
	t.Logf("subscription deleted through a, stopped on b within %s", took.Round(time.Millisecond))

	code, body := a.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "out", "config": map[string]any{
		"connector.type": "http-sink", "tasks.max": 1, "topic": "live-out", "url": out.url()}})
	require.Equal(t, http.StatusCreated, code, body)
	began := time.Now()
	b.waitConnector("out", "RUNNING")
	t.Logf("connector created through a, running on b after %s", time.Since(began).Round(time.Millisecond))
	code, body = b.adminCall(http.MethodPut, "/v1/connectors/out/pause", nil)
	require.Equal(t, http.StatusAccepted, code, body)
	began = time.Now()
	require.Eventually(t, func() bool { s, _ := a.connectorState("out"); return s == "PAUSED" }, within, 5*time.Millisecond, "paused through b, paused on a")
	t.Logf("connector paused through b, paused on a after %s", time.Since(began).Round(time.Millisecond))
	code, body = b.adminCall(http.MethodDelete, "/v1/connectors/out", nil)
	require.Equal(t, http.StatusNoContent, code, body)
	began = time.Now()
	require.Eventually(t, func() bool { s, _ := a.connectorState("out"); return s == "404" }, within, 5*time.Millisecond, "deleted through b, gone on a")
	t.Logf("connector deleted through b, gone on a after %s", time.Since(began).Round(time.Millisecond))
}

// Apps "a.b" and "a_b" on one mesh shared their state buckets: each ran
// the other's subscriptions. They are apart now.
func TestAppIDsDoNotShareState(t *testing.T) {
	dot, under := twoOnNATS(t, "app-dot", "a.b", "app-underscore", "a_b")
	out := newSink(t, http.StatusNoContent)
	resp, text := dot.do(http.MethodPost, "/v1/subscriptions", "", `{"id":"mine","topic":"apart","sink":"`+out.url()+`"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode, text)
	code, body := dot.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "mine", "config": map[string]any{
		"connector.type": "http-sink", "topic": "apart-out", "url": out.url()}})
	require.Equal(t, http.StatusCreated, code, body)

	resp, text = under.do(http.MethodGet, "/v1/subscriptions", "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `[]`, text, "a_b does not see a.b's subscriptions")
	code, body = under.adminCall(http.MethodGet, "/v1/connectors", nil)
	require.Equal(t, http.StatusOK, code)
	assert.NotContains(t, body, "mine", "nor its connectors")
	code, body = dot.adminCall(http.MethodGet, "/v1/connectors", nil)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "mine")
	out2 := newSink(t, http.StatusNoContent)
	resp, text = under.do(http.MethodPost, "/v1/subscriptions", "", `{"id":"mine","topic":"apart","sink":"`+out2.url()+`"}`)
	assert.Equal(t, http.StatusCreated, resp.StatusCode, "the same id is free in a_b: %s", text)
	assert.Never(t, func() bool { return strings.Contains(under.logString(), "elsewhere") }, 300*time.Millisecond, 20*time.Millisecond,
		"a_b applies nothing of a.b")

	// Their subscriptions of one id on one topic are two consumer groups:
	// each gets every event (they split them between them before), and
	// one deleting its subscription leaves the other's group alone.
	for i := range 10 {
		dot.publishBinary("apart", fmt.Sprintf("e%d", i), "t", []byte(`{}`))
	}
	all := func(s *sink, n int) func() bool {
		return func() bool { ids, _ := s.ids(); return len(ids) == n }
	}
	require.Eventually(t, all(out, 10), 10*time.Second, 20*time.Millisecond, "a.b gets every event")
	require.Eventually(t, all(out2, 10), 10*time.Second, 20*time.Millisecond, "a_b gets every event")
	resp, text = under.do(http.MethodDelete, "/v1/subscriptions/mine", "", "")
	require.Equal(t, http.StatusNoContent, resp.StatusCode, text)
	for i := 10; i < 15; i++ {
		dot.publishBinary("apart", fmt.Sprintf("e%d", i), "t", []byte(`{}`))
	}
	require.Eventually(t, all(out, 15), 10*time.Second, 20*time.Millisecond, "a.b still gets every event")
	_, n := out.ids()
	assert.Equal(t, 15, n, "each once")
}

// After the subscriber lost its data, a replay from the earliest event, or
// from a time, gives it every event from there again, in order per topic
// (meshd subscriptions replay, the CLI).
func TestReplayAfterSubscriberLostData(t *testing.T) {
	outs := map[string]*sink{"red": newSink(t, http.StatusNoContent), "blue": newSink(t, http.StatusNoContent)}
	m := newMeshd(t, "replay", fastRetry+"subscriptions:\n"+
		subscriptionYAML("red", "red", outs["red"].url(), "maxInFlight: 1")+
		subscriptionYAML("blue", "blue", outs["blue"].url(), "maxInFlight: 1"))
	published := map[string][]string{}
	var mid time.Time
	const n = 40
	for i := range n {
		if i == n/2 {
			time.Sleep(20 * time.Millisecond) // keep the stored times of the two halves apart
			mid = time.Now()
			time.Sleep(20 * time.Millisecond)
		}
		for _, topic := range []string{"red", "blue"} {
			id := fmt.Sprintf("%s-%02d", topic, i)
			m.publishBinary(topic, id, "t", []byte(`{}`))
			published[topic] = append(published[topic], id)
		}
	}
	order := func(s *sink) []string {
		var ids []string
		for _, d := range s.deliveries() {
			ids = append(ids, d.header.Get("Ce-Id"))
		}
		return ids
	}
	received := func(want map[string][]string) {
		t.Helper()
		for topic, ids := range want {
			require.Eventually(t, func() bool { return len(order(outs[topic])) >= len(ids) }, 20*time.Second, 20*time.Millisecond)
			assert.Equal(t, ids, order(outs[topic]), "topic %s: every event, in order", topic)
		}
	}
	received(published)

	replay := func(id, from string) {
		t.Helper()
		cmd := exec.Command(meshdBin, "subscriptions", "replay", id, "--from", from, "--url", "http://"+m.api)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), stderr.String())
		assert.Equal(t, fmt.Sprintf("subscription %s replays from %s\n", id, from), stdout.String())
	}
	for _, s := range outs {
		s.lose()
	}
	replay("red", "earliest")
	replay("blue", "earliest")
	received(published)

	for _, s := range outs {
		s.lose()
	}
	replay("red", mid.UTC().Format(time.RFC3339Nano))
	replay("blue", mid.Format(time.RFC3339Nano))
	received(map[string][]string{"red": published["red"][n/2:], "blue": published["blue"][n/2:]})
	assert.Never(t, func() bool { return len(order(outs["red"])) > n/2 }, 300*time.Millisecond, 20*time.Millisecond, "nothing before the time")

	code, stderr, _ := runMeshd(t, "subscriptions", "replay", "red", "--from", "last tuesday", "--url", "http://"+m.api)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "from")
}
