// Package e2e runs real meshd processes against each other, the way users
// run them: built binaries, YAML config files, HTTP on loopback, kill -9.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

var meshdBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := infra.BuildMeshd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "building meshd for the end-to-end tests:", err)
		os.Exit(1)
	}
	meshdBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string { return infra.FreeAddr(t) }

// meshd is one meshd process with its own data dir and config file.
type meshd struct {
	t       *testing.T
	name    string
	appID   string // --app.id; the name unless set
	dir     string
	config  string
	api     string
	admin   string
	env     []string // extra environment, NAME=value
	cmd     *exec.Cmd
	log     *bytes.Buffer
	logMu   *sync.Mutex
	exited  chan struct{}
	exitErr error
}

// newMeshd writes a config file of extraYAML and starts the process, waiting until /readyz answers 200.
func newMeshd(t *testing.T, name, extraYAML string) *meshd {
	t.Helper()
	return newMeshdEnv(t, name, extraYAML, nil)
}

// newMeshdEnv is newMeshd with extra environment variables (NAME=value).
func newMeshdEnv(t *testing.T, name, extraYAML string, env []string) *meshd {
	t.Helper()
	return newMeshdOf(t, name, name, extraYAML, env)
}

// newMeshdOf starts a meshd named name (in logs) of app appID: several
// such are the sidecars of one app.
func newMeshdOf(t *testing.T, name, appID, extraYAML string, env []string) *meshd {
	t.Helper()
	dir := t.TempDir()
	m := &meshd{t: t, name: name, appID: appID, dir: dir, api: freeAddr(t), admin: freeAddr(t), env: env, log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	m.config = filepath.Join(dir, "meshd.yaml")
	require.NoError(t, os.WriteFile(m.config, []byte(extraYAML), 0o600))
	m.start()
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			m.logMu.Lock()
			t.Logf("--- log of meshd %s ---\n%s", m.name, m.log.String())
			m.logMu.Unlock()
		}
	})
	return m
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (m *meshd) start() {
	m.t.Helper()
	// Addresses and paths go in flags, so the YAML is free to set any section.
	appID := m.appID
	if appID == "" {
		appID = m.name
	}
	m.cmd = exec.Command(meshdBin, "run", "--config", m.config, "--app.id", appID, "--api.listen", m.api,
		"--admin.listen", m.admin, "--data.dir", filepath.Join(m.dir, "data"), "--log.level", "debug")
	w := lockedWriter{mu: m.logMu, w: m.log}
	m.cmd.Stdout, m.cmd.Stderr = w, w
	m.cmd.Env = append(os.Environ(), m.env...)
	require.NoError(m.t, m.cmd.Start())
	m.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		m.exitErr = cmd.Wait()
		close(exited)
	}(m.cmd, m.exited)
	require.Eventually(m.t, func() bool {
		select {
		case <-m.exited:
			return true
		default:
		}
		resp, err := http.Get("http://" + m.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "meshd %s did not become ready", m.name)
	select {
	case <-m.exited:
		m.t.Fatalf("meshd %s exited at start: %v\n%s", m.name, m.exitErr, m.logString())
	default:
	}
}

func (m *meshd) logString() string {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return m.log.String()
}

// kill9 kills the process without warning.
func (m *meshd) kill9() {
	m.t.Helper()
	require.NoError(m.t, m.cmd.Process.Signal(syscall.SIGKILL))
	<-m.exited
}

// terminate sends SIGTERM and returns the exit error.
func (m *meshd) terminate() error {
	m.t.Helper()
	require.NoError(m.t, m.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-m.exited:
		return m.exitErr
	case <-time.After(45 * time.Second):
		m.t.Fatalf("meshd %s did not stop within 45s of SIGTERM", m.name)
		return nil
	}
}

func (m *meshd) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.exited:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(20 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

// post sends a request to the app API.
func (m *meshd) post(path string, header http.Header, body []byte) (*http.Response, string) {
	m.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+m.api+path, bytes.NewReader(body))
	require.NoError(m.t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(m.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// publishBinary publishes one binary-mode event and requires 204.
func (m *meshd) publishBinary(topic, id, typ string, data []byte) {
	m.t.Helper()
	resp, body := m.post("/v1/publish/"+topic, http.Header{
		"Ce-Specversion": {"1.0"}, "Ce-Id": {id}, "Ce-Source": {"/e2e"}, "Ce-Type": {typ},
		"Content-Type": {"application/json"},
	}, data)
	require.Equal(m.t, http.StatusNoContent, resp.StatusCode, body)
}

// sink is a subscriber: an HTTP server on a fixed address that can go down
// and come back, recording the events it accepted.
type sink struct {
	t      *testing.T
	addr   string
	mu     sync.Mutex
	status int // answer to deliveries
	got    []delivery
	srv    *http.Server
}

type delivery struct {
	header http.Header
	body   []byte
	query  url.Values
}

func newSink(t *testing.T, status int) *sink {
	s := &sink{t: t, addr: freeAddr(t), status: status}
	s.up()
	t.Cleanup(s.down)
	return s
}

func (s *sink) url() string { return "http://" + s.addr + "/events" }

func (s *sink) setStatus(code int) {
	s.mu.Lock()
	s.status = code
	s.mu.Unlock()
}

func (s *sink) up() {
	s.t.Helper()
	var ln net.Listener
	require.Eventually(s.t, func() bool {
		var err error
		ln, err = net.Listen("tcp", s.addr)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "sink address %s stayed busy", s.addr)
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		status := s.status
		if status/100 == 2 {
			s.got = append(s.got, delivery{header: r.Header.Clone(), body: body, query: r.URL.Query()})
		}
		s.mu.Unlock()
		w.WriteHeader(status)
	})}
	go func(srv *http.Server) { _ = srv.Serve(ln) }(s.srv)
}

func (s *sink) down() {
	if s.srv != nil {
		_ = s.srv.Close()
		s.srv = nil
	}
}

func (s *sink) deliveries() []delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivery(nil), s.got...)
}

// ids returns the distinct ce-id values received, and the total count.
func (s *sink) ids() (map[string]int, int) {
	ids := map[string]int{}
	d := s.deliveries()
	for _, x := range d {
		ids[x.header.Get("Ce-Id")]++
	}
	return ids, len(d)
}

func subscriptionYAML(id, topic, sinkURL string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - id: %s\n    topic: %s\n    sink: %s\n", id, topic, sinkURL)
	for _, e := range extra {
		fmt.Fprintf(&b, "    %s\n", e)
	}
	return b.String()
}

// fastRetry keeps retry delays short so the tests run in seconds.
const fastRetry = "delivery:\n  backoffInitial: 50ms\n  backoffMax: 500ms\n  timeout: 2s\n  ackWait: 5s\n"

// dataDir is the data dir the harness gives m.
func (m *meshd) dataDir() string { return filepath.Join(m.dir, "data") }

// rewriteConfig replaces m's config file, for the next start.
func (m *meshd) rewriteConfig(yaml string) {
	m.t.Helper()
	require.NoError(m.t, os.WriteFile(m.config, []byte(yaml), 0o600))
}

// runMeshd runs the meshd binary with args until it exits (killing it
// after 60s) and returns its exit code, stderr and run time.
func runMeshd(t *testing.T, args ...string) (code int, stderr string, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, meshdBin, args...)
	cmd.Dir = t.TempDir() // a meshd that starts after all keeps its ./data there
	var out bytes.Buffer
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	took = time.Since(start)
	require.NoError(t, ctx.Err(), "meshd %v did not exit within 60s; stderr:\n%s", args, out.String())
	if err != nil {
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "running meshd %v", args)
		return exit.ExitCode(), out.String(), took
	}
	return 0, out.String(), took
}

// errorLines are the lines of a meshd stderr that are not slog records
// below ERROR: the error messages.
func errorLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.TrimSpace(l) == "" || strings.Contains(l, " level=INFO ") || strings.Contains(l, " level=DEBUG ") || strings.Contains(l, " level=WARN ") {
			continue
		}
		out = append(out, l)
	}
	return out
}
