package sidecar

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnvNames(t *testing.T) {
	c := Defaults()
	names := map[string]string{}
	for _, s := range settings(&c) {
		names[s.path] = s.EnvName()
	}
	assert.Equal(t, "MESHD_API_LISTEN", names["api.listen"])
	assert.Equal(t, "MESHD_API_MAX_BODY_BYTES", names["api.maxBodyBytes"])
	assert.Equal(t, "MESHD_MESH_URL", names["mesh.url"])
	assert.Equal(t, "MESHD_DATA_DIR", names["data.dir"])
	assert.Equal(t, "MESHD_DELIVERY_BACKOFF_INITIAL", names["delivery.backoffInitial"])
	assert.Equal(t, "MESHD_APP_ID", names["app.id"])
}

func TestPrecedenceFileEnvFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshd.yaml")
	require.NoError(t, os.WriteFile(path, []byte("api:\n  listen: 127.0.0.1:1111\n  maxBodyBytes: 100\nmesh:\n  maxAge: 1h\n"), 0o600))
	t.Setenv("MESHD_API_LISTEN", "127.0.0.1:2222")
	t.Setenv("MESHD_MESH_SYNC_ALWAYS", "true")

	c := Defaults()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	apply := c.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"--api.listen", "127.0.0.1:3333", "--delivery.timeout", "3s"}))
	require.NoError(t, LoadConfig(path, &c, apply))

	assert.Equal(t, "127.0.0.1:3333", c.API.Listen, "a flag beats env and file")
	assert.Equal(t, int64(100), c.API.MaxBodyBytes, "the file beats the default")
	assert.True(t, c.Mesh.SyncAlways, "env applies")
	assert.Equal(t, time.Hour, c.Mesh.MaxAge)
	assert.Equal(t, 3*time.Second, c.Delivery.Timeout)
	assert.Equal(t, "127.0.0.1:10106", c.Admin.Listen, "defaults stay")
}

func TestUnknownKeyIsAnError(t *testing.T) {
	c := Defaults()
	err := c.DecodeYAML([]byte("api:\n  listn: 127.0.0.1:1\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "listn")
}

func TestBadValuesNameTheSetting(t *testing.T) {
	cases := map[string]struct {
		env  map[string]string
		yaml string
		want string
	}{
		"bad duration env": {env: map[string]string{"MESHD_DELIVERY_TIMEOUT": "soon"}, want: "MESHD_DELIVERY_TIMEOUT"},
		"bad int env":      {env: map[string]string{"MESHD_API_MAX_BODY_BYTES": "big"}, want: "api.maxBodyBytes"},
		"bad listen":       {yaml: "api:\n  listen: nowhere\n", want: "api.listen"},
		"bad level":        {yaml: "log:\n  level: loud\n", want: "log.level"},
		"mesh both":        {yaml: "mesh:\n  url: nats://x:4222\n  listen: 127.0.0.1:4222\n", want: "mesh.listen"},
		"url scheme":       {yaml: "mesh:\n  url: x:4222\n", want: "mesh.url"},
		"ackWait":          {yaml: "delivery:\n  timeout: 30s\n  ackWait: 10s\n", want: "delivery.ackWait"},
		"dup sub":          {yaml: "subscriptions:\n  - {id: a, topic: t, sink: 'http://x'}\n  - {id: a, topic: t, sink: 'http://x'}\n", want: "subscriptions[1].id"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			path := ""
			if tc.yaml != "" {
				path = filepath.Join(t.TempDir(), "c.yaml")
				require.NoError(t, os.WriteFile(path, []byte(tc.yaml), 0o600))
			}
			c := Defaults()
			err := LoadConfig(path, &c, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestBadFlagValueIsRejectedAtParse(t *testing.T) {
	c := Defaults()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(&discard{})
	c.RegisterFlags(fs)
	err := fs.Parse([]string{"--delivery.timeout", "x"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "delivery.timeout")
}

func TestSecretsAreRedacted(t *testing.T) {
	c := Defaults()
	c.API.Token = "hunter2"
	for _, s := range settings(&c) {
		if s.path == "api.token" {
			assert.Equal(t, "<redacted>", s.String())
			return
		}
	}
	t.Fatal("api.token is not a setting")
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
