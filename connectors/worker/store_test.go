package worker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
)

const (
	dbPassword  = "db-pa55word-in-clear"
	authHeader  = "Bearer header-s3cret"
	configKey   = "config.db"
	secretsSpec = "secret-sink"
)

// started records the configs the secret-sink connector was started with.
type started struct {
	mu   sync.Mutex
	cfgs []connectors.Config
}

func (s *started) last() connectors.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cfgs) == 0 {
		return nil
	}
	return s.cfgs[len(s.cfgs)-1]
}

type recordingSink struct{ s *started }

func (c recordingSink) Start(_ context.Context, cfg connectors.Config) error {
	c.s.mu.Lock()
	c.s.cfgs = append(c.s.cfgs, cfg.Clone())
	c.s.mu.Unlock()
	return nil
}
func (recordingSink) Stop(context.Context) error { return nil }
func (recordingSink) NewTask() connectors.Task {
	return &testSinkTask{put: func([]event.Event) error { return nil }}
}
func (recordingSink) TaskConfigs(int) ([]connectors.Config, error) {
	return []connectors.Config{{}}, nil
}

// secretsEnv is an embedded mesh that outlives the runtimes started on it,
// so a test can restart meshd's connector runtime with another key.
type secretsEnv struct {
	t       *testing.T
	eng     mesh.Engine
	reg     *connectors.Registry
	started *started
}

func newSecretsEnv(t *testing.T) *secretsEnv {
	t.Helper()
	eng, err := embedded.Open(t.Context(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	e := &secretsEnv{t: t, eng: eng, reg: connectors.NewRegistry(), started: &started{}}
	e.reg.Register(connectors.Spec{
		Name: secretsSpec, Kind: connectors.KindSink,
		Fields: []connectors.Field{
			{Name: "password", Type: connectors.TypeString, Secret: true},
			{Name: "secret.headers", Type: connectors.TypeMap, Secret: true},
			{Name: "host", Type: connectors.TypeString},
		},
		New: func() connectors.Connector { return recordingSink{s: e.started} },
	})
	return e
}

// runtime starts a connector runtime with key (nil: none) until stopped or
// the test ends.
func (e *secretsEnv) runtime(key []byte) (rt *worker.Runtime, stop func()) {
	e.t.Helper()
	opts := worker.Options{Engine: e.eng, Registry: e.reg, WebhookListen: "127.0.0.1:0",
		Backoff: bridge.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}}
	if key != nil {
		opts.SecretsKey = func() ([]byte, error) { return key, nil }
	}
	rt, err := worker.New(opts)
	require.NoError(e.t, err)
	require.NoError(e.t, rt.Start(e.t.Context()))
	var once sync.Once
	stop = func() { once.Do(func() { _ = rt.Stop(context.Background()) }) }
	e.t.Cleanup(stop)
	return rt, stop
}

// stored is the raw stored value of key in the connector bucket.
func (e *secretsEnv) stored(key string) mesh.Entry {
	e.t.Helper()
	kv, err := e.eng.KV(e.t.Context(), worker.DefaultConfigBucket)
	require.NoError(e.t, err)
	ent, err := kv.Get(e.t.Context(), key)
	require.NoError(e.t, err)
	return ent
}

func (e *secretsEnv) put(key string, value []byte) {
	e.t.Helper()
	kv, err := e.eng.KV(e.t.Context(), worker.DefaultConfigBucket)
	require.NoError(e.t, err)
	_, err = kv.Put(e.t.Context(), key, value)
	require.NoError(e.t, err)
}

func newKey(t *testing.T) []byte {
	k := make([]byte, 32)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

func dbConfig() map[string]any {
	return map[string]any{"connector.type": secretsSpec, "topic": "orders", "password": dbPassword,
		"secret.headers": map[string]any{"Authorization": authHeader}, "host": "db.example"}
}

// requireNoSecret fails if the stored value holds a secret in clear (or in
// any JSON escaping of it).
func requireNoSecret(t *testing.T, value []byte) {
	t.Helper()
	for _, s := range []string{dbPassword, authHeader, "header-s3cret", "pa55word"} {
		require.False(t, bytes.Contains(value, []byte(s)), "%q stored in clear: %s", s, value)
	}
}

func waitConnector(t *testing.T, rt *worker.Runtime, name string, state worker.State) worker.Status {
	t.Helper()
	var st worker.Status
	require.Eventually(t, func() bool {
		var err error
		st, err = rt.Status(name)
		return err == nil && st.Connector.State == state
	}, 10*time.Second, 10*time.Millisecond, "connector %s should be %s", name, state)
	return st
}

func TestSecretsAreEncryptedAtRest(t *testing.T) {
	e := newSecretsEnv(t)
	key := newKey(t)
	rt, stop := e.runtime(key)
	_, err := rt.Create(t.Context(), "db", dbConfig())
	require.NoError(t, err)
	waitConnector(t, rt, "db", worker.StateRunning)

	ent := e.stored(configKey)
	requireNoSecret(t, ent.Value)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(ent.Value, &doc))
	cfg := doc["config"].(map[string]any)
	assert.Equal(t, "db.example", cfg["host"], "what is not secret stays readable")
	assert.NotContains(t, cfg, "password")
	assert.NotContains(t, cfg, "secret.headers")
	assert.Equal(t, "AES-256-GCM", doc["sealed"].(map[string]any)["alg"])

	// A restart with the same key gives the connector its secrets back.
	stop()
	rt, _ = e.runtime(key)
	waitConnector(t, rt, "db", worker.StateRunning)
	got := e.started.last()
	assert.Equal(t, dbPassword, got.String("password"))
	assert.Equal(t, map[string]string{"Authorization": authHeader}, got.Map("secret.headers"))
	assert.Equal(t, ent.Revision, e.stored(configKey).Revision, "a sealed config is not re-written at start")

	// Changing a secret through the API stores it sealed too.
	update := dbConfig()
	update["password"] = "an0ther-pa55word"
	_, _, err = rt.Put(t.Context(), "db", update)
	require.NoError(t, err)
	value := e.stored(configKey).Value
	requireNoSecret(t, value)
	assert.NotContains(t, string(value), "an0ther")
}

// Configs stored by an older meshd hold their secrets in clear: they load,
// run with those secrets, and are re-written sealed.
func TestClearConfigLoadsAndIsResealed(t *testing.T) {
	e := newSecretsEnv(t)
	old, err := json.Marshal(map[string]any{"name": "db", "config": dbConfig()})
	require.NoError(t, err)
	e.put(configKey, old)
	e.put("state.db", []byte(`{"state":"RUNNING"}`))

	rt, _ := e.runtime(newKey(t))
	waitConnector(t, rt, "db", worker.StateRunning)
	assert.Equal(t, dbPassword, e.started.last().String("password"))
	requireNoSecret(t, e.stored(configKey).Value)
	info, err := rt.Get("db")
	require.NoError(t, err)
	assert.Equal(t, connectors.Mask, info.Config["password"])
}

// A sidecar with another key cannot read the secrets: the connector does
// not run and says why (no secret in its trace), the stored config is left
// as it was, and putting the config again with its secrets recovers it.
func TestOtherKeyFailsTheConnectorAndKeepsTheStore(t *testing.T) {
	e := newSecretsEnv(t)
	rt, stop := e.runtime(newKey(t))
	_, err := rt.Create(t.Context(), "db", dbConfig())
	require.NoError(t, err)
	stop()
	before := e.stored(configKey)

	rt, _ = e.runtime(newKey(t))
	st := waitConnector(t, rt, "db", worker.StateFailed)
	assert.Contains(t, st.Connector.Trace, "cannot be decrypted with this sidecar's key")
	assert.Contains(t, st.Connector.Trace, "secrets.key")
	assert.NotContains(t, st.Connector.Trace, dbPassword)
	assert.Equal(t, before.Revision, e.stored(configKey).Revision, "nothing is re-written")

	_, _, err = rt.Put(t.Context(), "db", dbConfig())
	require.NoError(t, err)
	waitConnector(t, rt, "db", worker.StateRunning)
	assert.Equal(t, dbPassword, e.started.last().String("password"))
}

// Sealed secrets are bound to their connector's name: copied under
// another name they do not open.
func TestSealedSecretsCannotMove(t *testing.T) {
	e := newSecretsEnv(t)
	key := newKey(t)
	rt, stop := e.runtime(key)
	_, err := rt.Create(t.Context(), "db", dbConfig())
	require.NoError(t, err)
	stop()
	e.put("config.copy", e.stored(configKey).Value)

	rt, _ = e.runtime(key)
	waitConnector(t, rt, "db", worker.StateRunning)
	st := waitConnector(t, rt, "copy", worker.StateFailed)
	assert.Contains(t, st.Connector.Trace, "cannot be decrypted")
}

// A key that cannot be had fails the creation (nothing stored in clear),
// with an error that holds no secret.
func TestKeyErrorRefusesToStore(t *testing.T) {
	e := newSecretsEnv(t)
	rt, err := worker.New(worker.Options{Engine: e.eng, Registry: e.reg, WebhookListen: "127.0.0.1:0",
		SecretsKey: func() ([]byte, error) { return nil, errors.New("data.dir/secrets.key: permission denied") }})
	require.NoError(t, err)
	require.NoError(t, rt.Start(t.Context()))
	t.Cleanup(func() { _ = rt.Stop(context.Background()) })
	_, err = rt.Create(t.Context(), "db", dbConfig())
	require.ErrorContains(t, err, "permission denied")
	assert.NotContains(t, err.Error(), dbPassword)
	kv, kerr := e.eng.KV(t.Context(), worker.DefaultConfigBucket)
	require.NoError(t, kerr)
	_, kerr = kv.Get(t.Context(), configKey)
	require.ErrorIs(t, kerr, mesh.ErrKeyNotFound)

	// A config without secret values needs no key.
	_, err = rt.Create(t.Context(), "plain", map[string]any{"connector.type": secretsSpec, "topic": "orders", "host": "h"})
	require.NoError(t, err)
}
