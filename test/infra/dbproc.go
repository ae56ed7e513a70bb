package infra

import (
	"net"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	dbStartTimeout = 30 * time.Second
	dbStopTimeout  = 15 * time.Second
)

// server describes how a launcher starts and stops one server process.
type server struct {
	name string
	// startTimeout and stopTimeout default to dbStartTimeout and dbStopTimeout.
	startTimeout, stopTimeout time.Duration
	// stopSignal asks the server to stop (default SIGTERM).
	stopSignal syscall.Signal
	// diagnostics, when set, adds to failure messages what the server logs
	// outside its stdout and stderr.
	diagnostics func() string
}

// startDBProc starts cmd as server name with the default timeouts.
func startDBProc(t testing.TB, name string, cmd *exec.Cmd, addr string) *SyncBuffer {
	t.Helper()
	return server{name: name}.start(t, cmd, addr)
}

// start starts cmd (its output kept for error messages), waits until addr
// accepts TCP connections and registers a cleanup that stops it by PID
// (SIGTERM, then SIGKILL after the stop timeout).
func (s server) start(t testing.TB, cmd *exec.Cmd, addr string) *SyncBuffer {
	t.Helper()
	log, _ := s.startStoppable(t, cmd, addr)
	return log
}

// startStoppable is start that also returns a function stopping the
// server at once (the same way; idempotent, and the cleanup then does
// nothing).
func (s server) startStoppable(t testing.TB, cmd *exec.Cmd, addr string) (*SyncBuffer, func()) {
	t.Helper()
	if s.startTimeout == 0 {
		s.startTimeout = dbStartTimeout
	}
	if s.stopTimeout == 0 {
		s.stopTimeout = dbStopTimeout
	}
	if s.stopSignal == 0 {
		s.stopSignal = syscall.SIGTERM
	}
	log := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", s.name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(s.stopSignal)
			select {
			case <-exited:
			case <-time.After(s.stopTimeout):
				_ = cmd.Process.Kill()
				<-exited
			}
		})
	}
	t.Cleanup(stop)
	output := func() string {
		if s.diagnostics == nil {
			return log.String()
		}
		return log.String() + "\n" + s.diagnostics()
	}
	deadline := time.Now().Add(s.startTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return log, stop
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited at start (%v): %s", s.name, err, output())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept connections on %s within %s: %s", s.name, addr, s.startTimeout, output())
		}
	}
}

// lookBin finds a binary on PATH or in one of dirs.
func lookBin(name string, dirs ...string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, d := range dirs {
		p := d + "/" + name
		if _, err := exec.LookPath(p); err == nil {
			return p, true
		}
	}
	return "", false
}
