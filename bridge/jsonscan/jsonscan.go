// Package jsonscan reads JSON without decoding all of it: the members of
// an object or the elements of an array as slices of the input, a fast
// validity check, and the decoding of one value at a time. It serves the
// hot paths that take JSON from events: the CloudEvents codec (bridge/cehttp)
// and the sinks that turn event data into rows.
//
// Object and Array check the structure of the top level only; Valid checks
// everything; Members and Decode give what encoding/json would.
package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// ErrDeclined: the input is not a JSON object or array that Object or
// Array reads (another value, malformed at its top level, or a member name
// with an escape).
var ErrDeclined = errors.New("not a plain JSON object")

// Object walks the members of the JSON object at the start of b (after
// whitespace) without decoding their values, calling fn with each member's
// name and raw value, both slices of b, in the order written. It returns
// the index after the object; what follows it is the caller's.
//
// What it checks: the object's own syntax (braces, quoted names, colons,
// commas, no trailing comma) and that each value ends where a value can:
// strings at their closing quote, objects and arrays at their matching
// bracket (counted outside strings), other values at the next comma,
// bracket, brace or whitespace. What it does not check: the insides of
// values (escapes, control characters, numbers, literals, the syntax of
// nested objects and arrays) and UTF-8; use Valid for those. A name is
// given as written between its quotes: a name holding a backslash (an
// escape) is declined rather than decoded. Duplicate names are passed to
// fn each time.
//
// Malformed input gives ErrDeclined (fn may have been called for the
// members before the fault); an error from fn stops the walk and is
// returned as is.
func Object(b []byte, fn func(name, raw []byte) error) (end int, err error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return 0, ErrDeclined
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, ErrDeclined
		}
		nameEnd := skipString(b, i)
		if nameEnd < 0 {
			return 0, ErrDeclined
		}
		name := b[i+1 : nameEnd-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			return 0, ErrDeclined
		}
		i = skipSpace(b, nameEnd)
		if i >= len(b) || b[i] != ':' {
			return 0, ErrDeclined
		}
		i = skipSpace(b, i+1)
		valEnd := skipValue(b, i)
		if valEnd < 0 {
			return 0, ErrDeclined
		}
		if err := fn(name, b[i:valEnd]); err != nil {
			return 0, err
		}
		var done bool
		i, done = next(b, valEnd, '}')
		switch {
		case i < 0:
			return 0, ErrDeclined
		case done:
			return i, nil
		}
	}
}

// Array walks the elements of the JSON array at the start of b (after
// whitespace) without decoding them, calling fn with each element, a slice
// of b, in order. It returns the index after the array; what follows it is
// the caller's. It checks what Object checks, for an array: the insides of
// the elements are not checked. Malformed input gives ErrDeclined; an
// error from fn stops the walk and is returned as is.
func Array(b []byte, fn func(raw []byte) error) (end int, err error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return 0, ErrDeclined
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		valEnd := skipValue(b, i)
		if valEnd < 0 {
			return 0, ErrDeclined
		}
		if err := fn(b[i:valEnd]); err != nil {
			return 0, err
		}
		var done bool
		i, done = next(b, valEnd, ']')
		switch {
		case i < 0:
			return 0, ErrDeclined
		case done:
			return i, nil
		}
	}
}

// next reads what follows a member or element ending at b[i]: a comma
// (next is where the next one starts) or close (done, next is after it);
// next is -1 for anything else.
func next(b []byte, i int, close byte) (next int, done bool) {
	i = skipSpace(b, i)
	switch {
	case i >= len(b):
		return -1, false
	case b[i] == ',':
		return skipSpace(b, i+1), false
	case b[i] == close:
		return i + 1, true
	}
	return -1, false
}

// skipString returns the index after the string starting at b[i] ('"'),
// or -1. Escapes are skipped, not checked.
func skipString(b []byte, i int) int {
	// The quote and backslash searches are the runtime's vectorised
	// IndexByte; q, the next quote, is searched again only when an escape
	// took it, so a string full of escapes is still read once.
	j, q := i+1, -1
	for {
		if q < j {
			k := bytes.IndexByte(b[j:], '"')
			if k < 0 {
				return -1
			}
			q = j + k
		}
		k := bytes.IndexByte(b[j:q], '\\')
		if k < 0 {
			return q + 1
		}
		j += k + 2 // after the escaped byte, at most q+1
	}
}

// skipValue returns the index after the JSON value starting at b[i], or
// -1. Objects and arrays are skipped by depth; their insides are not
// checked.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				k := skipString(b, j)
				if k < 0 {
					return -1
				}
				j = k - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

// A Member is one member of a JSON object: its name (decoded) and its
// value as JSON text.
type Member struct {
	Name  []byte
	Value []byte
}

// Members appends to dst the members of the JSON object that is the whole
// of data (between optional whitespace), sorted by name, a name given
// more than once kept once with its last value: what json.Unmarshal of
// data into a map[string]json.RawMessage holds, with the map's keys
// sorted. Data that is not valid JSON, or not an object, gives
// json.Unmarshal's error. JSON null gives no members and no error, as
// json.Unmarshal does.
//
// The common case, valid data whose names hold no escapes, is read in
// place: names and values are slices of data, and nothing but dst is
// allocated. Anything else is decoded by encoding/json.
func Members(dst []Member, data []byte) ([]Member, error) {
	if out, ok := membersInPlace(dst, data); ok {
		return out, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return dst, err
	}
	start := len(dst)
	for k, v := range m {
		dst = append(dst, Member{Name: []byte(k), Value: v})
	}
	slices.SortFunc(dst[start:], func(a, b Member) int { return bytes.Compare(a.Name, b.Name) })
	return dst, nil
}

// membersInPlace is Members' common case; false when data needs
// encoding/json (invalid, not an object, a name encoding/json would
// change: escapes, control characters, invalid UTF-8).
func membersInPlace(dst []Member, data []byte) ([]Member, bool) {
	if !Valid(data) {
		return dst, false
	}
	start := len(dst)
	end, err := Object(data, func(name, raw []byte) error {
		if !Plain(name) {
			return ErrDeclined
		}
		dst = append(dst, Member{Name: name, Value: raw})
		return nil
	})
	if err != nil || skipSpace(data, end) != len(data) {
		return dst[:start], false
	}
	ms := dst[start:]
	slices.SortStableFunc(ms, func(a, b Member) int { return bytes.Compare(a.Name, b.Name) })
	// A name given twice: its last value (the later one after a stable
	// sort), as encoding/json's map assignment keeps.
	w := 0
	for r := range ms {
		if r+1 < len(ms) && bytes.Equal(ms[r].Name, ms[r+1].Name) {
			continue
		}
		ms[w] = ms[r]
		w++
	}
	return dst[:start+w], true
}

// Plain reports whether s, the text between a JSON string's quotes,
// decodes to itself: no escapes or control characters, valid UTF-8.
func Plain(s []byte) bool {
	for _, c := range s {
		if c < 0x20 || c == '\\' || c == '"' {
			return false
		}
	}
	return utf8.Valid(s)
}

// Decode decodes raw, one JSON value, as encoding/json decodes it into an
// any with UseNumber: nil, bool, string, json.Number (the number's text),
// []any or map[string]any. Malformed raw is an error. Literals, numbers
// and strings without escapes take a short way: a string costs one copy.
func Decode(raw []byte) (any, error) {
	switch {
	case len(raw) == 0:
		return nil, errors.New("no value")
	case string(raw) == "null":
		return nil, nil
	case string(raw) == "true":
		return true, nil
	case string(raw) == "false":
		return false, nil
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		if end, ok := scanNumber(raw, 0); ok && end == len(raw) {
			return json.Number(raw), nil
		}
	case len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && Plain(raw[1:len(raw)-1]):
		return string(raw[1 : len(raw)-1]), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if i := skipSpace(raw, int(dec.InputOffset())); i != len(raw) {
		return nil, fmt.Errorf("invalid character %q after the JSON value", raw[i])
	}
	return v, nil
}

// Kind names the kind of a value Decode returns, for error texts: "null",
// "a boolean", "a string", "a number", "an array", "an object"; another
// type by its Go name.
func Kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
