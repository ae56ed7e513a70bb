package httpsink

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SinkTask = (*Task)(nil)
)

// Task posts events one by one, in batch order.
type Task struct {
	url        string
	structured bool
	headers    http.Header
	client     *http.Client
}

// Start builds the HTTP client.
func (t *Task) Start(_ context.Context, cfg connectors.Config) error {
	t.url = cfg.String(FieldURL)
	t.structured = cfg.String(FieldMode) == "structured"
	t.headers = http.Header{}
	for k, v := range cfg.Map(FieldHeaders) {
		t.headers.Set(k, v)
	}
	for k, v := range cfg.Map(FieldSecretHeaders) {
		t.headers.Set(k, v)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.Bool(FieldTLSInsecure)} //nolint:gosec // opt-in for tests
	if ca := cfg.String(FieldTLSCA); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return fmt.Errorf("%s: %w", FieldTLSCA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no PEM certificate in %s", FieldTLSCA, ca)
		}
		tlsCfg.RootCAs = pool
	}
	if cert := cfg.String(FieldTLSCert); cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, cfg.String(FieldTLSKey))
		if err != nil {
			return fmt.Errorf("%s: %w", FieldTLSCert, err)
		}
		tlsCfg.Certificates = []tls.Certificate{pair}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	t.client = &http.Client{Transport: tr, Timeout: cfg.Duration(FieldTimeout)}
	return nil
}

// Stop closes idle connections.
func (t *Task) Stop(context.Context) error {
	if t.client != nil {
		t.client.CloseIdleConnections()
	}
	return nil
}

// Put posts each event; the failed ones are named in a
// *connectors.PartialError of *bridge.DeliveryErrors.
func (t *Task) Put(ctx context.Context, events []event.Event) error {
	failed := map[int]error{}
	for i := range events {
		if err := t.send(ctx, &events[i]); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failed[i] = err
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &connectors.PartialError{Failed: failed}
}

func (t *Task) send(ctx context.Context, e *event.Event) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, nil)
	if err != nil {
		return &bridge.DeliveryError{Class: bridge.Permanent, Err: errors.New("building the request failed")}
	}
	if t.structured {
		body, err := format.JSON.Marshal(e)
		if err != nil {
			return &bridge.DeliveryError{Class: bridge.Permanent, Err: fmt.Errorf("encoding the event: %w", err)}
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.Header.Set("Content-Type", format.JSON.MediaType())
	} else if err := cehttp.WriteRequest(ctx, binding.ToMessage(e), req); err != nil {
		return &bridge.DeliveryError{Class: bridge.Permanent, Err: fmt.Errorf("encoding the event: %w", err)}
	}
	for k, v := range t.headers {
		req.Header[k] = v
	}
	resp, err := t.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, which may carry credentials.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &bridge.DeliveryError{Err: fmt.Errorf("posting the event: %w", err)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	de := &bridge.DeliveryError{StatusCode: resp.StatusCode, Err: errors.New(http.StatusText(resp.StatusCode))}
	switch {
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		de.Class = bridge.Permanent
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			de.RetryAfter = time.Duration(n) * time.Second
		} else if t, err := http.ParseTime(s); err == nil {
			de.RetryAfter = time.Until(t)
		}
	}
	return de
}
