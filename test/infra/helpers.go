package infra

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// SelfSignedCert writes a self-signed certificate for 127.0.0.1, ::1 and
// localhost, valid for a day, and its key into dir: for servers a test
// starts with TLS. The certificate is its own CA: trust certFile.
func SelfSignedCert(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	return writeSelfSignedCert(t, dir)
}

// Call sends a request with the given headers and body and returns the
// status and the whole answer, failing the test if there is none.
func Call(t testing.TB, method, url string, header http.Header, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// BuildMeshd builds the meshd command into a temporary directory, for
// tests that run it as a process; cleanup removes it. The go tool's
// output goes to stderr.
func BuildMeshd() (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "meshd-bin")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "meshd")
	build := exec.Command("go", "build", "-o", bin, "github.com/meshd/meshd/sidecar/cmd/meshd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}
