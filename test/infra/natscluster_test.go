package infra_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// The launcher's cluster replicates: an R3 stream keeps every message
// through kill -9 of its leader, elects another, and a restarted node
// catches up.
func TestNATSClusterSurvivesItsLeader(t *testing.T) {
	c := infra.StartNATSCluster(t, 3)
	nc, err := nats.Connect(c.URL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			require.Eventually(t, func() bool {
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				defer cancel()
				_, err := js.Publish(ctx, "r3.x", []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint(i)))
				return err == nil
			}, 20*time.Second, 50*time.Millisecond)
		}
	}
	publish(0, 10)
	leader := c.StreamLeader("R3")
	c.Kill9(leader)
	began := time.Now()
	publish(10, 20)
	t.Logf("stored again %s after kill -9 of the leader", time.Since(began).Round(time.Millisecond))
	require.NotEqual(t, leader, c.StreamLeader("R3"), "another node leads")
	c.Start(leader)
	s, err := js.Stream(t.Context(), "R3")
	require.NoError(t, err)
	require.EqualValues(t, 20, s.CachedInfo().State.Msgs)
	require.Eventually(t, func() bool {
		info, err := s.Info(t.Context())
		if err != nil || info.Cluster == nil {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return false
			}
		}
		return len(info.Cluster.Replicas) == 2
	}, 20*time.Second, 100*time.Millisecond, "the restarted node is current again")
}
