package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd/connectors"
)

// Values of the auth field every webhook source has: a source must
// authenticate its callers unless its config says auth: none.
const (
	FieldAuth    = "auth"
	AuthRequired = "required"
	AuthNone     = "none"
)

// AuthField is the auth field of a webhook source's spec.
func AuthField() connectors.Field {
	return connectors.Field{
		Name: FieldAuth, Type: connectors.TypeString, Default: AuthRequired, Enum: []string{AuthRequired, AuthNone},
		Description: "required: every request must carry the configured token or signature (the config must set one); none: accept requests from anyone on the network (only behind something that authenticates them).",
	}
}

// CheckAuth is the rule of the auth field: with auth required, at least
// one of the named secret fields must be set.
func CheckAuth(cfg connectors.Config, secretFields ...string) []connectors.FieldError {
	if cfg.String(FieldAuth) == AuthNone {
		return nil
	}
	for _, f := range secretFields {
		if cfg.String(f) != "" {
			return nil
		}
	}
	return []connectors.FieldError{{Field: FieldAuth, Reason: fmt.Sprintf(
		"the webhook listener is public: set %s, or auth: %s to accept unauthenticated requests", strings.Join(secretFields, " or "), AuthNone)}}
}

// TokenHeader carries a shared token (as does Authorization: Bearer).
const TokenHeader = "X-Meshd-Token"

// CheckToken reports whether h carries token as "Authorization: Bearer
// <token>" or in TokenHeader, compared in constant time. An empty token
// matches nothing.
func CheckToken(h http.Header, token []byte) bool {
	if len(token) == 0 {
		return false
	}
	got := h.Get(TokenHeader)
	if bearer, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer "); ok {
		got = bearer
	}
	return subtle.ConstantTimeCompare([]byte(got), token) == 1
}

// SignSHA256 returns "sha256=" and the hex HMAC-SHA256 of body with key:
// GitHub's X-Hub-Signature-256.
func SignSHA256(body, key []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// CheckSHA256 reports whether sig is SignSHA256(body, key), compared in
// constant time (hex in either case). An empty key matches nothing.
func CheckSHA256(sig string, body, key []byte) bool {
	if len(key) == 0 {
		return false
	}
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(sig), "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return hmac.Equal(mac.Sum(nil), got)
}

// Standard Webhooks (https://www.standardwebhooks.com): the sender signs
// "<webhook-id>.<webhook-timestamp>.<body>" with HMAC-SHA256 and sends
// "v1,<base64>" signatures, space separated, in webhook-signature. The
// timestamp is signed, so a replay outside the window is refused.
const (
	HeaderStandardID        = "Webhook-Id"
	HeaderStandardTimestamp = "Webhook-Timestamp"
	HeaderStandardSignature = "Webhook-Signature"
	// DefaultTolerance is how far a Standard Webhooks timestamp may be
	// from now, either way.
	DefaultTolerance = 5 * time.Minute
	standardPrefix   = "whsec_"
)

// Errors of CheckStandard. None repeats what the request carried.
var (
	ErrUnsigned     = errors.New("the request carries no signature")
	ErrBadSignature = errors.New("no signature of the request matches")
	ErrStale        = errors.New("the signed timestamp is outside the accepted window")
)

// ParseStandardSecret decodes a Standard Webhooks secret: base64, with or
// without the "whsec_" prefix. The error does not repeat the secret.
func ParseStandardSecret(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, standardPrefix))
	if err != nil || len(key) == 0 {
		return nil, errors.New("want whsec_ followed by base64, as the sender shows it")
	}
	return key, nil
}

// SignStandard returns the "v1,<base64>" signature of a Standard Webhooks
// message.
func SignStandard(id string, ts time.Time, body, key []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(standardMAC(id, strconv.FormatInt(ts.Unix(), 10), body, key))
}

func standardMAC(id, ts string, body, key []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return mac.Sum(nil)
}

// CheckStandard verifies a Standard Webhooks request: one of its v1
// signatures is the HMAC of id, timestamp and body (constant time), and
// the timestamp is within tolerance of now.
func CheckStandard(h http.Header, body, key []byte, tolerance time.Duration, now time.Time) error {
	id, ts, sigs := h.Get(HeaderStandardID), h.Get(HeaderStandardTimestamp), h.Get(HeaderStandardSignature)
	if id == "" || ts == "" || sigs == "" || len(key) == 0 {
		return ErrUnsigned
	}
	want := standardMAC(id, ts, body, key)
	match := false
	for _, s := range strings.Fields(sigs) {
		b64, ok := strings.CutPrefix(s, "v1,")
		if !ok {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(want, got) {
			match = true
		}
	}
	if !match {
		return ErrBadSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrStale
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	return nil
}
