package infra

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// FerretDB speaks the MongoDB wire protocol over SQLite. The Go module proxy
// refuses `go install github.com/FerretDB/FerretDB@...` (its version list),
// so the launcher downloads the pinned module version, copies it out of the
// read-only module cache and builds ./cmd/ferretdb there.
const (
	ferretModule       = "github.com/FerretDB/FerretDB"
	ferretVersion      = "v1.24.0"
	ferretStartTimeout = 30 * time.Second
	ferretStopTimeout  = 10 * time.Second
)

var ferretBuild struct {
	once sync.Once
	path string
	err  error
}

// FerretDBBinary returns the FerretDB binary, building it into the user
// cache dir (~/.cache/meshd/bin/ferretdb-v1.24.0) the first time.
func FerretDBBinary(t testing.TB) string {
	t.Helper()
	ferretBuild.once.Do(func() { ferretBuild.path, ferretBuild.err = buildFerretDB() })
	if ferretBuild.err != nil {
		t.Fatalf("ferretdb: %v\nThe tests build FerretDB %s from the Go module proxy "+
			"(go mod download %s@%s, then go build ./cmd/ferretdb); make sure the Go toolchain and the proxy are reachable.",
			ferretBuild.err, ferretVersion, ferretModule, ferretVersion)
	}
	return ferretBuild.path
}

func buildFerretDB() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("finding the go command: %w", err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "meshd", "bin")
	bin := filepath.Join(dir, "ferretdb-"+ferretVersion)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	dl := exec.Command(goBin, "mod", "download", "-json", ferretModule+"@"+ferretVersion)
	dl.Dir = os.TempDir() // outside any module: no go.mod is touched
	out, err := dl.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w %s", ferretModule, ferretVersion, err, exitStderr(err))
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: no module dir in %q (%s)", ferretModule, ferretVersion, out, mod.Error)
	}
	src, err := os.MkdirTemp("", "ferretdb-src")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	if err := copyTree(mod.Dir, src); err != nil {
		return "", fmt.Errorf("copying the FerretDB sources: %w", err)
	}
	// FerretDB panics at start unless build/version/version.txt holds a version.
	if err := os.WriteFile(filepath.Join(src, "build", "version", "version.txt"), []byte(ferretVersion+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("writing build/version/version.txt: %w", err)
	}
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	build := exec.Command(goBin, "build", "-o", tmp, "./cmd/ferretdb")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("go build ./cmd/ferretdb of %s@%s: %w\n%s", ferretModule, ferretVersion, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// copyTree copies the regular files of src into dst, writable.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// StartFerretDB starts FerretDB with its SQLite backend in a temp dir on a
// free loopback port and returns its MongoDB URI. It is stopped (by PID)
// when the test ends. FerretDB v1 has no change streams and tailable
// cursors do not tail.
func StartFerretDB(t testing.TB) (uri string) {
	t.Helper()
	bin := FerretDBBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state")
	for _, d := range []string{data, state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("ferretdb: %v", err)
		}
	}
	port, debugPort := FreePort(t), FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin,
		"--handler=sqlite",
		"--sqlite-url=file:"+data+"/",
		"--listen-addr="+addr,
		"--state-dir="+state,
		"--telemetry=disable",
		"--debug-addr="+net.JoinHostPort("127.0.0.1", strconv.Itoa(debugPort)),
		"--log-level=warn",
	)
	cmd.Dir = dir
	server{name: "ferretdb", startTimeout: ferretStartTimeout, stopTimeout: ferretStopTimeout}.start(t, cmd, addr)
	return "mongodb://" + addr + "/"
}
