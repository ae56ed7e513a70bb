package cehttp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/problem"
)

func benchRequest(body []byte) *http.Request {
	req := httptest.NewRequest("POST", "/v1/publish/orders.created", bytes.NewReader(body))
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", "0b7b7a3e-6c2f-4b8e-9a5b-0f0e4c3d2b1a")
	req.Header.Set("Ce-Source", "/apps/orders")
	req.Header.Set("Ce-Type", "com.example.order.created")
	req.Header.Set("Ce-Time", "2024-05-06T07:08:09.123Z")
	req.Header.Set("Ce-Myext", "value")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01")
	return req
}

func TestPctCodec(t *testing.T) {
	for _, s := range []string{"plain", "with space", `quote"`, "100%", "ünï", "\x01ctl"} {
		enc := pctEncode(s)
		for i := 0; i < len(enc); i++ {
			assert.False(t, enc[i] <= ' ' || enc[i] > '~' || enc[i] == '"', "%q", enc)
		}
		assert.Equal(t, s, pctDecode(enc))
	}
	assert.Equal(t, "50%", pctDecode("50%"), "invalid sequences are kept")
	assert.Equal(t, "%zz", pctDecode("%zz"))
}

// BenchmarkParseBinary and BenchmarkParseBinarySDK compare the hand-written
// binary-mode parser with the SDK's generic binding on the same headers.
func BenchmarkParseBinary(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	req := benchRequest(body)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseBinary(req.Header, "application/json", body, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseBinarySDK(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	req := benchRequest(body)
	rd := bytes.NewReader(body)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		m := cehttp.NewMessage(req.Header, io.NopCloser(rd))
		if _, err := binding.ToEvent(context.Background(), m); err != nil {
			b.Fatal(err)
		}
	}
}

// Structured mode refuses what the SDK's decoder would accept and change,
// naming the attribute.
func TestStructuredIsStrict(t *testing.T) {
	base := `"specversion":"1.0","id":"1","source":"/s","type":"t"`
	for name, tc := range map[string]struct {
		body, want string
	}{
		"trailing garbage":   {`{` + base + `} x`, "more after the JSON object"},
		"second object":      {`{` + base + `}{` + base + `}`, "more after the JSON object"},
		"duplicate member":   {`{` + base + `,"id":"2"}`, `"id": is given twice`},
		"invalid UTF-8":      {`{` + base + `,"data":"` + "\xff" + `"}`, "not valid UTF-8"},
		"upper-case ext":     {`{` + base + `,"MyExt":"x"}`, `"MyExt"`},
		"float extension":    {`{` + base + `,"ratio":1.5}`, `"ratio": number 1.5 is not a 32-bit integer`},
		"object extension":   {`{` + base + `,"obj":{}}`, `"obj"`},
		"line break in id":   {`{"specversion":"1.0","id":"a\nb","source":"/s","type":"t"}`, `"id": contains the control character`},
		"JSON data not JSON": {`{` + base + `,"datacontenttype":"application/json","data_base64":"aGVsbG8="}`, ""},
	} {
		t.Run(name, func(t *testing.T) {
			var p Parser
			h := http.Header{"Content-Type": {MediaTypeStructured}}
			evs, _, err := p.Parse(h, []byte(tc.body))
			if tc.want == "" {
				require.NoError(t, err, "data_base64 is binary data: not checked as JSON")
				require.Len(t, evs, 1)
				return
			}
			if err == nil {
				err = bridge.Validate(evs[0])
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, http.StatusBadRequest, problem.FromError(err).Status)
		})
	}
}

// Attribute values are CloudEvents strings: a control character (here a
// percent-encoded line break in a binary-mode header) is refused by name.
func TestBinaryControlCharacters(t *testing.T) {
	var p Parser
	for _, hdr := range []string{"Ce-Id", "Ce-Type", "Ce-Subject", "Ce-Myext"} {
		req := benchRequest([]byte(`{}`))
		req.Header.Set(hdr, "a%0Ab")
		evs, _, err := p.Parse(req.Header, []byte(`{}`))
		if err == nil {
			err = bridge.Validate(evs[0])
		}
		require.Error(t, err, hdr)
		assert.Contains(t, err.Error(), strings.ToLower(strings.TrimPrefix(hdr, "Ce-")), hdr)
		assert.Equal(t, http.StatusBadRequest, problem.FromError(err).Status, hdr)
	}
}

// A binary-mode id with spaces at its ends (percent-encoded, as the HTTP
// binding asks) is refused: SDKs trim it, so it would reach subscribers as
// another event's id. An extension keeps its spaces.
func TestBinarySpacesAtTheEnds(t *testing.T) {
	var p Parser
	req := benchRequest([]byte(`{}`))
	req.Header.Set("Ce-Id", "%20order-42")
	evs, _, err := p.Parse(req.Header, []byte(`{}`))
	require.NoError(t, err)
	err = bridge.Validate(evs[0])
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"id": starts or ends with whitespace`)

	req = benchRequest([]byte(`{}`))
	req.Header.Set("Ce-Note", "%20kept%20")
	evs, _, err = p.Parse(req.Header, []byte(`{}`))
	require.NoError(t, err)
	require.NoError(t, bridge.Validate(evs[0]))
	assert.Equal(t, " kept ", evs[0].Extensions()["note"])
}

func TestJSONDataMustBeJSON(t *testing.T) {
	var p Parser
	req := benchRequest(nil)
	evs, _, err := p.Parse(req.Header, []byte(`hello world`))
	require.NoError(t, err)
	err = bridge.Validate(evs[0])
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"data"`)
	req.Header.Set("Content-Type", "text/plain")
	evs, _, err = p.Parse(req.Header, []byte(`hello world`))
	require.NoError(t, err)
	require.NoError(t, bridge.Validate(evs[0]))
}

// BenchmarkParseBatch parses (as the app API does) and validates a batch of
// 100 structured events with 1 KiB of JSON data each, as the batch phase of
// test/bench sends.
func BenchmarkParseBatch(b *testing.B) {
	data := `{"pad":"` + strings.Repeat("x", 1000) + `"}`
	var body bytes.Buffer
	body.WriteByte('[')
	for i := range 100 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"specversion":"1.0","id":"b-%d","source":"/bench","type":"com.example.bench","datacontenttype":"application/json","data":%s}`, i, data)
	}
	body.WriteByte(']')
	raw := body.Bytes()
	var p Parser
	h := http.Header{"Content-Type": {MediaTypeBatch}}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		evs, _, err := p.Parse(h, raw)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range evs {
			if err := bridge.Validate(e); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// oneByteReader hands out its bytes one at a time: a slow client.
type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0], r.b = r.b[0], r.b[1:]
	return 1, nil
}

// A body larger than the first buffer is read whole, with its declared
// length or without (chunked), fast or a byte at a time; one shorter than
// it declared is an error; a known length is read in at most two buffers.
func TestReadBodyLargeBodies(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 7000) // 112,000 bytes
	for _, tc := range []struct {
		name   string
		reader func() io.Reader
		length int64
	}{
		{"known length", func() io.Reader { return bytes.NewReader(body) }, int64(len(body))},
		{"known length, slow", func() io.Reader { return &oneByteReader{b: body} }, int64(len(body))},
		{"chunked", func() io.Reader { return bytes.NewReader(body) }, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", tc.reader())
			r.ContentLength = tc.length
			got, err := ReadBody(httptest.NewRecorder(), r, 1<<20)
			require.NoError(t, err)
			require.Equal(t, body, got)
		})
	}

	short := httptest.NewRequest(http.MethodPost, "/", io.LimitReader(bytes.NewReader(body), 100_000))
	short.ContentLength = int64(len(body))
	_, err := ReadBody(httptest.NewRecorder(), short, 1<<20)
	assert.Error(t, err, "a body shorter than its Content-Length")

	allocs := testing.AllocsPerRun(20, func() {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		_, _ = ReadBody(httptest.NewRecorder(), r, 1<<20)
	})
	base := testing.AllocsPerRun(20, func() {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		_ = httptest.NewRecorder()
	})
	// Two buffers and the readers' own (7 in all); doubling from 4 KiB
	// made 17.
	assert.LessOrEqual(t, allocs-base, 9.0, "allocations to read a 112,000-byte body")
}
