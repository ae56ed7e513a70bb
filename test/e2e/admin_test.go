package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type problemDoc struct {
	Type, Title, Detail, Code string
	Status                    int
}

// adminProblem calls the admin server and decodes its problem answer.
func (m *meshd) adminProblem(method, path string) (*http.Response, problemDoc) {
	m.t.Helper()
	req, err := http.NewRequest(method, "http://"+m.admin+path, strings.NewReader(""))
	require.NoError(m.t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(m.t, err)
	defer resp.Body.Close()
	var p problemDoc
	require.Equal(m.t, "application/problem+json", resp.Header.Get("Content-Type"), "%s %s", method, path)
	require.NoError(m.t, json.NewDecoder(resp.Body).Decode(&p))
	return resp, p
}

// The admin server answers unknown paths and methods as the app API does:
// application/problem+json with a stable code.
func TestAdminAnswersProblems(t *testing.T) {
	m := newMeshd(t, "admin-app", "")
	cases := []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{http.MethodGet, "/nope", 404, "not-found", ""},
		{http.MethodGet, "/v1/connectors/x/nope", 404, "not-found", ""},
		{http.MethodPost, "/healthz", 405, "method-not-allowed", "GET, HEAD"},
		{http.MethodDelete, "/metrics", 405, "method-not-allowed", "GET, HEAD"},
		{http.MethodPatch, "/v1/connectors", 405, "method-not-allowed", "GET, HEAD, POST"},
	}
	for _, tc := range cases {
		resp, p := m.adminProblem(tc.method, tc.path)
		assert.Equal(t, tc.status, resp.StatusCode, "%s %s", tc.method, tc.path)
		assert.Equal(t, tc.status, p.Status)
		assert.Equal(t, tc.code, p.Code)
		assert.Contains(t, p.Detail, tc.path)
		assert.Equal(t, tc.allow, resp.Header.Get("Allow"), "%s %s", tc.method, tc.path)
	}
}

// When the mesh is gone, /readyz answers 503 with a problem whose detail
// is one short sentence: no NATS internals, nothing said twice.
func TestReadyzDetailIsShort(t *testing.T) {
	natsAddr := freeAddr(t)
	hub := newMeshd(t, "mesh-hub", "mesh:\n  listen: "+natsAddr+"\n")
	spoke := newMeshd(t, "mesh-spoke", "mesh:\n  url: nats://"+natsAddr+"\n  tokenFile: "+hub.meshTokenFile()+"\n")
	hub.kill9()

	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + spoke.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	}, 20*time.Second, 50*time.Millisecond)
	resp, p := spoke.adminProblem(http.MethodGet, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "mesh-unavailable", p.Code)
	assert.Equal(t, "the mesh at nats://"+natsAddr+" cannot store events now", p.Detail)
}
