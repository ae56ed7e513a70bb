package infra

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ChromiumMissing is the failure message when Chromium is not installed.
const ChromiumMissing = "install chromium: apt-get install chromium (make deps does this via test/install-deps.sh)"

// ChromiumBinary returns the path of Debian's chromium, failing the test
// when it is not installed.
func ChromiumBinary(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Fatal(ChromiumMissing)
	return ""
}

// DumpDOM loads url in a fresh headless Chromium and returns the page's DOM
// once its scripts have run: Chromium waits until the page is idle, fetches
// included, for up to budget of virtual time. hosts maps host names to the
// addresses they resolve to (--host-resolver-rules), so a page can be
// served under a name of another origin ("evil.test") from loopback.
func DumpDOM(t testing.TB, url string, hosts map[string]string, budget time.Duration) string {
	t.Helper()
	bin := ChromiumBinary(t)
	var rules []string
	for name, addr := range hosts {
		rules = append(rules, "MAP "+name+" "+addr)
	}
	sort.Strings(rules)
	args := []string{
		// The flags that work on this kind of machine (no sandbox as root,
		// no background connections to Google, which a closed network
		// refuses), and a profile of its own.
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
		"--user-data-dir=" + filepath.Join(t.TempDir(), "chromium"),
		"--virtual-time-budget=" + strconv.Itoa(int(budget/time.Millisecond)),
		"--dump-dom",
		"--enable-logging=stderr", "--v=0", // the page's console, for the test's log
	}
	if len(rules) > 0 {
		args = append(args, "--host-resolver-rules="+strings.Join(rules, ", "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget+60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", url, err, lastBytes(stderr.String(), 4000))
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, ":CONSOLE") {
			t.Logf("chromium console: %s", line)
		}
	}
	return stdout.String()
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
