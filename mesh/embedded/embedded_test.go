package embedded

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge/tlsconf"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/meshtest"
	"github.com/meshd/meshd/mesh/natsjs"
	"github.com/meshd/meshd/test/infra"
)

func open(t *testing.T, dir string) *Engine {
	t.Helper()
	e, err := Open(t.Context(), Config{DataDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func TestConformance(t *testing.T) {
	meshtest.Run(t, func(t *testing.T) meshtest.Instance {
		dir := t.TempDir()
		e := open(t, dir)
		return meshtest.Instance{
			Engine: e,
			Restart: func(t *testing.T) mesh.Engine {
				require.NoError(t, e.Close())
				return open(t, dir)
			},
			StopServer: func(t *testing.T) {
				e.srv.Shutdown()
				e.srv.WaitForShutdown()
			},
		}
	})
}

func TestNoListenerByDefault(t *testing.T) {
	e := open(t, t.TempDir())
	require.Empty(t, e.ClientURL())
}

func TestListenLetsAnotherProcessJoin(t *testing.T) {
	e, err := Open(t.Context(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Token: "s3cret-token"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	url := e.ClientURL()
	require.NotEmpty(t, url)
	_, _, err = net.SplitHostPort(url[len("nats://"):])
	require.NoError(t, err)

	remote, err := natsjs.Connect(t.Context(), natsjs.Config{URLs: []string{url}, Name: "remote", Token: "s3cret-token"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = remote.Close() })
	requireJoined(t, e, remote)
}

// requireJoined publishes through remote and reads the event on e.
func requireJoined(t *testing.T, e *Engine, remote mesh.Engine) {
	t.Helper()
	topic := "joined-" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-")
	require.NoError(t, remote.Publish(t.Context(), topic, []*event.Event{meshtestEvent("from-remote")}))
	c, err := e.Consume(t.Context(), mesh.ConsumerConfig{Topic: topic, Group: "g"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	m, err := c.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "from-remote", m.Event().ID())
}

// The attack of issue 12: an anonymous NATS client on the listener read
// the connector configs and could delete streams. With NoAuth (what every
// listener was before) it still can — the test shows the attack — and with
// a token or user/password it is refused before it can do anything.
func TestListenRefusesAnonymousClients(t *testing.T) {
	attack := func(t *testing.T, url string, opts ...nats.Option) error {
		nc, err := nats.Connect(url, append(opts, nats.Timeout(2*time.Second))...)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		kv, err := js.KeyValue(t.Context(), "meshd-connectors-app")
		require.NoError(t, err, "the bucket is readable")
		ent, err := kv.Get(t.Context(), "config.db")
		require.NoError(t, err)
		require.Contains(t, string(ent.Value()), "db-password")
		return js.DeleteStream(t.Context(), natsjs.DefaultStream)
	}
	open := func(t *testing.T, cfg Config) *Engine {
		cfg.DataDir, cfg.Listen = t.TempDir(), "127.0.0.1:0"
		e, err := Open(t.Context(), cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = e.Close() })
		kv, err := e.KV(t.Context(), "meshd-connectors-app")
		require.NoError(t, err)
		_, err = kv.Put(t.Context(), "config.db", []byte(`{"url":"postgres://app:db-password@db/app"}`))
		require.NoError(t, err)
		return e
	}

	t.Run("noAuth: the attack works", func(t *testing.T) {
		e := open(t, Config{NoAuth: true})
		require.NoError(t, attack(t, e.ClientURL()), "an anonymous client reads the bucket and deletes the stream")
	})
	t.Run("token", func(t *testing.T) {
		e := open(t, Config{Token: "the-token"})
		require.ErrorIs(t, attack(t, e.ClientURL()), nats.ErrAuthorization)
		require.ErrorIs(t, attack(t, e.ClientURL(), nats.Token("a-guess")), nats.ErrAuthorization)
		remote, err := natsjs.Connect(t.Context(), natsjs.Config{URLs: []string{e.ClientURL()}, Token: "the-token"})
		require.NoError(t, err)
		t.Cleanup(func() { _ = remote.Close() })
		requireJoined(t, e, remote)
	})
	t.Run("user and password", func(t *testing.T) {
		e := open(t, Config{User: "sidecar", Password: "pw-of-sidecar"})
		require.ErrorIs(t, attack(t, e.ClientURL()), nats.ErrAuthorization)
		require.ErrorIs(t, attack(t, e.ClientURL(), nats.UserInfo("sidecar", "wrong")), nats.ErrAuthorization)
		remote, err := natsjs.Connect(t.Context(), natsjs.Config{URLs: []string{e.ClientURL()}, User: "sidecar", Password: "pw-of-sidecar"})
		require.NoError(t, err)
		t.Cleanup(func() { _ = remote.Close() })
		requireJoined(t, e, remote)
	})
}

func TestListenTLS(t *testing.T) {
	ca := infra.NewTestCA(t)
	for _, mutual := range []bool{false, true} {
		t.Run(map[bool]string{false: "server certificate", true: "mutual"}[mutual], func(t *testing.T) {
			server := tlsconf.Server{CertFile: ca.ServerCert, KeyFile: ca.ServerKey}
			if mutual {
				server.ClientCAFile = ca.CAFile
			}
			srvTLS, err := server.Config()
			require.NoError(t, err)
			e, err := Open(t.Context(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Token: "tok", TLS: srvTLS})
			require.NoError(t, err, "the in-process connection needs no TLS")
			t.Cleanup(func() { _ = e.Close() })
			join := func(c tlsconf.Client) error {
				tc, err := c.Config()
				require.NoError(t, err)
				remote, err := natsjs.Connect(t.Context(), natsjs.Config{URLs: []string{e.ClientURL()}, Token: "tok", TLS: tc, ConnectTimeout: 2 * time.Second})
				if err == nil {
					t.Cleanup(func() { _ = remote.Close() })
					requireJoined(t, e, remote)
				}
				return err
			}
			var verr *tls.CertificateVerificationError
			require.ErrorAs(t, join(tlsconf.Client{CAFile: ca.OtherCAFile}), &verr, "a server signed by an unknown CA is refused")
			if mutual {
				require.Error(t, join(tlsconf.Client{CAFile: ca.CAFile}), "no client certificate")
				require.NoError(t, join(tlsconf.Client{CAFile: ca.CAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey}))
			} else {
				require.NoError(t, join(tlsconf.Client{CAFile: ca.CAFile}))
			}
			plain, err := nats.Connect(e.ClientURL(), nats.Token("tok"), nats.Timeout(2*time.Second))
			if err == nil {
				plain.Close()
			}
			require.Error(t, err, "a client without our CA cannot connect")
		})
	}
}

func TestConfigValidate(t *testing.T) {
	require.ErrorContains(t, Config{}.Validate(), "dataDir")
	require.ErrorContains(t, Config{DataDir: "x", Listen: "nope", Token: "t"}.Validate(), "listen")
	require.ErrorContains(t, Config{DataDir: "x", Listen: "127.0.0.1:4222"}.Validate(), "listen: clients must authenticate")
	require.ErrorContains(t, Config{DataDir: "x", Token: "t", User: "u", Password: "p"}.Validate(), "token, user")
	require.ErrorContains(t, Config{DataDir: "x", User: "u"}.Validate(), "user, password")
	require.ErrorContains(t, Config{DataDir: "x", NoAuth: true, Token: "t"}.Validate(), "noAuth")
	require.NoError(t, Config{DataDir: "x", Listen: "127.0.0.1:4222", Token: "t"}.Validate())
	require.NoError(t, Config{DataDir: "x", Listen: "127.0.0.1:4222", NoAuth: true}.Validate())
	require.NoError(t, Config{DataDir: "x"}.Validate())
}

func meshtestEvent(id string) *event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/embedded-test")
	e.SetType("test")
	return &e
}
