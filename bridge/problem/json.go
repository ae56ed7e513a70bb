package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/meshd/meshd/bridge"
)

// ReadJSON decodes the body of a JSON API request into v strictly: a JSON
// Content-Type, at most limit bytes, exactly one value, no unknown fields,
// numbers as json.Number when v holds interfaces. Every failure is a
// Problem (code for malformed or mistyped input, 413 for a body over limit,
// 415 for another or no media type) whose detail says where.
//
// The Content-Type is required: a browser page of any origin may send a
// text/plain (or form) POST without asking first, but must ask (a CORS
// preflight, which meshd answers only for allowed origins) before sending
// application/json. Requiring it keeps other sites' pages out of every
// JSON endpoint.
func ReadJSON(w http.ResponseWriter, r *http.Request, v any, limit int64, code string) error {
	if ct := r.Header.Get("Content-Type"); !bridge.IsJSONMediaType(ct) {
		if ct == "" {
			return New(CodeUnsupportedMediaType, "want Content-Type: application/json, got none")
		}
		return New(CodeUnsupportedMediaType, "want Content-Type: application/json, got "+quoteShort(ct))
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return FromError(err)
		}
		return New(code, JSONDetail(err, dec.InputOffset()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return New(code, "the body must hold exactly one JSON value")
	}
	return nil
}

// JSONDetail describes an encoding/json error with its position, for a
// problem's detail.
func JSONDetail(err error, offset int64) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "the body is empty; want a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("malformed JSON: unexpected end of input at byte %d", offset)
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q: want a JSON %s, got %s (byte %d)", typ.Field, jsonKind(typ.Type), typ.Value, typ.Offset)
		}
		return fmt.Sprintf("want a JSON %s, got %s (byte %d)", jsonKind(typ.Type), typ.Value, typ.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	default:
		return err.Error()
	}
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	default:
		return "number"
	}
}

func quoteShort(s string) string {
	const max = 100
	if len(s) > max {
		s = s[:max] + "…"
	}
	return fmt.Sprintf("%q", s)
}
