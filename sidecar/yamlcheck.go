package sidecar

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// checkYAML walks a YAML document against the Go type it is decoded into
// and returns the first mistake named by its config path and line —
// "api.listn (line 2): unknown setting; did you mean api.listen?",
// "api.maxBodyBytes (line 3): "big" is not an integer" — where yaml.v3
// would name Go types (sidecar.APIConfig). Values that decode are left to
// the real decoding.
func checkYAML(n *yaml.Node, t reflect.Type, path string) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == 0 {
		return nil // an empty document
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return checkYAML(n.Content[0], t, path)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // leaves the default
	}
	where := func() string {
		if path == "" {
			return fmt.Sprintf("line %d", n.Line)
		}
		return fmt.Sprintf("%s (line %d)", path, n.Line)
	}
	switch t.Kind() {
	case reflect.Pointer:
		return checkYAML(n, t.Elem(), path)
	case reflect.Interface:
		return nil // anything goes (connector configs, filters)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: want a mapping (keys %s), got %s", where(), strings.Join(yamlKeys(t), ", "), nodeKind(n))
		}
		if err := checkDuplicateKeys(n, path); err != nil {
			return err
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" && k.Tag == "!!merge" {
				if err := checkYAML(v, t, path); err != nil {
					return err
				}
				continue
			}
			child := joinPath(path, k.Value)
			f, ok := yamlField(t, k.Value)
			if !ok {
				msg := fmt.Sprintf("%s (line %d): unknown setting", child, k.Line)
				if best := closest(k.Value, yamlKeys(t)); best != "" {
					msg += "; did you mean " + joinPath(path, best) + "?"
				} else {
					msg += "; known here: " + strings.Join(yamlKeys(t), ", ")
				}
				return fmt.Errorf("%s", msg)
			}
			if err := checkYAML(v, f.Type, child); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s: want a list, got %s", where(), nodeKind(n))
		}
		for i, item := range n.Content {
			if err := checkYAML(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: want a mapping, got %s", where(), nodeKind(n))
		}
		if err := checkDuplicateKeys(n, path); err != nil {
			return err
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkYAML(n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s: want %s, got %s", where(), valueKind(t), nodeKind(n))
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		return fmt.Errorf("%s: %s is not %s", where(), quoteValue(n.Value), valueKind(t))
	}
	return nil
}

// checkDuplicateKeys refuses a key given twice in one mapping (yaml.v3
// would, naming only lines).
func checkDuplicateKeys(n *yaml.Node, path string) error {
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Tag == "!!merge" {
			continue
		}
		if line, ok := first[k.Value]; ok {
			return fmt.Errorf("%s (line %d): set twice, first at line %d", joinPath(path, k.Value), k.Line, line)
		}
		first[k.Value] = k.Line
	}
	return nil
}

func joinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// yamlFields lists the fields of struct t by YAML key, inline structs
// flattened, as yaml.v3 decodes them.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := strings.Split(f.Tag.Get("yaml"), ",")
		if tag[0] == "-" {
			continue
		}
		if slices.Contains(tag[1:], "inline") && f.Type.Kind() == reflect.Struct {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		name := tag[0]
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

func yamlField(t reflect.Type, key string) (reflect.StructField, bool) {
	f, ok := yamlFields(t)[key]
	return f, ok
}

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for k := range yamlFields(t) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "the value " + quoteValue(n.Value)
	}
}

// valueKind says in words what a scalar of type t looks like.
func valueKind(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration such as 500ms, 10s or 5m"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	default:
		return "a single value"
	}
}

// quoteValue quotes a scalar for an error, shortened: a config value that
// is not even of the right type is not a secret, but it may be long.
func quoteValue(v string) string {
	if r := []rune(v); len(r) > 40 {
		v = string(r[:40]) + "…"
	}
	return fmt.Sprintf("%q", v)
}

// closest is the candidate nearest to s by edit distance, or "" when none
// is near enough to be a likely misspelling. Case is ignored.
func closest(s string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist < 0 || bestDist > max(1, len(s)/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
