package sidecar

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

func TestMeshSecurityEnvNames(t *testing.T) {
	for path, want := range map[string]string{
		"mesh.token":                  "MESHD_MESH_TOKEN",
		"mesh.tokenFile":              "MESHD_MESH_TOKEN_FILE",
		"mesh.nkeyFile":               "MESHD_MESH_NKEY_FILE",
		"mesh.user":                   "MESHD_MESH_USER",
		"mesh.password":               "MESHD_MESH_PASSWORD",
		"mesh.tls.caFile":             "MESHD_MESH_TLS_CA_FILE",
		"mesh.tls.serverName":         "MESHD_MESH_TLS_SERVER_NAME",
		"mesh.listenAuth":             "MESHD_MESH_LISTEN_AUTH",
		"mesh.listenToken":            "MESHD_MESH_LISTEN_TOKEN",
		"mesh.listenTLS.certFile":     "MESHD_MESH_LISTEN_TLS_CERT_FILE",
		"mesh.listenTLS.clientCAFile": "MESHD_MESH_LISTEN_TLS_CLIENT_CA_FILE",
		"secrets.key":                 "MESHD_SECRETS_KEY",
		"api.maxBodyBytes":            "MESHD_API_MAX_BODY_BYTES", // a single capital as before
	} {
		assert.Equal(t, want, EnvName(path), path)
	}
	c := Defaults()
	secret := map[string]bool{}
	for _, s := range settings(&c) {
		secret[s.path] = s.secret
	}
	for _, path := range []string{"mesh.token", "mesh.password", "mesh.listenToken", "mesh.listenPassword", "secrets.key"} {
		assert.True(t, secret[path], "%s is secret", path)
	}
}

func TestMeshSecurityValidation(t *testing.T) {
	ca := infra.NewTestCA(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	notSeed := filepath.Join(dir, "not-a-seed")
	require.NoError(t, os.WriteFile(notSeed, []byte("SUnotaseed\n"), 0o600))
	const url = "nats://127.0.0.1:4222"
	const secret = "pa55-in-error?"
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"client setting on the embedded mesh", map[string]string{"MESHD_MESH_TOKEN": secret}, "mesh.token: only for mesh.url"},
		{"listen setting with mesh.url", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_LISTEN_TOKEN": secret}, "mesh.listenToken: only for the embedded mesh"},
		{"listen setting without mesh.listen", map[string]string{"MESHD_MESH_LISTEN_TLS_CERT_FILE": ca.ServerCert}, "mesh.listenTLS.certFile: needs mesh.listen"},
		{"two kinds", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_TOKEN": secret, "MESHD_MESH_USER": "u", "MESHD_MESH_PASSWORD": secret},
			"mesh.user, mesh.token: set one kind of mesh credentials"},
		{"user without password", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_USER": "u"}, "mesh.user: needs mesh.password"},
		{"password without user", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_PASSWORD": secret}, "mesh.password: needs mesh.user"},
		{"missing token file", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_TOKEN_FILE": "/nonexistent/mesh.token"},
			"mesh.tokenFile: cannot read /nonexistent/mesh.token: no such file or directory"},
		{"empty token file", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_TOKEN_FILE": empty}, "mesh.tokenFile: " + empty + " is empty"},
		{"missing nkey", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_NKEY_FILE": "/nonexistent/u.nk"}, "mesh.nkeyFile: cannot read /nonexistent/u.nk"},
		{"not a seed", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_NKEY_FILE": notSeed}, "mesh.nkeyFile: " + notSeed + " holds no user NKey seed"},
		{"missing creds", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_CREDS": "/nonexistent/x.creds"}, "mesh.creds: cannot read"},
		{"missing CA", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_TLS_CA_FILE": "/nonexistent/ca.pem"}, "mesh.tls.caFile: cannot read /nonexistent/ca.pem"},
		{"CA not PEM", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_TLS_CA_FILE": empty}, "mesh.tls.caFile: CA file " + empty + " holds no PEM certificate"},
		{"cert without key", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_TLS_CERT_FILE": ca.ClientCert}, "mesh.tls.certFile and mesh.tls.keyFile: set both"},
		{"key of another cert", map[string]string{"MESHD_MESH_URL": url, "MESHD_MESH_TLS_CERT_FILE": ca.ClientCert, "MESHD_MESH_TLS_KEY_FILE": ca.ServerKey},
			"mesh.tls.certFile, mesh.tls.keyFile: loading the client certificate"},
		{"listenAuth typo", map[string]string{"MESHD_MESH_LISTEN": "127.0.0.1:0", "MESHD_MESH_LISTEN_AUTH": "nobody"}, `mesh.listenAuth: "nobody": the one value is "none"`},
		{"none and a token", map[string]string{"MESHD_MESH_LISTEN": "127.0.0.1:0", "MESHD_MESH_LISTEN_AUTH": "none", "MESHD_MESH_LISTEN_TOKEN": secret}, "mesh.listenAuth: none cannot be combined"},
		{"token and user", map[string]string{"MESHD_MESH_LISTEN": "127.0.0.1:0", "MESHD_MESH_LISTEN_TOKEN": secret, "MESHD_MESH_LISTEN_USER": "u", "MESHD_MESH_LISTEN_PASSWORD": secret},
			"mesh.listenToken, mesh.listenUser: set one"},
		{"listen user alone", map[string]string{"MESHD_MESH_LISTEN": "127.0.0.1:0", "MESHD_MESH_LISTEN_USER": "u"}, "mesh.listenUser and mesh.listenPassword: set both"},
		{"listen cert alone", map[string]string{"MESHD_MESH_LISTEN": "127.0.0.1:0", "MESHD_MESH_LISTEN_TLS_CERT_FILE": ca.ServerCert}, "mesh.listenTLS.certFile and mesh.listenTLS.keyFile"},
		{"client CA alone", map[string]string{"MESHD_MESH_LISTEN": "127.0.0.1:0", "MESHD_MESH_LISTEN_TLS_CLIENT_CA_FILE": ca.CAFile}, "mesh.listenTLS.clientCAFile: needs mesh.listenTLS.certFile"},
		{"missing listen key", map[string]string{"MESHD_MESH_LISTEN": "127.0.0.1:0", "MESHD_MESH_LISTEN_TLS_CERT_FILE": ca.ServerCert, "MESHD_MESH_LISTEN_TLS_KEY_FILE": "/nonexistent/k.pem"},
			"mesh.listenTLS.keyFile: cannot read /nonexistent/k.pem"},
		{"secrets.key not base64", map[string]string{"MESHD_SECRETS_KEY": secret}, "secrets.key: is not base64"},
		{"secrets.key too short", map[string]string{"MESHD_SECRETS_KEY": base64.StdEncoding.EncodeToString([]byte("sixteen-byte-key"))}, "secrets.key: holds 16 bytes, want 32"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c := Defaults()
			err := LoadConfig("", &c, nil)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), tc.want), "%q should start with %q", err.Error(), tc.want)
			assert.NotContains(t, err.Error(), secret)
			assert.NotContains(t, err.Error(), "sixteen")
		})
	}

	t.Run("right ones", func(t *testing.T) {
		c := Defaults()
		c.Mesh.URL, c.Mesh.TLS.CAFile, c.Mesh.TLS.CertFile, c.Mesh.TLS.KeyFile = url, ca.CAFile, ca.ClientCert, ca.ClientKey
		c.Mesh.User, c.Mesh.Password = "u", "p"
		c.Secrets.Key = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
		require.NoError(t, c.Validate())
		c = Defaults()
		c.Mesh.Listen, c.Mesh.ListenTLS.CertFile, c.Mesh.ListenTLS.KeyFile, c.Mesh.ListenTLS.ClientCAFile = "127.0.0.1:0", ca.ServerCert, ca.ServerKey, ca.CAFile
		require.NoError(t, c.Validate())
	})
}

func TestReadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "secret")
	const n = 8
	got := make([]string, n)
	var wg sync.WaitGroup
	created := make(chan bool, n)
	for i := range n { // concurrent first starts agree on one secret
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, c, err := readOrCreateSecret(path, base64.StdEncoding.EncodeToString)
			assert.NoError(t, err)
			got[i] = s
			created <- c
		}()
	}
	wg.Wait()
	close(created)
	var nCreated int
	for c := range created {
		if c {
			nCreated++
		}
	}
	assert.Equal(t, 1, nCreated)
	for _, s := range got {
		assert.Equal(t, got[0], s)
	}
	raw, err := base64.StdEncoding.DecodeString(got[0])
	require.NoError(t, err)
	assert.Len(t, raw, 32)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temp file left")

	require.NoError(t, os.WriteFile(path, []byte("\n"), 0o600))
	_, _, err = readOrCreateSecret(path, base64.StdEncoding.EncodeToString)
	require.ErrorContains(t, err, "is empty: delete it")
}

// logBuffer is a debug-level text logger into a buffer, for greps.
func logBuffer() (*slog.Logger, *infra.SyncBuffer) {
	var buf infra.SyncBuffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

// A sidecar with mesh.listen and no credential settings generates a token
// into data.dir/mesh.token (0600), refuses anonymous clients, lets in the
// one presenting the token, keeps the token across restarts, and never
// logs it.
func TestListenGeneratesAToken(t *testing.T) {
	cfg := Defaults()
	cfg.Data.Dir = t.TempDir()
	cfg.API.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Mesh.Listen = infra.FreeAddr(t)
	logger, logs := logBuffer()
	s, err := Start(t.Context(), cfg, logger)
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = s.Shutdown(context.Background())
		}
	})

	path := filepath.Join(cfg.Data.Dir, meshTokenFile)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	token := strings.TrimSpace(string(b))
	require.GreaterOrEqual(t, len(token), 40)

	url := "nats://" + cfg.Mesh.Listen
	_, err = nats.Connect(url, nats.Timeout(2*time.Second))
	require.ErrorIs(t, err, nats.ErrAuthorization, "anonymous")
	nc, err := nats.Connect(url, nats.Token(token), nats.Timeout(2*time.Second))
	require.NoError(t, err)
	nc.Close()
	assert.Contains(t, logs.String(), path, "the log says where the token is")
	assert.NotContains(t, logs.String(), token)

	require.NoError(t, s.Shutdown(context.Background()))
	stopped = true
	s, err = Start(t.Context(), cfg, logger)
	require.NoError(t, err)
	stopped = false
	nc, err = nats.Connect(url, nats.Token(token), nats.Timeout(2*time.Second))
	require.NoError(t, err, "the same token after a restart")
	nc.Close()
	assert.NotContains(t, logs.String(), token)
}

// mesh.listenAuth: none still lets anonymous clients in, and says so.
func TestListenAuthNoneWarns(t *testing.T) {
	cfg := Defaults()
	cfg.Data.Dir = t.TempDir()
	cfg.API.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Mesh.Listen, cfg.Mesh.ListenAuth = infra.FreeAddr(t), "none"
	logger, logs := logBuffer()
	s, err := Start(t.Context(), cfg, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	nc, err := nats.Connect("nats://"+cfg.Mesh.Listen, nats.Timeout(2*time.Second))
	require.NoError(t, err)
	nc.Close()
	assert.Contains(t, logs.String(), fmt.Sprintf("level=WARN msg=\"mesh.listen accepts clients without credentials (mesh.listenAuth: none): anyone who reaches %s", cfg.Mesh.Listen))
	_, err = os.Stat(filepath.Join(cfg.Data.Dir, meshTokenFile))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// Without secrets.key the key is generated into data.dir once (0600) and
// reused; with mesh.url meshd warns that other sidecars cannot read it.
func TestSecretsKeyFile(t *testing.T) {
	cfg := Defaults()
	cfg.Data.Dir = filepath.Join(t.TempDir(), "data")
	cfg.Mesh.URL = "nats://127.0.0.1:4222"
	logger, logs := logBuffer()
	key, err := cfg.secretsKey(logger)()
	require.NoError(t, err)
	require.Len(t, key, 32)
	path := filepath.Join(cfg.Data.Dir, secretsKeyFile)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.Contains(t, logs.String(), "level=WARN msg=\"secrets.key is not set")
	again, err := cfg.secretsKey(logger)()
	require.NoError(t, err)
	assert.Equal(t, key, again)
	assert.Equal(t, 1, strings.Count(logs.String(), "secrets.key is not set"), "warned once, when generated")
	assert.NotContains(t, logs.String(), base64.StdEncoding.EncodeToString(key))

	cfg.Secrets.Key = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))
	given, err := cfg.secretsKey(logger)()
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte{9}, 32), given)
}
