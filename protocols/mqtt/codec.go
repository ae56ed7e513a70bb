package mqtt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/google/uuid"

	"github.com/meshd/meshd/bridge"
)

// Decode turns an MQTT message into the event published on the mesh. A
// payload that is a valid structured-mode CloudEvent (JSON, spec 1.0 or
// 0.3) is taken as is; any other payload is wrapped: a generated id, source
// mqtt://<brokerHost>/<topic>, subject the MQTT topic, type in.Type, data
// the payload byte for byte. Decode never fails.
func Decode(brokerHost, topic string, payload []byte, in Inbound) *event.Event {
	if e := asCloudEvent(payload); e != nil {
		return e
	}
	return wrap(brokerHost, topic, payload, in)
}

func asCloudEvent(payload []byte) *event.Event {
	p := bytes.TrimLeft(payload, " \t\r\n")
	if len(p) == 0 || p[0] != '{' || !bytes.Contains(p, []byte(`"specversion"`)) {
		return nil
	}
	e := event.New()
	if err := json.Unmarshal(p, &e); err != nil {
		return nil
	}
	if bridge.Validate(&e) != nil {
		return nil
	}
	return &e
}

func wrap(brokerHost, topic string, payload []byte, in Inbound) *event.Event {
	// The topic is percent-encoded and kept in Opaque: the validator reads
	// Path decoded, and an MQTT topic may hold spaces.
	escaped := (&url.URL{Path: "/" + topic}).EscapedPath()
	src := url.URL{Scheme: "mqtt", Opaque: "//" + brokerHost + escaped}
	typ := in.Type
	if typ == "" {
		typ = DefaultWrappedType
	}
	ec := &event.EventContextV1{
		ID:     uuid.NewString(),
		Source: types.URIRef{URL: src},
		Type:   typ,
		Time:   &types.Timestamp{Time: time.Now().UTC()},
	}
	if topic != "" && strings.TrimSpace(topic) != "" {
		subject := topic
		ec.Subject = &subject
	}
	ct := in.ContentType
	if ct == "" {
		ct = sniffContentType(payload)
	}
	ec.DataContentType = &ct
	e := &event.Event{Context: ec, DataEncoded: payload}
	if len(payload) == 0 {
		e.DataEncoded = nil
	}
	// Data that is not JSON travels base64 in structured mode, so binary
	// payloads survive unchanged.
	e.DataBase64 = len(payload) > 0 && !isJSONType(ct)
	return e
}

func sniffContentType(p []byte) string {
	switch {
	case len(p) > 0 && json.Valid(p):
		return "application/json"
	case utf8.Valid(p):
		return "text/plain; charset=utf-8"
	default:
		return "application/octet-stream"
	}
}

func isJSONType(ct string) bool {
	mt := ct
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// Encode is the structured-mode JSON payload of an outbound event.
func Encode(e *event.Event) ([]byte, error) { return json.Marshal(e) }

// template is a parsed MQTT topic template: literal parts and attribute
// names, alternating (parts[0] literal, parts[1] attribute, ...).
type template struct {
	parts []string
}

var errTemplate = errors.New("invalid MQTT topic template")

func parseTemplate(s string) (template, error) {
	if s == "" {
		return template{}, fmt.Errorf("%w: empty", errTemplate)
	}
	var t template
	rest := s
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			if strings.ContainsRune(rest, '}') {
				return template{}, fmt.Errorf("%w %q: unbalanced }", errTemplate, s)
			}
			t.parts = append(t.parts, rest)
			break
		}
		lit := rest[:i]
		if strings.ContainsRune(lit, '}') {
			return template{}, fmt.Errorf("%w %q: unbalanced }", errTemplate, s)
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return template{}, fmt.Errorf("%w %q: unclosed {", errTemplate, s)
		}
		name := rest[i+1 : i+j]
		if name == "" || strings.IndexFunc(name, func(r rune) bool { return (r < 'a' || r > 'z') && (r < '0' || r > '9') }) >= 0 {
			return template{}, fmt.Errorf("%w %q: {%s}: attribute names are lower-case letters and digits", errTemplate, s, name)
		}
		t.parts = append(t.parts, lit, name)
		rest = rest[i+j+1:]
	}
	for i := 0; i < len(t.parts); i += 2 {
		if strings.ContainsAny(t.parts[i], "+#\x00") {
			return template{}, fmt.Errorf("%w %q: MQTT topics to publish to cannot hold + or #", errTemplate, s)
		}
	}
	return t, nil
}

// render fills the template from e. It fails when an attribute is missing
// or its value cannot be part of a topic.
func (t template) render(e *event.Event) (string, error) {
	var b strings.Builder
	for i, p := range t.parts {
		if i%2 == 0 {
			b.WriteString(p)
			continue
		}
		v, ok := attribute(e, p)
		switch {
		case !ok || v == "":
			return "", fmt.Errorf("event has no attribute %q for the MQTT topic", p)
		case strings.ContainsAny(v, "+#\x00"):
			return "", fmt.Errorf("attribute %q = %q cannot be part of an MQTT topic (+, # or NUL)", p, v)
		}
		b.WriteString(v)
	}
	if b.Len() > 65535 {
		return "", errors.New("the MQTT topic is longer than 65535 bytes")
	}
	return b.String(), nil
}

// attribute is the canonical string form of a context attribute or
// extension of e.
func attribute(e *event.Event, name string) (string, bool) {
	switch name {
	case "id":
		return e.ID(), true
	case "source":
		return e.Source(), true
	case "specversion":
		return e.SpecVersion(), true
	case "type":
		return e.Type(), true
	case "subject":
		return e.Subject(), true
	case "datacontenttype":
		return e.DataContentType(), true
	case "dataschema":
		return e.DataSchema(), true
	case "time":
		if e.Time().IsZero() {
			return "", false
		}
		return types.FormatTime(e.Time()), true
	}
	v, ok := e.Extensions()[name]
	if !ok {
		return "", false
	}
	s, err := types.Format(v)
	return s, err == nil
}
