package cehttp

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/assert"
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
