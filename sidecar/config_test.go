package sidecar

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/mesh"
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
		"lease too short":  {env: map[string]string{"MESHD_WORKER_LEASE_TIME": "200ms"}, want: "worker.leaseTime"},
		"leaf and url":     {yaml: "mesh:\n  url: nats://x:4222\n  leaf: nats://hub:7422\n", want: "mesh.leaf"},
		"leaf no scheme":   {yaml: "mesh:\n  leaf: hub:7422\n", want: "mesh.leaf"},
		"leafDomain alone": {yaml: "mesh:\n  leafDomain: edge1\n", want: "mesh.leafDomain"},
		"leafDomain = hub": {yaml: "mesh:\n  leaf: nats://hub:7422\n  leafDomain: hub\n", want: "mesh.leafDomain"},
		"token no url":     {yaml: "mesh:\n  token: abc\n", want: "mesh.token"},
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

// YAML mistakes are named by config path and line, never by Go type.
func TestYAMLErrorsNamePathAndLine(t *testing.T) {
	cases := map[string]string{
		"api:\n  listn: 127.0.0.1:1\n":                                 "api.listn (line 2): unknown setting; did you mean api.listen?",
		"api:\n  maxBodyBytes: big\n":                                  `api.maxBodyBytes (line 2): "big" is not an integer`,
		"api: 127.0.0.1:1\n":                                           `api (line 1): want a mapping (keys allowedOrigins, defaultType, idleTimeout, listen, maxBodyBytes, maxConns, readHeaderTimeout, readTimeout, token), got the value "127.0.0.1:1"`,
		"delivery:\n  timeout: 10\n":                                   `delivery.timeout (line 2): "10" is not a duration such as 500ms, 10s or 5m`,
		"mesh:\n  syncAlways: sometimes\n":                             `mesh.syncAlways (line 2): "sometimes" is not true or false`,
		"api:\n  listen: [a, b]\n":                                     "api.listen (line 2): want a single value, got a list",
		"subscriptions: {id: a}\n":                                     "subscriptions (line 1): want a list, got a mapping",
		"subscriptions:\n  - id: a\n    sinc: x\n":                     "subscriptions[0].sinc (line 3): unknown setting; did you mean subscriptions[0].sink?",
		"mqtt:\n  - name: a\n    tls: {caFil: x}\n":                    "mqtt[0].tls.caFil (line 3): unknown setting; did you mean mqtt[0].tls.caFile?",
		"connectors:\n  - name: x\n    config: {a: 1}\n    extra: 2\n": "connectors[0].extra (line 4): unknown setting; known here: config, name",
		"api:\n  listen: a\n  listen: b\n":                             "api.listen (line 3): set twice, first at line 2",
		"zzz: 1\n":                                                     "zzz (line 1): unknown setting; known here: admin, api, app",
		"api:\n  listen: x\nlog:\n  level: a: b\n":                     "line 4: mapping values are not allowed in this context",
	}
	for yaml, want := range cases {
		c := Defaults()
		err := c.DecodeYAML([]byte(yaml))
		require.Error(t, err, yaml)
		assert.Contains(t, err.Error(), want, yaml)
		assert.NotContains(t, err.Error(), "sidecar.", yaml)
		assert.NotContains(t, err.Error(), "\n", yaml)
	}
	// What is right still decodes, anchors and merge keys included.
	c := Defaults()
	require.NoError(t, c.DecodeYAML(nil), "an empty file")
	require.NoError(t, c.DecodeYAML([]byte("api: &a\n  listen: 127.0.0.1:9\nadmin:\n  <<: *a\n")))
	assert.Equal(t, "127.0.0.1:9", c.Admin.Listen)
}

// App ids map to state buckets one to one: "a.b" and "a_b" shared theirs
// (each ran the other's subscriptions and connectors). Ids that need no
// escaping keep the buckets earlier versions gave them.
func TestStateBucketsAreOneToOne(t *testing.T) {
	ids := []string{
		"orders", "a_b", "a-b", "A_b_c", "a.b", "a_2eb", "__a_2eb", "a__b", "a_5f_5fb", "a/b", "a b", "a:b",
		"ünïcode", "_", "__", "-", "web-1.example.com", "web-1_example_com",
		strings.Repeat("x", 200), strings.Repeat("x", 201), strings.Repeat(".", 100), strings.Repeat(".", 101),
		"__h" + strings.Repeat("0", 32),
	}
	seen := map[string]string{}
	for _, id := range ids {
		cfg := Config{App: AppConfig{ID: id}}
		b := cfg.stateBucket("meshd-subscriptions")
		require.True(t, mesh.IsToken(b, 255), "%q: bucket %q is a valid name", id, b)
		if other, dup := seen[b]; dup {
			t.Errorf("app ids %q and %q share bucket %q", other, id, b)
		}
		seen[b] = id
		if mesh.IsToken(id, 200) && !strings.Contains(id, "__") {
			assert.Equal(t, cfg.legacyStateBucket("meshd-subscriptions"), b, "%q keeps its bucket", id)
		}
	}
	a, b := Config{App: AppConfig{ID: "a.b"}}, Config{App: AppConfig{ID: "a_b"}}
	assert.Equal(t, a.legacyStateBucket("x"), b.legacyStateBucket("x"), "the collision this fixes")
	assert.NotEqual(t, a.stateBucket("x"), b.stateBucket("x"))
}
