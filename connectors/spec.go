package connectors

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/mesh"
)

// FieldType is the type of a config field. Validated configs hold Go values
// of the matching type.
type FieldType string

// Field types and the Go type a validated Config holds for them.
const (
	TypeString   FieldType = "string"   // string
	TypeInt      FieldType = "int"      // int64 (a JSON number or a numeric string)
	TypeBool     FieldType = "bool"     // bool (or "true"/"false")
	TypeDuration FieldType = "duration" // time.Duration ("10s", "1m30s")
	TypeList     FieldType = "list"     // []string (a JSON list, or one string with commas)
	TypeMap      FieldType = "map"      // map[string]string
	TypeJSON     FieldType = "json"     // any JSON value, as decoded
)

// Mask replaces the value of secret fields whenever a config is shown.
const Mask = cehttp.Mask

// Field describes one config field of a connector type.
type Field struct {
	Name     string    `json:"name"`
	Type     FieldType `json:"type"`
	Required bool      `json:"required"`
	// Default is the value of an absent field (nil: none). It is given as
	// the validated Go value (e.g. int64(10), 5*time.Second).
	Default any `json:"default,omitempty"`
	// Secret fields are masked in every answer and never logged.
	Secret bool `json:"secret"`
	// SecretURL marks a URL field whose user info and query values are
	// secret (https://user:pass@host/hook?token=...): they are masked in
	// every answer (https://********@host/hook?token=********) and never
	// logged, while the rest of the URL is shown.
	SecretURL   bool   `json:"secretURL,omitempty"`
	Description string `json:"description"`
	// Enum, for strings, lists the accepted values.
	Enum []string `json:"enum,omitempty"`
	// Formerly lists earlier names of the field: a config that uses one is
	// read as if it used Name (and is stored and shown under Name).
	Formerly []string `json:"formerly,omitempty"`
}

// MarshalJSON shows durations in their string form.
func (f Field) MarshalJSON() ([]byte, error) {
	type plain Field
	p := plain(f)
	if d, ok := p.Default.(time.Duration); ok {
		p.Default = d.String()
	}
	return json.Marshal(p)
}

// Spec describes a connector type.
type Spec struct {
	// Name is the connector.type users give, e.g. "http-sink".
	Name    string
	Kind    Kind
	Summary string
	// Fields are the type's own config fields; the common ones (Common)
	// are added by the framework.
	Fields []Field
	// Defaults, if set, replaces the defaults of common fields for this
	// type, by field name (e.g. a larger batch.size for a sink whose
	// system wants large batches).
	Defaults map[string]any
	// New returns a new, unstarted connector.
	New func() Connector
	// Check, if set, validates the config further once every field has its
	// type (cross-field rules, URL formats). Return FieldErrors (or a
	// *ValidationError) naming the bad field.
	Check func(cfg Config) []FieldError
	// WebhookPath, set by sources that serve a path on the webhook
	// listener, is the path an instance named name serves. While the
	// instance is paused or stopped, also after a restart of meshd, the
	// runtime keeps the path answering 503 with Retry-After (senders try
	// again later) instead of 404 (many give up).
	WebhookPath func(cfg Config, name string) string
	// InOrder marks a sink whose writes depend on the order of events
	// (upserts, deletes, a TRUNCATE): when it runs as one task, the events
	// its sidecar held unacknowledged when it died are written before any
	// newer one. The price: after a crash — or a restart while an event
	// waits out a retry backoff — newer events wait for them, at most the
	// ack wait plus 2 s.
	InOrder bool
}

// Names of the fields every connector has.
const (
	FieldConnectorType = "connector.type"
	FieldTasksMax      = "tasks.max"
	FieldTopic         = "topic"
	FieldFilters       = "filters"
	FieldBatchSize     = "batch.size"
	FieldBatchWait     = "batch.wait"
	FieldAttempts      = "max.attempts"
	FieldDeadLetter    = "dead.letter.topic"
)

// Limits of the common fields.
const (
	MaxTasks     = 64
	MaxBatchSize = 100_000
)

// Common returns the fields the framework adds to every connector of kind.
func Common(kind Kind) []Field {
	fs := []Field{
		{Name: FieldConnectorType, Type: TypeString, Required: true, Description: "The connector type (plugin) this instance runs."},
		{Name: FieldTasksMax, Type: TypeInt, Default: int64(1), Description: fmt.Sprintf("Most tasks to run (1 to %d); the connector may run fewer.", MaxTasks)},
	}
	if kind == KindSource {
		return append(fs, Field{Name: FieldTopic, Type: TypeString, Required: true, Description: "Mesh topic the records are published to."})
	}
	return append(fs,
		Field{Name: FieldTopic, Type: TypeList, Required: true, Description: "Mesh topic(s) consumed, by a durable group named connector-<name>."},
		Field{Name: FieldFilters, Type: TypeJSON, Description: "CloudEvents Subscriptions API filters (as in subscriptions); events that do not match are skipped."},
		Field{Name: FieldBatchSize, Type: TypeInt, Default: int64(100), Description: fmt.Sprintf("Most events per Put (1 to %d).", MaxBatchSize)},
		Field{Name: FieldBatchWait, Type: TypeDuration, Default: 100 * time.Millisecond, Description: "How long a batch waits to fill up after its first event."},
		Field{Name: FieldAttempts, Type: TypeInt, Default: int64(bridge.DefaultMaxAttempts), Formerly: []string{"maxAttempts"}, Description: "Most deliveries of an event before it is dead-lettered; 0 retries for as long as the mesh keeps it. An unreachable target spends no attempts."},
		Field{Name: FieldDeadLetter, Type: TypeString, Formerly: []string{"deadLetterTopic"}, Description: "Topic receiving events that failed for good (none: dropped with a warning)."},
	)
}

// AllFields returns the common fields, with the type's Defaults applied,
// followed by the type's own.
func (s Spec) AllFields() []Field {
	fs := Common(s.Kind)
	for i := range fs {
		if d, ok := s.Defaults[fs[i].Name]; ok {
			fs[i].Default = d
		}
	}
	return append(fs, s.Fields...)
}

// fieldNameRe is the one style of config keys: lower-case words joined by
// dots ("batch.size", "dead.letter.topic"), as in Kafka Connect.
var fieldNameRe = regexp.MustCompile(`^[a-z][a-z0-9]*(\.[a-z][a-z0-9]*)*$`)

// typeNameRe is the style of connector types: lower-case words joined by
// hyphens ("http-sink").
var typeNameRe = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// check reports a malformed spec (used by Registry.Register).
func (s Spec) check() error {
	if !typeNameRe.MatchString(s.Name) {
		return fmt.Errorf("connector type %q: bad name", s.Name)
	}
	if s.Kind != KindSource && s.Kind != KindSink {
		return fmt.Errorf("connector type %q: kind %q is neither source nor sink", s.Name, s.Kind)
	}
	if s.New == nil {
		return fmt.Errorf("connector type %q: New is nil", s.Name)
	}
	for name := range s.Defaults {
		if !slices.ContainsFunc(Common(s.Kind), func(f Field) bool { return f.Name == name }) {
			return fmt.Errorf("connector type %q: Defaults names %q, which is not a common field", s.Name, name)
		}
	}
	seen := map[string]bool{}
	for _, f := range s.AllFields() {
		if !fieldNameRe.MatchString(f.Name) || seen[f.Name] {
			return fmt.Errorf("connector type %q: field %q is malformed (want lower-case words joined by dots) or declared twice", s.Name, f.Name)
		}
		seen[f.Name] = true
		for _, old := range f.Formerly {
			if seen[old] {
				return fmt.Errorf("connector type %q: field %q: earlier name %q is taken", s.Name, f.Name, old)
			}
			seen[old] = true
		}
		if f.Default != nil {
			if _, err := convert(f, f.Default); err != nil {
				return fmt.Errorf("connector type %q: field %q: default: %v", s.Name, f.Name, err)
			}
		}
	}
	return nil
}

// Validate checks raw (a config as decoded from JSON or YAML) against the
// spec: unknown fields, missing required ones, types, enums, then Check. It
// returns the config with defaults filled in and values of their Go types,
// or a *ValidationError naming every bad field. Validating a validated
// config (or its JSON form) gives the same config.
func (s Spec) Validate(raw map[string]any) (Config, error) {
	fields := s.AllFields()
	known := make(map[string]Field, len(fields))
	for _, f := range fields {
		known[f.Name] = f
	}
	var errs []FieldError
	raw, errs = renamed(fields, raw)
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if _, ok := known[k]; !ok {
			errs = append(errs, FieldError{k, "unknown field for connector type " + strconv.Quote(s.Name)})
		}
	}
	cfg := Config{}
	for _, f := range fields {
		v, ok := raw[f.Name]
		if !ok || v == nil {
			switch {
			case f.Required:
				errs = append(errs, FieldError{f.Name, "required"})
			case f.Default != nil:
				cfg[f.Name], _ = convert(f, f.Default)
			}
			continue
		}
		cv, err := convert(f, v)
		if err != nil {
			errs = append(errs, FieldError{f.Name, err.Error()})
			continue
		}
		cfg[f.Name] = cv
	}
	if len(errs) == 0 {
		errs = append(errs, checkCommon(s, cfg)...)
	}
	if len(errs) == 0 && s.Check != nil {
		errs = append(errs, s.Check(cfg)...)
	}
	if len(errs) > 0 {
		return nil, &ValidationError{Fields: errs}
	}
	return cfg, nil
}

// renamed returns raw with fields given by an earlier name under their
// current one (raw itself is not changed).
func renamed(fields []Field, raw map[string]any) (map[string]any, []FieldError) {
	var out map[string]any
	var errs []FieldError
	for _, f := range fields {
		for _, old := range f.Formerly {
			v, ok := raw[old]
			if !ok {
				continue
			}
			if out == nil {
				out = maps.Clone(raw)
			}
			if _, both := raw[f.Name]; both {
				errs = append(errs, FieldError{old, "is the earlier name of " + strconv.Quote(f.Name) + "; give only " + strconv.Quote(f.Name)})
			} else {
				out[f.Name] = v
			}
			delete(out, old)
		}
	}
	if out == nil {
		return raw, errs
	}
	return out, errs
}

func checkCommon(s Spec, cfg Config) []FieldError {
	var errs []FieldError
	if t := cfg.String(FieldConnectorType); t != s.Name {
		errs = append(errs, FieldError{FieldConnectorType, fmt.Sprintf("%q does not match the spec %q", t, s.Name)})
	}
	if n := cfg.Int(FieldTasksMax); n < 1 || n > MaxTasks {
		errs = append(errs, FieldError{FieldTasksMax, fmt.Sprintf("%d is not between 1 and %d", n, MaxTasks)})
	}
	topics := cfg.Strings(FieldTopic)
	if s.Kind == KindSource {
		topics = []string{cfg.String(FieldTopic)}
	}
	if len(topics) == 0 {
		errs = append(errs, FieldError{FieldTopic, "required"})
	}
	for _, t := range topics {
		if err := mesh.ValidateTopic(t); err != nil {
			errs = append(errs, FieldError{FieldTopic, err.Error()})
		}
	}
	if s.Kind == KindSource {
		return errs
	}
	if _, err := SinkFilter(cfg); err != nil {
		errs = append(errs, FieldError{FieldFilters, err.Error()})
	}
	if n := cfg.Int(FieldBatchSize); n < 1 || n > MaxBatchSize {
		errs = append(errs, FieldError{FieldBatchSize, fmt.Sprintf("%d is not between 1 and %d", n, MaxBatchSize)})
	}
	if d := cfg.Duration(FieldBatchWait); d < 0 {
		errs = append(errs, FieldError{FieldBatchWait, "must not be negative"})
	}
	if n := cfg.Int(FieldAttempts); n < 0 {
		errs = append(errs, FieldError{FieldAttempts, "must not be negative (0: retry for as long as the mesh keeps the event)"})
	}
	if dl := cfg.String(FieldDeadLetter); dl != "" {
		if err := mesh.ValidateTopic(dl); err != nil {
			errs = append(errs, FieldError{FieldDeadLetter, err.Error()})
		} else if slices.Contains(topics, dl) {
			errs = append(errs, FieldError{FieldDeadLetter, "must differ from the consumed topics"})
		}
	}
	return errs
}

// SinkFilter compiles the filters field of a sink config.
func SinkFilter(cfg Config) (bridge.Filter, error) {
	raw, ok := cfg[FieldFilters]
	if !ok || raw == nil {
		return bridge.CompileFilters(nil)
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, errors.New("want a list of filter objects")
	}
	specs := make([]map[string]any, len(list))
	for i, x := range list {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("filters[%d]: want an object", i)
		}
		specs[i] = m
	}
	return bridge.CompileFilters(specs)
}

// convert turns v into the Go value of f's type.
func convert(f Field, v any) (any, error) {
	switch f.Type {
	case TypeString:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a string, got %s", jsonKind(v))
		}
		if len(f.Enum) > 0 && !slices.Contains(f.Enum, s) {
			return nil, fmt.Errorf("%q is not one of %s", s, strings.Join(f.Enum, ", "))
		}
		return s, nil
	case TypeInt:
		switch n := v.(type) {
		case int:
			return int64(n), nil
		case int64:
			return n, nil
		case float64:
			if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
				return nil, fmt.Errorf("%v is not an integer", n)
			}
			return int64(n), nil
		case json.Number:
			i, err := n.Int64()
			if err != nil {
				return nil, fmt.Errorf("%s is not an integer", n)
			}
			return i, nil
		case string:
			i, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not an integer", n)
			}
			return i, nil
		}
		return nil, fmt.Errorf("want an integer, got %s", jsonKind(v))
	case TypeBool:
		switch b := v.(type) {
		case bool:
			return b, nil
		case string:
			p, err := strconv.ParseBool(b)
			if err != nil {
				return nil, fmt.Errorf("%q is not true or false", b)
			}
			return p, nil
		}
		return nil, fmt.Errorf("want true or false, got %s", jsonKind(v))
	case TypeDuration:
		switch d := v.(type) {
		case time.Duration:
			return d, nil
		case string:
			p, err := time.ParseDuration(strings.TrimSpace(d))
			if err != nil {
				return nil, fmt.Errorf("%q is not a duration like 500ms, 10s or 1m", d)
			}
			return p, nil
		}
		return nil, fmt.Errorf("want a duration string like \"10s\", got %s", jsonKind(v))
	case TypeList:
		switch l := v.(type) {
		case []string:
			return slices.Clone(l), nil
		case string:
			var out []string
			for _, p := range strings.Split(l, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
			return out, nil
		case []any:
			out := make([]string, len(l))
			for i, x := range l {
				s, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("item %d: want a string, got %s", i, jsonKind(x))
				}
				out[i] = s
			}
			return out, nil
		}
		return nil, fmt.Errorf("want a list of strings, got %s", jsonKind(v))
	case TypeMap:
		switch m := v.(type) {
		case map[string]string:
			return maps.Clone(m), nil
		case map[string]any:
			out := make(map[string]string, len(m))
			for k, x := range m {
				s, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("key %q: want a string, got %s", k, jsonKind(x))
				}
				out[k] = s
			}
			return out, nil
		}
		return nil, fmt.Errorf("want an object of strings, got %s", jsonKind(v))
	case TypeJSON:
		return normalizeJSON(v)
	}
	return nil, fmt.Errorf("unsupported field type %q", f.Type)
}

// normalizeJSON gives v the shape encoding/json decodes into (YAML gives
// map[string]any too, but ints instead of float64).
func normalizeJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("not representable as JSON: %v", err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int, int64, json.Number:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// Masked returns a copy of cfg with every non-empty secret field of s
// replaced by Mask, and the secret parts of SecretURL fields masked.
func (s Spec) Masked(cfg map[string]any) map[string]any {
	out := maps.Clone(cfg)
	if out == nil {
		out = map[string]any{}
	}
	for _, f := range s.AllFields() {
		v, ok := out[f.Name]
		switch {
		case !ok || isEmpty(v):
		case f.Secret:
			out[f.Name] = Mask
		case f.SecretURL:
			if u, ok := v.(string); ok {
				out[f.Name] = cehttp.MaskURL(u, Mask)
			}
		}
	}
	return out
}

// Unmask returns update with every secret field whose value is Mask, and
// every SecretURL field whose value is the old URL masked, replaced by its
// value in old, so a config read from the API (masked) can be edited and
// put back.
func (s Spec) Unmask(update, old map[string]any) map[string]any {
	out := maps.Clone(update)
	for _, f := range s.AllFields() {
		v, ok := old[f.Name]
		if !ok {
			continue
		}
		switch {
		case f.Secret && out[f.Name] == Mask:
			out[f.Name] = v
		case f.SecretURL:
			if u, isStr := v.(string); isStr && out[f.Name] == cehttp.MaskURL(u, Mask) {
				out[f.Name] = v
			}
		}
	}
	return out
}

// SecretValues returns the secret strings of cfg: the values of secret
// fields (each value of a secret map) and the secret parts of SecretURL
// fields, for masking wherever they might appear in text (errors, traces).
func (s Spec) SecretValues(cfg map[string]any) []string {
	var out []string
	for _, f := range s.AllFields() {
		switch v := cfg[f.Name].(type) {
		case string:
			if f.Secret {
				out = append(out, v)
			} else if f.SecretURL {
				out = append(out, cehttp.SecretsOfURL(v)...)
			}
		case map[string]any:
			if f.Secret {
				for _, x := range v {
					if s, ok := x.(string); ok {
						out = append(out, s)
					}
				}
			}
		case map[string]string:
			if f.Secret {
				for _, x := range v {
					out = append(out, x)
				}
			}
		}
	}
	return out
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case map[string]string:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}
