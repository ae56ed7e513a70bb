package chatbot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd/bridge"
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

// tokenRefused is the vendor's refusal of the access token a message was
// sent with.
type tokenRefused struct{ error }

func (e *tokenRefused) Unwrap() error { return e.error }

// TokenRefused marks err as the vendor's refusal of the access token a
// message was sent with (SendWithToken then fetches a new one).
func TokenRefused(err error) error { return &tokenRefused{err} }

// SendWithToken calls send with the robot's access token. When the vendor
// refuses the token (send returns a TokenRefused error), it fetches a new
// one and sends again, once; a refusal of the new token too holds the
// events (the app's rights are wrong, not the message). what names the
// token in that error ("access token").
func (c *Client) SendWithToken(ctx context.Context, what string, send func(ctx context.Context, token string) error) error {
	for try := 0; ; try++ {
		tok, err := c.Tokens.Token(ctx)
		if err != nil {
			return err
		}
		err = send(ctx, tok)
		var refused *tokenRefused
		switch {
		case !errors.As(err, &refused):
			return err
		case try == 0:
			c.Tokens.Invalidate(tok)
			continue
		}
		return bridge.UnavailableError(fmt.Errorf("%w (with a new %s)", refused.error, what), 0)
	}
}

// CredentialsRefused says whether err, the failure of a request for an
// access token, is the vendor's refusal of the app's credentials (an
// answer 4xx but 429), with the answer's status and the start of its body.
// Such a refusal holds the events until the config is fixed.
func CredentialsRefused(err error) (status int, body string, ok bool) {
	status, body, ok = Refused(err)
	return status, body, ok && status < 500 && status != http.StatusTooManyRequests
}
