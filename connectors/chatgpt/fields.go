package chatgpt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// maxFields bounds the fields of a PARSE request.
const maxFields = 100

var fieldNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)

// field is one field PARSE asks the model for.
type field struct {
	Name        string
	Description string
}

// parseFields reads the fields of a PARSE request: EventMesh's string
// ("name:description;name2:description2", descriptions optional), an object
// {"name": "description"} or a list of names.
func parseFields(raw json.RawMessage) ([]field, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, fmt.Errorf("PARSE needs fields: \"name:description;...\", an object or a list of names")
	}
	var out []field
	var s string
	var names []string
	var obj map[string]string
	switch {
	case json.Unmarshal(raw, &s) == nil:
		for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '\n' }) {
			name, desc, _ := strings.Cut(part, ":")
			if name = strings.TrimSpace(name); name != "" {
				out = append(out, field{name, strings.TrimSpace(desc)})
			}
		}
	case json.Unmarshal(raw, &names) == nil:
		for _, n := range names {
			out = append(out, field{Name: strings.TrimSpace(n)})
		}
	case json.Unmarshal(raw, &obj) == nil:
		for n, d := range obj {
			out = append(out, field{strings.TrimSpace(n), d})
		}
		slices.SortFunc(out, func(a, b field) int { return strings.Compare(a.Name, b.Name) })
	default:
		return nil, fmt.Errorf("fields: want \"name:description;...\", an object of descriptions or a list of names")
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("fields: none given")
	}
	if len(out) > maxFields {
		return nil, fmt.Errorf("fields: %d given, at most %d", len(out), maxFields)
	}
	seen := map[string]bool{}
	for _, f := range out {
		if !fieldNameRe.MatchString(f.Name) {
			return nil, fmt.Errorf("fields: %q is not a field name (letters, digits, '_', '.', '-', at most 64)", abbrev(f.Name))
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("fields: %q given twice", f.Name)
		}
		seen[f.Name] = true
	}
	return out, nil
}

// schema is the strict JSON schema of the answer: an object with exactly
// the fields, each a string or null.
func schema(fields []field) map[string]any {
	props := make(map[string]any, len(fields))
	required := make([]string, len(fields))
	for i, f := range fields {
		p := map[string]any{"type": []string{"string", "null"}}
		if f.Description != "" {
			p["description"] = f.Description
		}
		props[f.Name] = p
		required[i] = f.Name
	}
	return map[string]any{
		"type":                 "object",
		"properties":           props,
		"required":             required,
		"additionalProperties": false,
	}
}

// checkAnswer validates the model's PARSE answer against the fields and
// returns it as the event's data.
func checkAnswer(answer string, fields []field) ([]byte, error) {
	data := bytes.TrimSpace([]byte(answer))
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&obj); err != nil || obj == nil || dec.More() {
		return nil, fmt.Errorf("the model's answer is not one JSON object")
	}
	for _, f := range fields {
		v, ok := obj[f.Name]
		if !ok {
			return nil, fmt.Errorf("the model's answer lacks field %q", f.Name)
		}
		var s *string
		if json.Unmarshal(v, &s) != nil {
			return nil, fmt.Errorf("the model's answer gives field %q a value that is neither a string nor null", f.Name)
		}
		delete(obj, f.Name)
	}
	for extra := range obj {
		return nil, fmt.Errorf("the model's answer has field %q, which was not asked for", abbrev(extra))
	}
	return data, nil
}

func abbrev(s string) string {
	if len(s) > 64 {
		return strings.ToValidUTF8(s[:64], "") + "…"
	}
	return s
}
