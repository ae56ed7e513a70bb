package rocketmq

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/meshd/meshd/bridge"
)

// The mapping between a CloudEvent and a RocketMQ message, the binary
// content mode of the RocketMQ transport binding for CloudEvents (as the
// CloudEvents Java SDK's RocketMQ binding writes it):
//
//   - every context attribute and extension <name> is the user property
//     CE_<name>, its value in the canonical string form of its type
//     (time in RFC 3339, binary in base64), except datacontenttype, which
//     is CE_contenttype;
//   - the data is the body, byte for byte (an event without data has an
//     empty body; a body of one NUL byte, which the Java SDK writes for
//     one, is read as no data).
//
// Reading a message back (the source) reverses it: CE_<name> properties
// are the attributes and extensions (CE_datacontenttype is read as well),
// so an event sent by rocketmq-sink comes out of rocketmq-source with the
// same attributes, extensions and data; extension values come back as
// strings. A message whose CE_contenttype is application/cloudevents+json
// is read in structured mode: its body is the event.
const (
	cePrefix          = "CE_"
	ceContentType     = "CE_contenttype"
	ceDataContentType = "CE_datacontenttype"
	ceSpecVersion     = "CE_specversion"
	structuredPrefix  = "application/cloudevents"
	maxPropertiesSize = 32767 // the broker refuses longer properties
	// separators split a message's properties: name \x01 value \x02.
	separators   = "\x01\x02"
	rocketKeySep = " "
)

// Properties of RocketMQ messages (MessageConst.java) the source reads.
const (
	propTags    = "TAGS"
	propKeys    = "KEYS"
	propCluster = "CLUSTER"
	propUniqKey = "UNIQ_KEY"
)

// errUnrepresentable marks an event a message cannot carry.
var errUnrepresentable = errors.New("the event cannot be carried by a RocketMQ message")

// eventProperties returns the CE_ properties of e.
func eventProperties(e *event.Event) (map[string]string, error) {
	props := map[string]string{
		ceSpecVersion: e.SpecVersion(),
		"CE_id":       e.ID(),
		"CE_source":   e.Source(),
		"CE_type":     e.Type(),
	}
	if v := e.Subject(); v != "" {
		props["CE_subject"] = v
	}
	if v := e.DataContentType(); v != "" {
		props[ceContentType] = v
	}
	if v := e.DataSchema(); v != "" {
		props["CE_dataschema"] = v
	}
	if t := e.Time(); !t.IsZero() {
		props["CE_time"] = types.FormatTime(t)
	}
	for name, v := range e.Extensions() {
		s, err := types.Format(v)
		if err != nil {
			return nil, fmt.Errorf("%w: extension %q: %v", errUnrepresentable, name, err)
		}
		props[cePrefix+name] = s
	}
	for k, v := range props {
		if strings.ContainsAny(k, separators) || strings.ContainsAny(v, separators) {
			return nil, fmt.Errorf("%w: attribute %s holds the property separators \\x01 or \\x02", errUnrepresentable, strings.TrimPrefix(k, cePrefix))
		}
	}
	if size := propertiesSize(props); size > maxPropertiesSize {
		return nil, fmt.Errorf("%w: its attributes take %d bytes as properties; brokers take at most %d", errUnrepresentable, size, maxPropertiesSize)
	}
	return props, nil
}

// propertiesSize is the length of the properties string of a message.
func propertiesSize(props map[string]string) int {
	n := 0
	for k, v := range props {
		n += len(k) + len(v) + 2
	}
	return n
}

// hasCloudEvent reports whether a message carries CloudEvents properties.
func hasCloudEvent(props map[string]string) bool {
	return props[ceSpecVersion] != "" || props["CE_id"] != ""
}

// propertiesEvent reads the event a message carries in binary mode (its
// CE_ properties and body) or structured mode. It fails when the message
// does not make a valid event.
func propertiesEvent(props map[string]string, body []byte) (event.Event, error) {
	ct := props[ceContentType]
	if ct == "" {
		ct = props[ceDataContentType]
	}
	if strings.HasPrefix(ct, structuredPrefix+"+json") {
		var e event.Event
		if err := e.UnmarshalJSON(body); err != nil {
			return event.Event{}, fmt.Errorf("reading a structured-mode event: %w", err)
		}
		return e, bridge.Validate(&e)
	}
	var e event.Event
	switch sv := props[ceSpecVersion]; sv {
	case "", event.CloudEventsVersionV1, event.CloudEventsVersionV03:
		e = event.New(cmp.Or(sv, event.CloudEventsVersionV1))
	default:
		// event.New would leave the context nil, and its setters panic.
		return event.Event{}, fmt.Errorf("CE_specversion %q: want 1.0 or 0.3", sv)
	}
	for k, v := range props {
		name, ok := strings.CutPrefix(k, cePrefix)
		if !ok || name == "" {
			continue
		}
		name = strings.ToLower(name)
		switch name {
		case "specversion", "contenttype", "datacontenttype":
		case "id":
			e.SetID(v)
		case "source":
			e.SetSource(v)
		case "type":
			e.SetType(v)
		case "subject":
			e.SetSubject(v)
		case "dataschema":
			e.SetDataSchema(v)
		case "time":
			t, err := types.ParseTime(v)
			if err != nil {
				return event.Event{}, fmt.Errorf("CE_time %q: %w", v, err)
			}
			e.SetTime(t)
		default:
			e.SetExtension(name, v)
		}
	}
	if ct != "" {
		e.SetDataContentType(ct)
	}
	// The CloudEvents Java SDK writes a single NUL as the body of an event
	// without data (RocketMQ's Java client refuses empty bodies).
	if len(body) > 0 && !(len(body) == 1 && body[0] == 0) {
		e.DataEncoded = body
	}
	return e, bridge.Validate(&e)
}

// millis turns a RocketMQ timestamp (ms since the epoch) into a time.
func millis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
