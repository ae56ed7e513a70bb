package natsjs

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
)

// Wire format: one NATS message per event, CloudEvents context attributes in
// "ce-<name>" headers (datacontenttype in "content-type"), extensions as
// "ce-<name>" headers in their canonical string form, the data bytes as the
// payload, unchanged. Nats-Msg-Id is "<topic> <source> <id>" so JetStream's
// duplicate window drops a re-publish of an event to the same topic.
const (
	hdrPrefix              = "ce-"
	hdrSpecVersion         = "ce-specversion"
	hdrID                  = "ce-id"
	hdrSource              = "ce-source"
	hdrType                = "ce-type"
	hdrSubject             = "ce-subject"
	hdrTime                = "ce-time"
	hdrDataSchema          = "ce-dataschema"
	hdrDataContentEncoding = "ce-datacontentencoding" // 0.3 only
	hdrContentType         = "content-type"
	hdrMsgID               = nats.MsgIdHdr
)

var specs = spec.WithPrefix(hdrPrefix)

// errBadHeader is returned for an attribute value that cannot travel in a
// NATS header.
var errBadHeader = errors.New("contains a line break")

// errMissingAttribute is returned for an event without id, source or type.
var errMissingAttribute = errors.New("id, source and type are required")

// headerBuilder fills a nats.Header whose values share one backing array.
type headerBuilder struct {
	h    nats.Header
	vals []string
	err  error
}

func newHeaderBuilder(n int) headerBuilder {
	return headerBuilder{h: make(nats.Header, n), vals: make([]string, 0, n)}
}

func (b *headerBuilder) set(key, value string) {
	if b.err == nil && strings.ContainsAny(value, "\r\n") {
		b.err = fmt.Errorf("attribute %q %w", strings.TrimPrefix(key, hdrPrefix), errBadHeader)
	}
	if len(b.vals) == cap(b.vals) { // only if n was underestimated
		b.h[key] = []string{value}
		return
	}
	i := len(b.vals)
	b.vals = append(b.vals, value)
	b.h[key] = b.vals[i : i+1 : i+1]
}

// encode turns e into a NATS message on subject. e must be valid.
func encode(subject, topic string, e *event.Event) (*nats.Msg, error) {
	var (
		b   headerBuilder
		src string
		id  string
	)
	if ec, ok := e.Context.(*event.EventContextV1); ok {
		// Fast path for the current spec version: no interface boxing.
		n := 5 + len(ec.Extensions)
		if ec.Subject != nil {
			n++
		}
		if ec.Time != nil {
			n++
		}
		if ec.DataSchema != nil {
			n++
		}
		if ec.DataContentType != nil {
			n++
		}
		b = newHeaderBuilder(n)
		src, id = ec.Source.String(), ec.ID
		b.set(hdrSpecVersion, event.CloudEventsVersionV1)
		b.set(hdrID, id)
		b.set(hdrSource, src)
		b.set(hdrType, ec.Type)
		if ec.Subject != nil {
			b.set(hdrSubject, *ec.Subject)
		}
		if ec.Time != nil {
			b.set(hdrTime, ec.Time.Time.UTC().Format(time.RFC3339Nano))
		}
		if ec.DataSchema != nil {
			b.set(hdrDataSchema, ec.DataSchema.String())
		}
		if ec.DataContentType != nil {
			b.set(hdrContentType, *ec.DataContentType)
		}
		if err := setExtensions(&b, ec.Extensions); err != nil {
			return nil, err
		}
	} else {
		ver := specs.Version(e.SpecVersion())
		if ver == nil {
			return nil, fmt.Errorf("specversion %q: not supported", e.SpecVersion())
		}
		exts := e.Extensions()
		b = newHeaderBuilder(len(ver.Attributes()) + len(exts) + 2)
		for _, a := range ver.Attributes() {
			v := a.Get(e.Context)
			if v == nil {
				continue
			}
			s, err := types.Format(v)
			if err != nil {
				return nil, fmt.Errorf("attribute %q: %w", a.Name(), err)
			}
			switch a.Kind() {
			case spec.DataContentType:
				b.set(hdrContentType, s)
			case spec.Source:
				src = s
				b.set(a.PrefixedName(), s)
			case spec.ID:
				id = s
				b.set(a.PrefixedName(), s)
			default:
				b.set(a.PrefixedName(), s)
			}
		}
		if enc := e.DeprecatedDataContentEncoding(); enc != "" {
			b.set(hdrDataContentEncoding, enc)
		}
		if err := setExtensions(&b, exts); err != nil {
			return nil, err
		}
	}
	if id == "" || src == "" || e.Type() == "" {
		// The caller validates; this only keeps what cannot be read back
		// out of the store.
		return nil, errMissingAttribute
	}
	b.set(hdrMsgID, topic+" "+src+" "+id)
	if b.err != nil {
		return nil, b.err
	}
	return &nats.Msg{Subject: subject, Header: b.h, Data: e.Data()}, nil
}

func setExtensions(b *headerBuilder, exts map[string]any) error {
	for name, v := range exts {
		s, err := types.Format(v)
		if err != nil {
			return fmt.Errorf("extension %q: %w", name, err)
		}
		b.set(hdrPrefix+name, s)
	}
	return nil
}

// decode turns a stored NATS message back into an event. Extensions come
// back as strings, their wire form.
func decode(h nats.Header, data []byte) (*event.Event, error) {
	sv := headerValue(h, hdrSpecVersion)
	if sv == "" {
		return nil, errors.New("no ce-specversion header")
	}
	ver := specs.Version(sv)
	if ver == nil {
		return nil, fmt.Errorf("specversion %q: not supported", sv)
	}
	ctx := ver.NewContext()
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		v := vs[0]
		if len(k) == len(hdrContentType) && strings.EqualFold(k, hdrContentType) {
			if err := ctx.SetDataContentType(v); err != nil {
				return nil, fmt.Errorf("content-type: %w", err)
			}
			continue
		}
		if len(k) <= len(hdrPrefix) || !strings.EqualFold(k[:len(hdrPrefix)], hdrPrefix) {
			continue // Nats-* and foreign headers
		}
		if a := ver.Attribute(k); a != nil {
			if a.Kind() == spec.SpecVersion {
				continue
			}
			if err := a.Set(ctx, v); err != nil {
				return nil, fmt.Errorf("attribute %q: %w", a.Name(), err)
			}
			continue
		}
		name := strings.ToLower(k[len(hdrPrefix):])
		if name == "datacontentencoding" && sv == event.CloudEventsVersionV03 {
			if err := ctx.DeprecatedSetDataContentEncoding(v); err != nil {
				return nil, fmt.Errorf("attribute %q: %w", name, err)
			}
			continue
		}
		if err := ctx.SetExtension(name, v); err != nil {
			return nil, fmt.Errorf("extension %q: %w", name, err)
		}
	}
	if err := ctx.Validate(); err != nil {
		return nil, err
	}
	e := &event.Event{Context: ctx}
	if len(data) > 0 {
		e.DataEncoded = data
		e.DataBase64 = needsBase64(sv, ctx.GetDataContentType(), data)
	}
	return e, nil
}

// headerValue looks key up exactly, then case-insensitively (for messages
// written by other CloudEvents NATS clients).
func headerValue(h nats.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// needsBase64 says whether data, if the event is later written in the JSON
// format, must go to data_base64: the wire does not say how the event was
// represented, so bytes that are not JSON or UTF-8 text travel as base64.
func needsBase64(specVersion, contentType string, data []byte) bool {
	if specVersion != event.CloudEventsVersionV1 {
		return false
	}
	mt := contentType
	if contentType != "" {
		if parsed, _, err := mime.ParseMediaType(contentType); err == nil {
			mt = parsed
		}
	}
	mt = strings.ToLower(mt)
	switch {
	case mt == "":
		return !json.Valid(data)
	case mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json"):
		return false
	case strings.HasPrefix(mt, "text/") || mt == "application/xml" || strings.HasSuffix(mt, "+xml"):
		return !utf8.Valid(data)
	default:
		return true
	}
}
