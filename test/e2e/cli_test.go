package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// A stray argument is refused with a usage error (exit 2) naming it: flag
// parsing stops there, so the flags after it would be silently dropped.
func TestStrayArgumentsAreRefused(t *testing.T) {
	for _, args := range [][]string{
		{"run", "extra", "--api.listen", "127.0.0.1:1"},
		{"run", "--log.level", "debug", "extra"},
		{"publish", "--topic", "t", "--type", "x", "extra", "--data", "{}"},
		{"subscribe", "--topic", "t", "extra"},
		{"connectors", "list", "extra"},
		{"connectors", "plugins", "extra"},
		{"connectors", "status", "one", "extra"},
		{"connectors", "create", "--name", "x", "--config", "{}", "extra"},
		{"version", "extra"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stderr, _ := runMeshd(t, args...)
			assert.Equal(t, 2, code, stderr)
			assert.Contains(t, stderr, `"extra"`)
			assert.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %s", stderr)
		})
	}
}

// meshd publish refuses a topic the mesh cannot carry instead of reporting
// one topic and publishing to another, and labels its data by what it is.
func TestCLIPublishChecksTopicAndLabelsData(t *testing.T) {
	m := newMeshd(t, "cli-pub", "")
	url := "http://" + m.api
	var out infra.SyncBuffer
	sub := exec.Command(meshdBin, "subscribe", "--url", url, "--topic", "a")
	sub.Stdout, sub.Stderr = &out, &out
	require.NoError(t, sub.Start())
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "subscribed to a") }, 20*time.Second, 20*time.Millisecond, out.String())

	publish := func(args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(meshdBin, append([]string{"publish", "--url", url, "--type", "com.example.t"}, args...)...)
		b, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), string(b)
		}
		require.NoError(t, err, string(b))
		return 0, string(b)
	}
	for _, topic := range []string{"a?x=1", "a/b", "a#frag", "../admin", "a b"} {
		code, text := publish("--topic", topic, "--id", "wrong-topic", "--data", `{}`)
		assert.Equal(t, 2, code, text)
		assert.Contains(t, text, "--topic: invalid topic", text)
		assert.NotContains(t, text, "published")
	}
	cases := []struct {
		id, data, contentType, want string
	}{
		{"json", `{"msg":"hi"}`, "", "application/json"},
		{"text", "hello world", "", "text/plain; charset=utf-8"},
		{"number", "42", "", "application/json"},
		{"explicit", "a,b\n1,2", "text/csv", "text/csv"},
	}
	for _, tc := range cases {
		args := []string{"--topic", "a", "--id", tc.id, "--data", tc.data}
		if tc.contentType != "" {
			args = append(args, "--content-type", tc.contentType)
		}
		code, text := publish(args...)
		require.Equal(t, 0, code, text)
		assert.Contains(t, text, "published "+tc.id+" to a")
	}
	got := map[string]map[string]any{}
	require.Eventually(t, func() bool {
		for _, l := range strings.Split(out.String(), "\n") {
			var ev map[string]any
			if json.Unmarshal([]byte(l), &ev) == nil && ev["id"] != nil {
				got[ev["id"].(string)] = ev
			}
		}
		return len(got) >= len(cases)
	}, 20*time.Second, 20*time.Millisecond, out.String())
	assert.NotContains(t, got, "wrong-topic", "nothing of a refused topic is published")
	for _, tc := range cases {
		assert.Equal(t, tc.want, got[tc.id]["datacontenttype"], tc.id)
	}
	assert.Equal(t, "hello world", got["text"]["data"])
	assert.Equal(t, map[string]any{"msg": "hi"}, got["json"]["data"])
}

// meshd subscribe leaves nothing behind in meshd: it is a WebSocket client
// whose group ends with the connection, so no subscription outlives it —
// not even when meshd is killed while it runs. Events are acked: a group
// does not get them again.
func TestCLISubscribeLeavesNothingBehind(t *testing.T) {
	m := newMeshd(t, "cli-sub", "")
	url := "http://" + m.api
	subscriptions := func() []any {
		t.Helper()
		resp, err := http.Get(url + "/v1/subscriptions")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var subs []any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&subs))
		return subs
	}
	// startSub starts meshd subscribe; exited yields its end once.
	startSub := func(args ...string) (*exec.Cmd, *infra.SyncBuffer, <-chan error) {
		t.Helper()
		var out infra.SyncBuffer
		cmd := exec.Command(meshdBin, append([]string{"subscribe", "--url", url}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		exited := make(chan error, 1)
		done := make(chan struct{})
		go func() { exited <- cmd.Wait(); close(done) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
		require.Eventually(t, func() bool { return strings.Contains(out.String(), "subscribed to") }, 20*time.Second, 20*time.Millisecond, out.String())
		return cmd, &out, exited
	}

	_, out, exited := startSub("--topic", "news")
	assert.Empty(t, subscriptions(), "a CLI subscriber creates no subscription")
	m.publishBinary("news", "n-1", "com.example.news", []byte(`{"n":1}`))
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"id":"n-1"`) }, 20*time.Second, 20*time.Millisecond, out.String())

	m.kill9()
	select {
	case err := <-exited:
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "meshd subscribe ends with an error when meshd goes away")
		assert.Contains(t, out.String(), "subscription to news ended")
	case <-time.After(20 * time.Second):
		t.Fatal("meshd subscribe kept running after meshd was killed")
	}
	m.start()
	assert.Empty(t, subscriptions(), "nothing left behind after the CLI and meshd went away")

	// Acks: a group that received and acked an event does not get it again.
	cmd, out, exited := startSub("--topic", "jobs", "--group", "workers")
	m.publishBinary("jobs", "j-1", "com.example.job", []byte(`{}`))
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"id":"j-1"`) }, 20*time.Second, 20*time.Millisecond, out.String())
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	select {
	case err := <-exited:
		require.NoError(t, err, "Ctrl-C ends meshd subscribe with exit code 0: %s", out.String())
	case <-time.After(20 * time.Second):
		t.Fatal("meshd subscribe did not stop on SIGINT")
	}
	_, out, _ = startSub("--topic", "jobs", "--group", "workers")
	m.publishBinary("jobs", "j-2", "com.example.job", []byte(`{}`))
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"id":"j-2"`) }, 20*time.Second, 20*time.Millisecond, out.String())
	assert.NotContains(t, out.String(), `"id":"j-1"`, "j-1 was acked by the group's first member")
}
