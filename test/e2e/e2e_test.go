package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// Two sidecars: the first embeds the mesh and lets the second join it. An app
// publishes to the first; a subscriber behind the second is down for a while,
// then comes back and receives every event, attributes and data unchanged.
func TestTwoSidecarsSubscriberComesBack(t *testing.T) {
	natsAddr := freeAddr(t)
	a := newMeshd(t, "publisher-app", "mesh:\n  listen: "+natsAddr+"\n")

	sub := newSink(t, http.StatusServiceUnavailable)
	sub.down() // the subscriber is not running yet
	newMeshd(t, "subscriber-app", fastRetry+"mesh:\n  url: nats://"+natsAddr+"\n  tokenFile: "+a.meshTokenFile()+"\nsubscriptions:\n"+
		subscriptionYAML("orders-to-app", "orders", sub.url(), "maxAttempts: 1000"))

	const n = 50
	for i := range n {
		a.publishBinary("orders", fmt.Sprintf("order-%03d", i), "com.example.order.created", []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	time.Sleep(300 * time.Millisecond) // let deliveries fail against the absent subscriber for a while
	sub.setStatus(http.StatusNoContent)
	sub.up()

	require.Eventually(t, func() bool { ids, _ := sub.ids(); return len(ids) == n }, 30*time.Second, 50*time.Millisecond,
		"subscriber should receive all %d events", n)
	for _, d := range sub.deliveries() {
		id := d.header.Get("Ce-Id")
		var i int
		_, err := fmt.Sscanf(id, "order-%03d", &i)
		require.NoError(t, err)
		assert.Equal(t, "/e2e", d.header.Get("Ce-Source"))
		assert.Equal(t, "com.example.order.created", d.header.Get("Ce-Type"))
		assert.Equal(t, "1.0", d.header.Get("Ce-Specversion"))
		assert.Equal(t, fmt.Sprintf(`{"n":%d}`, i), string(d.body))
	}
}

// A batch answered 204 survives kill -9 of the sidecar that stored it.
func TestKill9AfterBatchAckedLosesNothing(t *testing.T) {
	sub := newSink(t, http.StatusServiceUnavailable) // failing: events stay in the mesh
	m := newMeshd(t, "app", fastRetry+"subscriptions:\n"+subscriptionYAML("s", "payments", sub.url(), "maxAttempts: 1000"))

	const n = 200
	var batch []map[string]any
	for i := range n {
		batch = append(batch, map[string]any{
			"specversion": "1.0", "id": fmt.Sprintf("p-%d", i), "source": "/e2e/batch", "type": "com.example.payment",
			"datacontenttype": "application/json", "data": map[string]int{"amount": i},
		})
	}
	body, err := json.Marshal(batch)
	require.NoError(t, err)
	resp, text := m.post("/v1/publish/payments", http.Header{"Content-Type": {"application/cloudevents-batch+json"}}, body)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, text)
	m.kill9()

	sub.setStatus(http.StatusOK)
	m.start()
	require.Eventually(t, func() bool { ids, _ := sub.ids(); return len(ids) == n }, 30*time.Second, 50*time.Millisecond,
		"all %d acknowledged events must arrive after kill -9 and restart", n)
	for _, d := range sub.deliveries() {
		var data map[string]int
		require.NoError(t, json.Unmarshal(d.body, &data), string(d.body))
		assert.Equal(t, "p-"+fmt.Sprint(data["amount"]), d.header.Get("Ce-Id"))
	}
}

// A subscriber that rejects an event sends it to the dead-letter topic, with
// the failure recorded in extensions; a second subscription reads that topic.
func TestFailingSubscriberEndsInDeadLetterTopic(t *testing.T) {
	bad := newSink(t, http.StatusBadRequest)
	flaky := newSink(t, http.StatusInternalServerError)
	dlq := newSink(t, http.StatusNoContent)
	m := newMeshd(t, "app", fastRetry+"subscriptions:\n"+
		subscriptionYAML("rejects", "jobs", bad.url(), "deadLetterTopic: jobs-rejected")+
		subscriptionYAML("flaky", "jobs", flaky.url(), "deadLetterTopic: jobs-failed", "maxAttempts: 3")+
		subscriptionYAML("rejected-letters", "jobs-rejected", dlq.url())+
		subscriptionYAML("failed-letters", "jobs-failed", dlq.url()))

	m.publishBinary("jobs", "job-1", "com.example.job", []byte(`{"job":1}`))
	require.Eventually(t, func() bool { _, n := dlq.ids(); return n >= 2 }, 30*time.Second, 50*time.Millisecond,
		"both failed deliveries should reach the dead-letter topic")
	var attempts []string
	for _, d := range dlq.deliveries() {
		assert.Equal(t, "job-1", d.header.Get("Ce-Id"))
		assert.Equal(t, `{"job":1}`, string(d.body))
		assert.NotEmpty(t, d.header.Get("Ce-Deliveryerror"))
		attempts = append(attempts, d.header.Get("Ce-Deliveryattempts"))
	}
	assert.ElementsMatch(t, []string{"1", "3"}, attempts, "the 400 dead-letters at once, the 500 after maxAttempts")
}

// Bad requests get problem+json answers naming what was wrong.
func TestProblemResponses(t *testing.T) {
	m := newMeshd(t, "app", "api:\n  token: s3cret-token\n  maxBodyBytes: 1024\n")
	auth := http.Header{"Authorization": {"Bearer s3cret-token"}}
	with := func(h http.Header, kv ...string) http.Header {
		out := h.Clone()
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	binary := with(auth, "Ce-Specversion", "1.0", "Ce-Id", "1", "Ce-Source", "/x", "Ce-Type", "t", "Content-Type", "text/plain")
	cases := []struct {
		name   string
		header http.Header
		body   string
		status int
		detail string
	}{
		{"no token", http.Header{"Content-Type": {"text/plain"}}, "x", 401, ""},
		{"wrong token", http.Header{"Authorization": {"Bearer nope"}}, "x", 401, ""},
		{"missing id", with(binary, "Ce-Id", ""), "x", 400, "id"},
		{"bad specversion", with(binary, "Ce-Specversion", "9.9"), "x", 400, "specversion"},
		{"bad time", with(binary, "Ce-Time", "yesterday"), "x", 400, "time"},
		{"malformed structured", with(auth, "Content-Type", "application/cloudevents+json"), `{"id":`, 400, ""},
		{"batch with one bad event", with(auth, "Content-Type", "application/cloudevents-batch+json"),
			`[{"specversion":"1.0","id":"a","source":"/s","type":"t"},{"specversion":"1.0","id":"b","source":"/s"}]`, 400, "type"},
		{"too large", binary, strings.Repeat("x", 2048), 413, "1024"},
		{"unknown encoding", with(binary, "Content-Encoding", "br"), "x", 415, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := m.post("/v1/publish/checks", tc.header, []byte(tc.body))
			require.Equal(t, tc.status, resp.StatusCode, body)
			assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
			var p struct {
				Type, Title, Detail string
				Status              int
			}
			require.NoError(t, json.Unmarshal([]byte(body), &p), body)
			assert.Equal(t, tc.status, p.Status)
			assert.NotEmpty(t, p.Type)
			assert.Contains(t, p.Detail, tc.detail)
			assert.NotContains(t, body, "s3cret-token")
		})
	}
	assert.NotContains(t, m.logString(), "s3cret-token", "the API token must never be logged")

	// Nothing of the bad batch was published: a consumer group reading the
	// topic from the start sees only the good event published afterwards.
	resp, body := m.post("/v1/publish/checks", binary, []byte("ok"))
	require.Equal(t, http.StatusNoContent, resp.StatusCode, body)
}

// Subscriptions created through the API survive a restart; SIGTERM stops
// meshd cleanly with exit code 0.
func TestSubscriptionAPIPersistsAndGracefulStop(t *testing.T) {
	sub := newSink(t, http.StatusNoContent)
	m := newMeshd(t, "app", fastRetry)
	resp, body := m.post("/v1/subscriptions", http.Header{"Content-Type": {"application/json"}},
		[]byte(`{"id":"audit","topic":"audit","sink":"`+sub.url()+`","filters":[{"prefix":{"type":"com.example."}}]}`))
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)

	require.NoError(t, m.terminate(), "SIGTERM should end meshd with exit code 0")
	m.start()
	get, err := http.Get("http://" + m.api + "/v1/subscriptions/audit")
	require.NoError(t, err)
	defer get.Body.Close()
	require.Equal(t, http.StatusOK, get.StatusCode)

	m.publishBinary("audit", "skip-1", "org.other.thing", []byte(`{}`))
	m.publishBinary("audit", "keep-1", "com.example.audit", []byte(`{}`))
	require.Eventually(t, func() bool { ids, _ := sub.ids(); return ids["keep-1"] == 1 }, 20*time.Second, 50*time.Millisecond)
	ids, _ := sub.ids()
	assert.NotContains(t, ids, "skip-1", "the prefix filter must hold across the restart")
}

// The CLI client: meshd subscribe prints what meshd publish sent.
func TestCLIPublishSubscribe(t *testing.T) {
	m := newMeshd(t, "app", "")
	var out infra.SyncBuffer
	subCmd := exec.Command(meshdBin, "subscribe", "--url", "http://"+m.api, "--topic", "greetings")
	subCmd.Stdout = &out
	subCmd.Stderr = &out
	require.NoError(t, subCmd.Start())
	t.Cleanup(func() { _ = subCmd.Process.Kill(); _ = subCmd.Wait() })
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "subscribed to greetings") }, 20*time.Second, 50*time.Millisecond, out.String())

	pub, err := exec.Command(meshdBin, "publish", "--url", "http://"+m.api, "--topic", "greetings",
		"--type", "com.example.hello", "--id", "hello-1", "--data", `{"msg":"hi"}`).CombinedOutput()
	require.NoError(t, err, string(pub))
	assert.Contains(t, string(pub), "published hello-1 to greetings")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"id":"hello-1"`) }, 20*time.Second, 50*time.Millisecond, out.String())
	assert.Contains(t, out.String(), `"msg":"hi"`)
}
