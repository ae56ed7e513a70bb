package httpsink_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/httpsink"
)

// receiver is the outside system: an HTTP server recording the ce-id of
// every event it accepted.
type receiver struct {
	mu      sync.Mutex
	ids     []string
	failing atomic.Bool
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	if rc.failing.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if r.Header.Get("Authorization") != "Bearer sink-secret" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	rc.ids = append(rc.ids, r.Header.Get("Ce-Id"))
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) received() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.ids...)
}

func TestHTTPSinkSuite(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	connectortest.RunSink(t, connectortest.Sink{
		Spec: httpsink.Spec,
		Config: map[string]any{
			"url":            srv.URL + "/hook",
			"secret.headers": map[string]any{"Authorization": "Bearer sink-secret"},
		},
		Received:   rc.received,
		SetFailing: rc.failing.Store,
	})
}
