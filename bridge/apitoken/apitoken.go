// Package apitoken decides who may call meshd's HTTP APIs: the app API
// token every app endpoint requires when api.token is set
// ("Authorization: Bearer <token>" or "meshd-api-token: <token>"), the
// admin token of the admin API (admin.token, Bearer only), and which
// browser pages may call the app API at all (Origins).
package apitoken

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Checker compares presented tokens with the configured one in constant
// time, over SHA-256 digests so the length does not leak either. The zero
// Checker requires no token.
type Checker struct {
	set    bool
	digest [sha256.Size]byte
}

// New returns a Checker for token; an empty token requires none.
func New(token string) Checker {
	if token == "" {
		return Checker{}
	}
	return Checker{set: true, digest: sha256.Sum256([]byte(token))}
}

// Required reports whether a token is configured.
func (c Checker) Required() bool { return c.set }

// Match reports whether tok is the configured token.
func (c Checker) Match(tok string) bool {
	if !c.set || tok == "" {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], c.digest[:]) == 1
}

// FromRequest returns the token a request presents in its headers, or "":
// "meshd-api-token: <token>" or "Authorization: Bearer <token>".
func FromRequest(r *http.Request) string {
	if tok := r.Header.Get("Meshd-Api-Token"); tok != "" {
		return tok
	}
	return Bearer(r)
}

// Bearer returns the token of "Authorization: Bearer <token>", or "".
func Bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}
