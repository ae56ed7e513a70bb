package e2e

// The doors of a running meshd, attacked the way issue 12 found them open,
// so that none comes back unnoticed: web pages of other sites calling the
// app API, the admin API without a token, sinks aimed at meshd itself or at
// the cloud's metadata service, URL credentials shown by the API, slow
// clients holding connections and memory, and secrets in answers, logs,
// traces, deliveryerror and spans. The webhook listener's doors are
// attacked in webhooks_test.go.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	colltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshd/meshd/test/infra"
)

// envValue is the value m was started with for the variable name ("" if none).
func (m *meshd) envValue(name string) string {
	for _, kv := range m.env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

// createSubscription creates a subscription through the app API.
func (m *meshd) createSubscription(body string) (int, string) {
	m.t.Helper()
	h := jsonHeader.Clone()
	if tok := m.envValue("MESHD_API_TOKEN"); tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	return infra.Call(m.t, http.MethodPost, "http://"+m.api+"/v1/subscriptions", h, body)
}

// attackPage is a page of another site that tries, with what any page may
// send without asking (no CORS preflight), to make the user's meshd
// forward every event to it; then a JSON request (preflighted) and a
// WebSocket. It writes what happened into its DOM.
const attackPage = `<!doctype html><html><body>loading<script>
const q = new URLSearchParams(location.search);
const api = "http://" + q.get("api");
const loot = q.get("loot");
const sub = id => JSON.stringify({id: id, topic: "orders", sink: loot});
const out = [];
async function attempt(name, f) {
  try { out.push(name + ":" + await f()); } catch (e) { out.push(name + ":blocked"); }
}
(async () => {
  await attempt("text", async () => (await fetch(api + "/v1/subscriptions", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: sub("stolen-text")})).type);
  await attempt("blob", async () => (await fetch(api + "/v1/subscriptions", {method: "POST", mode: "no-cors", body: new Blob([sub("stolen-blob")])})).type);
  await attempt("publish", async () => (await fetch(api + "/v1/publish/orders", {method: "POST", mode: "no-cors", body: "forged"})).type);
  await attempt("json", async () => (await fetch(api + "/v1/subscriptions", {method: "POST", headers: {"Content-Type": "application/json"}, body: sub("stolen-json")})).status);
  // Virtual time does not wait for a WebSocket: fetches of /tick (each
  // answered after 100ms) keep the page alive until it opens or fails.
  let ws = null;
  const sock = new WebSocket(api.replace("http:", "ws:") + "/v1/ws/subscribe/orders");
  sock.onopen = () => { sock.close(); ws = "open"; };
  sock.onerror = () => { ws = "refused"; };
  for (let i = 0; ws === null && i < 100; i++) await fetch("/tick");
  out.push("ws:" + ws);
  document.body.textContent = ["DO" + "NE"].concat(out).join(" ");
})();
</script></body></html>`

// allowedPage is the page of an origin listed in api.allowedOrigins: it
// creates a subscription with a JSON request (preflighted, CORS) and reads
// the answer.
const allowedPage = `<!doctype html><html><body>loading<script>
const q = new URLSearchParams(location.search);
const api = "http://" + q.get("api");
(async () => {
  let out;
  try {
    const r = await fetch(api + "/v1/subscriptions", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({id: "granted", topic: "orders", sink: q.get("loot")})});
    out = "json:" + r.status + ":" + (await r.json()).id;
  } catch (e) { out = "json:blocked"; }
  document.body.textContent = "DO" + "NE " + out;
})();
</script></body></html>`

// pageServer serves the two pages on loopback; the tests load them under
// other host names (evil.test, good.test) mapped to it.
func pageServer(t *testing.T) (port string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /tick", func(w http.ResponseWriter, r *http.Request) {
		select { // paces the page, not the test
		case <-time.After(100 * time.Millisecond):
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusNoContent)
	})
	for path, page := range map[string]string{"/attack.html": attackPage, "/allowed.html": allowedPage} {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = io.WriteString(w, page)
		})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port
}

// A page of another site, in a real browser, cannot create a subscription,
// publish or subscribe on the user's meshd (no token set: the default);
// a page of an allowed origin can.
func TestSecurityCrossOriginPages(t *testing.T) {
	port := pageServer(t)
	evil, good := "http://evil.test:"+port, "http://good.test:"+port
	m := newMeshd(t, "xorigin", "api:\n  allowedOrigins: [\""+good+"\"]\n")
	witness := newSink(t, http.StatusNoContent)
	loot := newSink(t, http.StatusNoContent)
	code, body := m.createSubscription(`{"id":"witness","topic":"orders","sink":"` + witness.url() + `","maxInFlight":1}`)
	require.Equal(t, http.StatusCreated, code, body)

	hosts := map[string]string{"evil.test": "127.0.0.1", "good.test": "127.0.0.1"}
	query := "?api=" + m.api + "&loot=" + loot.url()
	dom := infra.DumpDOM(t, evil+"/attack.html"+query, hosts, 20*time.Second)
	require.Contains(t, dom, "DONE", "the attack page did not finish: %s", dom)
	t.Logf("attack page: %s", regexp.MustCompile(`DONE[^<]*`).FindString(dom))
	assert.Contains(t, dom, "ws:refused")
	assert.Regexp(t, `refusing a request of a page of another origin.*origin=`+regexp.QuoteMeta(evil), m.logString(), "meshd saw the page's requests and refused them")
	assert.ElementsMatch(t, []string{"witness"}, m.subscriptionIDs(), "the page created a subscription")

	// Nothing the page sent was published: the witness (in order) gets the
	// marker published after it first.
	m.publishBinary("orders", "marker", "e2e.marker", []byte(`{}`))
	require.Eventually(t, func() bool { _, n := witness.ids(); return n >= 1 }, 20*time.Second, 20*time.Millisecond)
	assert.Equal(t, "marker", witness.deliveries()[0].header.Get("Ce-Id"), "a forged event was published before the marker")

	dom = infra.DumpDOM(t, good+"/allowed.html"+query, hosts, 20*time.Second)
	assert.Contains(t, dom, "DONE json:201:granted", "an allowed page creates a subscription with CORS")
	assert.ElementsMatch(t, []string{"witness", "granted"}, m.subscriptionIDs())
}

// The admin API answers only with admin.token but for the probes; the
// probe listener serves the probes only; meshd connectors sends the token.
func TestSecurityAdminAPI(t *testing.T) {
	const token = "e2e-adm1n-t0ken"
	probe := freeAddr(t)
	m := newMeshdEnv(t, "admin-sec", "admin:\n  probeListen: "+probe+"\n", []string{"MESHD_ADMIN_TOKEN=" + token})
	admin := "http://" + m.admin
	for _, tc := range []struct {
		url    string
		header http.Header
		want   int
	}{
		{admin + "/healthz", nil, 200},
		{admin + "/readyz", nil, 200},
		{admin + "/metrics", nil, 401},
		{admin + "/v1/connectors", nil, 401},
		{admin + "/v1/connectors", http.Header{"Authorization": {"Bearer nope"}}, 401},
		{admin + "/v1/connectors", http.Header{"Authorization": {"Bearer " + token}}, 200},
		{"http://" + probe + "/healthz", nil, 200},
		{"http://" + probe + "/readyz", nil, 200},
		{"http://" + probe + "/v1/connectors", http.Header{"Authorization": {"Bearer " + token}}, 404},
		{"http://" + probe + "/metrics", nil, 404},
	} {
		code, body := infra.Call(t, http.MethodGet, tc.url, tc.header, "")
		assert.Equal(t, tc.want, code, "%s: %s", tc.url, body)
	}
	code, body := infra.Call(t, http.MethodPost, admin+"/v1/connectors", http.Header{"Content-Type": {"application/json"}},
		`{"name":"evil","config":{"connector.type":"jdbc-sink","topic":"orders","url":"sqlite:///tmp/evil.db","table":"t"}}`)
	assert.Equal(t, http.StatusUnauthorized, code, body)

	cli := func(env ...string) (int, string) {
		cmd := exec.Command(meshdBin, "connectors", "list", "--admin", admin)
		cmd.Env = append(os.Environ(), env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if exit, ok := err.(*exec.ExitError); ok {
			return exit.ExitCode(), out.String()
		}
		require.NoError(t, err)
		return 0, out.String()
	}
	code, out := cli("MESHD_ADMIN_TOKEN=")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "admin token")
	code, out = cli("MESHD_ADMIN_TOKEN=" + token)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "NAME")
	assert.NotContains(t, m.logString(), token)
}

// Sinks cannot reach meshd's own listeners, whatever their URL calls them,
// nor the cloud's metadata address: a subscription is refused when
// created, an http-sink's deliveries are dead-lettered. Even without an
// admin token, an event cannot create a connector through an http-sink.
func TestSecuritySinksCannotReachMeshd(t *testing.T) {
	dlq := newSink(t, http.StatusNoContent)
	m := newMeshd(t, "sinks-sec", fastRetry+"  allowedTargets: [\"127.0.0.0/8\"]\nsubscriptions:\n"+
		subscriptionYAML("dlq", "dlq", dlq.url()))

	_, adminPort, _ := net.SplitHostPort(m.admin)
	_, apiPort, _ := net.SplitHostPort(m.api)
	for i, sink := range []string{
		"http://" + m.admin + "/v1/connectors",
		"http://localhost:" + adminPort + "/v1/connectors",
		"http://0.0.0.0:" + apiPort + "/v1/publish/loop",
		"http://169.254.169.254/latest/meta-data/iam/security-credentials/",
		"http://203.0.113.7/hook", // not in delivery.allowedTargets
	} {
		code, body := m.createSubscription(fmt.Sprintf(`{"id":"s%d","topic":"orders","sink":%q}`, i, sink))
		assert.Equal(t, http.StatusBadRequest, code, "%s: %s", sink, body)
	}

	// An http-sink (checked when it dials) aimed at the admin API by name,
	// and one at the metadata service.
	for name, url := range map[string]string{
		"hop":  "http://localhost:" + adminPort + "/v1/connectors",
		"meta": "http://169.254.169.254/latest/meta-data/",
	} {
		code, body := m.adminCall(http.MethodPut, "/v1/connectors/"+name+"/config", map[string]any{
			"connector.type": "http-sink", "topic": name, "url": url, "dead.letter.topic": "dlq"})
		require.Equal(t, http.StatusCreated, code, body)
		m.waitConnector(name, "RUNNING")
	}
	create := `{"name":"evil","config":{"connector.type":"jdbc-sink","topic":"orders","url":"sqlite:///tmp/evil.db","table":"t","auto.create":true}}`
	m.publishBinary("hop", "hop-1", "e2e.create", []byte(create))
	m.publishBinary("meta", "meta-1", "e2e.steal", []byte(`{}`))
	require.Eventually(t, func() bool { _, n := dlq.ids(); return n >= 2 }, 30*time.Second, 20*time.Millisecond, "both events are dead-lettered")
	why := map[string]string{}
	for _, d := range dlq.deliveries() {
		why[d.header.Get("Ce-Id")], _ = url.PathUnescape(d.header.Get("Ce-Deliveryerror"))
	}
	assert.Contains(t, why["hop-1"], "meshd's own listeners")
	assert.Contains(t, why["meta-1"], "metadata")
	assert.NotContains(t, m.connectorNames(), "evil", "the event created a connector through the admin API")
}

// An http-sink URL's credentials are masked in every answer, and the
// masked config put back keeps them.
func TestSecurityURLCredentialsMasked(t *testing.T) {
	m := newMeshd(t, "mask-sec", fastRetry)
	var mu sync.Mutex
	var auths []string
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		mu.Lock()
		auths = append(auths, u+":"+p+"?"+r.URL.RawQuery)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	url := "http://hookuser:e2eHookPa55@" + ln.Addr().String() + "/in?key=e2eQK3y"
	code, body := m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "hook", "config": map[string]any{
		"connector.type": "http-sink", "topic": "orders", "url": url}})
	require.Equal(t, http.StatusCreated, code, body)
	m.waitConnector("hook", "RUNNING")
	var config map[string]any
	for _, path := range []string{"/v1/connectors?expand=info&expand=status", "/v1/connectors/hook", "/v1/connectors/hook/config", "/v1/connectors/hook/tasks", "/v1/connectors/hook/status"} {
		code, body := m.adminCall(http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, code, body)
		assert.NotContains(t, body, "e2eHookPa55", path)
		assert.NotContains(t, body, "e2eQK3y", path)
		assert.NotContains(t, body, "hookuser", path)
		if path == "/v1/connectors/hook/config" {
			require.NoError(t, json.Unmarshal([]byte(body), &config))
			assert.Equal(t, "http://********@"+ln.Addr().String()+"/in?key=********", config["url"])
		}
	}
	code, body = m.adminCall(http.MethodPut, "/v1/connectors/hook/config", config)
	require.Equal(t, http.StatusOK, code, body)
	m.publishBinary("orders", "o-1", "e2e.order", []byte(`{}`))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(auths) == 1 }, 20*time.Second, 20*time.Millisecond)
	assert.Equal(t, "hookuser:e2eHookPa55?key=e2eQK3y", auths[0], "the masked config put back keeps the stored URL")
}

// metric reads one unlabelled value of meshd's /metrics.
func (m *meshd) metric(name string) float64 {
	m.t.Helper()
	code, body := m.adminCall(http.MethodGet, "/metrics", nil)
	require.Equal(m.t, http.StatusOK, code)
	match := regexp.MustCompile(`(?m)^` + name + ` ([0-9.e+]+)$`).FindStringSubmatch(body)
	require.NotNil(m.t, match, "no %s in /metrics", name)
	v, err := strconv.ParseFloat(match[1], 64)
	require.NoError(m.t, err)
	return v
}

// Clients that declare large bodies and send little hold neither memory
// nor their connections past api.readTimeout.
func TestSecuritySlowClients(t *testing.T) {
	const n = 200
	m := newMeshd(t, "slow-sec", "api:\n  readTimeout: 5s\n")
	const declared = 4 << 20 // api.maxBodyBytes
	baseG, baseHeap := m.metric("go_goroutines"), m.metric("go_memstats_heap_alloc_bytes")
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", m.api)
		require.NoError(t, err)
		defer c.Close()
		_, err = fmt.Fprintf(c, "POST /v1/publish/slow HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n0123456789", m.api, declared)
		require.NoError(t, err)
		conns[i] = c
	}
	// A goroutine per connection (a few of those counted at first may have
	// ended since).
	require.Eventually(t, func() bool { return m.metric("go_goroutines") >= baseG+n*9/10 }, 20*time.Second, 20*time.Millisecond, "the requests reach their handlers")
	grown := m.metric("go_memstats_heap_alloc_bytes") - baseHeap
	ratio := grown / float64(n*declared)
	t.Logf("%d requests declaring %d MiB each: meshd's heap grew by %.1f MiB, %.4f of what they declared", n, declared>>20, grown/(1<<20), ratio)
	assert.Less(t, ratio, 0.05)

	for i, c := range conns {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
		_, err := io.ReadAll(c)
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "connection %d was held past api.readTimeout", i)
	}
}

// spanText collects every exported span as JSON, for grepping.
type spanText struct {
	mu    sync.Mutex
	spans []string
	n     int
}

func otlpCollector(t *testing.T) (*spanText, string) {
	t.Helper()
	st := &spanText{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req colltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		j, _ := protojson.Marshal(&req)
		st.mu.Lock()
		st.spans = append(st.spans, string(j))
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				st.n += len(ss.GetSpans())
			}
		}
		st.mu.Unlock()
		out, _ := proto.Marshal(&colltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	})
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return st, "http://" + ln.Addr().String()
}

func (s *spanText) text() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.spans, "\n"), s.n
}

// Every secret that can be set — api.token, admin.token, connector secret
// fields, an MQTT password, webhook secrets, credentials in sink URLs — is
// absent from every API answer, every log line at debug level, connector
// status traces, deliveryerror of dead-lettered events and exported spans,
// even when the targets echo what they were sent.
func TestSecuritySecretsNeverShown(t *testing.T) {
	secrets := map[string]string{
		"api.token":                  "e2eApiTok-7f3a9c",
		"admin.token":                "e2eAdmTok-51bd2e",
		"jdbc-sink url password":     "e2eDbPass-0c41",
		"http-sink url password":     "e2eHookPass-93e1",
		"http-sink url query":        "e2eQKey-77aa",
		"http-sink secret.headers":   "e2eHdrKey-2b6f",
		"mqtt password":              "e2eMqttPass-4c8d",
		"http-source token":          "e2eWhTok-a19f",
		"http-source hmac.secret":    "e2eWhHmac-3e0b",
		"github-source secret":       "e2eGhSec-6d2c",
		"subscription sink password": "e2eSubPass-8e4f",
		"subscription sink query":    "e2eSubSig-1b9d",
	}
	s := func(k string) string { return secrets[k] }

	broker := infra.StartMosquitto(t)
	traces, collector := otlpCollector(t)
	hook := freeAddr(t)
	// A target that refuses everything and echoes what it got: the query,
	// the user and the secret header.
	echo := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "refused %s user=%s:%s key=%s", r.URL.RawQuery, u, p, r.Header.Get("X-Api-Key"))
	})}
	echoLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = echo.Serve(echoLn) }()
	t.Cleanup(func() { _ = echo.Close() })
	dlq := newSink(t, http.StatusNoContent)
	closed := freeAddr(t)

	m := newMeshdEnv(t, "secrets-sec", fastRetry+"webhook:\n  listen: "+hook+"\n"+
		"mqtt:\n  - name: plant\n    broker: "+broker.URL()+"\n    username: meshd\n    password: "+s("mqtt password")+"\n    inbound: [{filter: \"sensors/#\", qos: 1, topic: sensors}]\n"+
		"subscriptions:\n"+
		subscriptionYAML("leaky", "orders", "http://subuser:"+s("subscription sink password")+"@"+echoLn.Addr().String()+"/sub?sig="+s("subscription sink query"), "deadLetterTopic: dlq")+
		subscriptionYAML("dlq", "dlq", dlq.url()),
		[]string{"MESHD_API_TOKEN=" + s("api.token"), "MESHD_ADMIN_TOKEN=" + s("admin.token"),
			"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector, "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_METRICS_EXPORTER=none"})

	var answers []string
	keep := func(what string, code int, body string) {
		answers = append(answers, fmt.Sprintf("%s -> %d %s", what, code, body))
	}
	admin := func(method, path string, body any) (int, string) {
		code, b := m.adminCall(method, path, body)
		keep(method+" admin "+path, code, b)
		return code, b
	}
	for name, cfg := range map[string]map[string]any{
		"db": {"connector.type": "jdbc-sink", "topic": "rows", "url": "postgres://meshd:" + s("jdbc-sink url password") + "@" + closed + "/db", "table": "t"},
		"out": {"connector.type": "http-sink", "topic": "orders", "dead.letter.topic": "dlq",
			"url":            "http://hookuser:" + s("http-sink url password") + "@" + echoLn.Addr().String() + "/in?key=" + s("http-sink url query"),
			"secret.headers": map[string]string{"X-Api-Key": s("http-sink secret.headers")}},
		"in": {"connector.type": "http-source", "topic": "orders", "path": "/in", "token": s("http-source token"), "hmac.secret": s("http-source hmac.secret")},
		"gh": {"connector.type": "github-source", "topic": "github", "path": "/gh", "secret": s("github-source secret")},
	} {
		code, body := admin(http.MethodPost, "/v1/connectors", map[string]any{"name": name, "config": cfg})
		require.Equal(t, http.StatusCreated, code, body)
	}
	code, body := admin(http.MethodPut, "/v1/connector-plugins/http-sink/config/validate", map[string]any{
		"topic": "x", "url": "http://u:" + s("http-sink url password") + "@h/?key=" + s("http-sink url query"),
		"secret.headers": map[string]string{"X-Api-Key": s("http-sink secret.headers")}})
	require.Equal(t, http.StatusOK, code, body)
	m.waitConnector("out", "RUNNING")
	m.waitConnector("in", "RUNNING")
	require.Eventually(t, func() bool { st, _ := m.connectorState("db"); return st == "FAILED" || st == "RUNNING" }, 30*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		_, b := m.adminCall(http.MethodGet, "/v1/connectors/db/status", nil)
		return strings.Contains(b, "trace")
	}, 30*time.Second, 50*time.Millisecond, "the jdbc-sink task fails (its database is not there) with a trace")

	// Wrong and right credentials at every door.
	wrong := http.Header{"Authorization": {"Bearer wrong"}}
	for _, u := range []string{"http://" + m.api + "/v1/subscriptions", "http://" + m.admin + "/v1/connectors", "http://" + hook + "/in", "http://" + hook + "/gh"} {
		code, body := infra.Call(t, http.MethodPost, u, wrong, `{"x":1}`)
		keep("POST "+u+" (wrong token)", code, body)
		assert.Equal(t, http.StatusUnauthorized, code, "%s: %s", u, body)
	}
	inBody := `{"order":1}`
	code, body = infra.Call(t, http.MethodPost, "http://"+hook+"/in", http.Header{
		"Content-Type": {"application/json"}, "Authorization": {"Bearer " + s("http-source token")},
		"X-Hub-Signature-256": {githubSignature([]byte(inBody), s("http-source hmac.secret"))}}, inBody)
	keep("POST webhook /in", code, body)
	require.Equal(t, http.StatusNoContent, code, body)
	// The event goes to the echo target twice (the subscription, the
	// http-sink): both refuse it and it is dead-lettered twice.
	require.Eventually(t, func() bool { _, n := dlq.ids(); return n >= 2 }, 30*time.Second, 20*time.Millisecond, "dead-lettered by the subscription and the http-sink")
	var deadLetters strings.Builder
	for _, d := range dlq.deliveries() {
		fmt.Fprintf(&deadLetters, "%v %s\n", d.header, d.body)
		assert.Contains(t, d.header.Get("Ce-Deliveryerror"), "refused", "deliveryerror carries the target's answer")
	}

	auth := http.Header{"Authorization": {"Bearer " + s("api.token")}}
	for _, p := range []string{"/v1/subscriptions", "/v1/subscriptions/leaky"} {
		code, body := infra.Call(t, http.MethodGet, "http://"+m.api+p, auth, "")
		keep("GET api "+p, code, body)
		require.Equal(t, http.StatusOK, code, body)
	}
	admin(http.MethodGet, "/v1/connectors?expand=info&expand=status", nil)
	admin(http.MethodGet, "/v1/connector-plugins", nil)
	admin(http.MethodGet, "/metrics", nil)
	for _, name := range []string{"db", "out", "in", "gh"} {
		for _, p := range []string{"", "/config", "/status", "/tasks", "/offsets"} {
			admin(http.MethodGet, "/v1/connectors/"+name+p, nil)
		}
	}
	// The spans of the failed deliveries carry the targets' answers.
	require.Eventually(t, func() bool { text, _ := traces.text(); return strings.Count(text, "refused") >= 2 }, 30*time.Second, 50*time.Millisecond,
		"the spans of the refused deliveries are exported")
	spans, _ := traces.text()

	sources := map[string]string{
		"API answers":                   strings.Join(answers, "\n"),
		"debug log":                     m.logString(),
		"deliveryerror of dead letters": deadLetters.String(),
		"spans":                         spans,
	}
	_, nSpans := traces.text()
	t.Logf("grepped %d API answers, %d log lines, %d dead letters, %d spans for %d secrets",
		len(answers), strings.Count(sources["debug log"], "\n"), len(dlq.deliveries()), nSpans, len(secrets))
	require.Contains(t, sources["debug log"], "level=DEBUG", "the log is at debug level")
	require.Contains(t, sources["API answers"], `"trace"`, "status traces are among the answers")
	for where, text := range sources {
		for what, secret := range secrets {
			assert.NotContains(t, text, secret, "the %s appears in the %s", what, where)
		}
	}
}
