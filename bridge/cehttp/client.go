package cehttp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/meshd/meshd/bridge"
)

// Defaults of ClientConfig.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultMaxIdlePerHost   = 256
	DefaultMaxResponseBytes = 64 << 10
	// errorSnippet is how much of a failed answer's body goes into the
	// error (and so into logs and deliveryerror).
	errorSnippet = 256
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Timeout bounds one request, answer included (default 10s). For
	// subscriptions it must be shorter than the bridge's AckWait.
	Timeout time.Duration
	// MaxIdleConnsPerHost is the number of keep-alive connections kept per
	// target host (default 256); keep it at least the deliveries in flight.
	MaxIdleConnsPerHost int
	// MaxResponseBytes is how much of an answer is read (default 64 KiB):
	// a 2xx body up to it is returned by Do, the rest is discarded so the
	// connection can be reused.
	MaxResponseBytes int64
	// TLS, if set, configures TLS to the targets (default: the system's
	// roots).
	TLS *tls.Config
	// MaxErrorBytes is how much of a failed answer's body becomes the
	// error's text (default 256). Raise it for an API whose error
	// documents the caller reads; the text ends up in logs and
	// deliveryerror.
	MaxErrorBytes int
	// Guard decides which addresses may be dialled (nil: every address
	// but link-local and cloud metadata ones). A refused target is a
	// permanent failure wrapping ErrTargetRefused.
	Guard *Guard
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxIdleConnsPerHost <= 0 {
		c.MaxIdleConnsPerHost = DefaultMaxIdlePerHost
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.MaxErrorBytes <= 0 {
		c.MaxErrorBytes = errorSnippet
	}
	return c
}

// Client sends requests to HTTP targets (subscription sinks, http-sink,
// vendor webhooks) and classifies every answer the same way: 2xx is
// success; 408, 429 and 5xx are retried (after Retry-After, capped); a
// target that cannot be reached at all is unavailable; any other status,
// redirects included, is permanent. It keeps keep-alive connections per
// host and is safe for concurrent use.
type Client struct {
	cfg  ClientConfig
	http *http.Client
}

// NewClient returns a Client with its own transport.
func NewClient(cfg ClientConfig) *Client {
	cfg = cfg.withDefaults()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 4 * cfg.MaxIdleConnsPerHost
	tr.MaxIdleConnsPerHost = cfg.MaxIdleConnsPerHost
	tr.IdleConnTimeout = 90 * time.Second
	tr.ResponseHeaderTimeout = cfg.Timeout
	tr.DialContext = cfg.Guard.dialer(net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second})
	tr.Proxy = cfg.Guard.proxy(tr.Proxy)
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS
	}
	return &Client{
		cfg: cfg,
		http: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			// A target answers; redirects are not followed (a POST would
			// turn into a GET) and count as permanent failures.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Send POSTs e to target in binary mode, or structured mode when
// structured is set; header adds (and overrides) request headers. It
// returns nil on 2xx, else an error classified for bridge.Classify.
func (c *Client) Send(ctx context.Context, target string, e *event.Event, structured bool, header http.Header) error {
	req, err := NewRequest(ctx, target, e, structured)
	if err != nil {
		return bridge.PermanentError(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	_, err = c.do(req, false)
	return err
}

// Do sends req and returns the body of a 2xx answer (at most
// MaxResponseBytes of it), or an error classified for bridge.Classify. The
// target URL never appears in the error: it may carry credentials.
func (c *Client) Do(req *http.Request) ([]byte, error) { return c.do(req, true) }

// do is Do; without keep, the body of a 2xx answer is read and dropped
// (the connection is reused), not kept.
func (c *Client) do(req *http.Request, keep bool) ([]byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, transportError(req.Context(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		var body []byte
		if keep {
			body, err = io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseBytes))
		}
		_, drained := io.Copy(io.Discard, io.LimitReader(resp.Body, c.cfg.MaxResponseBytes))
		if !keep {
			err = drained
		}
		if err != nil {
			// The target took the request; its answer was cut. The caller
			// that needs the body retries.
			return nil, bridge.RetryError(fmt.Errorf("reading the answer: %w", err), 0)
		}
		return body, nil
	}
	snippet := make([]byte, c.cfg.MaxErrorBytes)
	n, _ := io.ReadFull(resp.Body, snippet)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, c.cfg.MaxResponseBytes))
	// A target that echoes the request (its query, its user) must not put
	// the URL's credentials into logs and deliveryerror.
	body := []byte(maskAll(string(snippet[:n]), secretsOf(req.URL)))
	return nil, StatusError(resp.StatusCode, resp.Header, body, time.Now())
}

// maskAll replaces each secret of at least 3 bytes in s by Mask (shorter
// ones would mask everything).
func maskAll(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 3 {
			s = strings.ReplaceAll(s, sec, Mask)
		}
	}
	return s
}

// StatusError classifies a non-2xx answer: 408, 429 and 5xx are retried
// after the answer's RetryAfter (if any); other statuses are permanent.
// body, trimmed, becomes the error text (the status text if empty).
func StatusError(status int, h http.Header, body []byte, now time.Time) error {
	msg := strings.TrimSpace(strings.ToValidUTF8(string(body), ""))
	if msg == "" {
		msg = http.StatusText(status)
	}
	de := &bridge.DeliveryError{StatusCode: status, Err: errors.New(msg)}
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		de.RetryAfter = min(RetryAfter(h, now), bridge.MaxRetryAfter)
	default:
		de.Class = bridge.Permanent
	}
	return de
}

// transportError classifies a request that got no answer: a target the
// Guard refuses is permanent; a target that cannot be reached (refused,
// unknown host, no route) is unavailable; a timeout or a cut connection is
// retried. The *url.Error wrapper, which repeats the URL, is dropped.
func transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, ErrTargetRefused) {
		return bridge.PermanentError(fmt.Errorf("reaching the target: %w", err))
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.As(err, &dnsErr) && !dnsErr.IsTimeout,
		errors.As(err, &opErr) && opErr.Op == "dial" && !opErr.Timeout():
		return bridge.UnavailableError(fmt.Errorf("reaching the target: %w", err), 0)
	}
	return bridge.RetryError(fmt.Errorf("sending to the target: %w", err), 0)
}

// NewRequest builds the POST of e to target: binary mode (ce- headers,
// data as the body) or structured mode (the event as JSON).
func NewRequest(ctx context.Context, target string, e *event.Event, structured bool) (*http.Request, error) {
	if e == nil || e.Context == nil {
		return nil, errors.New("no event to send")
	}
	var body []byte
	h := make(http.Header, 12)
	if structured {
		b, err := EncodeStructured(e)
		if err != nil {
			return nil, err
		}
		body = b
		h["Content-Type"] = []string{MediaTypeStructured + "; charset=utf-8"}
	} else {
		body = e.Data()
		if err := WriteBinary(h, e); err != nil {
			return nil, err
		}
	}
	writeTraceHeaders(h, extensions(e.Context))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("target %q: %w", Redact(target), err)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return nil, fmt.Errorf("target %q: want an http or https URL", Redact(target))
	}
	req.Header = h
	return req, nil
}

// EncodeStructured encodes e as an application/cloudevents+json body.
func EncodeStructured(e *event.Event) ([]byte, error) {
	b, err := e.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encoding the event: %w", err)
	}
	return b, nil
}

// WriteBinary writes e's attributes as ce- headers (percent-encoded as the
// HTTP binding asks) and its datacontenttype as Content-Type.
func WriteBinary(h http.Header, e *event.Event) error {
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
	for name, v := range extensions(e.Context) {
		s, err := types.Format(v)
		if err != nil {
			return fmt.Errorf("extension %q: %w", name, err)
		}
		set(http.CanonicalHeaderKey("ce-"+name), s)
	}
	return nil
}

// writeTraceHeaders sends an event's distributed-tracing extension as the
// W3C trace context headers, in either content mode.
func writeTraceHeaders(h http.Header, ext map[string]any) {
	if tp, ok := ext[extTraceparent].(string); ok && tp != "" {
		h["Traceparent"] = []string{tp}
		if ts, ok := ext[extTracestate].(string); ok && ts != "" {
			h["Tracestate"] = []string{ts}
		}
	}
}

// RetryAfter is the wait an answer asks for: Retry-After-Ms (milliseconds,
// as OpenAI's and Azure's APIs send it) when present and valid, else
// Retry-After; 0 when neither. Callers cap it (bridge.MaxRetryAfter).
func RetryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && ms < float64(24*time.Hour/time.Millisecond) {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	return ParseRetryAfter(h.Get("Retry-After"), now)
}

// ParseRetryAfter reads delay-seconds or an HTTP-date; 0 when absent or
// bad. Callers cap it (bridge.MaxRetryAfter).
func ParseRetryAfter(v string, now time.Time) time.Duration {
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

// Mask is what a secret is shown as in API answers: connector configs,
// subscriptions.
const Mask = "********"

// Redact masks the user info and the query values of a URL (MaskURL with
// "…") before it goes into an error or a log: both may carry credentials.
func Redact(target string) string { return MaskURL(target, "…") }

// MaskURL returns raw with its user info, and each value of its query,
// replaced by mask: both may carry credentials
// ("https://********@host/path?key=********"). The scheme, host, path and
// query keys stay, so the URL can still be recognised. A string that does
// not parse is cut at its first '@' or '?'. It is the one masking of URLs:
// errors and logs (Redact), the subscriptions API and connector configs
// (connectors.Field.SecretURL).
func MaskURL(raw, mask string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "@?"); i >= 0 {
			return raw[:i] + mask
		}
		return raw
	}
	if u.User == nil && u.RawQuery == "" && u.Fragment == "" {
		return raw
	}
	var b strings.Builder
	if u.Scheme != "" {
		b.WriteString(u.Scheme)
		b.WriteString(":")
	}
	if u.Opaque != "" {
		b.WriteString(u.Opaque)
	} else {
		if u.Scheme != "" || u.Host != "" || u.User != nil {
			b.WriteString("//")
		}
		if u.User != nil {
			b.WriteString(mask)
			b.WriteString("@")
		}
		b.WriteString(u.Host)
		b.WriteString(u.EscapedPath())
	}
	if u.RawQuery != "" || u.ForceQuery {
		b.WriteString("?")
		for i, kv := range strings.Split(u.RawQuery, "&") {
			if i > 0 {
				b.WriteString("&")
			}
			if k, _, ok := strings.Cut(kv, "="); ok { // a bare item ("?t0ken") is all value
				b.WriteString(k)
				b.WriteString("=")
			}
			b.WriteString(mask)
		}
	}
	if u.Fragment != "" {
		b.WriteString("#")
		b.WriteString(mask)
	}
	return b.String()
}

// SecretsOfURL returns the parts of raw that MaskURL hides (the user name,
// the password, each query value and the fragment), for callers that must
// also mask them where they appear alone (an error quoting a password).
func SecretsOfURL(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	return secretsOf(u)
}

func secretsOf(u *url.URL) []string {
	var out []string
	add := func(s string) {
		if s != "" {
			out = append(out, s)
		}
	}
	if u.User != nil {
		add(u.User.Username())
		p, _ := u.User.Password()
		add(p)
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			add(v)
		}
	}
	add(u.Fragment)
	return out
}

// Sender delivers subscription events with a Client: it is the
// bridge.Sender of HTTP subscriptions.
type Sender struct{ *Client }

var (
	_ bridge.Sender      = Sender{}
	_ bridge.SinkChecker = Sender{}
)

// CheckSink refuses a sink the client's Guard would refuse, when the
// subscription is created (deliveries are checked again when they dial).
func (s Sender) CheckSink(ctx context.Context, sink string) error {
	return s.cfg.Guard.CheckURL(ctx, sink)
}

// NewSender returns the HTTP subscription sender.
func NewSender(cfg ClientConfig) Sender { return Sender{NewClient(cfg)} }

// Send POSTs e to sub.Sink in sub.ContentMode ("binary" or "structured").
func (s Sender) Send(ctx context.Context, sub *bridge.Subscription, e *event.Event) error {
	switch strings.ToLower(sub.ContentMode) {
	case "", "binary":
		return s.Client.Send(ctx, sub.Sink, e, false, nil)
	case "structured":
		return s.Client.Send(ctx, sub.Sink, e, true, nil)
	default:
		return bridge.PermanentError(fmt.Errorf("content mode %q: want binary or structured", sub.ContentMode))
	}
}
