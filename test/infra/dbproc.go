package infra

import (
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

const (
	dbStartTimeout = 30 * time.Second
	dbStopTimeout  = 15 * time.Second
)

// startDBProc starts cmd (its output kept for error messages), waits until
// addr accepts TCP connections and registers a cleanup that stops it by PID
// (SIGTERM, then SIGKILL after dbStopTimeout).
func startDBProc(t testing.TB, name string, cmd *exec.Cmd, addr string) *syncBuffer {
	t.Helper()
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(dbStopTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(dbStartTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return log
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited at start (%v): %s", name, err, log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept connections on %s within %s: %s", name, addr, dbStartTimeout, log.String())
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
