package cehttp

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
)

// counting is a server that counts the requests it got.
func counting(t *testing.T, ln net.Listener) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

func portOf(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return p
}

// requireRefused checks that err is the refusal of a target.
func requireRefused(t *testing.T, err error, why string) {
	t.Helper()
	require.ErrorIs(t, err, ErrTargetRefused)
	assert.Contains(t, err.Error(), why)
}

// requireSendRefused checks that err, of a Send, is the permanent refusal
// of its target.
func requireSendRefused(t *testing.T, err error, why string) {
	t.Helper()
	requireRefused(t, err, why)
	class, _ := bridge.Classify(err)
	assert.Equal(t, bridge.Permanent, class, "a refused target is dead-lettered, not retried or held")
}

// A sink on one of meshd's own listeners is refused when the connection
// is dialled, whatever name the URL gives it: the address decides.
func TestGuardRefusesOwnListeners(t *testing.T) {
	admin, hits := counting(t, nil)
	other, otherHits := counting(t, nil)
	g, err := NewGuard(GuardConfig{Own: []string{admin.Listener.Addr().String()}})
	require.NoError(t, err)
	c := NewClient(ClientConfig{Guard: g})
	e := testEvent(t, "1.0")

	port := portOf(t, admin.Listener.Addr().String())
	for _, target := range []string{
		admin.URL + "/v1/connectors",
		"http://localhost:" + port + "/v1/connectors", // a name resolving to it
		"http://0.0.0.0:" + port + "/",                // the unspecified address reaches this host
	} {
		requireSendRefused(t, c.Send(t.Context(), target, e, false, nil), "meshd's own listeners")
		requireRefused(t, g.CheckURL(t.Context(), target), "meshd's own listeners")
	}
	assert.Zero(t, hits.Load(), "no request reached the refused listener")

	require.NoError(t, c.Send(t.Context(), other.URL, e, false, nil), "another port of the same host is a target like any")
	assert.EqualValues(t, 1, otherHits.Load())
}

// A listener on every interface (webhook.listen ":10107") covers each
// address of this host on its port, and only this host's.
func TestGuardOwnWildcard(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)
	srv, hits := counting(t, ln)
	port := portOf(t, srv.Listener.Addr().String())
	g, err := NewGuard(GuardConfig{Own: []string{":" + port}})
	require.NoError(t, err)
	g.localAddrs = func() ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.1.2.3")}, nil
	}
	p, _ := strconv.Atoi(port)
	ap := func(ip string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(p)) }
	requireRefused(t, g.CheckAddr("pod.local", ap("10.1.2.3")), "own listeners")
	requireRefused(t, g.CheckAddr("127.0.0.2", ap("127.0.0.2")), "own listeners")
	requireRefused(t, g.CheckAddr("::ffff:127.0.0.1", ap("::ffff:127.0.0.1")), "own listeners")
	assert.NoError(t, g.CheckAddr("other-pod", ap("10.1.2.4")), "another host's port")

	requireSendRefused(t, NewClient(ClientConfig{Guard: g}).Send(t.Context(), "http://127.0.0.1:"+port+"/", testEvent(t, "1.0"), false, nil), "own listeners")
	assert.Zero(t, hits.Load())
}

// Link-local and metadata addresses are refused by every client, also one
// without a Guard, unless listed by address.
func TestGuardRefusesMetadataByDefault(t *testing.T) {
	c := NewClient(ClientConfig{})
	for _, target := range []string{
		"http://169.254.169.254/latest/meta-data/iam/security-credentials/",
		"http://[fe80::1%25lo]:80/",
		"http://100.100.100.200/latest/meta-data/",
		"http://[::ffff:169.254.169.254]/",
		"http://[64:ff9b::a9fe:a9fe]/", // NAT64
	} {
		requireSendRefused(t, c.Send(t.Context(), target, testEvent(t, "1.0"), false, nil), "metadata")
	}
	var g *Guard
	requireRefused(t, g.CheckURL(t.Context(), "http://169.254.170.2/v2/credentials"), "metadata")

	allow, err := NewGuard(GuardConfig{Allowed: []string{"169.254.0.0/16"}})
	require.NoError(t, err)
	assert.NoError(t, allow.CheckAddr("169.254.169.254", netip.MustParseAddrPort("169.254.169.254:80")), "listed by address")
	byName, err := NewGuard(GuardConfig{Allowed: []string{"metadata.google.internal"}})
	require.NoError(t, err)
	requireRefused(t, byName.CheckAddr("metadata.google.internal", netip.MustParseAddrPort("169.254.169.254:80")), "metadata")
}

// With an allow-list, only listed names, addresses and networks are
// reached; meshd's own listeners stay refused even when listed.
func TestGuardAllowList(t *testing.T) {
	srv, hits := counting(t, nil)
	port := portOf(t, srv.Listener.Addr().String())
	e := testEvent(t, "1.0")

	byName, err := NewGuard(GuardConfig{Allowed: []string{"hooks.example.com", "*.svc.cluster.local"}})
	require.NoError(t, err)
	requireSendRefused(t, NewClient(ClientConfig{Guard: byName}).Send(t.Context(), srv.URL, e, false, nil), "not an allowed target")
	assert.NoError(t, byName.CheckAddr("hooks.example.com", netip.MustParseAddrPort("203.0.113.9:443")))
	assert.NoError(t, byName.CheckAddr("orders.shop.svc.cluster.local", netip.MustParseAddrPort("10.96.0.12:80")))
	requireRefused(t, byName.CheckAddr("evil.example", netip.MustParseAddrPort("203.0.113.9:443")), "not an allowed target")

	byNet, err := NewGuard(GuardConfig{Allowed: []string{"127.0.0.0/8", "2001:db8::1"}})
	require.NoError(t, err)
	require.NoError(t, NewClient(ClientConfig{Guard: byNet}).Send(t.Context(), "http://localhost:"+port+"/", e, false, nil))
	assert.EqualValues(t, 1, hits.Load())
	assert.NoError(t, byNet.CheckAddr("x", netip.MustParseAddrPort("[2001:db8::1]:80")))
	requireRefused(t, byNet.CheckAddr("x", netip.MustParseAddrPort("192.0.2.1:80")), "not an allowed target")

	own, err := NewGuard(GuardConfig{Allowed: []string{"127.0.0.0/8"}, Own: []string{srv.Listener.Addr().String()}})
	require.NoError(t, err)
	requireRefused(t, own.CheckURL(t.Context(), srv.URL), "own listeners")

	for _, bad := range []string{"", "http://x", "a/b", "*"} {
		_, err := NewGuard(GuardConfig{Allowed: []string{bad}})
		assert.Error(t, err, bad)
	}
}

// A request through a proxy dials the proxy; its target is checked by name
// before.
func TestGuardProxy(t *testing.T) {
	proxyURL, _ := url.Parse("http://proxy.example:3128")
	var g *Guard
	proxy := g.proxy(func(*http.Request) (*url.URL, error) { return proxyURL, nil })
	req := httptest.NewRequest("POST", "http://169.254.169.254/latest", nil)
	_, err := proxy(req)
	require.ErrorIs(t, err, ErrTargetRefused)
	req = httptest.NewRequest("POST", "http://192.0.2.1/hook", nil)
	p, err := proxy(req)
	require.NoError(t, err)
	assert.Equal(t, proxyURL, p)
}

func TestMaskURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pa55@hooks.example/x?token=abc&v=1": "https://****@hooks.example/x?token=****&v=****",
		"https://hooks.example/x":                         "https://hooks.example/x",
		"http://tok@[::1]:8080/a%20b":                     "http://****@[::1]:8080/a%20b",
		"/events?k=v":                                     "/events?k=****",
		"http://h/p?flag":                                 "http://h/p?****",
		"http://h/p#frag":                                 "http://h/p#****",
		"http://a b@h/%zz":                                "http://a b****",
	} {
		assert.Equal(t, want, MaskURL(in, "****"), in)
	}
	assert.ElementsMatch(t, []string{"user", "pa55", "abc", "1"}, SecretsOfURL("https://user:pa55@hooks.example/x?token=abc&v=1"))
	assert.Equal(t, "https://…@h/?t=…", Redact("https://u:p@h/?t=x"))
}

// A target that echoes the request's URL credentials in its error answer
// does not put them into the error (logs, deliveryerror).
func TestErrorsMaskURLSecrets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("refused " + r.URL.RawQuery + " for " + u + ":" + p))
	}))
	defer srv.Close()
	target := "http://hookuser:hookpa55@" + srv.Listener.Addr().String() + "/in?key=qk3y&v=1"
	err := NewClient(ClientConfig{}).Send(t.Context(), target, testEvent(t, "1.0"), false, nil)
	require.Error(t, err)
	for _, secret := range []string{"hookpa55", "qk3y", "hookuser"} {
		assert.NotContains(t, err.Error(), secret)
	}
	assert.Contains(t, err.Error(), "refused key="+Mask)
}
