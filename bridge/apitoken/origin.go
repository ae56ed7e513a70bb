package apitoken

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Origins is the one rule deciding which browser pages may call meshd's app
// API, over HTTP and WebSocket alike. A browser names the page that makes a
// request in its Origin header; a request without one does not come from
// a page (a CLI, a server, the app itself) and is allowed. A request with
// one is allowed when it is
//   - listed (scheme://host[:port], "*" for any),
//   - from a localhost page (http://localhost:3000, http://app.localhost,
//     http://127.0.0.1:8080, http://[::1]), or
//   - same-origin with an IP address or localhost as its host.
//
// A same-origin request under a DNS name is not allowed unless listed: it
// may be DNS rebinding (a page of evil.example whose name is made to
// resolve to 127.0.0.1 is "same-origin" with the API it attacks). The zero
// Origins allows only the unlisted cases.
type Origins struct {
	any     bool
	allowed map[string]bool // lower-case scheme://host[:port], no trailing slash
}

// NewOrigins returns the rule with allowed as the listed origins.
func NewOrigins(allowed []string) Origins {
	o := Origins{allowed: map[string]bool{}}
	for _, a := range allowed {
		if a == "*" {
			o.any = true
			continue
		}
		o.allowed[strings.ToLower(strings.TrimRight(a, "/"))] = true
	}
	return o
}

// CheckOrigins names the first malformed entry of allowed ("*" or
// scheme://host[:port]).
func CheckOrigins(allowed []string) error {
	for i, a := range allowed {
		if a == "*" {
			continue
		}
		u, err := url.Parse(strings.TrimRight(a, "/"))
		if a == "" || err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("[%d]: %q is not an origin: want scheme://host[:port], e.g. https://app.example:8443, or \"*\"", i, a)
		}
	}
	return nil
}

// Allowed reports whether r may be served (see Origins).
func (o Origins) Allowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if o.Listed(origin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" { // "null": a sandboxed page, a file, a data: URL
		return false
	}
	host := strings.ToLower(u.Hostname())
	if host == "localhost" || strings.HasSuffix(host, ".localhost") { // browsers resolve *.localhost to loopback themselves
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	return ip.IsLoopback() || strings.EqualFold(u.Host, r.Host)
}

// Listed reports whether origin is one of the listed origins (or "*" is).
func (o Origins) Listed(origin string) bool {
	return o.any || o.allowed[strings.ToLower(strings.TrimRight(origin, "/"))]
}
