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
	"github.com/meshd/meshd/bridge/jsonscan"
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
	case len(p) > 0 && jsonscan.Valid(p):
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

// template is a parsed MQTT topic template (bridge.Template) whose
// literal parts can be part of a topic to publish to.
type template struct{ bridge.Template }

var errTemplate = errors.New("invalid MQTT topic template")

func parseTemplate(s string) (template, error) {
	if s == "" {
		return template{}, fmt.Errorf("%w: empty", errTemplate)
	}
	t, err := bridge.ParseTemplate(s)
	if err != nil {
		return template{}, fmt.Errorf("%w: %w", errTemplate, err)
	}
	for _, lit := range t.Literals() {
		if strings.ContainsAny(lit, "+#\x00") {
			return template{}, fmt.Errorf("%w %q: MQTT topics to publish to cannot hold + or #", errTemplate, s)
		}
	}
	return template{t}, nil
}

// render fills the template from e. It fails when an attribute is missing
// or its value cannot be part of a topic.
func (t template) render(e *event.Event) (string, error) {
	topic, missing := t.Render(e)
	if len(missing) > 0 {
		return "", fmt.Errorf("event has no attribute %q for the MQTT topic", missing[0])
	}
	if strings.ContainsAny(topic, "+#\x00") {
		return "", fmt.Errorf("the MQTT topic %q of the event holds +, # or NUL", topic)
	}
	if len(topic) > 65535 {
		return "", errors.New("the MQTT topic is longer than 65535 bytes")
	}
	return topic, nil
}
