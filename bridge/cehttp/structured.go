package cehttp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/jsonscan"
	"github.com/meshd/meshd/bridge/problem"
)

// ParseStructured decodes one application/cloudevents+json event with the
// SDK's JSON format; when that fails, the error names the attribute to
// blame.
func ParseStructured(body []byte, index int) (*event.Event, error) {
	return parseStructured(body, index, false)
}

// parseStructured is ParseStructured; utf8Checked says the caller checked
// that body is valid UTF-8 (a batch checks its whole body once).
func parseStructured(body []byte, index int, utf8Checked bool) (*event.Event, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, problem.New(problem.CodeInvalidRequest, "the body is empty; want a CloudEvent as a JSON object")
	}
	if err := checkStructured(body, index, utf8Checked); err != nil {
		return nil, err
	}
	e := event.New()
	if err := e.UnmarshalJSON(body); err != nil {
		return nil, diagnose(body, index, err)
	}
	if err := checkRequired(&e, index); err != nil {
		return nil, err
	}
	return &e, nil
}

// ParseBatch decodes an application/cloudevents-batch+json array. Any
// invalid event fails the whole batch.
func ParseBatch(body []byte) ([]*event.Event, error) {
	if !utf8.Valid(body) {
		return nil, problem.New(problem.CodeInvalidRequest, "batch: the JSON is not valid UTF-8")
	}
	var raws [][]byte
	end, err := jsonscan.Array(body, func(raw []byte) error {
		raws = append(raws, raw)
		return nil
	})
	if err != nil || len(bytes.TrimSpace(body[end:])) > 0 {
		// Malformed: let encoding/json say where.
		var v []json.RawMessage
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, problem.New(problem.CodeInvalidRequest, "batch: "+problem.JSONDetail(err, int64(len(body))))
		}
		return nil, problem.New(problem.CodeInvalidRequest, "batch: want a JSON array of CloudEvents")
	}
	if len(raws) == 0 {
		return nil, problem.New(problem.CodeInvalidRequest, "batch: the array is empty")
	}
	events := make([]*event.Event, len(raws))
	for i, raw := range raws {
		e, err := parseStructured(raw, i, true)
		if err != nil {
			return nil, err
		}
		events[i] = e
	}
	return events, nil
}

// contextAttributes are the members of a structured event that are not
// extensions (in either spec version).
var contextAttributes = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true, "subject": true, "time": true,
	"datacontenttype": true, "dataschema": true, "schemaurl": true, "datacontentencoding": true,
	"data": true, "data_base64": true,
}

// checkStructured refuses what the SDK's decoder would accept and change:
// invalid UTF-8, a member given twice (it keeps the last), anything after
// the object, an extension name that is not lower-case (it lower-cases
// it) and an extension value that is not a string, boolean or 32-bit
// integer (it truncates 1.5 to 1). Other malformations are left to the
// decoder and diagnose.
func checkStructured(body []byte, index int, utf8Checked bool) error {
	prefix := ""
	if index > 0 {
		prefix = fmt.Sprintf("event %d: ", index)
	}
	if !utf8Checked && !utf8.Valid(body) {
		return problem.New(problem.CodeInvalidRequest, prefix+"the JSON is not valid UTF-8")
	}
	var names [16][]byte // the members seen, for duplicates; events have few
	seen := names[:0]
	end, err := jsonscan.Object(body, func(name, raw []byte) error {
		for _, n := range seen {
			if bytes.Equal(n, name) {
				return invalid(index, string(name), "is given twice")
			}
		}
		seen = append(seen, name)
		if contextAttributes[string(name)] {
			return nil
		}
		if err := checkExtName(index, string(name)); err != nil {
			return err
		}
		if err := checkExtValue(raw); err != nil {
			return invalid(index, string(name), "%s", err)
		}
		return nil
	})
	if err == nil && len(bytes.TrimSpace(body[end:])) > 0 {
		return problem.New(problem.CodeInvalidRequest, fmt.Sprintf("%sthere is more after the JSON object (byte %d); send one event, or a batch as %s", prefix, end, MediaTypeBatch))
	}
	if err != nil && !errors.Is(err, jsonscan.ErrDeclined) {
		return err
	}
	return nil
}

// checkRequired reports a missing id, source or type; the SDK's decoder
// accepts events without them.
func checkRequired(e *event.Event, index int) error {
	var src *url.URL
	switch c := e.Context.(type) {
	case *event.EventContextV1:
		src = &c.Source.URL
	case *event.EventContextV03:
		src = &c.Source.URL
	}
	switch {
	case strings.TrimSpace(e.ID()) == "":
		return invalid(index, "id", "missing or empty")
	case src != nil && *src == (url.URL{}):
		return invalid(index, "source", "missing or empty")
	case e.Type() == "":
		return invalid(index, "type", "missing or empty")
	}
	return nil
}

// diagnose explains why the SDK could not decode raw, naming the attribute
// at fault where it can. It runs only on the error path.
func diagnose(raw []byte, index int, sdkErr error) error {
	prefix := ""
	if index > 0 {
		prefix = fmt.Sprintf("event %d: ", index)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return problem.New(problem.CodeInvalidRequest, prefix+problem.JSONDetail(err, int64(len(raw))))
	}
	if m == nil {
		return problem.New(problem.CodeInvalidRequest, prefix+"want a CloudEvent as a JSON object, got null")
	}
	str := func(name string) (string, bool, error) {
		v, ok := m[name]
		if !ok {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", true, invalid(index, name, "must be a JSON string, got %s", abbrev(v))
		}
		return s, true, nil
	}
	sv, ok, err := str("specversion")
	switch {
	case err != nil:
		return err
	case !ok:
		return invalid(index, "specversion", "missing")
	case sv != event.CloudEventsVersionV1 && sv != event.CloudEventsVersionV03:
		return invalid(index, "specversion", "%q is not supported; use 1.0 or 0.3", sv)
	}
	v03 := sv == event.CloudEventsVersionV03
	for _, name := range []string{"id", "type", "source", "subject", "time", "datacontenttype", "dataschema", "schemaurl", "datacontentencoding"} {
		s, ok, err := str(name)
		if err != nil {
			if (name == "dataschema" && v03) || (name == "schemaurl" || name == "datacontentencoding") && !v03 {
				continue // an extension in this version; checked below
			}
			return err
		}
		if !ok {
			continue
		}
		switch name {
		case "source":
			if types.ParseURIRef(s) == nil {
				return invalid(index, name, "%q is not a URI-reference", s)
			}
		case "time":
			if _, err := types.ParseTime(s); err != nil {
				return invalid(index, name, "%q is not an RFC 3339 timestamp", s)
			}
		case "dataschema":
			if u := types.ParseURI(s); !v03 && (u == nil || !u.IsAbs()) {
				return invalid(index, name, "%q is not an absolute URI", s)
			}
		case "schemaurl":
			if v03 && types.ParseURIRef(s) == nil {
				return invalid(index, name, "%q is not a URI-reference", s)
			}
		case "datacontentencoding":
			if v03 && s != event.Base64 {
				return invalid(index, name, "%q is not supported; the only value is base64", s)
			}
		}
	}
	for name, v := range m {
		switch name {
		case "specversion", "id", "type", "source", "subject", "time", "datacontenttype":
			continue
		case "data":
			continue // checked below
		case "data_base64":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return invalid(index, name, "must be a JSON string, got %s", abbrev(v))
			}
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				return invalid(index, name, "not valid base64: %v", err)
			}
			continue
		case "dataschema":
			if !v03 {
				continue
			}
		case "schemaurl", "datacontentencoding":
			if v03 {
				continue
			}
		}
		if err := checkExtName(index, strings.ToLower(name)); err != nil {
			return err
		}
		if err := checkExtValue(v); err != nil {
			return invalid(index, name, "%s", err)
		}
	}
	if d, ok := m["data"]; ok && len(d) > 0 && d[0] != '"' {
		ct, _, _ := str("datacontenttype")
		if ct != "" && !bridge.IsJSONMediaType(ct) {
			return invalid(index, "data", "with datacontenttype %q the data must be a JSON string (or use data_base64)", ct)
		}
	}
	return invalid(index, "", "%v", sdkErr)
}

func checkExtValue(v json.RawMessage) error {
	var x any
	_ = json.Unmarshal(v, &x)
	switch x := x.(type) {
	case string, bool:
		return nil
	case float64:
		if x != float64(int32(x)) {
			return fmt.Errorf("number %s is not a 32-bit integer", abbrev(v))
		}
		return nil
	default:
		return fmt.Errorf("extension values must be strings, integers or booleans, got %s", abbrev(v))
	}
}

func abbrev(v []byte) string {
	const max = 40
	if len(v) > max {
		return string(v[:max]) + "…"
	}
	return string(v)
}
