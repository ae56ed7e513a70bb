package cehttp

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/google/uuid"

	"github.com/meshd/meshd/bridge/problem"
)

// Media types of the structured and batched modes.
const (
	MediaTypeStructured = "application/cloudevents+json"
	MediaTypeBatch      = "application/cloudevents-batch+json"
	mediaTypePrefix     = "application/cloudevents"
)

// Parser turns HTTP requests into CloudEvents. It remembers parsed
// ce-source values (an app sends few distinct ones and url.Parse is a good
// part of a binary-mode request's cost). The zero value is ready; a Parser
// is safe for concurrent use.
type Parser struct {
	sources uriCache
}

// Parse returns the events of a request whose body was read: one event in
// binary mode (ce- headers) or structured mode, or the events of a batch.
// raw is true, with no events, when the request is not a CloudEvent (no
// ce- headers and not a CloudEvents media type): the caller wraps the body
// (see Wrap). Errors are *bridge.InvalidEventError (400, naming the
// attribute) or a problem.Problem (400 malformed, 415 unsupported format).
// The request's W3C trace context becomes the distributed-tracing
// extension of events that carry none.
func (p *Parser) Parse(h http.Header, body []byte) (events []*event.Event, raw bool, err error) {
	ct := headerValue(h, "Content-Type")
	switch mediaType(ct) {
	case modeStructured:
		var e *event.Event
		if e, err = parseStructured(body, 0, false, &p.sources); err != nil {
			return nil, false, err
		}
		events = []*event.Event{e}
	case modeBatch:
		if events, err = parseBatch(body, &p.sources); err != nil {
			return nil, false, err
		}
	case modeUnsupported:
		return nil, false, problem.New(problem.CodeUnsupportedMediaType, fmt.Sprintf("structured format %q is not supported; use %s or %s", ct, MediaTypeStructured, MediaTypeBatch))
	default:
		if !hasCEHeader(h) {
			return nil, true, nil
		}
		be, err := parseBinary(h, ct, body, &p.sources)
		if err != nil {
			return nil, false, err
		}
		events = be.events()
	}
	addTraceContext(h, events)
	return events, false, nil
}

// Wrap turns a body that is not a CloudEvent into one: a new id, the given
// source and type, the current time, Content-Type as datacontenttype.
func Wrap(contentType string, body []byte, source types.URIRef, typ string) *event.Event {
	ec := &event.EventContextV1{
		ID:     uuid.NewString(),
		Source: source,
		Type:   typ,
		Time:   &types.Timestamp{Time: time.Now().UTC()},
	}
	if contentType != "" {
		ec.DataContentType = &contentType
	}
	return &event.Event{Context: ec, DataEncoded: body}
}

// initialBodyBuffer is the most ReadBody allocates before bytes arrive: a
// declared Content-Length is a claim, not a promise.
const initialBodyBuffer = 64 << 10

// ReadBody reads the whole body of r, at most limit bytes after decoding
// its Content-Encoding (identity or gzip). It grows its buffer as bytes
// arrive, so a client that declares a large body and sends nothing holds
// no memory. Errors: *http.MaxBytesError over the limit, a 415 problem for
// another encoding, a 400 problem for an unreadable body. An empty body is
// nil.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	gz := false
	if enc := headerValue(r.Header, "Content-Encoding"); enc != "" {
		switch strings.ToLower(strings.TrimSpace(enc)) {
		case "identity":
		case "gzip", "x-gzip":
			gz = true
		default:
			return nil, problem.New(problem.CodeUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q is not supported; use gzip or none", enc))
		}
	}
	if r.ContentLength > limit && !gz {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if !gz && r.ContentLength > 0 && r.ContentLength <= initialBodyBuffer {
		// The common case: a small body of known length, read in one
		// allocation (the server never hands out more than Content-Length).
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, problem.New(problem.CodeInvalidRequest, "reading the body: "+err.Error())
		}
		return buf, nil
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, limit)
	if gz {
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, bodyError(err, "gzip body")
		}
		defer zr.Close()
		src = &maxReader{r: zr, n: limit}
	}
	// Grow as bytes arrive: doubling from 4 KiB, or, with a declared
	// length, from initialBodyBuffer up to exactly that length (the server
	// never hands out more): a 100 KiB batch is read into 64 KiB, then its
	// 100 KiB, where doubling from 4 KiB allocated six buffers.
	known := int64(0)
	if !gz && r.ContentLength > 0 {
		known = r.ContentLength
	}
	first := int64(4 << 10)
	if known > 0 {
		first = min(known, initialBodyBuffer)
	}
	buf := make([]byte, 0, first)
	for known == 0 || int64(len(buf)) < known {
		if len(buf) == cap(buf) {
			if known > int64(len(buf)) {
				grown := make([]byte, len(buf), min(known, 2*int64(cap(buf))))
				copy(grown, buf)
				buf = grown
			} else {
				buf = append(buf, 0)[:len(buf)]
			}
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			if known > int64(len(buf)) {
				err = io.ErrUnexpectedEOF // Go's server says so itself
			} else {
				break
			}
		}
		if err != nil {
			return nil, bodyError(err, "body")
		}
	}
	if len(buf) == 0 {
		return nil, nil
	}
	return buf, nil
}

func bodyError(err error, what string) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return err
	}
	return problem.New(problem.CodeInvalidRequest, "reading the "+what+": "+err.Error())
}

// maxReader fails with *http.MaxBytesError once more than n bytes are read.
type maxReader struct {
	r     io.Reader
	n     int64
	total int64
}

func (m *maxReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.total += int64(n)
	if m.total > m.n {
		return 0, &http.MaxBytesError{Limit: m.n}
	}
	return n, err
}

type mode int

const (
	modeOther mode = iota
	modeStructured
	modeBatch
	modeUnsupported
)

// mediaType classifies a Content-Type without allocating.
func mediaType(ct string) mode {
	if len(ct) < len(mediaTypePrefix) || !strings.EqualFold(ct[:len(mediaTypePrefix)], mediaTypePrefix) {
		return modeOther
	}
	mt := ct
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.TrimSpace(mt)
	switch {
	case strings.EqualFold(mt, MediaTypeStructured):
		return modeStructured
	case strings.EqualFold(mt, MediaTypeBatch):
		return modeBatch
	case len(mt) == len(mediaTypePrefix) || mt[len(mediaTypePrefix)] == '+' || mt[len(mediaTypePrefix)] == '-':
		return modeUnsupported
	default: // e.g. application/cloudeventsfoo: not ours
		return modeOther
	}
}

// headerValue is Header.Get for a canonical key, without canonicalizing.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

const (
	extTraceparent = "traceparent"
	extTracestate  = "tracestate"
)

// addTraceContext keeps the request's W3C trace context as the
// distributed-tracing extensions of events that carry none.
func addTraceContext(h http.Header, events []*event.Event) {
	tp := headerValue(h, "Traceparent")
	if tp == "" {
		return
	}
	ts := headerValue(h, "Tracestate")
	for _, e := range events {
		if _, ok := extensions(e.Context)[extTraceparent]; ok {
			continue
		}
		setExt(e.Context, extTraceparent, tp)
		if ts != "" {
			setExt(e.Context, extTracestate, ts)
		}
	}
}

// extensions returns the extension map itself (Event.Extensions copies it).
func extensions(ec event.EventContext) map[string]any {
	switch c := ec.(type) {
	case *event.EventContextV1:
		return c.Extensions
	case *event.EventContextV03:
		return c.Extensions
	default:
		return ec.GetExtensions()
	}
}

// setExt sets a string extension whose name is known to be valid.
func setExt(ec event.EventContext, name, value string) {
	switch c := ec.(type) {
	case *event.EventContextV1:
		if c.Extensions == nil {
			c.Extensions = make(map[string]any, 2)
		}
		c.Extensions[name] = value
	case *event.EventContextV03:
		if c.Extensions == nil {
			c.Extensions = make(map[string]any, 2)
		}
		c.Extensions[name] = value
	default:
		_ = ec.SetExtension(name, value)
	}
}
