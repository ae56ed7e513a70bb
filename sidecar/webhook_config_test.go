package sidecar

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// Every webhook listener setting has its env variable and flag, and the
// listener binds all interfaces by default (webhook sources must
// authenticate their callers).
func TestWebhookSettings(t *testing.T) {
	c := Defaults()
	assert.Equal(t, ":10107", c.Webhook.Listen)
	env := map[string]string{}
	for _, s := range settings(&c) {
		env[s.path] = s.EnvName()
	}
	for path, name := range map[string]string{
		"webhook.listen": "MESHD_WEBHOOK_LISTEN", "webhook.tls.cert": "MESHD_WEBHOOK_TLS_CERT", "webhook.tls.key": "MESHD_WEBHOOK_TLS_KEY",
		"webhook.readHeaderTimeout": "MESHD_WEBHOOK_READ_HEADER_TIMEOUT", "webhook.readTimeout": "MESHD_WEBHOOK_READ_TIMEOUT",
		"webhook.idleTimeout": "MESHD_WEBHOOK_IDLE_TIMEOUT", "webhook.maxConns": "MESHD_WEBHOOK_MAX_CONNS",
	} {
		assert.Equal(t, name, env[path], path)
	}

	dir := t.TempDir()
	cert, key := infra.SelfSignedCert(t, dir)
	t.Setenv("MESHD_WEBHOOK_TLS_CERT", cert)
	t.Setenv("MESHD_WEBHOOK_MAX_CONNS", "64")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	apply := c.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"--webhook.tls.key", key, "--webhook.readTimeout", "20s"}))
	require.NoError(t, LoadConfig("", &c, apply))
	assert.Equal(t, cert, c.Webhook.TLS.Cert)
	assert.Equal(t, key, c.Webhook.TLS.Key)
	assert.Equal(t, 64, c.Webhook.MaxConns)
	assert.Equal(t, 20*time.Second, c.Webhook.ReadTimeout)
	require.NoError(t, c.Validate())
	o := c.Webhook.options()
	assert.Equal(t, cert, o.TLSCert)
	assert.Equal(t, 10*time.Second, o.ReadHeaderTimeout)
}

func TestWebhookSettingsValidate(t *testing.T) {
	dir := t.TempDir()
	cert, _ := infra.SelfSignedCert(t, dir)
	bad := filepath.Join(dir, "bad.pem")
	require.NoError(t, os.WriteFile(bad, []byte("not a key"), 0o600))
	for want, edit := range map[string]func(*Config){
		"webhook.tls.cert and webhook.tls.key": func(c *Config) { c.Webhook.TLS.Cert = cert },
		"webhook.tls.cert, webhook.tls.key":    func(c *Config) { c.Webhook.TLS.Cert, c.Webhook.TLS.Key = cert, bad },
		"webhook.readTimeout":                  func(c *Config) { c.Webhook.ReadTimeout = 0 },
		"webhook.maxConns":                     func(c *Config) { c.Webhook.MaxConns = -1 },
		"webhook.listen":                       func(c *Config) { c.Webhook.Listen = "10107" },
	} {
		c := Defaults()
		edit(&c)
		err := c.Validate()
		require.Error(t, err, want)
		assert.Contains(t, err.Error(), want)
	}
}
