package protocoltest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/protocols/httpapi"
	pt "github.com/meshd/meshd/protocols/protocoltest"
)

// FuzzHTTPPublish feeds the HTTP endpoint's decoders (structured, batch,
// binary, raw) arbitrary bodies. Every answer is a 204 with valid events
// stored, or a problem from the table with nothing stored; never a panic.
func FuzzHTTPPublish(f *testing.F) {
	f.Add(uint8(0), []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1}}`))
	f.Add(uint8(1), []byte(`[{"specversion":"0.3","id":"1","source":"/s","type":"t","datacontentencoding":"base64","data":"AAEC"}]`))
	f.Add(uint8(2), []byte("binary body \x00\xff"))
	f.Add(uint8(3), []byte("raw"))
	eng := &pt.MemoryEngine{}
	b, err := bridge.New(bridge.Options{Engine: eng, Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	h := httpapi.NewHandler(b, httpapi.Config{AppID: "fuzz", MaxBodyBytes: 1 << 16}, quiet)
	codes := problem.Codes()
	f.Fuzz(func(t *testing.T, mode uint8, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/publish/fuzz", bytes.NewReader(body))
		switch mode % 4 {
		case 0:
			req.Header.Set("Content-Type", cehttp.MediaTypeStructured)
		case 1:
			req.Header.Set("Content-Type", cehttp.MediaTypeBatch)
		case 2:
			req.Header.Set("Content-Type", "application/octet-stream")
			req.Header.Set("ce-specversion", "1.0")
			req.Header.Set("ce-id", string(body[:min(len(body), 8)]))
			req.Header.Set("ce-source", "/fuzz")
			req.Header.Set("ce-type", "t")
		case 3:
			req.Header.Set("Content-Type", "text/plain")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		stored := eng.Events("fuzz")
		if rec.Code == http.StatusNoContent {
			if len(stored) == 0 {
				t.Fatal("204 without a stored event")
			}
			for _, e := range stored {
				if err := bridge.Validate(e); err != nil {
					t.Fatalf("stored an invalid event: %v", err)
				}
			}
			return
		}
		if len(stored) != 0 {
			t.Fatalf("answered %d but stored %d events", rec.Code, len(stored))
		}
		var p problem.Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || !slices.Contains(codes, p.Code) || p.Status != rec.Code {
			t.Fatalf("answer %d is not a problem of the table: %s", rec.Code, rec.Body.Bytes())
		}
	})
}
