package worker

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound is returned for an unknown connector instance.
	ErrNotFound = errors.New("connector not found")
	// ErrExists is returned when creating an instance whose name is taken.
	ErrExists = errors.New("connector already exists")
	// ErrConflict is a lost race: the instance was changed (through
	// another sidecar of the app) after this one last saw it. The instance
	// is brought up to date; read it again and retry.
	ErrConflict = errors.New("connector changed meanwhile")
	// ErrNotRunning is returned by operations that need a started runtime.
	ErrNotRunning = errors.New("connector runtime not started")
)

// PanicError is a panic of connector code, recovered by the runtime. It
// fails the task (or connector) it happened in, never the process.
type PanicError struct {
	What  string // the call that panicked, e.g. "Put"
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic in %s: %v", e.What, e.Value) }

// safe calls f, turning a panic into a *PanicError.
func safe(what string, f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{What: what, Value: p, Stack: stack()}
		}
	}()
	return f()
}
