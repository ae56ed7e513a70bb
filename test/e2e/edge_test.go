package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// edgeCut is how long the edge test cuts the link; MESHD_E2E_EDGE_CUT
// (a duration) makes it longer, as make soak does.
func edgeCut(t *testing.T) time.Duration {
	t.Helper()
	if s := os.Getenv("MESHD_E2E_EDGE_CUT"); s != "" {
		d, err := time.ParseDuration(s)
		require.NoError(t, err, "MESHD_E2E_EDGE_CUT")
		return d
	}
	return 20 * time.Second
}

// An edge meshd (mesh.leaf) keeps answering 204 while its link to the hub
// is cut; once it is back the hub's subscriber receives every event once,
// and events published on the hub meanwhile reach the edge's subscriber,
// once.
func TestEdgeKeepsAcceptingWhileCutOffFromTheHub(t *testing.T) {
	leafAddr := freeAddr(t)
	hubURL := infra.StartNATSConf(t, fmt.Sprintf("jetstream { domain: hub }\nleafnodes {\n  listen: %q\n  authorization { user: edge, password: s3cret }\n}\n", leafAddr))
	link := infra.StartProxy(t, leafAddr)

	atHub := newSink(t, http.StatusNoContent)
	atEdge := newSink(t, http.StatusNoContent)
	hubSide := newMeshd(t, "hub-app", fastRetry+"mesh:\n  url: "+hubURL+"\nsubscriptions:\n"+subscriptionYAML("orders-hub", "orders", atHub.url()))
	edge := newMeshd(t, "edge-app", fastRetry+"mesh:\n  leaf: nats://"+link.Addr+"\n  user: edge\n  password: s3cret\nsubscriptions:\n"+
		subscriptionYAML("orders-edge", "orders", atEdge.url()))
	require.Eventually(t, func() bool { return strings.Contains(edge.logString(), "this edge now copies the hub's events") },
		30*time.Second, 50*time.Millisecond, "the edge should link up with the hub")
	assert.NotContains(t, edge.logString(), "s3cret", "the link's password is not logged")

	// The app publishes all along; every publish must be answered 204.
	var published, refused atomic.Int64
	var firstRefusal atomic.Value
	stop := make(chan struct{})
	var app sync.WaitGroup
	app.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, body := edge.post("/v1/publish/orders", http.Header{
				"Ce-Specversion": {"1.0"}, "Ce-Id": {fmt.Sprintf("e-%d", i)}, "Ce-Source": {"/edge"}, "Ce-Type": {"t"},
			}, []byte(`{}`))
			if resp.StatusCode != http.StatusNoContent {
				refused.Add(1)
				firstRefusal.CompareAndSwap(nil, fmt.Sprint(resp.StatusCode, body))
				continue
			}
			published.Add(1)
		}
	})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		app.Wait()
	}()
	require.Eventually(t, func() bool { ids, _ := atHub.ids(); return len(ids) >= 20 }, 30*time.Second, 50*time.Millisecond,
		"edge events should reach the hub while linked")

	cut := edgeCut(t)
	link.SetFailing(true)
	cutAt, beforeCut := time.Now(), published.Load()
	for i := range 20 {
		hubSide.publishBinary("orders", fmt.Sprintf("h-%d", i), "t", []byte(`{}`))
	}
	require.Eventually(t, func() bool { return time.Since(cutAt) >= cut }, cut+time.Minute, 100*time.Millisecond) // the outage lasts
	atReturn := published.Load()
	duringCut := atReturn - beforeCut
	link.SetFailing(false)
	back := time.Now()
	require.Eventually(t, func() bool { return published.Load() > atReturn+50 }, 30*time.Second, 20*time.Millisecond)
	close(stop)
	app.Wait()
	require.Zero(t, refused.Load(), "every publish at the edge is answered 204 (first other answer: %v)", firstRefusal.Load())
	total := int(published.Load())

	wantAll := func(s *sink, where string) map[string]int {
		t.Helper()
		var ids map[string]int
		require.Eventually(t, func() bool {
			ids, _ = s.ids()
			for i := range total {
				if ids[fmt.Sprintf("e-%d", i)] == 0 {
					return false
				}
			}
			for i := range 20 {
				if ids[fmt.Sprintf("h-%d", i)] == 0 {
					return false
				}
			}
			return true
		}, 2*time.Minute, 100*time.Millisecond, "%s: every event should arrive", where)
		return ids
	}
	wantAll(atHub, "the hub's subscriber")
	drained := time.Since(back)
	wantAll(atEdge, "the edge's subscriber")
	// A copy made twice would arrive with the others; let a moment pass.
	require.Eventually(t, func() bool { return time.Since(back) > drained+3*time.Second }, time.Minute, 100*time.Millisecond)
	hubIDs, hubDeliveries := atHub.ids()
	edgeIDs, edgeDeliveries := atEdge.ids()
	t.Logf("RESULT link cut %s; %d publishes at the edge, all 204 (%d during the cut); the hub's subscriber had them all %s after the link returned; "+
		"deliveries at the hub %d of %d events, at the edge %d of %d events",
		cut, total, duringCut, drained.Round(100*time.Millisecond), hubDeliveries, len(hubIDs), edgeDeliveries, len(edgeIDs))
	assert.Equal(t, total+20, len(hubIDs))
	assert.Equal(t, len(hubIDs), hubDeliveries, "the hub's subscriber got events twice")
	assert.Equal(t, total+20, len(edgeIDs))
	assert.Equal(t, len(edgeIDs), edgeDeliveries, "the edge's subscriber got events twice")
}
