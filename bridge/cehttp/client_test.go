package cehttp

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
)

func testEvent(t *testing.T, version string) *event.Event {
	t.Helper()
	e := event.New(version)
	e.SetID("id-1")
	e.SetSource("/src/a b")
	e.SetType("t.x")
	e.SetSubject("subj")
	e.SetTime(time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC))
	require.NoError(t, e.SetData("application/json", []byte(`{"k":"v"}`)))
	e.SetExtension("myext", "hé llo")
	e.SetExtension("count", 3)
	e.SetExtension(extTraceparent, "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01")
	e.SetExtension(extTracestate, "k=v")
	return &e
}

type captured struct {
	header http.Header
	body   []byte
}

func sink(t *testing.T, status int, extra http.Header) (*httptest.Server, chan captured) {
	t.Helper()
	got := make(chan captured, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- captured{r.Header.Clone(), b}
		for k, v := range extra {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte("sink says no"))
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func TestSenderBinary(t *testing.T) {
	for _, v := range []string{event.CloudEventsVersionV1, event.CloudEventsVersionV03} {
		t.Run(v, func(t *testing.T) {
			srv, got := sink(t, 202, nil)
			s := NewSender(ClientConfig{})
			defer s.Close()
			e := testEvent(t, v)
			require.NoError(t, s.Send(t.Context(), &bridge.Subscription{ID: "s", Sink: srv.URL}, e))
			c := <-got
			assert.Equal(t, v, c.header.Get("ce-specversion"))
			assert.Equal(t, "id-1", c.header.Get("ce-id"))
			// The source's string form is "/src/a%20b"; its '%' is percent-encoded
			// on the wire as the HTTP binding asks.
			assert.Equal(t, "/src/a%2520b", c.header.Get("ce-source"))
			assert.Equal(t, "t.x", c.header.Get("ce-type"))
			assert.Equal(t, "subj", c.header.Get("ce-subject"))
			assert.Equal(t, "2024-01-02T03:04:05.000000006Z", c.header.Get("ce-time"))
			assert.Equal(t, "h%C3%A9%20llo", c.header.Get("ce-myext"))
			assert.Equal(t, "3", c.header.Get("ce-count"))
			assert.Equal(t, "application/json", c.header.Get("Content-Type"))
			assert.Equal(t, "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01", c.header.Get("traceparent"))
			assert.Equal(t, "k=v", c.header.Get("tracestate"))
			assert.Equal(t, `{"k":"v"}`, string(c.body))

			// What the sender writes, the handler reads back unchanged.
			be, err := parseBinary(c.header, c.header.Get("Content-Type"), c.body, nil)
			require.NoError(t, err)
			back := &be.e
			back.DataBase64 = e.DataBase64 // binary mode has no such flag
			assert.Equal(t, e.String(), back.String())
		})
	}
}

func TestSenderBinaryV03Encoding(t *testing.T) {
	srv, got := sink(t, 200, nil)
	s := NewSender(ClientConfig{})
	e := event.New(event.CloudEventsVersionV03)
	e.SetID("1")
	e.SetSource("/s")
	e.SetType("t")
	ec := e.Context.(*event.EventContextV03)
	b64 := event.Base64
	ec.DataContentEncoding = &b64
	ec.SchemaURL = nil
	e.DataEncoded = []byte("AAEC")
	require.NoError(t, s.Send(t.Context(), &bridge.Subscription{Sink: srv.URL}, &e))
	c := <-got
	assert.Equal(t, "base64", c.header.Get("ce-datacontentencoding"))
	assert.Equal(t, "AAEC", string(c.body))
}

func TestSenderStructured(t *testing.T) {
	srv, got := sink(t, 200, nil)
	s := NewSender(ClientConfig{})
	e := testEvent(t, event.CloudEventsVersionV1)
	require.NoError(t, s.Send(t.Context(), &bridge.Subscription{Sink: srv.URL, ContentMode: "structured"}, e))
	c := <-got
	assert.Equal(t, "application/cloudevents+json; charset=utf-8", c.header.Get("Content-Type"))
	assert.Empty(t, c.header.Get("ce-id"))
	assert.Equal(t, "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01", c.header.Get("traceparent"))
	var back event.Event
	require.NoError(t, json.Unmarshal(c.body, &back))
	assert.Equal(t, e.String(), back.String())
}

func TestSenderClassification(t *testing.T) {
	future := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	cases := []struct {
		status     int
		retryAfter string
		permanent  bool
		wantAfter  time.Duration // lower bound
	}{
		{500, "", false, 0},
		{502, "7", false, 7 * time.Second},
		{503, future, false, 80 * time.Second},
		{429, "2", false, 2 * time.Second},
		{408, "", false, 0},
		{400, "5", true, 0},
		{404, "", true, 0},
		{410, "", true, 0},
		{301, "", true, 0},
	}
	for _, tc := range cases {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			hdr := http.Header{}
			if tc.retryAfter != "" {
				hdr.Set("Retry-After", tc.retryAfter)
			}
			if tc.status == 301 {
				hdr.Set("Location", "/elsewhere")
			}
			srv, _ := sink(t, tc.status, hdr)
			err := NewSender(ClientConfig{}).Send(t.Context(), &bridge.Subscription{Sink: srv.URL}, testEvent(t, "1.0"))
			var de *bridge.DeliveryError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, tc.status, de.StatusCode)
			assert.Equal(t, tc.permanent, de.Class == bridge.Permanent)
			assert.GreaterOrEqual(t, de.RetryAfter, tc.wantAfter)
			if tc.permanent {
				assert.Zero(t, de.RetryAfter)
			}
			assert.Contains(t, de.Error(), "sink says no")
		})
	}
}

func TestSenderTransportErrors(t *testing.T) {
	// Nothing listens: the target is unavailable (held, not an attempt).
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	err := NewSender(ClientConfig{}).Send(t.Context(), &bridge.Subscription{Sink: url}, testEvent(t, "1.0"))
	var de *bridge.DeliveryError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, bridge.Unavailable, de.Class)
	assert.Zero(t, de.StatusCode)
	assert.NotContains(t, err.Error(), url, "the target URL may carry credentials")

	// A sink slower than the timeout is retryable.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	err = NewSender(ClientConfig{Timeout: 100 * time.Millisecond}).Send(t.Context(), &bridge.Subscription{Sink: slow.URL}, testEvent(t, "1.0"))
	require.ErrorAs(t, err, &de)
	assert.Equal(t, bridge.Retry, de.Class)

	// A bad sink URL is permanent.
	for _, bad := range []string{"://nope", "ftp://host/x"} {
		err = NewSender(ClientConfig{}).Send(t.Context(), &bridge.Subscription{Sink: bad}, testEvent(t, "1.0"))
		require.ErrorAs(t, err, &de)
		assert.Equal(t, bridge.Permanent, de.Class, bad)
	}
	err = NewSender(ClientConfig{}).Send(t.Context(), &bridge.Subscription{Sink: "http://x", ContentMode: "weird"}, testEvent(t, "1.0"))
	require.ErrorAs(t, err, &de)
	assert.Equal(t, bridge.Permanent, de.Class)
}

func TestSenderReusesConnections(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		_, _ = w.Write(make([]byte, 8<<10)) // larger than the error snippet the sender keeps
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	s := NewSender(ClientConfig{})
	defer s.Close()
	for range 20 {
		err := s.Send(t.Context(), &bridge.Subscription{Sink: srv.URL}, testEvent(t, "1.0"))
		var de *bridge.DeliveryError
		require.True(t, errors.As(err, &de))
	}
	assert.EqualValues(t, 1, conns.Load(), "sequential sends reuse one keep-alive connection")
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	assert.Equal(t, 3*time.Second, ParseRetryAfter("3", now))
	assert.Equal(t, time.Duration(0), ParseRetryAfter("-3", now))
	assert.Equal(t, time.Duration(0), ParseRetryAfter("soon", now))
	assert.Equal(t, 30*time.Second, ParseRetryAfter(now.Add(30*time.Second).Format(http.TimeFormat), now))
	assert.Equal(t, time.Duration(0), ParseRetryAfter(now.Add(-time.Hour).Format(http.TimeFormat), now))
}

func TestRetryAfterMs(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	h := http.Header{}
	assert.Equal(t, time.Duration(0), RetryAfter(h, now))
	h.Set("Retry-After", "3")
	assert.Equal(t, 3*time.Second, RetryAfter(h, now))
	h.Set("Retry-After-Ms", "1500")
	assert.Equal(t, 1500*time.Millisecond, RetryAfter(h, now), "the more precise header wins")
	h.Set("Retry-After-Ms", "20.5")
	assert.Equal(t, 20500*time.Microsecond, RetryAfter(h, now))
	h.Set("Retry-After-Ms", "soon")
	assert.Equal(t, 3*time.Second, RetryAfter(h, now), "a bad Retry-After-Ms falls back to Retry-After")

	de := StatusError(429, http.Header{"Retry-After-Ms": {"250"}}, nil, now).(*bridge.DeliveryError)
	assert.Equal(t, 250*time.Millisecond, de.RetryAfter)
}

func TestMaxErrorBytes(t *testing.T) {
	long := strings.Repeat("x", 1000) + "the end"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, long)
	}))
	defer srv.Close()
	for limit, whole := range map[int]bool{0: false, 4096: true} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, nil)
		require.NoError(t, err)
		_, err = NewClient(ClientConfig{MaxErrorBytes: limit}).Do(req)
		require.Error(t, err)
		assert.Equal(t, whole, strings.Contains(err.Error(), "the end"), "MaxErrorBytes %d", limit)
	}
}

// BenchmarkSend is one binary-mode delivery of a 1 KiB event to a no-op
// HTTP handler in the same process (its allocations count too).
func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c := NewClient(ClientConfig{})
	defer c.Close()
	e := event.New()
	e.SetID("4e8a1a6e-3c55-4f6e-9d0c-6a6f7e3b9a10")
	e.SetSource("https://orders.example.com/checkout")
	e.SetType("com.example.order.created")
	if err := e.SetData("application/json", []byte(`{"k":"`+strings.Repeat("v", 1016)+`"}`)); err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Send(ctx, srv.URL+"/events", &e, false, nil); err != nil {
			b.Fatal(err)
		}
	}
}
