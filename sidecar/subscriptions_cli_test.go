package sidecar

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSubscriptionsReplayCommand(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.EscapedPath()+" "+r.Header.Get("Authorization")+" "+string(body))
		if r.URL.Path == "/v1/subscriptions/missing/replay" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"title":"Not found","detail":"subscription not found: \"missing\""}`))
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	run := func(args ...string) (int, string, string) {
		var out, errw bytes.Buffer
		code := Main(args, &out, &errw)
		return code, out.String(), errw.String()
	}

	code, out, _ := run("subscriptions", "replay", "orders.audit", "--from", "2026-11-30T08:00:00Z", "--url", srv.URL, "--token", "tok")
	require.Equal(t, 0, code)
	assert.Equal(t, "subscription orders.audit replays from 2026-11-30T08:00:00Z\n", out)
	code, _, _ = run("subscriptions", "replay", "--url", srv.URL, "--from", "42", "s")
	require.Equal(t, 0, code)
	assert.Equal(t, []string{
		`POST /v1/subscriptions/orders.audit/replay Bearer tok {"from":"2026-11-30T08:00:00Z"}`,
		`POST /v1/subscriptions/s/replay  {"from":"42"}`,
	}, got)

	code, _, stderr := run("subscriptions", "replay", "missing", "--from", "earliest", "--url", srv.URL)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `Not found: subscription not found: "missing"`)

	for _, args := range [][]string{
		{"subscriptions"},
		{"subscriptions", "rewind", "s"},
		{"subscriptions", "replay", "--from", "1"},
		{"subscriptions", "replay", "s"},
		{"subscriptions", "replay", "s", "t", "--from", "1"},
	} {
		code, _, stderr := run(args...)
		assert.Equal(t, 2, code, "%v", args)
		assert.Contains(t, stderr, "meshd subscriptions", "%v", args)
	}
}
