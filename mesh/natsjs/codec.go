package natsjs

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strconv"
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
// payload, unchanged. Nats-Msg-Id is a digest of the topic, source and id
// (see msgID) so JetStream's duplicate window drops a re-publish of an
// event to the same topic.
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

// hdrEscaped marks a message whose attribute values are percent-encoded:
// NATS headers lose the spaces at the ends of a value, so a message with
// such a value ("id": " order-42") is written with its values escaped ('%'
// and ' ' as %25 and %20), and decoded back byte for byte. Messages without
// the mark (all others, and those of earlier releases) are read as is.
const hdrEscaped = "Meshd-Escaped"

// headerBuilder fills a nats.Header whose values share one backing array.
type headerBuilder struct {
	h    nats.Header
	vals []string
	err  error
	edge bool // a value starts or ends with a space
}

func newHeaderBuilder(n int) headerBuilder {
	return headerBuilder{h: make(nats.Header, n), vals: make([]string, 0, n)}
}

func (b *headerBuilder) set(key, value string) {
	if b.err == nil && strings.ContainsAny(value, "\r\n") {
		b.err = fmt.Errorf("attribute %q %w", strings.TrimPrefix(key, hdrPrefix), errBadHeader)
	}
	if n := len(value); n > 0 && (value[0] == ' ' || value[n-1] == ' ' || value[0] == '\t' || value[n-1] == '\t') {
		b.edge = true
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
func encode(subject, topic string, e *event.Event, dedupKey string) (*nats.Msg, error) {
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
	b.set(hdrMsgID, msgID(topic, src, id, dedupKey))
	if b.err != nil {
		return nil, b.err
	}
	if b.edge {
		for k, vs := range b.h { // the message id has nothing to escape
			b.h[k] = []string{escape(vs[0])}
		}
		b.h[hdrEscaped] = []string{"1"}
	}
	return &nats.Msg{Subject: subject, Header: b.h, Data: e.Data()}, nil
}

// msgID is the Nats-Msg-Id of the event with source src and id id on
// topic, and dedupKey if a publisher gave one (mesh.WithDedupKey): the
// first 128 bits of a SHA-256 of the four, each after its length, in
// base64url. A digest rather than the text because the server
// keeps every id of its duplicate window in memory, and real ids (a UUID,
// a URL as source) made 80-100 bytes each against these 22; a
// cryptographic one because two events with one digest would be stored
// once, so no publisher may be able to aim at another's.
func msgID(topic, src, id, dedupKey string) string {
	var buf [256]byte
	b := buf[:0]
	for _, part := range [...]string{topic, src, id, dedupKey} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
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
	escaped := len(h[hdrEscaped]) > 0
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		v := vs[0]
		if escaped {
			v = unescape(v)
		}
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

// escape percent-encodes '%', ' ' and '\t' (see hdrEscaped).
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%', ' ', '\t':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescape reverses escape.
func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
