package connectors

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrInvalidConfig is wrapped by *ValidationError.
	ErrInvalidConfig = errors.New("invalid connector config")
	// ErrUnknownType is returned for a connector.type no registry holds.
	ErrUnknownType = errors.New("unknown connector type")
)

// FieldError names a config field and what is wrong with it.
type FieldError struct {
	Field  string
	Reason string
}

func (e FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// ValidationError lists every bad field of a config. It wraps
// ErrInvalidConfig.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return "invalid connector config: " + strings.Join(parts, "; ")
}

func (e *ValidationError) Unwrap() error { return ErrInvalidConfig }

// Field returns the errors of one field.
func (e *ValidationError) Field(name string) []string {
	var out []string
	for _, f := range e.Fields {
		if f.Field == name {
			out = append(out, f.Reason)
		}
	}
	return out
}
