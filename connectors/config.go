package connectors

import (
	"encoding/json"
	"maps"
	"slices"
	"time"
)

// Config is a validated connector or task config: field name → Go value of
// the field's type (see FieldType). Spec.Validate builds one; connectors
// read it with the typed getters, which return the zero value for an absent
// field or a value of another type.
type Config map[string]any

// String returns a string field.
func (c Config) String(name string) string { s, _ := c[name].(string); return s }

// Int returns an int field.
func (c Config) Int(name string) int64 { n, _ := c[name].(int64); return n }

// Bool returns a bool field.
func (c Config) Bool(name string) bool { b, _ := c[name].(bool); return b }

// Duration returns a duration field.
func (c Config) Duration(name string) time.Duration { d, _ := c[name].(time.Duration); return d }

// Strings returns a copy of a list field.
func (c Config) Strings(name string) []string { l, _ := c[name].([]string); return slices.Clone(l) }

// Map returns a copy of a map field.
func (c Config) Map(name string) map[string]string {
	m, _ := c[name].(map[string]string)
	return maps.Clone(m)
}

// Clone returns a shallow copy of c (list and map values are copied).
func (c Config) Clone() Config {
	out := make(Config, len(c))
	for k, v := range c {
		switch x := v.(type) {
		case []string:
			v = slices.Clone(x)
		case map[string]string:
			v = maps.Clone(x)
		}
		out[k] = v
	}
	return out
}

// JSON returns c as JSON-ready values: durations as strings like "1m30s".
// Validating the result gives c again.
func (c Config) JSON() map[string]any {
	out := make(map[string]any, len(c))
	for k, v := range c {
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		out[k] = v
	}
	return out
}

// MarshalJSON encodes c.JSON().
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.JSON()) }
