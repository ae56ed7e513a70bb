package embedded

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/meshtest"
	"github.com/meshd/meshd/mesh/natsjs"
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
	e, err := Open(t.Context(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	url := e.ClientURL()
	require.NotEmpty(t, url)
	_, _, err = net.SplitHostPort(url[len("nats://"):])
	require.NoError(t, err)

	remote, err := natsjs.Connect(t.Context(), natsjs.Config{URLs: []string{url}, Name: "remote"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = remote.Close() })

	require.NoError(t, remote.Publish(t.Context(), "joined", []*event.Event{meshtestEvent("from-remote")}))
	c, err := e.Consume(t.Context(), mesh.ConsumerConfig{Topic: "joined", Group: "g"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	m, err := c.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "from-remote", m.Event().ID())
}

func TestConfigValidate(t *testing.T) {
	require.ErrorContains(t, Config{}.Validate(), "dataDir")
	require.ErrorContains(t, Config{DataDir: "x", Listen: "nope"}.Validate(), "listen")
	require.NoError(t, Config{DataDir: "x", Listen: "127.0.0.1:4222"}.Validate())
}

func meshtestEvent(id string) *event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/embedded-test")
	e.SetType("test")
	return &e
}
