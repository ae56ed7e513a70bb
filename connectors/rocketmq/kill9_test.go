package rocketmq_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/rocketmq"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/test/infra"
	rmq "github.com/meshd/meshd/test/infra/rocketmq"
)

// The meshd process of TestSourceResumesAfterKill9 is this test binary
// started again with these variables set: the mesh data directory and the
// name server.
const (
	childEnv        = "MESHD_ROCKETMQ_CHILD"
	childNameSrvEnv = "MESHD_ROCKETMQ_CHILD_NAMESRV"
	killTopic       = "stream"
	killQueues      = 4
)

// runChild runs a connector runtime on an embedded mesh in the data
// directory with the source "src" on the topic, until it is killed.
func runChild() {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	rocketmq.InstallClientLog()
	eng, err := embedded.Open(ctx, embedded.Config{DataDir: os.Getenv(childEnv)})
	if err != nil {
		fail(err)
	}
	opts := runtimeOptions(eng, rocketmq.SourceSpec)
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rt, err := worker.New(opts)
	if err != nil {
		fail(err)
	}
	if err := rt.Start(ctx); err != nil { // brings "src" back after a kill
		fail(err)
	}
	if _, err := rt.Get("src"); err != nil {
		_, err = rt.Create(ctx, "src", map[string]any{
			connectors.FieldConnectorType: rocketmq.SourceType, connectors.FieldTopic: "events", connectors.FieldTasksMax: 2,
			rocketmq.FieldNameServers: os.Getenv(childNameSrvEnv), rocketmq.FieldRocketTopic: killTopic,
			rocketmq.FieldConsumeFrom: "first", rocketmq.FieldPullBatch: 8,
		})
		if err != nil {
			fail(err)
		}
	}
	fmt.Println("running")
	select {} // until killed
}

// child is a running meshd process.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startChild(t *testing.T, dir string, s *rmq.Server) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir, childNameSrvEnv+"="+s.NameServer())
	var out infra.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("meshd child output:\n%s", out.String())
		}
	})
	return &child{cmd: cmd, done: done}
}

func kill9(t *testing.T, c *child) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-c.done:
	case <-time.After(wait):
		t.Fatal("the killed meshd did not exit")
	}
}

// committed is the group's offsets on the broker, which the source writes
// only after meshd committed them: a lower bound of meshd's.
func committedOnBroker(s *rmq.Server, q int) int64 {
	off, _ := s.ConsumerOffset("meshd-src", killTopic, q)
	return off
}

func progress(s *rmq.Server) string {
	var b bytes.Buffer
	for q := range killQueues {
		fmt.Fprintf(&b, "queue %d: %d of %d; ", q, committedOnBroker(s, q), s.MaxOffset(killTopic, q))
	}
	return b.String()
}

// meshd killed with SIGKILL in the middle of a stream, then started again,
// reads on from the exact offsets it committed: every message arrives,
// and the offsets end at the end of every queue.
func TestSourceResumesAfterKill9(t *testing.T) {
	s := rmq.Start(t, rmq.Config{})
	require.NoError(t, s.CreateTopic(killTopic, killQueues))
	p := producerFor(t, s)
	keys := make([]string, 600)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	require.NoError(t, send(t.Context(), p, killTopic, keys[:300], ""))
	dir := t.TempDir()
	first := startChild(t, dir, s)
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- send(ctx, p, killTopic, keys[300:], "") }()
	require.Eventually(t, func() bool {
		var n int64
		for q := range killQueues {
			n += committedOnBroker(s, q)
		}
		return n >= 150
	}, wait, 2*time.Millisecond, "the first meshd reads part of the stream")
	kill9(t, first)
	require.NoError(t, <-sent)

	second := startChild(t, dir, s)
	if !assert.Eventually(t, func() bool {
		for q := range killQueues {
			if committedOnBroker(s, q) != s.MaxOffset(killTopic, q) {
				return false
			}
		}
		return true
	}, wait, 10*time.Millisecond) {
		t.Fatalf("the second meshd did not read the rest: %s", progress(s))
	}
	kill9(t, second)

	eng := newEngine(t, dir)
	kv, err := eng.KV(t.Context(), worker.DefaultOffsetBucket)
	require.NoError(t, err)
	stored, err := kv.Keys(t.Context(), "src.")
	require.NoError(t, err)
	assert.Len(t, stored, killQueues, "an offset per queue")
	for _, k := range stored {
		entry, err := kv.Get(t.Context(), k)
		require.NoError(t, err)
		var o worker.Offset
		require.NoError(t, json.Unmarshal(entry.Value, &o))
		q, err := strconv.Atoi(o.Partition[len(o.Partition)-1:])
		require.NoError(t, err)
		assert.Equal(t, strconv.FormatInt(s.MaxOffset(killTopic, q), 10), o.Offset, "meshd's offset of %s is the end of the queue", o.Partition)
	}

	seen := map[string]int{}
	total := readTopic(t, eng, "events", func(key string) { seen[key]++ }, len(keys))
	for _, k := range keys {
		assert.Equal(t, 1, seen[k], "message %s is in the mesh once", k)
	}
	t.Logf("%d events for %d messages (re-published records are dropped by the mesh's de-duplication)", total, len(keys))
}

// readTopic reads a mesh topic from its start until want events came and
// no more follow for a moment.
func readTopic(t *testing.T, eng mesh.Engine, topic string, each func(key string), want int) int {
	t.Helper()
	cons, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: topic, Group: "verify"})
	require.NoError(t, err)
	defer cons.Close()
	n := 0
	for {
		limit := wait
		if n >= want {
			limit = 300 * time.Millisecond // anything beyond is a duplicate
		}
		ctx, cancel := context.WithTimeout(t.Context(), limit)
		m, err := cons.Next(ctx)
		cancel()
		if err != nil {
			require.GreaterOrEqual(t, n, want, "reading the mesh topic: %v", err)
			return n
		}
		k, _ := m.Event().Extensions()["rocketmqkeys"].(string)
		each(k)
		n++
		require.NoError(t, m.Ack(t.Context()))
	}
}
