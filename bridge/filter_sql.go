package bridge

import (
	"fmt"

	cesql "github.com/cloudevents/sdk-go/sql/v2"
	cesqlparser "github.com/cloudevents/sdk-go/sql/v2/parser"
	"github.com/cloudevents/sdk-go/v2/event"
)

// sqlFilter evaluates a CESQL expression. A runtime error (e.g. a missing
// attribute or a failed cast) or a non-boolean result means no match.
type sqlFilter struct {
	expr cesql.Expression
}

func compileSQL(expr string) (f Filter, err error) {
	// The generated parser panics on some malformed input (e.g. "type LIKE").
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, fmt.Errorf("parsing CESQL %s: syntax error", quote(expr))
		}
	}()
	x, err := cesqlparser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("parsing CESQL %s: %w", quote(expr), err)
	}
	if x == nil {
		return nil, fmt.Errorf("parsing CESQL %s: empty expression", quote(expr))
	}
	return sqlFilter{x}, nil
}

func (f sqlFilter) Match(e *event.Event) (match bool) {
	if e == nil || e.Context == nil {
		return false
	}
	defer func() {
		if recover() != nil {
			match = false
		}
	}()
	v, err := f.expr.Evaluate(*e)
	if err != nil {
		return false
	}
	b, ok := v.(bool)
	return ok && b
}
