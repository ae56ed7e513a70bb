package chatbottest

import (
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Fake is the base of a fake vendor: a loopback server that takes POSTs
// only, the checks of the vendor's documentation, a clock, the messages
// the vendor took (of type P) and the access tokens it issued. Each
// request is handled with the fake locked; the exported fields, and the
// vendor's own, are guarded by it.
type Fake[P any] struct {
	*Checks
	Srv *httptest.Server
	Now func() time.Time

	sync.Mutex
	Posted   []P         // the messages the vendor took, in order
	Sent     []time.Time // when it took those its rate limit counts
	requests int
	fetches  int
	revoked  bool                 // every access token is refused
	tokens   map[string]time.Time // access tokens and their expiry
}

// NewFake starts the fake of vendor, stopped when the test ends. serve
// handles each POST, with its body read and the fake locked.
func NewFake[P any](t testing.TB, vendor string, serve func(w http.ResponseWriter, r *http.Request, body []byte)) *Fake[P] {
	f := &Fake[P]{Checks: NewChecks(t, vendor), Now: time.Now, tokens: map[string]time.Time{}}
	f.Srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.Lock()
		defer f.Unlock()
		f.requests++
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost {
			f.Violate("%s %s: want POST", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		serve(w, r, body)
	}))
	t.Cleanup(f.Srv.Close)
	return f
}

// Do runs fn with the fake locked (to change how it answers).
func (f *Fake[P]) Do(fn func()) {
	f.Lock()
	defer f.Unlock()
	fn()
}

// Messages are the messages the vendor took, in order.
func (f *Fake[P]) Messages() []P {
	f.Lock()
	defer f.Unlock()
	return slices.Clone(f.Posted)
}

// Requests is how many requests the fake served.
func (f *Fake[P]) Requests() int {
	f.Lock()
	defer f.Unlock()
	return f.requests
}

// Fetches is how many access tokens the fake issued.
func (f *Fake[P]) Fetches() int {
	f.Lock()
	defer f.Unlock()
	return f.fetches
}

// Tokens are the access tokens the fake issued and keeps.
func (f *Fake[P]) Tokens() []string {
	f.Lock()
	defer f.Unlock()
	return slices.Collect(maps.Keys(f.tokens))
}

// DropTokens forgets the access tokens issued so far: the vendor refuses
// them, and takes new ones.
func (f *Fake[P]) DropTokens() { f.Do(func() { clear(f.tokens) }) }

// RevokeTokens makes the vendor refuse every access token, new ones too.
func (f *Fake[P]) RevokeTokens() { f.Do(func() { f.revoked = true }) }

// IssueToken records tok, issued now for ttl. The fake must be locked
// (serve is).
func (f *Fake[P]) IssueToken(tok string, ttl time.Duration) {
	f.fetches++
	f.tokens[tok] = f.Now().Add(ttl)
}

// TokenValid says whether the vendor takes tok: issued, not expired, not
// revoked. The fake must be locked.
func (f *Fake[P]) TokenValid(tok string) bool {
	exp, ok := f.tokens[tok]
	return ok && f.Now().Before(exp) && !f.revoked
}

// SentWithin counts the messages of Sent within per before now. The fake
// must be locked.
func (f *Fake[P]) SentWithin(now time.Time, per time.Duration) int {
	n := 0
	for _, t := range f.Sent {
		if now.Sub(t) < per {
			n++
		}
	}
	return n
}

// JSONType checks that r has the Content-Type exact, or, if exact is "",
// any application/json.
func (f *Fake[P]) JSONType(r *http.Request, exact string) bool {
	ct := r.Header.Get("Content-Type")
	if exact != "" {
		if ct != exact {
			f.Violate("%s: Content-Type %q, want %q", r.URL.Path, ct, exact)
			return false
		}
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		f.Violate("%s: Content-Type %q, want application/json", r.URL.Path, ct)
		return false
	}
	return true
}

// ServeAt serves the fake on addr too, from now on (a vendor that comes
// back on an address that refused connections).
func (f *Fake[P]) ServeAt(t testing.TB, addr string) {
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the port is free again")
	srv := &http.Server{Handler: f.Srv.Config.Handler, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// ClosedAddr is a loopback address nothing listens on (yet).
func ClosedAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}
