// Package ui tests the dashboard (sidecar/ui) in a real browser: headless
// Chromium from Debian, driven by playwright-core from the npm registry
// (dashboard.cjs), against a real meshd process.
package ui

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/sidecar"
	"github.com/meshd/meshd/test/infra"
)

const missingDeps = "run 'make deps' (test/install-deps.sh installs Debian's chromium, Node.js and playwright-core into the test cache)"

var meshdBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := infra.BuildMeshd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "building meshd for the dashboard test:", err)
		os.Exit(1)
	}
	meshdBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// nodeModules is where install-deps put playwright-core: the test cache,
// in a folder named after the lockfile's hash.
func nodeModules(t *testing.T) string {
	t.Helper()
	lock, err := os.ReadFile("package-lock.json")
	require.NoError(t, err)
	sum := sha256.Sum256(lock)
	cache, err := os.UserCacheDir()
	require.NoError(t, err)
	dir := filepath.Join(cache, "meshd", "node", "ui-"+hex.EncodeToString(sum[:])[:12], "node_modules")
	if _, err := os.Stat(filepath.Join(dir, "playwright-core", "package.json")); err != nil {
		t.Fatalf("playwright-core is not installed in %s: %s", dir, missingDeps)
	}
	return dir
}

// sink counts the deliveries to /ok; /bad refuses each with 400 and an
// error text full of markup, which ends up in deliveryerror.
type sink struct {
	ok atomic.Int64
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	switch r.URL.Path {
	case "/ok":
		s.ok.Add(1)
		w.WriteHeader(http.StatusNoContent)
	case "/bad":
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `<img src=x onerror="window.__xss=3"><script>window.__xss=4</script>`)
	case "/count":
		_, _ = io.WriteString(w, strconv.FormatInt(s.ok.Load(), 10))
	default:
		http.NotFound(w, r)
	}
}

// adminToken is the admin.token of the meshd under test: the page asks for
// it, and the test's own admin calls send it.
const adminToken = "ui-test-token"

// startMeshd runs meshd with config until the test ends.
func startMeshd(t *testing.T, config string) (api, admin string) {
	t.Helper()
	dir := t.TempDir()
	api, admin = infra.FreeAddr(t), infra.FreeAddr(t)
	cfgPath := filepath.Join(dir, "meshd.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(config), 0o600))
	cmd := exec.Command(meshdBin, "run", "--config", cfgPath, "--app.id", "ui-test", "--api.listen", api,
		"--admin.listen", admin, "--data.dir", filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(), sidecar.EnvName("admin.token")+"="+adminToken)
	var log infra.SyncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("meshd log:\n%s", log.String())
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "meshd did not become ready:\n%s", &log)
	return api, admin
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// The dashboard in Chromium: it asks for the admin token and keeps it for
// the tab; it loads with no console errors; the publish rate moves while
// events are published; pausing a subscription from the page stops its
// deliveries (and the group keeps them: resuming delivers them); markup in
// event data and in a sink's error text is shown, not run; a dead letter
// is re-driven from the page. A screenshot is kept in the test's output.
func TestDashboard(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: %s", missingDeps)
	}
	modules := nodeModules(t)
	browser := infra.ChromiumBinary(t)

	var s sink
	sinkSrv := httptest.NewServer(&s)
	t.Cleanup(sinkSrv.Close)
	api, admin := startMeshd(t, fmt.Sprintf(`subscriptions:
  - id: good
    topic: orders
    sink: %[1]s/ok
  - id: bad
    topic: orders
    sink: %[1]s/bad
    filters: [{exact: {type: test.xss}}]
    maxAttempts: 1
    deadLetterTopic: orders-dead
`, sinkSrv.URL))

	// The screenshot outlives the test (t.TempDir would not): in
	// UI_SCREENSHOT_DIR, or the system's temp dir.
	dir := os.Getenv("UI_SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "meshd-ui-test")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	shot := filepath.Join(dir, "dashboard.png")
	cmd := exec.Command(node, "dashboard.cjs")
	cmd.Env = append(os.Environ(),
		"NODE_PATH="+modules,
		"CHROMIUM="+browser,
		"UI_URL=http://"+admin+"/ui/",
		"ADMIN_TOKEN="+adminToken,
		"API_URL=http://"+api,
		"SINK_URL="+sinkSrv.URL,
		"SCREENSHOT="+shot,
	)
	out, err := runWithTimeout(cmd, 4*time.Minute)
	t.Logf("dashboard.cjs:\n%s", out)
	require.NoError(t, err, "the browser checks failed; see FAIL above")
	t.Logf("screenshot: %s", shot)

	// What the page did, seen from the API: the subscription is paused,
	// and it delivered nothing since.
	var paused int64 = -1
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PAUSED_COUNT="); ok {
			paused, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	require.GreaterOrEqual(t, paused, int64(60))
	var st sidecar.SubscriptionView
	getJSON(t, "http://"+admin+"/v1/subscriptions/good/status", &st)
	require.Equal(t, "PAUSED", st.State)
	require.GreaterOrEqual(t, st.Backlog, uint64(10))
	require.Equal(t, paused, s.ok.Load(), "deliveries while paused")

	// Resuming delivers what the group kept.
	req, _ := http.NewRequest(http.MethodPut, "http://"+admin+"/v1/subscriptions/good/resume", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Eventually(t, func() bool { return s.ok.Load() >= paused+int64(st.Backlog) }, 20*time.Second, 50*time.Millisecond,
		"after resume: %d delivered, want %d", s.ok.Load(), paused+int64(st.Backlog))
}

func runWithTimeout(cmd *exec.Cmd, d time.Duration) (string, error) {
	var out infra.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("node did not finish within %s", d)
	}
}
