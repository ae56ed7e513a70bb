// Package infra starts the real servers that integration tests run against,
// each on a free loopback port in a temp dir.
package infra

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	natsModule       = "github.com/nats-io/nats-server/v2"
	natsStartTimeout = 20 * time.Second
	natsStopTimeout  = 10 * time.Second
)

var natsBuild struct {
	once sync.Once
	path string
	err  error
}

// NATSServerBinary returns the nats-server binary of the version our go.mod
// requires, building it into the user cache dir the first time.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	natsBuild.once.Do(func() { natsBuild.path, natsBuild.err = buildNATSServer() })
	if natsBuild.err != nil {
		t.Fatalf("nats-server: %v\nThe tests build it with the Go toolchain from this module's go.mod "+
			"(go build %s); install Go %s or newer and make sure the module cache or proxy is reachable.",
			natsBuild.err, natsModule, strings.TrimPrefix(goVersionFromMod(), "go"))
	}
	return natsBuild.path
}

func buildNATSServer() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("finding the go command: %w", err)
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	list := exec.Command(goBin, "list", "-m", "-f", "{{.Version}}", natsModule)
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w %s", natsModule, err, exitStderr(err))
	}
	version := strings.TrimSpace(string(out))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "meshd", "bin")
	bin := filepath.Join(dir, "nats-server-"+version)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Build to a temp name and rename, so concurrent test binaries never
	// run a half-written file.
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	build := exec.Command(goBin, "build", "-o", tmp, natsModule)
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("go build %s@%s: %w\n%s", natsModule, version, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// moduleRoot walks up from the working directory to the go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

func goVersionFromMod() string {
	root, err := moduleRoot()
	if err != nil {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Ports handed out by FreePort come from below the kernel's ephemeral range
// (32768 and up on Linux), so an outgoing connection's local port cannot
// take one between FreePort's check and the server's bind.
const (
	freePortMin = 20000
	freePortMax = 32000
)

// FreePort returns a loopback TCP port that was free a moment ago, chosen
// at random below the ephemeral range.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 200 {
		port := freePortMin + rand.IntN(freePortMax-freePortMin)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatalf("finding a free port in %d-%d: none after 200 tries", freePortMin, freePortMax)
	return 0
}

// FreeAddr is FreePort as a 127.0.0.1:port address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// natsProc is one nats-server process with JetStream.
type natsProc struct {
	t        testing.TB
	bin      string
	storeDir string
	port     int
	monPort  int
	logPath  string
	confPath string // a config file (-c), or ""

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error // receives cmd.Wait's result
}

// StartNATS starts nats-server with JetStream on a free loopback port and a
// store in a temp dir, and returns its client URL, a stop function and a
// restart function that keeps the port and the store. The server is
// stopped at the end of the test. It fails the test if the server cannot
// be built or started.
func StartNATS(t *testing.T) (url string, stop func(), restart func()) {
	t.Helper()
	p := newNATSProc(t, "")
	return p.url(), p.stop, func() {
		p.stop()
		p.start()
	}
}

// StartNATSConf is StartNATS with a nats-server config file of conf (for
// authorization {...}, tls {...}, operator mode): the port, store and
// monitoring flags are given on the command line and win over conf. It
// returns the client URL (nats://; a client upgrades to TLS when the
// server requires it).
func StartNATSConf(t *testing.T, conf string) string {
	t.Helper()
	return newNATSProc(t, conf).url()
}

// newNATSProc starts a nats-server (with the config file conf, unless
// empty) that is stopped at the end of the test.
func newNATSProc(t *testing.T, conf string) *natsProc {
	t.Helper()
	p := &natsProc{
		t:        t,
		bin:      NATSServerBinary(t),
		storeDir: t.TempDir(),
		port:     FreePort(t),
		monPort:  FreePort(t),
	}
	p.logPath = filepath.Join(p.storeDir, "nats-server.log")
	if conf != "" {
		p.confPath = filepath.Join(p.storeDir, "nats-server.conf")
		if err := os.WriteFile(p.confPath, []byte(conf), 0o600); err != nil {
			t.Fatalf("writing the nats-server config: %v", err)
		}
	}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *natsProc) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", p.port) }

func (p *natsProc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatalf("nats-server log: %v", err)
	}
	args := []string{
		"-js", "-sd", p.storeDir,
		"-a", "127.0.0.1", "-p", strconv.Itoa(p.port),
		"-m", strconv.Itoa(p.monPort),
		"-n", "meshd-test-" + strconv.Itoa(p.port),
	}
	if p.confPath != "" {
		args = append(args, "-c", p.confPath)
	}
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("starting nats-server: %v", err)
	}
	logf.Close() // the child has its own descriptor
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz?js-enabled-only=true", p.monPort)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(natsStartTimeout)
	for {
		select {
		case err := <-exited:
			p.t.Fatalf("nats-server exited during start-up: %v\n%s", err, p.log())
		default:
		}
		if resp, err := client.Get(healthz); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			p.t.Fatalf("nats-server not healthy after %s\n%s", natsStartTimeout, p.log())
		}
		time.Sleep(20 * time.Millisecond) // polling the health endpoint
	}
	p.cmd = cmd
	// Reap it when it exits; stop waits on cmd through this channel.
	p.exited = exited
}

// stop ends the server with SIGTERM (SIGKILL after natsStopTimeout).
func (p *natsProc) stop() { p.end(syscall.SIGTERM) }

// kill ends the server with SIGKILL, as a crash would.
func (p *natsProc) kill() { p.end(syscall.SIGKILL) }

func (p *natsProc) end(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	cmd, exited := p.cmd, p.exited
	p.cmd, p.exited = nil, nil
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(natsStopTimeout):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (p *natsProc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(bytes.TrimSpace(b))
}
