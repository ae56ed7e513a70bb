package problem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/mesh"
)

func TestFromError(t *testing.T) {
	cases := []struct {
		err    error
		code   string
		status int
		detail string
	}{
		{&bridge.InvalidEventError{Attribute: "specversion", Reason: "missing"}, CodeInvalidEvent, 400, `attribute "specversion": missing`},
		{fmt.Errorf("publishing: %w", &bridge.InvalidEventError{Index: 3, Attribute: "myext", Reason: "bad"}), CodeInvalidEvent, 400, `event 3: attribute "myext": bad`},
		{fmt.Errorf("%w %q: want tokens", mesh.ErrInvalidTopic, "a..b"), CodeInvalidTopic, 400, `"a..b"`},
		{fmt.Errorf("publishing to %q: publishing to %q: %w: nats: no response from stream", "t", "t", mesh.ErrUnavailable), CodeMeshUnavailable, 503, "the mesh cannot store events now"},
		{mesh.ErrClosed, CodeMeshUnavailable, 503, ""},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), CodeMeshUnavailable, 503, "in time"},
		{fmt.Errorf("%w: %q", bridge.ErrSubscriptionNotFound, "s1"), CodeNotFound, 404, `"s1"`},
		{fmt.Errorf("%w: %q", bridge.ErrSubscriptionExists, "s1"), CodeConflict, 409, `"s1"`},
		{fmt.Errorf("%w: sink: not a URL", bridge.ErrInvalidSubscription), CodeInvalidSubscription, 400, "sink"},
		{fmt.Errorf("%w: %q", bridge.ErrSubscriptionChanged, "s1"), CodeConflict, 409, `"s1"`},
		{fmt.Errorf("%w: %q shares it", bridge.ErrSharedGroup, "s2"), CodeConflict, 409, `"s2"`},
		{fmt.Errorf("%w: from: a date", bridge.ErrInvalidReplay), CodeInvalidRequest, 400, "from"},
		{fmt.Errorf("updating %q: %w: nats: wrong last sequence", "k", mesh.ErrConflict), CodeConflict, 409, "read it again"},
		{&mesh.TooLargeError{Index: 2, Size: 9 << 20, Limit: 8 << 20}, CodeTooLarge, 413, "at most 8388608 bytes"},
		{fmt.Errorf("consuming: %w", mesh.ErrLimit), CodeLimitReached, 429, "limit"},
		{&http.MaxBytesError{Limit: 4096}, CodeTooLarge, 413, "4096 bytes"},
		{New(CodeUnsupportedMediaType, "br"), CodeUnsupportedMediaType, 415, "br"},
		{errors.New("secret internals"), CodeInternal, 500, ""},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			p := FromError(tc.err)
			assert.Equal(t, tc.code, p.Code)
			assert.Equal(t, tc.status, p.Status)
			assert.Equal(t, TypeBase+tc.code, p.Type)
			assert.NotEmpty(t, p.Title)
			assert.Contains(t, p.Detail, tc.detail)
			assert.NotContains(t, p.Detail, "secret")
			assert.NotContains(t, p.Detail, "nats:", "the engine's internals stay in the log")
		})
	}
}

func TestTable(t *testing.T) {
	seen := map[int]bool{}
	for _, c := range Codes() {
		p := New(c, "")
		assert.Equal(t, c, p.Code)
		assert.GreaterOrEqual(t, p.Status, 400)
		seen[p.Status] = true
	}
	for _, s := range []int{400, 401, 404, 405, 409, 413, 415, 500, 503} {
		assert.True(t, seen[s], "status %d has a problem", s)
	}
	assert.Equal(t, CodeInternal, New("no-such-code", "x").Code)
}

func TestWrite(t *testing.T) {
	w := httptest.NewRecorder()
	Write(w, New(CodeMeshUnavailable, "down"))
	assert.Equal(t, 503, w.Code)
	assert.Equal(t, ContentType, w.Header().Get("Content-Type"))
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	var got map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	assert.Equal(t, map[string]any{
		"type": "https://meshd.dev/problems/mesh-unavailable", "title": "Mesh unavailable",
		"status": float64(503), "detail": "down", "code": "mesh-unavailable",
	}, got)

	w = httptest.NewRecorder()
	Write(w, New(CodeNotFound, ""))
	assert.Equal(t, 404, w.Code)
	assert.Empty(t, w.Header().Get("Retry-After"))
	assert.NotContains(t, w.Body.String(), "detail")
}

// ReadJSON requires a JSON Content-Type: a text/plain POST is what a page
// of another site can send without a CORS preflight.
func TestReadJSONContentType(t *testing.T) {
	for ct, want := range map[string]int{
		"":                                  http.StatusUnsupportedMediaType,
		"text/plain":                        http.StatusUnsupportedMediaType,
		"text/plain;application/json":       http.StatusUnsupportedMediaType,
		"application/x-www-form-urlencoded": http.StatusUnsupportedMediaType,
		"application/json":                  http.StatusOK,
		"application/json; charset=utf-8":   http.StatusOK,
		"application/merge-patch+json":      http.StatusOK,
	} {
		r := httptest.NewRequest("POST", "/", strings.NewReader(`{"a":1}`))
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		var v map[string]any
		err := ReadJSON(httptest.NewRecorder(), r, &v, 1<<10, CodeInvalidRequest)
		if want == http.StatusOK {
			assert.NoError(t, err, ct)
			continue
		}
		var p Problem
		require.ErrorAs(t, err, &p, ct)
		assert.Equal(t, want, p.Status, ct)
		assert.Equal(t, CodeUnsupportedMediaType, p.Code, ct)
	}
}
