package chatbot

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd/connectors"
)

// maxRefreshEarly bounds how long before its expiry a token is replaced.
const maxRefreshEarly = 5 * time.Minute

// FetchToken asks the vendor for an access token and how long it lives.
type FetchToken func(ctx context.Context) (token string, ttl time.Duration, err error)

// TokenSource caches an access token and fetches a new one shortly before
// the old one expires (a quarter of its life, at most five minutes early)
// or once the vendor refused it. One fetch runs at a time; concurrent
// callers wait for it. Safe for concurrent use.
type TokenSource struct {
	fetch FetchToken
	now   func() time.Time

	mu      sync.Mutex // guards token, refresh, seen; held during a fetch
	token   string
	refresh time.Time // fetch a new token from then on
	seen    []string  // tokens handed out, for Redact
}

// NewTokenSource returns a source that calls fetch; now is its clock (nil:
// time.Now).
func NewTokenSource(fetch FetchToken, now func() time.Time) *TokenSource {
	if now == nil {
		now = time.Now
	}
	return &TokenSource{fetch: fetch, now: now}
}

// Token returns the cached token, or a new one.
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.now().Before(s.refresh) {
		return s.token, nil
	}
	tok, ttl, err := s.fetch(ctx)
	if err != nil {
		return "", err
	}
	s.token = tok
	s.refresh = s.now().Add(ttl - min(ttl/4, maxRefreshEarly))
	if len(s.seen) >= 8 {
		s.seen = s.seen[1:]
	}
	s.seen = append(s.seen, tok)
	return tok, nil
}

// Invalidate drops tok if it is still the cached token, so the next Token
// fetches a new one.
func (s *TokenSource) Invalidate(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == tok {
		s.token = ""
	}
}

// Redact replaces the tokens this source handed out in text (they are
// credentials, and no config field holds them for the runtime to mask).
func (s *TokenSource) Redact(text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.seen {
		if len(t) >= 3 {
			text = strings.ReplaceAll(text, t, connectors.Mask)
		}
	}
	return text
}
