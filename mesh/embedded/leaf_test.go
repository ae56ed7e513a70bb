package embedded

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge/tlsconf"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/meshtest"
	"github.com/meshd/meshd/mesh/natsjs"
	"github.com/meshd/meshd/test/infra"
)

// hub starts a nats-server with JetStream in domain "hub" and a leaf node
// listener that wants user edge, password s3cret; it returns the client URL
// and the leaf listener's address.
func hub(t *testing.T) (clientURL, leafAddr string) {
	t.Helper()
	leafAddr = infra.FreeAddr(t)
	clientURL = infra.StartNATSConf(t, fmt.Sprintf("jetstream { domain: hub }\nleafnodes {\n  listen: %q\n  authorization { user: edge, password: s3cret }\n}\n", leafAddr))
	return clientURL, leafAddr
}

func openEdge(t *testing.T, dir, hubLeaf, domain string, window time.Duration) *Engine {
	t.Helper()
	e, err := Open(t.Context(), Config{DataDir: dir, Mesh: natsjs.Config{DuplicateWindow: window},
		Leaf: &LeafConfig{URLs: []string{"nats://" + hubLeaf}, Domain: domain, User: "edge", Password: "s3cret", SyncEvery: 200 * time.Millisecond}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	require.Eventually(t, e.HubSynced, 10*time.Second, 10*time.Millisecond, "the edge should link to the hub")
	return e
}

func publishN(t *testing.T, e mesh.Engine, topic, prefix string, n int) {
	t.Helper()
	for i := range n {
		ev := event.New()
		ev.SetID(fmt.Sprintf("%s-%d", prefix, i))
		ev.SetSource("/leaf-test")
		ev.SetType("t")
		require.NoError(t, e.Publish(t.Context(), topic, []*event.Event{&ev}))
	}
}

// receive reads until want distinct ids arrived, then for a moment more,
// and returns how often each id came.
func receive(t *testing.T, c mesh.Consumer, want int, what string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for len(got) < want {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		m, err := c.Next(ctx)
		cancel()
		require.NoError(t, err, "%s: %d of %d events arrived: %v", what, len(got), want, got)
		got[m.Event().ID()]++
		require.NoError(t, m.Ack(t.Context()))
	}
	// Nothing more should come: a second copy would be here by now.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	for {
		m, err := c.Next(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return got
		}
		require.NoError(t, err)
		got[m.Event().ID()]++
		require.NoError(t, m.Ack(t.Context()))
	}
}

func twice(got map[string]int) []string {
	var out []string
	for id, n := range got {
		if n > 1 {
			out = append(out, id)
		}
	}
	return out
}

// An edge stores what it is given while its link is cut; once the link is
// back the hub's subscribers get every event once, events published on the
// hub reach the edge's subscribers, and the hub's copies of the edge's own
// events (back after the edge's duplicate window) are not delivered twice.
func TestLeafEdgeStoresWhileCutAndForwardsOnce(t *testing.T) {
	hubURL, leafAddr := hub(t)
	link := infra.StartProxy(t, leafAddr)
	hubEng, err := natsjs.Connect(t.Context(), natsjs.Config{URLs: []string{hubURL}, Name: "hub-side"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = hubEng.Close() })
	edge := openEdge(t, t.TempDir(), link.Addr, "edge1", time.Second)

	atHub, err := hubEng.Consume(t.Context(), mesh.ConsumerConfig{Topic: "orders", Group: "hub-sub"})
	require.NoError(t, err)
	defer atHub.Close()
	atEdge, err := edge.Consume(t.Context(), mesh.ConsumerConfig{Topic: "orders", Group: "edge-sub"})
	require.NoError(t, err)
	defer atEdge.Close()

	publishN(t, edge, "orders", "linked", 10)
	publishN(t, hubEng, "orders", "hub", 5)

	link.SetFailing(true)
	require.Eventually(t, func() bool { return !edge.LeafConnected() }, 10*time.Second, 10*time.Millisecond)
	start := time.Now()
	publishN(t, edge, "orders", "cut", 50)
	t.Logf("50 publishes with the link cut took %s", time.Since(start).Round(time.Millisecond))
	require.NoError(t, edge.Ready(t.Context()), "an edge is ready while its link is cut")
	link.SetFailing(false)

	got := receive(t, atHub, 65, "at the hub")
	assert.Len(t, got, 65)
	assert.Empty(t, twice(got), "the hub's subscriber got events twice")
	st := time.Now()
	got = receive(t, atEdge, 65, "at the edge")
	t.Logf("edge got all after %s", time.Since(st))
	assert.Len(t, got, 65)
	assert.Empty(t, twice(got), "the edge's subscriber got events twice")
	for i := range 5 {
		assert.Contains(t, got, fmt.Sprintf("hub-%d", i), "events published on the hub reach the edge")
	}
}

// The edge engine, its server linked to a hub, passes the conformance
// suite: its consumers read the hub's subject of their topic as well.
func TestLeafEdgeConformance(t *testing.T) {
	_, leafAddr := hub(t)
	var n atomic.Int64
	meshtest.Run(t, func(t *testing.T) meshtest.Instance {
		dir := t.TempDir()
		domain := fmt.Sprintf("edge%d", n.Add(1)) // one per store
		e := openEdge(t, dir, leafAddr, domain, 0)
		return meshtest.Instance{
			Engine: e,
			Restart: func(t *testing.T) mesh.Engine {
				require.NoError(t, e.Close())
				return openEdge(t, dir, leafAddr, domain, 0)
			},
			StopServer: func(t *testing.T) {
				e.srv.Shutdown()
				e.srv.WaitForShutdown()
			},
		}
	})
}

// The link to the hub can use mutual TLS; an edge that does not trust the
// hub's certificate does not link.
func TestLeafEdgeTLS(t *testing.T) {
	ca := infra.NewTestCA(t)
	leafAddr := infra.FreeAddr(t)
	infra.StartNATSConf(t, fmt.Sprintf("jetstream { domain: hub }\nleafnodes {\n  listen: %q\n  tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }\n}\n",
		leafAddr, ca.ServerCert, ca.ServerKey, ca.CAFile))
	edge := func(c tlsconf.Client) *Engine {
		tc, err := c.Config()
		require.NoError(t, err)
		e, err := Open(t.Context(), Config{DataDir: t.TempDir(),
			Leaf: &LeafConfig{URLs: []string{"tls://" + leafAddr}, Domain: "edge-tls", TLS: tc}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = e.Close() })
		return e
	}
	untrusting := edge(tlsconf.Client{CAFile: ca.OtherCAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey})
	require.Never(t, untrusting.LeafConnected, 2*time.Second, 50*time.Millisecond, "an edge that does not trust the hub does not link")
	require.NoError(t, untrusting.Close())
	trusting := edge(tlsconf.Client{CAFile: ca.CAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey})
	require.Eventually(t, trusting.HubSynced, 10*time.Second, 10*time.Millisecond, "an edge with the CA and a client certificate links")
}

func TestLeafConfigIsChecked(t *testing.T) {
	for want, leaf := range map[string]LeafConfig{
		"one kind":            {URLs: []string{"nats://hub:7422"}, Domain: "e1", User: "u", Password: "p", Token: "t"},
		"want nats":           {URLs: []string{"http://hub:7422"}, Domain: "e1"},
		"at least one hub":    {Domain: "e1"},
		"edge domain":         {URLs: []string{"nats://hub:7422"}, Domain: "a.b"},
		"must differ":         {URLs: []string{"nats://hub:7422"}, Domain: "hub"},
		"password: needs use": {URLs: []string{"nats://hub:7422"}, Domain: "e1", Password: "p"},
	} {
		_, err := Open(t.Context(), Config{DataDir: t.TempDir(), Leaf: &leaf})
		require.ErrorContains(t, err, want)
	}
}
