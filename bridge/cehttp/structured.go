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

// ParseStructured decodes one application/cloudevents+json event as the
// SDK's JSON format does; when that fails, the error names the attribute
// to blame. The event's data may be a slice of body.
func (p *Parser) ParseStructured(body []byte) (*event.Event, error) {
	return parseStructured(body, 0, false, &p.sources)
}

// parseStructured is ParseStructured of the index-th event of a batch (0
// for one alone); utf8Checked says the caller checked that body is valid
// UTF-8 (a batch checks its whole body once); sources may be nil.
func parseStructured(body []byte, index int, utf8Checked bool, sources *uriCache) (*event.Event, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, problem.New(problem.CodeInvalidRequest, "the body is empty; want a CloudEvent as a JSON object")
	}
	q := quickEvent{sources: sources}
	if err := checkStructured(body, index, utf8Checked, &q); err != nil {
		return nil, err
	}
	e, ok := q.event()
	if !ok {
		sdk := event.New()
		if err := sdk.UnmarshalJSON(body); err != nil {
			return nil, diagnose(body, index, err)
		}
		e = &sdk
	}
	if err := checkRequired(e, index); err != nil {
		return nil, err
	}
	return e, nil
}

// quickEvent builds, during checkStructured's walk, the event the SDK's
// decoder would give for the usual shape of one: specversion 1.0, string
// attributes without escapes, data as JSON (no datacontenttype, or
// application/json) and string extensions. Anything else declines it and
// the SDK decodes the event (a second pass, which the usual shape spares:
// it was half the cost of parsing a batch). TestQuickEventIsTheSDKs holds
// the two to the same result.
//
// data is a slice of the body, not a copy: the event keeps the body's
// memory, which the caller must not change. It is the value as written;
// the SDK kept the whitespace before it too.
type quickEvent struct {
	sources     *uriCache // may be nil
	declined    bool
	specVersion bool
	ec          event.EventContextV1
	data        []byte
}

// member takes one member of the event's object; name is a context
// attribute or a checked extension name.
func (q *quickEvent) member(name, raw []byte) {
	if q.declined {
		return
	}
	switch string(name) {
	case "data":
		q.data = raw
		return
	case "specversion":
		q.specVersion = string(raw) == `"`+event.CloudEventsVersionV1+`"`
		q.declined = !q.specVersion
		return
	case "datacontenttype":
		if string(raw) == `"`+event.ApplicationJSON+`"` { // the usual one, not copied
			q.ec.DataContentType = &applicationJSON
			return
		}
	}
	text, ok := plainText(raw)
	if !ok {
		q.declined = true
		return
	}
	s := string(text)
	switch string(name) {
	case "id":
		q.ec.ID = s
	case "type":
		q.ec.Type = s
	case "source":
		u, ok := q.sources.parse(s) // what types.ParseURIRef gives
		q.ec.Source.URL, q.declined = u, !ok
	case "subject":
		if s != "" {
			q.ec.Subject = ptr(s)
		}
	case "time":
		t, err := types.ParseTimestamp(s)
		q.ec.Time, q.declined = t, err != nil
	case "datacontenttype":
		// The SDK keeps an empty one or not, depending on where it is.
		q.ec.DataContentType, q.declined = ptr(s), s == ""
	case "dataschema", "data_base64", "schemaurl", "datacontentencoding":
		q.declined = true
	default:
		q.declined = q.ec.SetExtension(string(name), s) != nil
	}
}

// event is the event built, if it was not declined.
func (q *quickEvent) event() (*event.Event, bool) {
	if q.declined || !q.specVersion {
		return nil, false
	}
	if q.data != nil {
		switch {
		case q.ec.DataContentType != nil && *q.ec.DataContentType != event.ApplicationJSON:
			return nil, false // the SDK decodes a JSON string as the data's text
		case q.ec.DataContentType == nil && !jsonscan.Valid(q.data):
			// Malformed: the SDK's decoder refuses it. (With a JSON
			// datacontenttype bridge.Validate does.)
			return nil, false
		}
	}
	// One allocation for both.
	built := &struct {
		e  event.Event
		ec event.EventContextV1
	}{ec: q.ec}
	built.e = event.Event{Context: &built.ec, DataEncoded: q.data}
	return &built.e, true
}

// applicationJSON is the datacontenttype of quick events that have the
// usual one, shared: nothing writes through the pointer (the SDK's
// setters replace it).
var applicationJSON = event.ApplicationJSON

func ptr(s string) *string { return &s }

// plainText is the text between the quotes of raw, a JSON string, if it
// decodes to itself (jsonscan.Plain); what needs decoding, or refusing, is
// the SDK's.
func plainText(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' || !jsonscan.Plain(raw[1:len(raw)-1]) {
		return nil, false
	}
	return raw[1 : len(raw)-1], true
}

// ParseBatch decodes an application/cloudevents-batch+json array. Any
// invalid event fails the whole batch. The events' data may be slices of
// body.
func (p *Parser) ParseBatch(body []byte) ([]*event.Event, error) {
	return parseBatch(body, &p.sources)
}

// parseBatch is ParseBatch; sources may be nil.
func parseBatch(body []byte, sources *uriCache) ([]*event.Event, error) {
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
		e, err := parseStructured(raw, i, true, sources)
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
// decoder and diagnose. Each member is handed to q as well.
func checkStructured(body []byte, index int, utf8Checked bool, q *quickEvent) error {
	if !utf8Checked && !utf8.Valid(body) {
		return problem.New(problem.CodeInvalidRequest, eventPrefix(index)+"the JSON is not valid UTF-8")
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
		if !contextAttributes[string(name)] {
			if err := checkExtName(index, string(name)); err != nil {
				return err
			}
			if _, ok := plainText(raw); !ok {
				if err := checkExtValue(raw); err != nil {
					return invalid(index, string(name), "%s", err)
				}
			}
		}
		q.member(name, raw)
		return nil
	})
	if err == nil && len(bytes.TrimSpace(body[end:])) > 0 {
		return problem.New(problem.CodeInvalidRequest, fmt.Sprintf("%sthere is more after the JSON object (byte %d); send one event, or a batch as %s", eventPrefix(index), end, MediaTypeBatch))
	}
	if errors.Is(err, jsonscan.ErrDeclined) {
		q.declined = true // malformed: the SDK's decoder says how
		return nil
	}
	return err
}

// eventPrefix names the index-th event of a batch in an error; the first
// (or one alone) is not named.
func eventPrefix(index int) string {
	if index > 0 {
		return fmt.Sprintf("event %d: ", index)
	}
	return ""
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
	prefix := eventPrefix(index)
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
