package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A full disk makes the embedded mesh refuse publishes with 503 and report
// not ready; once space is freed it stores again by itself, without a
// restart, and every event it answered 204 for is delivered.
//
// The data dir is a 16 MiB tmpfs mounted by the test (make test runs as
// root here and in CI; without root the test fails saying so).
func TestFullDiskRecoversByItself(t *testing.T) {
	out := newSink(t, http.StatusNoContent)
	m := newMeshd(t, "diskfull", fastRetry+"subscriptions:\n"+subscriptionYAML("full", "full", out.url()))
	m.stop()
	disk := m.dataDir()
	require.NoError(t, os.RemoveAll(disk))
	require.NoError(t, os.MkdirAll(disk, 0o750))
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Fatalf("mounting a 16 MiB tmpfs on %s for the full-disk test: %v: %s (the test mounts as root, as make test runs in CI)", disk, err, b)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", disk).Run() })
	ballast := filepath.Join(disk, "ballast")
	require.NoError(t, os.WriteFile(ballast, make([]byte, 6<<20), 0o600))
	// The subscription was declared in the file: it is created again on the
	// fresh store.
	m.start()

	body := []byte(`{"pad":"` + strings.Repeat("x", 100<<10) + `"}`)
	stored := map[string]bool{}
	refused := 0
	began := time.Now()
	for i := 0; refused < 3 && i < 400; i++ {
		id := fmt.Sprintf("e%03d", i)
		resp, text := m.post("/v1/publish/full", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {id}, "Ce-Source": {"/e2e"},
			"Ce-Type": {"t"}, "Content-Type": {"application/json"}}, body)
		switch resp.StatusCode {
		case http.StatusNoContent:
			stored[id] = true
		case http.StatusServiceUnavailable:
			refused++
			assert.NotEmpty(t, resp.Header.Get("Retry-After"), text)
		default:
			t.Fatalf("publish %s: %d %s", id, resp.StatusCode, text)
		}
	}
	require.Equal(t, 3, refused, "the disk filled up")
	require.NotEmpty(t, stored)
	t.Logf("%d events stored before the disk was full (%s)", len(stored), time.Since(began).Round(time.Millisecond))
	resp, err := http.Get("http://" + m.admin + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "not ready while the disk is full")

	require.NoError(t, os.Remove(ballast))
	freed := time.Now()
	require.Eventually(t, func() bool {
		resp, _ := m.post("/v1/publish/full", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"after"}, "Ce-Source": {"/e2e"},
			"Ce-Type": {"t"}, "Content-Type": {"application/json"}}, []byte(`{}`))
		return resp.StatusCode == http.StatusNoContent
	}, 30*time.Second, 200*time.Millisecond, "publishes are stored again once space is freed, without a restart")
	stored["after"] = true
	t.Logf("stored again %s after space was freed", time.Since(freed).Round(time.Millisecond))
	resp, err = http.Get("http://" + m.admin + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	require.Eventually(t, func() bool {
		ids, _ := out.ids()
		for id := range stored {
			if ids[id] == 0 {
				return false
			}
		}
		return true
	}, 60*time.Second, 100*time.Millisecond, "every event answered 204 reaches the subscriber")
	t.Logf("all delivered %s after space was freed", time.Since(freed).Round(time.Millisecond))
}
