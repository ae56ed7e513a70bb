package infra

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Mosquitto is a running (or stopped) Mosquitto broker owned by a test.
type Mosquitto struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	mu     sync.Mutex // guards cmd, waitCh, log
	cmd    *exec.Cmd
	waitCh chan error
	log    *SyncBuffer
}

// MosquittoMissing is the failure message when the binary is not installed.
const MosquittoMissing = "install mosquitto: apt-get install mosquitto (make test does this via test/install-deps.sh)"

// StartMosquitto starts `mosquitto -c <conf>` listening on a free port of
// 127.0.0.1, anonymous access allowed, persistence on in a temp dir (so
// Restart keeps sessions and queued QoS 1 messages). It is stopped when the
// test ends.
func StartMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		t.Fatal(MosquittoMissing)
	}
	m := &Mosquitto{t: t, bin: bin, dir: t.TempDir(), port: FreePort(t)}
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nautosave_interval 0\nmax_queued_messages 100000\nlog_dest stderr\nlog_type error\nlog_type warning\n",
		m.port, m.dir)
	if os.Geteuid() == 0 {
		// Mosquitto drops root privileges to user "mosquitto" by default,
		// which cannot write the test's temp dir.
		conf += "user root\n"
	}
	if err := os.WriteFile(filepath.Join(m.dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatalf("writing mosquitto config: %v", err)
	}
	m.start()
	t.Cleanup(m.Stop)
	return m
}

// URL is the broker's address for paho: tcp://127.0.0.1:PORT.
func (m *Mosquitto) URL() string { return "tcp://" + m.Addr() }

// Addr is host:port.
func (m *Mosquitto) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port)) }

func (m *Mosquitto) start() {
	m.t.Helper()
	cmd := exec.Command(m.bin, "-c", filepath.Join(m.dir, "mosquitto.conf"))
	log := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = m.dir
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("starting mosquitto: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	m.mu.Lock()
	m.cmd, m.log = cmd, log
	m.mu.Unlock()

	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			// Keep Wait's result for Stop.
			go func() { err := <-exited; exited <- err }()
			m.mu.Lock()
			m.waitCh = exited
			m.mu.Unlock()
			return
		}
		select {
		case err := <-exited:
			m.t.Fatalf("mosquitto exited at start (%v): %s", err, m.output())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			m.t.Fatalf("mosquitto did not accept connections on %s within 10s: %s", m.Addr(), m.output())
		}
	}
}

func (m *Mosquitto) output() string {
	m.mu.Lock()
	log := m.log
	m.mu.Unlock()
	if log == nil {
		return ""
	}
	return log.String()
}

// Stop terminates the broker (SIGTERM, so it saves its persistence file)
// and waits for it. Idempotent.
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	cmd, wait := m.cmd, m.waitCh
	m.cmd, m.waitCh = nil, nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-wait:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-wait
	}
}

// Restart stops the broker and starts it again on the same port and data
// dir.
func (m *Mosquitto) Restart() {
	m.t.Helper()
	m.Stop()
	m.start()
}

// Start starts a stopped broker again (same port and data dir).
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.mu.Lock()
	running := m.cmd != nil
	m.mu.Unlock()
	if !running {
		m.start()
	}
}
