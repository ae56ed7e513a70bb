package github_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/github"
	"github.com/meshd/meshd/connectors/internal/webhook"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/test/infra"
)

const secret = "gh-webhook-s3cret"

// delivery is one webhook request as GitHub sends it.
type delivery struct {
	event, id   string
	contentType string
	body        []byte
	signature   string // "" : signed with secret; "-": none
	lowerCase   bool   // header names in lower case, as HTTP/2 and proxies send them
}

func (d delivery) post(t *testing.T, url string) (int, string, time.Duration) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(d.body))
	require.NoError(t, err)
	ct := d.contentType
	if ct == "" {
		ct = "application/json"
	}
	sig := d.signature
	if sig == "" {
		sig = webhook.SignSHA256(d.body, []byte(secret))
	}
	h := map[string]string{
		"Content-Type": ct, "User-Agent": "GitHub-Hookshot/044aadd",
		github.HeaderEvent: d.event, github.HeaderDelivery: d.id,
		github.HeaderHookID: "292430182", github.HeaderTargetType: "repository", github.HeaderTargetID: "79929171",
	}
	if sig != "-" {
		h[github.HeaderSignature] = sig
	}
	for k, v := range h {
		if d.lowerCase {
			req.Header[strings.ToLower(k)] = []string{v} // sent as given, not canonicalised
		} else {
			req.Header.Set(k, v)
		}
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(start)
}

// env is a runtime with github-source on an embedded mesh.
type env struct {
	rt   *worker.Runtime
	eng  mesh.Engine
	addr string
	logs *infra.SyncBuffer
}

func newEnv(t *testing.T, cfg map[string]any) *env {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	reg := connectors.NewRegistry()
	reg.Register(github.Spec)
	logs := &infra.SyncBuffer{}
	e := &env{eng: eng, addr: infra.FreeAddr(t), logs: logs}
	e.rt, err = worker.New(worker.Options{Engine: eng, Registry: reg, WebhookListen: e.addr,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	require.NoError(t, e.rt.Start(t.Context()))
	t.Cleanup(func() { _ = e.rt.Stop(context.Background()) })
	raw := map[string]any{"connector.type": "github-source", "topic": "github", "path": "/hooks/github", "secret": secret}
	for k, v := range cfg {
		raw[k] = v
	}
	_, err = e.rt.Create(t.Context(), "gh", raw)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := e.rt.Status("gh")
		return err == nil && len(st.Tasks) == 1 && st.Tasks[0].State == worker.StateRunning
	}, 10*time.Second, 10*time.Millisecond)
	return e
}

func (e *env) url() string { return "http://" + e.addr + "/hooks/github" }

// events reads what the topic holds, waiting up to wait for want events
// (and no longer for more).
func (e *env) events(t *testing.T, want int, wait time.Duration) []*event.Event {
	t.Helper()
	cons, err := e.eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: "github", Group: "reader-" + uuid.NewString()})
	require.NoError(t, err)
	defer cons.Close()
	var out []*event.Event
	deadline := time.Now().Add(wait)
	for len(out) < want || want == 0 {
		ctx, cancel := context.WithDeadline(t.Context(), deadline)
		m, err := cons.Next(ctx)
		cancel()
		if err != nil {
			break
		}
		out = append(out, m.Event())
		_ = m.Ack(t.Context())
	}
	return out
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// GitHub's documented vector passes the signature check (the body, not
// JSON, is refused after it: 400, not 401); a wrong or missing signature
// is 401, publishes nothing, and the answer never repeats it.
func TestGitHubSignature(t *testing.T) {
	e := newEnv(t, map[string]any{"secret": "It's a Secret to Everybody"})
	vector := delivery{event: "push", id: uuid.NewString(), body: []byte("Hello, World!"),
		signature: "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}
	code, body, _ := vector.post(t, e.url())
	assert.Equal(t, http.StatusBadRequest, code, body)
	assert.Contains(t, body, "not a JSON object", "the signature passed; the payload was read")

	payload := readTestdata(t, "push.json")
	for name, sig := range map[string]string{
		"wrong":      webhook.SignSHA256(payload, []byte("another secret")),
		"missing":    "-",
		"sha1":       "sha1=757107ea0eb2509fc211221cce984b8a37570b6",
		"truncated":  webhook.SignSHA256(payload, []byte("It's a Secret to Everybody"))[:40],
		"other body": vector.signature,
	} {
		d := delivery{event: "push", id: uuid.NewString(), body: payload, signature: sig, lowerCase: name == "wrong"}
		code, body, _ := d.post(t, e.url())
		assert.Equal(t, http.StatusUnauthorized, code, "%s: %s", name, body)
		if sig != "-" {
			assert.NotContains(t, body, strings.TrimPrefix(sig, "sha256=")[:16], "%s: the received signature is not echoed", name)
		}
	}
	assert.Empty(t, e.events(t, 0, 300*time.Millisecond), "nothing is published for an unsigned delivery")
}

// Real payloads (@octokit/webhooks-examples), each signed by the test,
// become events: id = delivery GUID, type com.github.<event>[.<action>],
// source = the repository's or organization's page, subject = the natural
// key, time from the payload, the hook's extensions, the payload unchanged.
func TestGitHubPayloads(t *testing.T) {
	e := newEnv(t, map[string]any{"ping.publish": true})
	type want struct {
		typ, source, subject, time string
	}
	cases := map[string]want{
		"push.json":                      {"com.github.push", "https://github.com/Codertocat/Hello-World", "refs/tags/simple-tag", "2019-05-15T15:20:41Z"},
		"pull_request.opened.json":       {"com.github.pull_request.opened", "https://github.com/Codertocat/Hello-World", "2", "2019-05-15T15:20:33Z"},
		"issues.opened.json":             {"com.github.issues.opened", "https://github.com/Codertocat/Hello-World", "1", "2019-05-15T15:20:18Z"},
		"issue_comment.created.json":     {"com.github.issue_comment.created", "https://github.com/Codertocat/Hello-World", "1", "2019-05-15T15:20:21Z"},
		"ping.json":                      {"com.github.ping", "https://github.com/Octocoders/Hello-World", "109948940", ""},
		"ping.organization.json":         {"com.github.ping", "https://github.com/Octocoders", "109948940", ""},
		"release.published.json":         {"com.github.release.published", "https://github.com/Codertocat/Hello-World", "0.0.1", "2019-05-15T15:20:53Z"},
		"workflow_run.completed.json":    {"com.github.workflow_run.completed", "https://github.com/Codertocat/Hello-World", "1589141559", "2021-12-16T19:37:22Z"},
		"organization.member_added.json": {"com.github.organization.member_added", "https://github.com/Octocoders", "hacktocat", ""},
		"create.json":                    {"com.github.create", "https://github.com/Codertocat/Hello-World", "simple-tag", ""},
		"installation.created.json":      {"com.github.installation.created", "https://github.com/Codertocat", "957387", "2019-05-15T15:19:51Z"},
	}
	ids := map[string]string{}
	payloads := map[string][]byte{}
	i := 0
	for file := range cases {
		payload := readTestdata(t, file)
		d := delivery{event: strings.Split(file, ".")[0], id: uuid.NewString(), body: payload, lowerCase: i%2 == 0}
		i++
		code, body, took := d.post(t, e.url())
		require.Equal(t, http.StatusNoContent, code, "%s: %s", file, body)
		assert.Less(t, took, github.MaxTimeout, "answered within GitHub's 10 seconds")
		ids[d.id] = file
		payloads[file] = payload
	}
	got := e.events(t, len(cases), 10*time.Second)
	require.Len(t, got, len(cases))
	for _, ev := range got {
		file, ok := ids[ev.ID()]
		require.True(t, ok, "event id %q is a delivery GUID", ev.ID())
		w := cases[file]
		assert.NoError(t, bridge.Validate(ev), file)
		assert.Equal(t, w.typ, ev.Type(), file)
		assert.Equal(t, w.source, ev.Source(), file)
		assert.Equal(t, w.subject, ev.Subject(), file)
		if w.time == "" {
			assert.True(t, ev.Time().IsZero(), "%s: no time in the payload, none in the event", file)
		} else {
			assert.Equal(t, w.time, ev.Time().UTC().Format(time.RFC3339), file)
		}
		assert.Equal(t, "application/json", ev.DataContentType(), file)
		assert.Equal(t, payloads[file], ev.Data(), "%s: the payload unchanged", file)
		assert.Equal(t, "292430182", ev.Extensions()[github.ExtHookID], file)
		assert.Equal(t, "repository", ev.Extensions()[github.ExtTargetType], file)
		assert.Equal(t, "79929171", ev.Extensions()[github.ExtTargetID], file)
	}
}

// A form-encoded delivery (JSON in the payload field) is signed over its
// raw body; its event carries the JSON payload.
func TestGitHubFormEncoded(t *testing.T) {
	e := newEnv(t, nil)
	payload := readTestdata(t, "pull_request.opened.json")
	body := []byte(url.Values{"payload": {string(payload)}}.Encode())
	d := delivery{event: "pull_request", id: uuid.NewString(), contentType: "application/x-www-form-urlencoded", body: body}
	code, resp, _ := d.post(t, e.url())
	require.Equal(t, http.StatusNoContent, code, resp)

	unsigned := d
	unsigned.id, unsigned.signature = uuid.NewString(), webhook.SignSHA256(payload, []byte(secret)) // the payload's signature, not the body's
	code, resp, _ = unsigned.post(t, e.url())
	assert.Equal(t, http.StatusUnauthorized, code, resp)

	other := delivery{event: "push", id: uuid.NewString(), contentType: "text/plain", body: payload}
	code, resp, _ = other.post(t, e.url())
	assert.Equal(t, http.StatusUnsupportedMediaType, code, resp)

	got := e.events(t, 1, 5*time.Second)
	require.Len(t, got, 1)
	assert.Equal(t, d.id, got[0].ID())
	assert.Equal(t, "com.github.pull_request.opened", got[0].Type())
	assert.Equal(t, payload, got[0].Data())
}

// ping is answered 2xx and not published unless ping.publish; a
// redelivery (same GUID) is stored once; a delivery over max.body.bytes is
// 413.
func TestGitHubPingRedeliveryAndLimit(t *testing.T) {
	e := newEnv(t, map[string]any{github.FieldMaxBodyBytes: 16 << 10})
	ping := delivery{event: "ping", id: uuid.NewString(), body: readTestdata(t, "ping.json")}
	code, body, _ := ping.post(t, e.url())
	require.Equal(t, http.StatusNoContent, code, body)

	push := delivery{event: "push", id: uuid.NewString(), body: readTestdata(t, "push.json")}
	for range 2 { // GitHub redelivers with the same GUID
		code, body, _ = push.post(t, e.url())
		require.Equal(t, http.StatusNoContent, code, body)
	}
	big := delivery{event: "pull_request", id: uuid.NewString(), body: readTestdata(t, "pull_request.opened.json")} // 25 KB
	code, body, _ = big.post(t, e.url())
	assert.Equal(t, http.StatusRequestEntityTooLarge, code, body)

	got := e.events(t, 0, time.Second)
	require.Len(t, got, 1, "one event: the ping is not published, the redelivery is the same event")
	assert.Equal(t, push.id, got[0].ID())
}

// The secret is masked by the API and appears in no log line.
func TestGitHubSecretIsMasked(t *testing.T) {
	e := newEnv(t, nil)
	info, err := e.rt.Get("gh")
	require.NoError(t, err)
	assert.Equal(t, connectors.Mask, info.Config["secret"])
	d := delivery{event: "push", id: uuid.NewString(), body: readTestdata(t, "push.json"), signature: "sha256=00"}
	code, _, _ := d.post(t, e.url())
	require.Equal(t, http.StatusUnauthorized, code)
	require.NoError(t, e.rt.Pause(t.Context(), "gh"))
	require.NoError(t, e.rt.Delete(t.Context(), "gh"))
	assert.NotEmpty(t, e.logs.String())
	assert.NotContains(t, e.logs.String(), secret)
}

// Config rules: a secret unless auth: none, a timeout within GitHub's 10s.
func TestGitHubConfig(t *testing.T) {
	base := map[string]any{"connector.type": "github-source", "topic": "t"}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	for field, raw := range map[string]map[string]any{
		"auth":    with(),
		"timeout": with("secret", "x", "timeout", "15s"),
		"path":    with("secret", "x", "path", "hooks"),
	} {
		_, err := github.Spec.Validate(raw)
		var ve *connectors.ValidationError
		require.ErrorAs(t, err, &ve, field)
		assert.NotEmpty(t, ve.Field(field), "%s: %v", field, err)
	}
	_, err := github.Spec.Validate(with("auth", "none"))
	assert.NoError(t, err)
}

// The shared source suite, GitHub as the outside system: each item is a
// signed push delivery that GitHub sends again until it is answered 2xx.
func TestGitHubSourceSuite(t *testing.T) {
	addr := infra.FreeAddr(t)
	payload, err := os.ReadFile(filepath.Join("testdata", "push.json"))
	require.NoError(t, err)
	connectortest.RunSource(t, connectortest.Source{
		Spec:           github.Spec,
		Config:         map[string]any{"path": "/hooks/github", "secret": secret, "timeout": "2s"},
		Options:        func(o *worker.Options) { o.WebhookListen = addr },
		AcksAfterStore: true,
		Produce: func(ctx context.Context, keys []string) error {
			for _, k := range keys {
				for {
					req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/hooks/github", bytes.NewReader(payload))
					if err != nil {
						return err
					}
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set(github.HeaderEvent, "push")
					req.Header.Set(github.HeaderDelivery, k)
					req.Header.Set(github.HeaderSignature, webhook.SignSHA256(payload, []byte(secret)))
					resp, err := http.DefaultClient.Do(req)
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode/100 == 2 {
							break
						}
					}
					select {
					case <-ctx.Done():
						return fmt.Errorf("delivery %s not accepted: %w", k, ctx.Err())
					case <-time.After(20 * time.Millisecond): // GitHub's redelivery, much faster
					}
				}
			}
			return nil
		},
	})
}
