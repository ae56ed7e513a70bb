package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/meshd/meshd/bridge"
)

// Sender delivers events to HTTP subscription sinks. It is safe for
// concurrent use and keeps keep-alive connections per sink host.
type Sender struct {
	cfg    SenderConfig
	client *http.Client
}

var _ bridge.Sender = (*Sender)(nil)

// NewSender returns a Sender with its own tuned transport.
func NewSender(cfg SenderConfig) *Sender {
	cfg = cfg.withDefaults()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 4 * cfg.MaxIdleConnsPerHost
	tr.MaxIdleConnsPerHost = cfg.MaxIdleConnsPerHost
	tr.IdleConnTimeout = 90 * time.Second
	tr.ResponseHeaderTimeout = cfg.Timeout
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &Sender{
		cfg: cfg,
		client: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			// A sink answers; redirects are not followed (a POST would turn
			// into a GET) and count as permanent failures.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Close drops idle connections.
func (s *Sender) Close() { s.client.CloseIdleConnections() }

// Send POSTs e to sub.Sink in binary mode, or structured mode when
// sub.ContentMode is "structured". 2xx is success; 408, 429 and 5xx and
// transport errors are retryable *bridge.DeliveryError; other statuses are
// permanent.
func (s *Sender) Send(ctx context.Context, sub *bridge.Subscription, e *event.Event) error {
	req, err := s.request(ctx, sub, e)
	if err != nil {
		return &bridge.DeliveryError{Class: bridge.Permanent, Err: err}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return &bridge.DeliveryError{Err: err} // *url.Error, URL already redacted
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, s.cfg.MaxResponseBytes))
		return nil
	}
	snippet := make([]byte, 256)
	n, _ := io.ReadFull(resp.Body, snippet)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, s.cfg.MaxResponseBytes))
	msg := strings.TrimSpace(strings.ToValidUTF8(string(snippet[:n]), ""))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	de := &bridge.DeliveryError{StatusCode: resp.StatusCode, Err: errors.New(msg)}
	switch code := resp.StatusCode; {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		de.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	default:
		de.Class = bridge.Permanent
	}
	return de
}

func (s *Sender) request(ctx context.Context, sub *bridge.Subscription, e *event.Event) (*http.Request, error) {
	if e == nil || e.Context == nil {
		return nil, errors.New("no event to send")
	}
	var body []byte
	h := make(http.Header, 12)
	switch strings.ToLower(sub.ContentMode) {
	case "structured":
		b, err := e.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("encoding the event: %w", err)
		}
		body = b
		h["Content-Type"] = []string{MediaTypeStructured + "; charset=utf-8"}
	case "", "binary":
		body = e.Data()
		if err := binaryHeaders(h, e); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("content mode %q: want binary or structured", sub.ContentMode)
	}
	ext := e.Extensions()
	if tp, ok := ext[extTraceparent].(string); ok && tp != "" {
		h["Traceparent"] = []string{tp}
		if ts, ok := ext[extTracestate].(string); ok && ts != "" {
			h["Tracestate"] = []string{ts}
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.Sink, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("sink %q: %w", redact(sub.Sink), err)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return nil, fmt.Errorf("sink %q: want an http or https URL", redact(sub.Sink))
	}
	req.Header = h
	return req, nil
}

// binaryHeaders writes e's attributes as ce- headers (percent-encoded as
// the HTTP binding asks) and its datacontenttype as Content-Type.
func binaryHeaders(h http.Header, e *event.Event) error {
	set := func(k, v string) { h[k] = []string{pctEncode(v)} }
	switch c := e.Context.(type) {
	case *event.EventContextV1:
		set("Ce-Specversion", event.CloudEventsVersionV1)
		set("Ce-Id", c.ID)
		set("Ce-Source", c.Source.String())
		set("Ce-Type", c.Type)
		if c.Subject != nil {
			set("Ce-Subject", *c.Subject)
		}
		if c.Time != nil {
			set("Ce-Time", types.FormatTime(c.Time.Time))
		}
		if c.DataSchema != nil {
			set("Ce-Dataschema", c.DataSchema.String())
		}
		if c.DataContentType != nil {
			h["Content-Type"] = []string{*c.DataContentType}
		}
	case *event.EventContextV03:
		set("Ce-Specversion", event.CloudEventsVersionV03)
		set("Ce-Id", c.ID)
		set("Ce-Source", c.Source.String())
		set("Ce-Type", c.Type)
		if c.Subject != nil {
			set("Ce-Subject", *c.Subject)
		}
		if c.Time != nil {
			set("Ce-Time", types.FormatTime(c.Time.Time))
		}
		if c.SchemaURL != nil {
			set("Ce-Schemaurl", c.SchemaURL.String())
		}
		if c.DataContentEncoding != nil {
			set("Ce-Datacontentencoding", *c.DataContentEncoding)
		}
		if c.DataContentType != nil {
			h["Content-Type"] = []string{*c.DataContentType}
		}
	default:
		return fmt.Errorf("spec version %q is not supported", e.SpecVersion())
	}
	for name, v := range e.Extensions() {
		s, err := types.Format(v)
		if err != nil {
			return fmt.Errorf("extension %q: %w", name, err)
		}
		set(http.CanonicalHeaderKey("ce-"+name), s)
	}
	return nil
}

// parseRetryAfter reads delay-seconds or an HTTP-date; 0 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		const maxSecs = int64(24 * time.Hour / time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// redact drops user info from a sink URL before it goes into an error.
func redact(sink string) string {
	if i := strings.Index(sink, "@"); i >= 0 {
		if j := strings.Index(sink, "://"); j >= 0 && j < i {
			return sink[:j+3] + "…@" + sink[i+1:]
		}
	}
	return sink
}
