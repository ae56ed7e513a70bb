package httpsource_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/httpsource"
	"github.com/meshd/meshd/connectors/internal/webhook"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/test/infra"
)

func freeAddr(t *testing.T) string { return infra.FreeAddr(t) }

const hmacKey = "webhook-hmac-key"

func sign(body []byte) string { return webhook.SignSHA256(body, []byte(hmacKey)) }

// The outside system is a webhook sender: it POSTs each item as a
// binary-mode CloudEvent, signed, and retries until it gets a 2xx.
func TestHTTPSourceSuite(t *testing.T) {
	addr := freeAddr(t)
	connectortest.RunSource(t, connectortest.Source{
		Spec:           httpsource.Spec,
		Config:         map[string]any{"path": "/hooks/test", "hmac.secret": hmacKey, "timeout": "2s"},
		Options:        func(o *worker.Options) { o.WebhookListen = addr },
		AcksAfterStore: true,
		Produce: func(ctx context.Context, keys []string) error {
			for _, k := range keys {
				body := []byte(fmt.Sprintf(`{"key":%q}`, k))
				for {
					req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/hooks/test", bytes.NewReader(body))
					if err != nil {
						return err
					}
					req.Header.Set("Ce-Specversion", "1.0")
					req.Header.Set("Ce-Id", k)
					req.Header.Set("Ce-Source", "/webhook-sender")
					req.Header.Set("Ce-Type", "dev.meshd.test")
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set(httpsource.DefaultHMACHeader, sign(body))
					resp, err := http.DefaultClient.Do(req)
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode/100 == 2 {
							break
						}
					}
					select {
					case <-ctx.Done():
						return fmt.Errorf("item %s not accepted: %w", k, ctx.Err())
					case <-time.After(20 * time.Millisecond): // a sender's retry delay
					}
				}
			}
			return nil
		},
	})
}

// A webhook source must authenticate its callers: a config with neither
// token nor signature key is refused unless it says auth: none.
func TestHTTPSourceRequiresAuth(t *testing.T) {
	_, err := httpsource.Spec.Validate(map[string]any{"connector.type": "http-source", "topic": "t"})
	var ve *connectors.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.NotEmpty(t, ve.Field("auth"), "the error names the auth field: %v", err)
	for _, extra := range []map[string]any{{"token": "x"}, {"hmac.secret": "x"}, {"auth": "none"}} {
		raw := map[string]any{"connector.type": "http-source", "topic": "t"}
		maps.Copy(raw, extra)
		_, err := httpsource.Spec.Validate(raw)
		assert.NoError(t, err, "%v", extra)
	}
	_, err = httpsource.Spec.Validate(map[string]any{"connector.type": "http-source", "topic": "t", "hmac.scheme": "standard-webhooks", "hmac.secret": "whsec_%%%"})
	require.ErrorAs(t, err, &ve)
	assert.NotEmpty(t, ve.Field("hmac.secret"))
	assert.NotContains(t, err.Error(), "%%%", "the error does not repeat the secret")
}

// Standard Webhooks: a signed, fresh request is stored with the message id
// as the event id; a wrong signature and a replay outside the window get
// 401, store nothing, and the answer never repeats the signature.
func TestHTTPSourceStandardWebhooks(t *testing.T) {
	addr := freeAddr(t)
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, err := webhook.ParseStandardSecret(secret)
	require.NoError(t, err)
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	reg := connectors.NewRegistry()
	reg.Register(httpsource.Spec)
	rt, err := worker.New(worker.Options{Engine: eng, Registry: reg, WebhookListen: addr})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() { _ = rt.Stop(context.Background()) })
	_, err = rt.Create(t.Context(), "std", map[string]any{"connector.type": "http-source", "topic": "std", "path": "/std",
		"hmac.scheme": "standard-webhooks", "hmac.secret": secret, "hmac.tolerance": "1m"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return rt.WebhookAddr() != "" }, 10*time.Second, 10*time.Millisecond)

	send := func(id string, ts time.Time, sig string) (int, string) {
		body := []byte(`{"msg":"` + id + `"}`)
		if sig == "" {
			sig = webhook.SignStandard(id, ts, body, key)
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/std", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set("webhook-signature", sig)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	forged := "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
	code, body := send("msg_forged", time.Now(), forged)
	assert.Equal(t, http.StatusUnauthorized, code, body)
	assert.NotContains(t, body, "Ceo5qEr07ixe2NLpvHk3FH9bwy", "the received signature is never echoed")
	code, body = send("msg_replayed", time.Now().Add(-2*time.Minute), "")
	assert.Equal(t, http.StatusUnauthorized, code, body)
	assert.Contains(t, body, "window")
	code, body = send("msg_fresh", time.Now(), "")
	require.Equal(t, http.StatusNoContent, code, body)

	cons, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: "std", Group: "reader"})
	require.NoError(t, err)
	defer cons.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	m, err := cons.Next(ctx)
	require.NoError(t, err)
	assert.Equal(t, "msg_fresh", m.Event().ID(), "only the fresh request is stored, with the message id as the event id")
}

// A request whose event is larger than the mesh stores is a 413 for that
// request alone (before, the runtime retried its publish forever and every
// later request got 503): the source goes on taking the next ones.
func TestTooLargeForTheMeshIs413(t *testing.T) {
	addr := freeAddr(t)
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	reg := connectors.NewRegistry()
	reg.Register(httpsource.Spec)
	rt, err := worker.New(worker.Options{Engine: eng, Registry: reg, WebhookListen: addr})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() { _ = rt.Stop(context.Background()) })
	_, err = rt.Create(t.Context(), "big", map[string]any{"connector.type": "http-source", "topic": "big", "path": "/big",
		"auth": "none", "max.body.bytes": 4 * eng.MaxEventBytes()})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return rt.WebhookAddr() != "" }, 10*time.Second, 10*time.Millisecond)
	post := func(body []byte) (int, string) {
		resp, err := http.Post("http://"+addr+"/big", "application/octet-stream", bytes.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := post(make([]byte, eng.MaxEventBytes()+1))
	require.Equal(t, http.StatusRequestEntityTooLarge, code, body)
	assert.Contains(t, body, "the mesh stores at most")
	code, body = post([]byte("small"))
	require.Equal(t, http.StatusNoContent, code, body)
}
