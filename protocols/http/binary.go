package http

import (
	"net/http"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
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

// parseBinary builds the event of a binary-mode request.
func parseBinary(h http.Header, contentType string, body []byte) (*event.Event, error) {
	var specversion string
	if vs := h["Ce-Specversion"]; len(vs) > 0 {
		specversion = strings.TrimSpace(vs[0])
	} else {
		for k, vs := range h { // non-canonical key, e.g. set by a raw client
			if isCEKey(k) && strings.EqualFold(k[3:], "specversion") {
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

	var (
		id, typ                      string
		source                       *types.URIRef
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
			haveSource = true
			if source = types.ParseURIRef(v); source == nil && v != "" {
				return nil, invalid(0, "source", "%q is not a URI-reference", v)
			}
			continue
		case attrType:
			typ, haveType = v, true
			continue
		case attrSubject:
			if v == "" {
				return nil, invalid(0, "subject", "must not be empty when present")
			}
			subject = &v
			continue
		case attrTime:
			t, err := types.ParseTime(v)
			if err != nil {
				return nil, invalid(0, "time", "%q is not an RFC 3339 timestamp", v)
			}
			tm = &types.Timestamp{Time: t}
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
				b64 := event.Base64
				dataContentEncoding = &b64
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
	case !haveSource || source == nil:
		return nil, invalid(0, "source", "missing: set a non-empty ce-source header")
	case !haveType || typ == "":
		return nil, invalid(0, "type", "missing: set a non-empty ce-type header")
	}
	var dct *string
	if contentType != "" {
		dct = &contentType
	}
	e := &event.Event{DataEncoded: body}
	if v03 {
		e.Context = &event.EventContextV03{
			ID: id, Source: *source, Type: typ, Subject: subject, Time: tm,
			SchemaURL: schemaURL, DataContentType: dct, DataContentEncoding: dataContentEncoding,
			Extensions: exts,
		}
	} else {
		e.Context = &event.EventContextV1{
			ID: id, Source: *source, Type: typ, Subject: subject, Time: tm,
			DataSchema: dataSchema, DataContentType: dct, Extensions: exts,
		}
	}
	return e, nil
}

// reserved names that cannot be extensions in either spec version.
var reserved = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true, "subject": true,
	"time": true, "datacontenttype": true, "dataschema": true, "data": true, "data_base64": true,
}

// checkExtName enforces the CloudEvents attribute naming rule: lower-case
// ASCII letters and digits.
func checkExtName(index int, name string) error {
	if name == "" {
		return invalid(index, name, "extension names must not be empty")
	}
	if reserved[name] {
		return invalid(index, name, "is a context attribute and cannot be an extension")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return invalid(index, name, "extension names must be lower-case letters a-z and digits only")
		}
	}
	return nil
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
