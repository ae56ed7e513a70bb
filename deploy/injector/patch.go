package injector

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Operation is one RFC 6902 JSON Patch operation.
type Operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// MarshalJSON leaves "value" out of a remove only: an add of null keeps it.
func (o Operation) MarshalJSON() ([]byte, error) {
	if o.Op == "remove" {
		return json.Marshal(struct {
			Op   string `json:"op"`
			Path string `json:"path"`
		}{o.Op, o.Path})
	}
	type plain Operation
	return json.Marshal(plain(o))
}

// CreatePatch returns the RFC 6902 JSON Patch that turns original into
// patched (both JSON-marshalled first). Objects are compared key by key;
// an array that only gained elements (at its end, its start or in one run
// in between) gets one "add" per element, so a patch adding the sidecar
// does not rewrite containers another webhook may have touched; any other
// changed array is replaced whole. Keys are escaped as RFC 6901 says
// ("/" as "~1", "~" as "~0"), so label and annotation keys work.
func CreatePatch(original, patched any) ([]Operation, error) {
	a, err := toJSONValue(original)
	if err != nil {
		return nil, fmt.Errorf("encoding the original: %w", err)
	}
	b, err := toJSONValue(patched)
	if err != nil {
		return nil, fmt.Errorf("encoding the patched: %w", err)
	}
	var ops []Operation
	diff("", a, b, &ops)
	return ops, nil
}

func toJSONValue(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// EscapePointer escapes one reference token of a JSON Pointer (RFC 6901).
func EscapePointer(token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(token, "~", "~0"), "/", "~1")
}

func diff(path string, a, b any, ops *[]Operation) {
	if reflect.DeepEqual(a, b) {
		return
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := make([]string, 0, len(av)+len(bv))
		for k := range av {
			keys = append(keys, k)
		}
		for k := range bv {
			if _, ok := av[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := path + "/" + EscapePointer(k)
			x, inA := av[k]
			y, inB := bv[k]
			switch {
			case inA && inB:
				diff(p, x, y, ops)
			case inA:
				*ops = append(*ops, Operation{Op: "remove", Path: p})
			default:
				*ops = append(*ops, Operation{Op: "add", Path: p, Value: y})
			}
		}
		return
	case []any:
		bv, ok := b.([]any)
		if !ok {
			break
		}
		if diffArray(path, av, bv, ops) {
			return
		}
	}
	*ops = append(*ops, Operation{Op: "replace", Path: path, Value: b})
}

// diffArray handles the two cases worth more than a replace: arrays of
// equal length (compared element by element) and arrays that only gained
// one run of elements. It reports whether it did.
func diffArray(path string, a, b []any, ops *[]Operation) bool {
	switch {
	case len(a) == len(b):
		for i := range a {
			diff(path+"/"+strconv.Itoa(i), a[i], b[i], ops)
		}
		return true
	case len(b) > len(a):
		pre := 0
		for pre < len(a) && reflect.DeepEqual(a[pre], b[pre]) {
			pre++
		}
		suf := 0
		for suf < len(a)-pre && reflect.DeepEqual(a[len(a)-1-suf], b[len(b)-1-suf]) {
			suf++
		}
		if pre+suf != len(a) {
			return false
		}
		for i, v := range b[pre : len(b)-suf] {
			*ops = append(*ops, Operation{Op: "add", Path: path + "/" + strconv.Itoa(pre+i), Value: v})
		}
		return true
	}
	return false
}
