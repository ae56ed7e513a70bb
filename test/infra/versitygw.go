package infra

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// versitygw is the S3 server of the tests: real SigV4, ListObjectsV2
// continuation, ranged GET, multipart with the 5 MiB minimum part and
// If-None-Match, over a directory (its posix backend). test/install-deps.sh
// builds it into the user cache dir.
const (
	versityGWModule  = "github.com/versity/versitygw/cmd/versitygw"
	versityGWVersion = "v1.8.0"
	// S3Region is the region versitygw answers for (its default).
	S3Region = "us-east-1"
)

// VersityGWMissing is the failure message when the binary is not built.
var VersityGWMissing = fmt.Sprintf("versitygw %s is not installed: run `make deps` (test/install-deps.sh runs "+
	"GOBIN=<user cache>/meshd/bin go install %s@%s and names it versitygw-%s)",
	versityGWVersion, versityGWModule, versityGWVersion, versityGWVersion)

// S3 is a running versitygw owned by a test.
type S3 struct {
	// Endpoint is the server's base URL, http://127.0.0.1:PORT.
	Endpoint string
	// AccessKey and SecretKey are the root user's credentials.
	AccessKey, SecretKey string
	// Dir is the directory holding the buckets (one directory each).
	Dir string
}

// VersityGWBinary returns the versitygw binary in the user cache dir,
// failing the test with what to install when it is missing.
func VersityGWBinary(t testing.TB) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("versitygw: finding the user cache dir: %v\n%s", err, VersityGWMissing)
	}
	bin := filepath.Join(cache, "meshd", "bin", "versitygw-"+versityGWVersion)
	if fi, err := os.Stat(bin); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		t.Fatal(VersityGWMissing)
	}
	return bin
}

// StartS3 starts versitygw with its posix backend in a temp dir on a free
// loopback port, with a random root user, and waits until it answers HTTP.
// It is stopped (by PID) when the test ends.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	bin := VersityGWBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatalf("versitygw: %v", err)
	}
	s := &S3{AccessKey: "MESHD" + rand.Text()[:15], SecretKey: rand.Text(), Dir: data}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	s.Endpoint = "http://" + addr
	// --keep-alive: without it versitygw closes the connection after each
	// request, and every request pays a new TCP handshake.
	cmd := exec.Command(bin, "--port", addr, "--access", s.AccessKey, "--secret", s.SecretKey,
		"--region", S3Region, "--quiet", "--keep-alive", "posix", data)
	cmd.Dir = dir
	// It shuts down gracefully, waiting for idle keep-alive connections;
	// nothing of a test server needs that: killed after 3s.
	log := server{name: "versitygw", startTimeout: 20 * time.Second, stopTimeout: 3 * time.Second}.start(t, cmd, addr)
	// It accepts connections as soon as it listens; wait for an HTTP answer
	// (any status: an unsigned request is refused with 403).
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw on %s does not answer HTTP: %v\n%s", addr, err, log.String())
		}
		time.Sleep(20 * time.Millisecond) // polling until it answers
	}
}

// Client returns an S3 client of the server's root user (path-style
// addressing, static keys).
func (s *S3) Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true, Region: S3Region,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}, nil
		}),
	})
}
