//go:build unix

package sidecar

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFileName is the lock file meshd holds in data.dir while it runs.
const lockFileName = "meshd.lock"

// errDataDirInUse is returned when another process holds the data dir.
var errDataDirInUse = errors.New("in use by another meshd")

// dataLock is an exclusive flock(2) on data.dir/meshd.lock. The kernel
// releases it when the process ends, however it ends (kill -9 too), so a
// crashed holder never blocks the next start; the pid written into the
// file only names the holder in the error of a second meshd.
type dataLock struct {
	f *os.File
}

// lockDataDir creates dir if needed and takes its lock, or names the pid
// holding it. Errors name data.dir.
func lockDataDir(dir string) (*dataLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data.dir: cannot create %s: %w", dir, pathCause(err))
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("data.dir: %s is not writable: %w", dir, pathCause(err))
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data.dir: %s is %w (pid %s, holding %s); stop it or give this one its own data.dir",
				dir, errDataDirInUse, lockHolder(path), lockFileName)
		}
		return nil, fmt.Errorf("data.dir: locking %s: %w", path, err)
	}
	if err := writePid(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("data.dir: writing %s: %w", path, err)
	}
	return &dataLock{f: f}, nil
}

// writePid replaces the file's content with this process's pid.
func writePid(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		return err
	}
	return f.Sync()
}

// lockHolder reads the pid the holder wrote ("unknown" if it has not yet).
func lockHolder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	pid := strings.TrimSpace(string(b))
	if _, err := strconv.Atoi(pid); err != nil {
		return "unknown"
	}
	return pid
}

// release unlocks and closes the lock file; the file stays (removing it
// would race with a meshd starting at the same moment). Nil-safe.
func (l *dataLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
