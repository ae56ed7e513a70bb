package cehttp

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/meshd/meshd/bridge"
)

// Binary mode is parsed by hand from the header map: it is the hot path and
// the SDK's generic binding costs several times more (see the benchmarks).
// Header values are percent-decoded as the HTTP binding asks (only when they
// hold a '%' followed by two hex digits).

// attribute kinds of ce- headers.
const (
	attrExt = iota
	attrSpecVersion
	attrID
	attrSource
	attrType
	attrSubject
	attrTime
	attrDataSchema
	attrSchemaURL
	attrDataContentEncoding
	attrDataContentType
	attrData
)

// ceAttr classifies a ce- header key; name is the lower-case attribute name
// (allocated only for extensions and non-canonical keys).
func ceAttr(key string) (kind int, name string) {
	switch key { // canonical keys first: no allocation
	case "Ce-Specversion":
		return attrSpecVersion, "specversion"
	case "Ce-Id":
		return attrID, "id"
	case "Ce-Source":
		return attrSource, "source"
	case "Ce-Type":
		return attrType, "type"
	case "Ce-Subject":
		return attrSubject, "subject"
	case "Ce-Time":
		return attrTime, "time"
	case "Ce-Dataschema":
		return attrDataSchema, "dataschema"
	case "Ce-Schemaurl":
		return attrSchemaURL, "schemaurl"
	case "Ce-Datacontentencoding":
		return attrDataContentEncoding, "datacontentencoding"
	case "Ce-Datacontenttype":
		return attrDataContentType, "datacontenttype"
	}
	if canon := http.CanonicalHeaderKey(key); canon != key {
		return ceAttr(canon)
	}
	name = strings.ToLower(key[3:])
	if name == "data" || name == "data_base64" {
		return attrData, name
	}
	return attrExt, name
}

func isCEKey(k string) bool {
	return len(k) > 3 && (k[0] == 'C' || k[0] == 'c') && (k[1] == 'e' || k[1] == 'E') && k[2] == '-'
}

func hasCEHeader(h http.Header) bool {
	for k := range h {
		if isCEKey(k) {
			return true
		}
	}
	return false
}

func headerJoin(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	return strings.Join(vs, ",")
}

// binaryEvent holds everything a binary-mode event needs in one allocation.
type binaryEvent struct {
	e       event.Event
	v1      event.EventContextV1
	v03     event.EventContextV03
	time    types.Timestamp
	ct      string
	subject string
	dce     string
	one     [1]*event.Event
}

// events returns the event as a one-element batch.
func (b *binaryEvent) events() []*event.Event {
	b.one[0] = &b.e
	return b.one[:]
}

// uriCache remembers parsed sources: an app sends few distinct ones, and
// url.Parse is a good part of the cost of a binary-mode request.
type uriCache struct {
	c bridge.ReadCache[string, url.URL]
}

func parseURL(s string) (url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return url.URL{}, err
	}
	return *u, nil
}

func (c *uriCache) parse(s string) (url.URL, bool) {
	if s == "" {
		return url.URL{}, false
	}
	if c == nil {
		u, err := parseURL(s)
		return u, err == nil
	}
	u, err := c.c.Get(s, parseURL)
	return u, err == nil
}

// parseBinary builds the event of a binary-mode request; sources may be nil.
func parseBinary(h http.Header, contentType string, body []byte, sources *uriCache) (*binaryEvent, error) {
	var specversion string
	if vs := h["Ce-Specversion"]; len(vs) > 0 {
		specversion = strings.TrimSpace(vs[0])
	} else {
		for k, vs := range h { // non-canonical key, e.g. set by a raw client
			if isCEKey(k) && strings.EqualFold(k[3:], "specversion") && len(vs) > 0 {
				specversion = strings.TrimSpace(vs[0])
			}
		}
	}
	v03 := false
	switch specversion {
	case event.CloudEventsVersionV1:
	case event.CloudEventsVersionV03:
		v03 = true
	case "":
		return nil, invalid(0, "specversion", "missing: a binary-mode event needs the ce-specversion header")
	default:
		return nil, invalid(0, "specversion", "%q is not supported; use 1.0 or 0.3", specversion)
	}

	b := &binaryEvent{}
	var (
		id, typ                      string
		source                       url.URL
		subject                      *string
		tm                           *types.Timestamp
		dataSchema                   *types.URI
		schemaURL                    *types.URIRef
		dataContentEncoding          *string
		exts                         map[string]any
		haveID, haveSource, haveType bool
	)
	for k, vs := range h {
		if !isCEKey(k) || len(vs) == 0 {
			continue
		}
		kind, name := ceAttr(k)
		v := pctDecode(headerJoin(vs))
		switch kind {
		case attrSpecVersion:
			continue
		case attrID:
			id, haveID = v, true
			continue
		case attrSource:
			var ok bool
			if source, ok = sources.parse(v); !ok {
				if v == "" {
					return nil, invalid(0, "source", "missing: set a non-empty ce-source header")
				}
				return nil, invalid(0, "source", "%q is not a URI-reference", v)
			}
			haveSource = true
			continue
		case attrType:
			typ, haveType = v, true
			continue
		case attrSubject:
			if v == "" {
				return nil, invalid(0, "subject", "must not be empty when present")
			}
			b.subject = v
			subject = &b.subject
			continue
		case attrTime:
			t, err := types.ParseTime(v)
			if err != nil {
				return nil, invalid(0, "time", "%q is not an RFC 3339 timestamp", v)
			}
			b.time.Time = t
			tm = &b.time
			continue
		case attrDataContentType:
			return nil, invalid(0, "datacontenttype", "in binary mode it is the Content-Type header, not ce-datacontenttype")
		case attrData:
			return nil, invalid(0, name, "in binary mode the data is the request body")
		}
		if !v03 {
			if kind == attrDataSchema {
				if dataSchema = types.ParseURI(v); dataSchema == nil || !dataSchema.IsAbs() {
					return nil, invalid(0, "dataschema", "%q is not an absolute URI", v)
				}
				continue
			}
		} else {
			switch kind {
			case attrSchemaURL:
				if schemaURL = types.ParseURIRef(v); schemaURL == nil {
					return nil, invalid(0, "schemaurl", "%q is not a URI-reference", v)
				}
				continue
			case attrDataContentEncoding:
				if !strings.EqualFold(v, event.Base64) {
					return nil, invalid(0, "datacontentencoding", "%q is not supported; the only value is base64", v)
				}
				b.dce = event.Base64
				dataContentEncoding = &b.dce
				continue
			}
		}
		if err := checkExtName(0, name); err != nil {
			return nil, err
		}
		if exts == nil {
			exts = make(map[string]any, 4)
		}
		exts[name] = v
	}
	switch {
	case !haveID || id == "":
		return nil, invalid(0, "id", "missing: set a non-empty ce-id header")
	case !haveSource:
		return nil, invalid(0, "source", "missing: set a non-empty ce-source header")
	case !haveType || typ == "":
		return nil, invalid(0, "type", "missing: set a non-empty ce-type header")
	}
	var dct *string
	if contentType != "" {
		b.ct = contentType
		dct = &b.ct
	}
	b.e.DataEncoded = body
	if v03 {
		b.v03 = event.EventContextV03{
			ID: id, Source: types.URIRef{URL: source}, Type: typ, Subject: subject, Time: tm,
			SchemaURL: schemaURL, DataContentType: dct, DataContentEncoding: dataContentEncoding,
			Extensions: exts,
		}
		b.e.Context = &b.v03
	} else {
		b.v1 = event.EventContextV1{
			ID: id, Source: types.URIRef{URL: source}, Type: typ, Subject: subject, Time: tm,
			DataSchema: dataSchema, DataContentType: dct, Extensions: exts,
		}
		b.e.Context = &b.v1
	}
	return b, nil
}

// checkExtName applies the bridge's extension naming rule, naming the
// event of a batch.
func checkExtName(index int, name string) error {
	if err := bridge.ValidateExtensionName(name); err != nil {
		var ie *bridge.InvalidEventError
		if errors.As(err, &ie) {
			ie.Index = index
		}
		return err
	}
	return nil
}

func invalid(index int, attr, format string, args ...any) *bridge.InvalidEventError {
	return &bridge.InvalidEventError{Index: index, Attribute: attr, Reason: fmt.Sprintf(format, args...)}
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// pctDecode decodes %XX sequences; a value with an invalid sequence is kept
// as it came.
func pctDecode(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) {
			return s
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return s
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b)
}

// pctEncode encodes what the HTTP binding says a header value must not
// carry raw: bytes outside printable ASCII, space, '"' and '%'.
func pctEncode(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if needsPct(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hexd = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsPct(c) {
			b = append(b, '%', hexd[c>>4], hexd[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func needsPct(c byte) bool { return c <= ' ' || c > '~' || c == '"' || c == '%' }
