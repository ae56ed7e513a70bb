package bridge

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// Filter decides whether a subscription receives an event.
type Filter interface {
	Match(e *event.Event) bool
}

// FilterFunc adapts a function to Filter.
type FilterFunc func(e *event.Event) bool

// Match calls f(e).
func (f FilterFunc) Match(e *event.Event) bool { return f(e) }

// CompileFilters compiles filter expressions of the CloudEvents
// Subscriptions API. Each element of specs holds exactly one dialect:
//
//	{"exact":  {"type": "com.example.created", "subject": "x"}}
//	{"prefix": {"type": "com.example."}}
//	{"suffix": {"source": "/orders"}}
//	{"all":    [ <filter>, ... ]}
//	{"any":    [ <filter>, ... ]}
//	{"not":    <filter>}
//	{"sql":    "type LIKE 'com.%' AND subject = 'x'"}
//
// The elements of specs must all match (an empty list matches every event).
// exact, prefix and suffix take attribute→value pairs that all must hold;
// the attribute is a context attribute or an extension, and an event without
// it does not match. Values may be any scalar (as decoded from JSON or YAML)
// and are compared in their string form; event attributes in their
// CloudEvents canonical string form. A sql expression (CESQL) that fails to
// evaluate on an event does not match it.
//
// Errors name the bad element, e.g. `filters[1].any[0]: unknown dialect "exactt"`.
// The returned Filter is safe for concurrent use.
func CompileFilters(specs []map[string]any) (Filter, error) {
	fs := make([]Filter, 0, len(specs))
	for i, spec := range specs {
		f, err := compileFilter(spec, "filters["+strconv.Itoa(i)+"]")
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
	}
	switch len(fs) {
	case 0:
		return matchAll{}, nil
	case 1:
		return fs[0], nil
	}
	return allFilter(fs), nil
}

func compileFilter(spec any, path string) (Filter, error) {
	m, ok := asMap(spec)
	if !ok || len(m) != 1 {
		return nil, fmt.Errorf("%s: want an object with exactly one dialect (exact, prefix, suffix, all, any, not, sql)", path)
	}
	for dialect, arg := range m {
		p := path + "." + dialect
		switch dialect {
		case "exact", "prefix", "suffix":
			return compileCompare(dialect, arg, p)
		case "all", "any":
			list, ok := asList(arg)
			if !ok || len(list) == 0 {
				return nil, fmt.Errorf("%s: want a non-empty list of filters", p)
			}
			fs := make([]Filter, len(list))
			for i, sub := range list {
				f, err := compileFilter(sub, p+"["+strconv.Itoa(i)+"]")
				if err != nil {
					return nil, err
				}
				fs[i] = f
			}
			if dialect == "all" {
				return allFilter(fs), nil
			}
			return anyFilter(fs), nil
		case "not":
			f, err := compileFilter(arg, p)
			if err != nil {
				return nil, err
			}
			return notFilter{f}, nil
		case "sql":
			expr, ok := arg.(string)
			if !ok || strings.TrimSpace(expr) == "" {
				return nil, fmt.Errorf("%s: want a CESQL expression string", p)
			}
			f, err := compileSQL(expr)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			return f, nil
		default:
			return nil, fmt.Errorf("%s: unknown dialect %q", path, dialect)
		}
	}
	panic("unreachable")
}

func compileCompare(dialect string, arg any, path string) (Filter, error) {
	m, ok := asMap(arg)
	if !ok || len(m) == 0 {
		return nil, fmt.Errorf("%s: want an object of attribute: value pairs", path)
	}
	f := &compareFilter{dialect: dialect}
	for name, v := range m {
		if err := checkAttributeName(name); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		s, ok := scalarString(v)
		if !ok {
			return nil, fmt.Errorf("%s.%s: want a scalar value, got %T", path, name, v)
		}
		f.pairs = append(f.pairs, comparePair{get: attributeGetter(name), want: s})
	}
	return f, nil
}

func checkAttributeName(name string) error {
	if name == "" {
		return fmt.Errorf("empty attribute name")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return fmt.Errorf("attribute %q: names are lower-case letters a-z and digits 0-9", name)
		}
	}
	return nil
}

// attributeGetter returns the canonical string form of a context attribute
// or extension; ok is false when the event does not have it.
func attributeGetter(name string) func(e *event.Event) (string, bool) {
	nonEmpty := func(s string) (string, bool) { return s, s != "" }
	switch name {
	case "id":
		return func(e *event.Event) (string, bool) { return nonEmpty(e.ID()) }
	case "source":
		return func(e *event.Event) (string, bool) { return nonEmpty(e.Source()) }
	case "specversion":
		return func(e *event.Event) (string, bool) { return nonEmpty(e.SpecVersion()) }
	case "type":
		return func(e *event.Event) (string, bool) { return nonEmpty(e.Type()) }
	case "subject":
		return func(e *event.Event) (string, bool) { return nonEmpty(e.Subject()) }
	case "datacontenttype":
		return func(e *event.Event) (string, bool) { return nonEmpty(e.DataContentType()) }
	case "dataschema":
		return func(e *event.Event) (string, bool) { return nonEmpty(e.DataSchema()) }
	case "time":
		return func(e *event.Event) (string, bool) {
			t := e.Time()
			if t.IsZero() {
				return "", false
			}
			return types.FormatTime(t), true
		}
	}
	return func(e *event.Event) (string, bool) {
		if e.Context == nil {
			return "", false
		}
		v, ok := e.Extensions()[name]
		if !ok {
			return "", false
		}
		s, err := types.Format(v)
		return s, err == nil
	}
}

type comparePair struct {
	get  func(e *event.Event) (string, bool)
	want string
}

type compareFilter struct {
	dialect string // exact, prefix or suffix
	pairs   []comparePair
}

func (f *compareFilter) Match(e *event.Event) bool {
	for _, p := range f.pairs {
		got, ok := p.get(e)
		if !ok {
			return false
		}
		var match bool
		switch f.dialect {
		case "exact":
			match = got == p.want
		case "prefix":
			match = strings.HasPrefix(got, p.want)
		case "suffix":
			match = strings.HasSuffix(got, p.want)
		}
		if !match {
			return false
		}
	}
	return true
}

type matchAll struct{}

func (matchAll) Match(*event.Event) bool { return true }

type allFilter []Filter

func (fs allFilter) Match(e *event.Event) bool {
	for _, f := range fs {
		if !f.Match(e) {
			return false
		}
	}
	return true
}

type anyFilter []Filter

func (fs anyFilter) Match(e *event.Event) bool {
	for _, f := range fs {
		if f.Match(e) {
			return true
		}
	}
	return false
}

type notFilter struct{ f Filter }

func (n notFilter) Match(e *event.Event) bool { return !n.f.Match(e) }

// asMap accepts the object shapes JSON and YAML decoders produce.
func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any: // gopkg.in/yaml.v2
		out := make(map[string]any, len(m))
		for k, v := range m {
			ks, ok := k.(string)
			if !ok {
				return nil, false
			}
			out[ks] = v
		}
		return out, true
	case map[string]string:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out, true
	}
	return nil, false
}

// asList accepts []any and any other slice type (e.g. []map[string]any
// built in Go).
func asList(v any) ([]any, bool) {
	if l, ok := v.([]any); ok {
		return l, true
	}
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() != reflect.Slice {
		return nil, false
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out, true
}

// scalarString is the string form filter values are compared in.
func scalarString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case json.Number:
		return v.String(), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(v), 'f', -1, 32), true
	case time.Time:
		return types.FormatTime(v), true
	case fmt.Stringer:
		return v.String(), true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(rv.Uint(), 10), true
	}
	return "", false
}
