package webhook_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/internal/webhook"
)

// GitHub's documented test vector of X-Hub-Signature-256.
func TestSHA256GitHubVector(t *testing.T) {
	const want = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	key, body := []byte("It's a Secret to Everybody"), []byte("Hello, World!")
	assert.Equal(t, want, webhook.SignSHA256(body, key))
	assert.True(t, webhook.CheckSHA256(want, body, key))
	assert.True(t, webhook.CheckSHA256("sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17", body, key), "hex in upper case")
	for _, bad := range []string{"", "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", "sha256=", "sha256=zz",
		"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18", "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"} {
		assert.False(t, webhook.CheckSHA256(bad, body, key), "%q", bad)
	}
	assert.False(t, webhook.CheckSHA256(want, []byte("Hello, World"), key), "another body")
	assert.False(t, webhook.CheckSHA256(webhook.SignSHA256(body, nil), body, nil), "no key matches nothing")
}

// The Standard Webhooks reference vector, the timestamp window and
// several signatures in one header.
func TestStandardWebhooks(t *testing.T) {
	key, err := webhook.ParseStandardSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	ts := time.Unix(1614265330, 0)
	body := []byte(`{"test": 2432232314}`)
	sig := webhook.SignStandard("msg_p5jXN8AQM9LWM0D4loKWxJek", ts, body, key)
	assert.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", sig)

	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,x "+sig)
	assert.NoError(t, webhook.CheckStandard(h, body, key, 5*time.Minute, ts.Add(4*time.Minute)))
	assert.NoError(t, webhook.CheckStandard(h, body, key, 5*time.Minute, ts.Add(-4*time.Minute)), "a sender clock a little ahead")
	assert.ErrorIs(t, webhook.CheckStandard(h, body, key, 5*time.Minute, ts.Add(6*time.Minute)), webhook.ErrStale, "a replay after the window")
	assert.ErrorIs(t, webhook.CheckStandard(h, body, key, 5*time.Minute, ts.Add(-6*time.Minute)), webhook.ErrStale)
	assert.ErrorIs(t, webhook.CheckStandard(h, []byte(`{"test": 1}`), key, 5*time.Minute, ts), webhook.ErrBadSignature)

	moved := h.Clone()
	moved.Set("webhook-timestamp", "1614265630") // a replay with a fresh timestamp: the signature no longer matches
	assert.ErrorIs(t, webhook.CheckStandard(moved, body, key, 5*time.Minute, ts.Add(5*time.Minute)), webhook.ErrBadSignature)
	for _, k := range []string{"webhook-id", "webhook-timestamp", "webhook-signature"} {
		missing := h.Clone()
		missing.Del(k)
		assert.ErrorIs(t, webhook.CheckStandard(missing, body, key, 5*time.Minute, ts), webhook.ErrUnsigned, k)
	}
	_, err = webhook.ParseStandardSecret("whsec_not base64!")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "not base64", "the error does not repeat the secret")
}

func TestCheckToken(t *testing.T) {
	tok := []byte("s3cret-token")
	h := http.Header{}
	assert.False(t, webhook.CheckToken(h, tok))
	h.Set("Authorization", "Bearer s3cret-token")
	assert.True(t, webhook.CheckToken(h, tok))
	h.Set("Authorization", "Bearer s3cret-tokenX")
	assert.False(t, webhook.CheckToken(h, tok))
	h = http.Header{}
	h.Set(webhook.TokenHeader, "s3cret-token")
	assert.True(t, webhook.CheckToken(h, tok))
	assert.False(t, webhook.CheckToken(http.Header{}, nil), "no token matches nothing")
}

func TestCheckAuth(t *testing.T) {
	cfg := connectors.Config{webhook.FieldAuth: webhook.AuthRequired}
	errs := webhook.CheckAuth(cfg, "token", "hmac.secret")
	require.Len(t, errs, 1)
	assert.Equal(t, webhook.FieldAuth, errs[0].Field)
	assert.Contains(t, errs[0].Reason, "token or hmac.secret")
	cfg["token"] = "x"
	assert.Empty(t, webhook.CheckAuth(cfg, "token", "hmac.secret"))
	assert.Empty(t, webhook.CheckAuth(connectors.Config{webhook.FieldAuth: webhook.AuthNone}, "token"))
}
