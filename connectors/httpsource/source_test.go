package httpsource_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/meshd/meshd/test/infra"

	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/httpsource"
	"github.com/meshd/meshd/connectors/worker"
)

func freeAddr(t *testing.T) string { return infra.FreeAddr(t) }

const hmacKey = "webhook-hmac-key"

func sign(body []byte) string {
	mac := hmac.New(sha256.New, []byte(hmacKey))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

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
