//go:build !unix

package sidecar

import (
	"fmt"
	"os"
)

// dataLock is a no-op where flock(2) does not exist: two meshd on one
// data.dir are not detected there.
type dataLock struct{}

func lockDataDir(dir string) (*dataLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data.dir: cannot create %s: %w", dir, pathCause(err))
	}
	return &dataLock{}, nil
}

func (l *dataLock) release() error { return nil }
