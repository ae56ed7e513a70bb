package httpapi

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

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/problem"
)

// Media types of the structured and batched modes.
const (
	MediaTypeStructured = "application/cloudevents+json"
	MediaTypeBatch      = "application/cloudevents-batch+json"
	mediaTypePrefix     = "application/cloudevents"
)

func (h *handler) publish(w http.ResponseWriter, r *http.Request) {
	h.publishTo(w, r, r.PathValue("topic"))
}

const publishPrefix = "/v1/publish/"

// publishFastPath recognises "POST /v1/publish/{topic}" without the mux's
// routing cost; anything unusual (escapes, dot segments, more segments)
// goes through the mux.
func publishFastPath(r *http.Request) (topic string, ok bool) {
	if r.Method != http.MethodPost || r.URL.RawPath != "" || !strings.HasPrefix(r.URL.Path, publishPrefix) {
		return "", false
	}
	topic = r.URL.Path[len(publishPrefix):]
	if topic == "" || topic == "." || topic == ".." || strings.IndexByte(topic, '/') >= 0 {
		return "", false
	}
	return topic, true
}

func (h *handler) publishTo(w http.ResponseWriter, r *http.Request, topic string) {
	body, err := h.readBody(w, r)
	if err != nil {
		h.fail(w, r, "reading publish body", err)
		return
	}
	var one [1]*event.Event
	events := one[:]
	ct := headerValue(r.Header, "Content-Type")
	switch mediaType(ct) {
	case modeStructured:
		one[0], err = parseStructured(body, 0)
	case modeBatch:
		events, err = parseBatch(body)
	case modeUnsupported:
		err = problem.New(problem.CodeUnsupportedMediaType, fmt.Sprintf("structured format %q is not supported; use %s or %s", ct, MediaTypeStructured, MediaTypeBatch))
	default:
		if hasCEHeader(r.Header) {
			var be *binaryEvent
			if be, err = parseBinary(r.Header, ct, body, &h.sources); err == nil {
				events = be.events()
			}
		} else {
			one[0] = h.wrap(ct, body)
		}
	}
	if err != nil {
		h.fail(w, r, "parsing publish request", err)
		return
	}
	addTraceContext(r.Header, events)
	if err := h.b.Publish(r.Context(), topic, events); err != nil {
		h.fail(w, r, "publishing", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readBody reads the whole body, bounded by MaxBodyBytes after decoding
// Content-Encoding (identity or gzip).
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := h.cfg.MaxBodyBytes
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
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	if !gz && r.ContentLength >= 0 {
		// The server never hands out more than Content-Length bytes.
		if r.ContentLength == 0 {
			return nil, nil
		}
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
	buf, err := io.ReadAll(src)
	if err != nil {
		return nil, bodyError(err, "body")
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

// wrap turns a body that is not a CloudEvent into one.
func (h *handler) wrap(ct string, body []byte) *event.Event {
	ec := &event.EventContextV1{
		ID:     uuid.NewString(),
		Source: h.source,
		Type:   h.cfg.DefaultType,
		Time:   &types.Timestamp{Time: time.Now().UTC()},
	}
	if ct != "" {
		ec.DataContentType = &ct
	}
	return &event.Event{Context: ec, DataEncoded: body}
}

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

const (
	extTraceparent = "traceparent"
	extTracestate  = "tracestate"
)

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

func invalid(index int, attr, format string, args ...any) *bridge.InvalidEventError {
	return &bridge.InvalidEventError{Index: index, Attribute: attr, Reason: fmt.Sprintf(format, args...)}
}
