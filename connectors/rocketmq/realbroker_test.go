package rocketmq_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/rocketmq"
)

// TestRealBroker runs rocketmq-sink into a real RocketMQ cluster and
// rocketmq-source out of it. No broker can be had on the machines meshd is
// developed on (RocketMQ comes only from Maven and Apache downloads), so
// it runs only when ROCKETMQ_NAMESRV names a name server (IP:port; more
// separated by semicolons). ROCKETMQ_TOPIC names the topic (default
// meshd_e2e, which the broker must hold or create); ROCKETMQ_ACCESS_KEY
// and ROCKETMQ_SECRET_KEY sign the requests when the cluster has ACL on.
//
// It is the one test of the package that skips, and it says so (shown by
// go test -v and -json).
func TestRealBroker(t *testing.T) {
	ns := os.Getenv("ROCKETMQ_NAMESRV")
	if ns == "" {
		const why = "NOT RUN: no real RocketMQ broker; set ROCKETMQ_NAMESRV=ip:port to run rocketmq-sink and rocketmq-source against one. " +
			"Everything else in this package ran against the protocol-level server of test/infra/rocketmq only."
		t.Skip(why)
	}
	topic := os.Getenv("ROCKETMQ_TOPIC")
	if topic == "" {
		topic = "meshd_e2e"
	}
	common := map[string]any{rocketmq.FieldNameServers: ns, rocketmq.FieldRocketTopic: topic}
	if ak := os.Getenv("ROCKETMQ_ACCESS_KEY"); ak != "" {
		common[rocketmq.FieldAccessKey] = ak
		common[rocketmq.FieldSecretKey] = os.Getenv("ROCKETMQ_SECRET_KEY")
	}
	with := func(extra map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range common {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	rt, collector, publish := newRuntime(t, rocketmq.SinkSpec, rocketmq.SourceSpec)
	run := fmt.Sprintf("run-%d", time.Now().UnixNano())
	back := collector("back")
	_, err := rt.Create(t.Context(), "realin", with(map[string]any{
		connectors.FieldConnectorType: rocketmq.SourceType, connectors.FieldTopic: "back",
		rocketmq.FieldGroup: "meshd_e2e_" + run, rocketmq.FieldConsumeFrom: "last", rocketmq.FieldTags: run,
	}))
	require.NoError(t, err)
	_, err = rt.Create(t.Context(), "realout", with(map[string]any{
		connectors.FieldConnectorType: rocketmq.SinkType, connectors.FieldTopic: "out", rocketmq.FieldTags: run,
	}))
	require.NoError(t, err)
	waitRunning(t, rt, "realin")
	waitRunning(t, rt, "realout")
	var evs []*event.Event
	for i := range 20 {
		e := event.New()
		e.SetID(fmt.Sprintf("%s-%02d", run, i))
		e.SetSource("/meshd/e2e")
		e.SetType("dev.meshd.e2e")
		require.NoError(t, e.SetData("application/octet-stream", []byte{byte(i), 0, 0xff}))
		evs = append(evs, &e)
	}
	require.NoError(t, publish("out", evs...))
	require.Eventually(t, func() bool {
		for _, e := range evs {
			if back.byID(e.ID()) == nil {
				return false
			}
		}
		return true
	}, 2*time.Minute, 50*time.Millisecond, "the events come back through the real broker")
	for _, e := range evs {
		got := back.byID(e.ID())
		assert.Equal(t, e.Data(), got.Data())
		assert.Equal(t, e.Type(), got.Type())
		assert.Equal(t, run, got.Extensions()["rocketmqtags"])
	}
}
