package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// meshTokenFile is where m keeps the token of its mesh.listen (generated
// at its first start when mesh.listenToken is not set).
func (m *meshd) meshTokenFile() string { return filepath.Join(m.dataDir(), "mesh.token") }

func (m *meshd) meshToken() string {
	m.t.Helper()
	b, err := os.ReadFile(m.meshTokenFile())
	require.NoError(m.t, err)
	return strings.TrimSpace(string(b))
}

// natsClient connects to url as a plain NATS client would (nats.go), with
// opts; the connection is closed at the end of the test.
func natsClient(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.Timeout(3*time.Second), nats.MaxReconnects(0))...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// rawBucket returns every message still in the stream of a KV bucket, key
// and value, as stored: what a client allowed on the mesh can read.
func rawBucket(t *testing.T, nc *nats.Conn, bucket string) []byte {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "KV_"+bucket)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var all bytes.Buffer
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err)
		fmt.Fprintf(&all, "%s %s\n", msg.Subject, msg.Data)
	}
	return all.Bytes()
}

// grepDir reports the files under dir that contain s.
func grepDir(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte(s)) {
			hits = append(hits, path)
		}
		return nil
	}))
	return hits
}

// jdbcSink is a jdbc-sink config whose URL holds a database password.
func jdbcSink(password string) map[string]any {
	return map[string]any{"connector.type": "jdbc-sink", "topic": "orders", "table": "orders",
		"url": "postgres://app:" + password + "@127.0.0.1:1/app?sslmode=disable"}
}

// Issue 12's attack: an anonymous NATS client on mesh.listen read the
// connector configs, database password included, and could delete
// streams. With mesh.listenAuth: none (what every mesh.listen was before)
// the client still gets in and deletes the events stream — the attack —
// though the password is no longer in the bucket in clear. By default it
// is refused, a wrong token too, and a sidecar presenting the token the
// first one generated (mesh.tokenFile) joins and receives events.
func TestMeshListenAttackRefused(t *testing.T) {
	const dbPassword = "db-pa55-of-orders"

	openAddr := freeAddr(t)
	open := newMeshd(t, "open-hub", "mesh:\n  listen: "+openAddr+"\n  listenAuth: none\n")
	code, body := open.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "orders-db", "config": jdbcSink(dbPassword)})
	require.Equal(t, http.StatusCreated, code, body)
	nc, err := natsClient(t, "nats://"+openAddr)
	require.NoError(t, err, "listenAuth none: anonymous clients get in")
	raw := rawBucket(t, nc, "meshd-connectors-open-hub")
	assert.Contains(t, string(raw), "config.orders-db", "the anonymous client reads the bucket")
	assert.NotContains(t, string(raw), dbPassword, "but the password is sealed")
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, js.DeleteStream(t.Context(), "MESHD"), "and it deletes the events stream: mesh.listenAuth none is only for a port nobody else reaches")
	assert.Contains(t, open.logString(), "mesh.listen accepts clients without credentials")

	hubAddr := freeAddr(t)
	hub := newMeshd(t, "hub", "mesh:\n  listen: "+hubAddr+"\n")
	code, body = hub.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "orders-db", "config": jdbcSink(dbPassword)})
	require.Equal(t, http.StatusCreated, code, body)
	_, err = natsClient(t, "nats://"+hubAddr)
	require.ErrorIs(t, err, nats.ErrAuthorization, "anonymous")
	_, err = natsClient(t, "nats://"+hubAddr, nats.Token("a-guess"))
	require.ErrorIs(t, err, nats.ErrAuthorization, "a wrong token")
	fi, err := os.Stat(hub.meshTokenFile())
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the generated token is for this user only")

	sub := newSink(t, http.StatusNoContent)
	spoke := newMeshd(t, "spoke", fastRetry+"mesh:\n  url: nats://"+hubAddr+"\n  tokenFile: "+hub.meshTokenFile()+"\nsubscriptions:\n"+
		subscriptionYAML("orders-to-spoke", "orders", sub.url()))
	hub.publishBinary("orders", "o-1", "com.example.order", []byte(`{"n":1}`))
	require.Eventually(t, func() bool { ids, _ := sub.ids(); return ids["o-1"] == 1 }, 20*time.Second, 50*time.Millisecond)

	token := hub.meshToken()
	for _, m := range []*meshd{open, hub, spoke} {
		assert.NotContains(t, m.logString(), token, "meshd %s logs no token", m.name)
		assert.NotContains(t, m.logString(), dbPassword, "meshd %s logs no password", m.name)
	}
}

// TLS on mesh.listen with a CA of the test's own: a sidecar trusting it
// and presenting a client certificate joins; one that does not trust the
// CA, or has no client certificate, or speaks plain NATS, is refused, each
// with one line naming the setting to fix.
func TestMeshListenTLSJoin(t *testing.T) {
	ca := infra.NewTestCA(t)
	hubAddr := freeAddr(t)
	hub := newMeshd(t, "tls-hub", fmt.Sprintf("mesh:\n  listen: %s\n  listenTLS:\n    certFile: %s\n    keyFile: %s\n    clientCAFile: %s\n",
		hubAddr, ca.ServerCert, ca.ServerKey, ca.CAFile))

	sub := newSink(t, http.StatusNoContent)
	spokeYAML := func(tls string) string {
		return fastRetry + "mesh:\n  url: tls://" + hubAddr + "\n  tokenFile: " + hub.meshTokenFile() + "\n  tls:\n" + tls
	}
	newMeshd(t, "tls-spoke", spokeYAML(fmt.Sprintf("    caFile: %s\n    certFile: %s\n    keyFile: %s\n", ca.CAFile, ca.ClientCert, ca.ClientKey))+
		"subscriptions:\n"+subscriptionYAML("to-tls-spoke", "orders", sub.url()))
	hub.publishBinary("orders", "tls-1", "com.example.order", []byte(`{}`))
	require.Eventually(t, func() bool { ids, _ := sub.ids(); return ids["tls-1"] == 1 }, 20*time.Second, 50*time.Millisecond)

	refused := func(yaml, setting, detail string) {
		t.Helper()
		dir := t.TempDir()
		config := filepath.Join(dir, "meshd.yaml")
		require.NoError(t, os.WriteFile(config, []byte(yaml), 0o600))
		code, stderr, _ := runMeshd(t, "run", "--config", config, "--app.id", "refused", "--api.listen", freeAddr(t),
			"--admin.listen", freeAddr(t), "--data.dir", filepath.Join(dir, "data"), "--mesh.connectTimeout", "2s")
		line := requireOneErrorLine(t, code, stderr, setting)
		assert.Contains(t, line, detail)
		assert.NotContains(t, line, hub.meshToken())
	}
	refused(spokeYAML(fmt.Sprintf("    caFile: %s\n    certFile: %s\n    keyFile: %s\n", ca.OtherCAFile, ca.ClientCert, ca.ClientKey)),
		"mesh.tls.caFile", "the certificate of the mesh at tls://"+hubAddr+" is not trusted")
	refused(spokeYAML("    caFile: "+ca.CAFile+"\n"), "mesh.tls.certFile", "refused the TLS connection")
	_, err := natsClient(t, "nats://"+hubAddr, nats.Token(hub.meshToken()))
	require.Error(t, err, "plain NATS with the right token, but no TLS")
}

// meshd against a nats-server process that requires each kind of
// credential: it starts with the right one, and with a wrong one (or none)
// refuses to start with one line naming its setting, the secret not in it.
func TestMeshdAgainstSecuredNATSServer(t *testing.T) {
	nkeyConf, seedFile := infra.NATSNKeyUser(t)
	_, otherSeed := infra.NATSNKeyUser(t)
	opConf, creds, otherCreds := infra.NATSOperator(t)
	ca := infra.NewTestCA(t)
	tlsConf := fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n}\nauthorization { token: \"t0k-over-tls\" }\n", ca.ServerCert, ca.ServerKey)
	type refusal struct{ yaml, setting, detail string }
	noCredentials := refusal{"", "mesh.url", "refused this sidecar's credentials (none were set"}
	cases := []struct {
		name, conf string
		good       string // mesh: YAML lines
		bad        []refusal
		secret     string
	}{
		{name: "token", conf: "authorization { token: \"t0ken-of-the-mesh\" }\n", good: "  token: t0ken-of-the-mesh\n", secret: "t0ken-",
			bad: []refusal{{"  token: t0ken-guessed\n", "mesh.token", "refused this sidecar's credentials (mesh.token)"}, noCredentials}},
		{name: "user", conf: "authorization { user: meshd, password: \"pw-of-the-mesh\" }\n", good: "  user: meshd\n  password: pw-of-the-mesh\n", secret: "pw-",
			bad: []refusal{{"  user: meshd\n  password: pw-guessed\n", "mesh.user", "(user meshd and mesh.password)"}, noCredentials}},
		{name: "nkey", conf: nkeyConf, good: "  nkeyFile: " + seedFile + "\n",
			bad: []refusal{{"  nkeyFile: " + otherSeed + "\n", "mesh.nkeyFile", "(the NKey seed in " + otherSeed + ")"}, noCredentials}},
		{name: "creds", conf: opConf, good: "  creds: " + creds + "\n",
			bad: []refusal{{"  creds: " + otherCreds + "\n", "mesh.creds", "(the credentials file " + otherCreds + ")"}, noCredentials}},
		{name: "tls", conf: tlsConf, good: "  token: t0k-over-tls\n  tls:\n    caFile: " + ca.CAFile + "\n", secret: "t0k-",
			bad: []refusal{
				{"  token: t0k-over-tls\n", "mesh.tls.caFile", "is not trusted (mesh.tls.caFile, mesh.tls.serverName)"},
				{"  token: t0k-over-tls\n  tls:\n    caFile: " + ca.CAFile + "\n    serverName: other.example\n", "mesh.tls.caFile", "other.example"},
				{"  token: t0k-guessed\n  tls:\n    caFile: " + ca.CAFile + "\n", "mesh.token", "refused this sidecar's credentials"},
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := infra.StartNATSConf(t, tc.conf)
			m := newMeshd(t, "secured-"+tc.name, "mesh:\n  url: "+url+"\n"+tc.good)
			m.publishBinary("orders", "s-1", "com.example.order", []byte(`{}`))
			require.NoError(t, m.terminate())
			if tc.secret != "" {
				assert.NotContains(t, m.logString(), tc.secret, "no credential in the log")
			}
			for _, bad := range tc.bad {
				dir := t.TempDir()
				config := filepath.Join(dir, "meshd.yaml")
				require.NoError(t, os.WriteFile(config, []byte("mesh:\n  url: "+url+"\n"+bad.yaml), 0o600))
				code, stderr, _ := runMeshd(t, "run", "--config", config, "--api.listen", freeAddr(t), "--admin.listen", freeAddr(t),
					"--data.dir", filepath.Join(dir, "data"), "--mesh.connectTimeout", "2s")
				line := requireOneErrorLine(t, code, stderr, bad.setting)
				assert.Contains(t, line, bad.detail)
				if tc.secret != "" {
					assert.NotContains(t, stderr, tc.secret, "no credential in the output")
				}
			}
		})
	}
}

// Connector secrets are sealed in the mesh: the bucket, read raw by a
// client holding the mesh token, and the files of the data dir hold none
// in clear. A config stored in clear (as meshd did before) still loads,
// its secret reaches the target, and it is re-written sealed.
func TestConnectorSecretsAtRest(t *testing.T) {
	const (
		dbPassword   = "db-pa55-at-rest"
		headerSecret = "header-s3cret-at-rest"
		legacySecret = "legacy-s3cret-in-clear"
	)
	addr := freeAddr(t)
	m := newMeshd(t, "vault", fastRetry+"mesh:\n  listen: "+addr+"\n")
	out := newSink(t, http.StatusNoContent)
	code, body := m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "orders-db", "config": jdbcSink(dbPassword)})
	require.Equal(t, http.StatusCreated, code, body)
	code, body = m.adminCall(http.MethodPost, "/v1/connectors", map[string]any{"name": "orders-out", "config": map[string]any{
		"connector.type": "http-sink", "topic": "orders", "url": out.url(), "secret.headers": map[string]string{"X-Api-Key": headerSecret}}})
	require.Equal(t, http.StatusCreated, code, body)
	m.waitConnector("orders-out", "RUNNING")
	m.publishBinary("orders", "a-1", "com.example.order", []byte(`{}`))
	require.Eventually(t, func() bool { ids, _ := out.ids(); return ids["a-1"] == 1 }, 20*time.Second, 50*time.Millisecond)
	assert.Equal(t, headerSecret, out.deliveries()[0].header.Get("X-Api-Key"))

	nc, err := natsClient(t, "nats://"+addr, nats.Token(m.meshToken()))
	require.NoError(t, err)
	const bucket = "meshd-connectors-vault"
	raw := rawBucket(t, nc, bucket)
	assert.Contains(t, string(raw), "config.orders-db")
	assert.Contains(t, string(raw), `"sealed":{"alg":"AES-256-GCM"`)
	for _, s := range []string{dbPassword, headerSecret} {
		assert.NotContains(t, string(raw), s)
		assert.Empty(t, grepDir(t, m.dataDir(), s), "no file of the data dir holds %q", s)
	}
	fi, err := os.Stat(filepath.Join(m.dataDir(), "secrets.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// What an older meshd stored: secrets in clear, readable by anyone on
	// the mesh.
	kv, err := jetstreamKV(t, nc, bucket)
	require.NoError(t, err)
	legacy := fmt.Sprintf(`{"name":"legacy-out","config":{"connector.type":"http-sink","topic":"legacy","url":%q,"secret.headers":{"X-Api-Key":%q}}}`, out.url(), legacySecret)
	_, err = kv.Put(t.Context(), "config.legacy-out", []byte(legacy))
	require.NoError(t, err)
	_, err = kv.Put(t.Context(), "state.legacy-out", []byte(`{"state":"RUNNING"}`))
	require.NoError(t, err)
	assert.Contains(t, string(rawBucket(t, nc, bucket)), legacySecret, "before: the secret is in clear in the bucket")

	require.NoError(t, m.terminate())
	m.start()
	m.waitConnector("legacy-out", "RUNNING")
	m.publishBinary("legacy", "l-1", "com.example.order", []byte(`{}`))
	require.Eventually(t, func() bool { ids, _ := out.ids(); return ids["l-1"] == 1 }, 20*time.Second, 50*time.Millisecond)
	for _, d := range out.deliveries() {
		if d.header.Get("Ce-Id") == "l-1" {
			assert.Equal(t, legacySecret, d.header.Get("X-Api-Key"), "the old config's secret still works")
		}
	}
	nc, err = natsClient(t, "nats://"+addr, nats.Token(m.meshToken()))
	require.NoError(t, err)
	raw = rawBucket(t, nc, bucket)
	assert.NotContains(t, string(raw), legacySecret, "after: re-written sealed")
	assert.Contains(t, m.logString(), "connector config re-stored with its secrets encrypted")
	for _, s := range []string{dbPassword, headerSecret, legacySecret} {
		assert.NotContains(t, m.logString(), s)
	}
	t.Logf("data dir files still holding the secret an older meshd stored in clear (JetStream keeps deleted bytes until it compacts): %v",
		grepDir(t, m.dataDir(), legacySecret))
}

func jetstreamKV(t *testing.T, nc *nats.Conn, bucket string) (jetstream.KeyValue, error) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return js.KeyValue(t.Context(), bucket)
}
