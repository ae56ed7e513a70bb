package infra

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsClusterReady bounds how long a cluster (or a restarted node) may take
// to have a JetStream meta leader and be current.
const natsClusterReady = 30 * time.Second

// NATSCluster is a JetStream cluster of nats-server processes built from
// our go.mod, each with its own store dir and config file, joined by
// cluster routes on loopback. Nodes can be killed and started again on
// their ports and stores. The cluster is stopped at the end of the test.
type NATSCluster struct {
	t     *testing.T
	nodes []*natsProc
}

// StartNATSCluster starts a cluster of n nodes and waits until JetStream
// is current on every one.
func StartNATSCluster(t *testing.T, n int) *NATSCluster {
	t.Helper()
	bin := NATSServerBinary(t)
	c := &NATSCluster{t: t}
	ports := distinctFreePorts(t, 3*n)
	routePorts := ports[2*n:]
	for i := range n {
		p := &natsProc{t: t, bin: bin, storeDir: t.TempDir(), port: ports[2*i], monPort: ports[2*i+1]}
		p.logPath = filepath.Join(p.storeDir, "nats-server.log")
		p.confPath = filepath.Join(p.storeDir, "nats-server.conf")
		var routes []string
		for j, rp := range routePorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", rp))
			}
		}
		conf := fmt.Sprintf("cluster {\n  name: meshd-test\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n",
			routePorts[i], strings.Join(routes, ", "))
		if err := os.WriteFile(p.confPath, []byte(conf), 0o600); err != nil {
			t.Fatalf("writing the config of nats-server %d: %v", i, err)
		}
		c.nodes = append(c.nodes, p)
	}
	for _, p := range c.nodes {
		p.start()
		t.Cleanup(p.stop)
	}
	for i := range c.nodes {
		c.WaitCurrent(i)
	}
	return c
}

// distinctFreePorts is n FreePorts, no two the same.
func distinctFreePorts(t *testing.T, n int) []int {
	t.Helper()
	seen := map[int]bool{}
	var ports []int
	for len(ports) < n {
		if p := FreePort(t); !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	return ports
}

// URL is the client URLs of every node, comma-separated (as mesh.url
// takes them).
func (c *NATSCluster) URL() string {
	urls := make([]string, len(c.nodes))
	for i, p := range c.nodes {
		urls[i] = p.url()
	}
	return strings.Join(urls, ",")
}

// Size is the number of nodes.
func (c *NATSCluster) Size() int { return len(c.nodes) }

// Name is the server name of node i.
func (c *NATSCluster) Name(i int) string { return "meshd-test-" + strconv.Itoa(c.nodes[i].port) }

// Kill9 kills node i with SIGKILL and waits until it is gone.
func (c *NATSCluster) Kill9(i int) { c.nodes[i].kill() }

// Start starts node i again on its ports and store, and waits until its
// JetStream is current.
func (c *NATSCluster) Start(i int) {
	c.t.Helper()
	c.nodes[i].start()
	c.WaitCurrent(i)
}

// StartAll starts the nodes given (all when none is) again, on their ports
// and stores, then waits until each is current: a cluster that was fully
// down needs a quorum before any node is.
func (c *NATSCluster) StartAll(nodes ...int) {
	c.t.Helper()
	if len(nodes) == 0 {
		for i := range c.nodes {
			nodes = append(nodes, i)
		}
	}
	for _, i := range nodes {
		c.nodes[i].start()
	}
	for _, i := range nodes {
		c.WaitCurrent(i)
	}
}

// WaitCurrent waits until node i reports JetStream healthy and current
// (its /healthz answers 200).
func (c *NATSCluster) WaitCurrent(i int) {
	c.t.Helper()
	p := c.nodes[i]
	client := &http.Client{Timeout: time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", p.monPort)
	deadline := time.Now().Add(natsClusterReady)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nats-server %d (%s) not current after %s\n%s", i, c.Name(i), natsClusterReady, p.log())
		}
		time.Sleep(50 * time.Millisecond) // polling the health endpoint
	}
}

// StreamLeader returns the node that leads stream, asking the live nodes.
func (c *NATSCluster) StreamLeader(stream string) int {
	c.t.Helper()
	nc, err := nats.Connect(c.URL(), nats.Timeout(2*time.Second))
	if err != nil {
		c.t.Fatalf("connecting to the cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatalf("opening jetstream: %v", err)
	}
	deadline := time.Now().Add(natsClusterReady)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := js.Stream(ctx, stream)
		cancel()
		if err == nil && s.CachedInfo().Cluster != nil {
			for i := range c.nodes {
				if c.Name(i) == s.CachedInfo().Cluster.Leader {
					return i
				}
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no leader of stream %q after %s (last error: %v)", stream, natsClusterReady, err)
		}
		time.Sleep(100 * time.Millisecond) // waiting for an election
	}
}
