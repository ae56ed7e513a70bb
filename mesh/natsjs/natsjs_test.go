package natsjs_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/mesh/meshtest"
	"github.com/meshd/meshd/mesh/natsjs"
	"github.com/meshd/meshd/test/infra"
)

func connect(t *testing.T, url string) *natsjs.Engine {
	t.Helper()
	eng, err := natsjs.Connect(t.Context(), natsjs.Config{URLs: []string{url}, Name: t.Name()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

// TestConformance runs the suite against a nats-server process.
func TestConformance(t *testing.T) {
	meshtest.Run(t, func(t *testing.T) meshtest.Instance {
		url, stop, restart := infra.StartNATS(t)
		eng := connect(t, url)
		return meshtest.Instance{
			Engine: eng,
			Restart: func(t *testing.T) mesh.Engine {
				require.NoError(t, eng.Close())
				restart()
				return connect(t, url)
			},
			StopServer: func(*testing.T) { stop() },
		}
	})
}

func TestReconnectAfterServerRestart(t *testing.T) {
	url, _, restart := infra.StartNATS(t)
	eng := connect(t, url)
	c, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: "reconnect", Group: "g"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	restart()
	// The same engine and consumer carry on once the client reconnected.
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		return eng.Publish(ctx, "reconnect", []*event.Event{newEvent("after-restart")}) == nil
	}, 15*time.Second, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	m, err := c.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "after-restart", m.Event().ID())
	require.NoError(t, m.Ack(ctx))
}

func TestConnectFailsWithoutServer(t *testing.T) {
	port := infra.FreePort(t)
	_, err := natsjs.Connect(t.Context(), natsjs.Config{
		URLs:           []string{"nats://127.0.0.1:" + itoa(port)},
		ConnectTimeout: time.Second,
	})
	require.ErrorIs(t, err, mesh.ErrUnavailable)
}

func TestUndecodableMessageIsTerminated(t *testing.T) {
	eng := openEmbedded(t)
	c, err := eng.Consume(t.Context(), mesh.ConsumerConfig{Topic: "garbage", Group: "g"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	nc := eng.Conn()
	js, err := nc.JetStream()
	require.NoError(t, err)
	_, err = js.PublishMsg(&nats.Msg{Subject: "meshd.t.garbage", Data: []byte("no headers")})
	require.NoError(t, err)
	bad := nats.NewMsg("meshd.t.garbage")
	bad.Header.Set("ce-specversion", "9.9")
	_, err = js.PublishMsg(bad)
	require.NoError(t, err)
	require.NoError(t, eng.Publish(t.Context(), "garbage", []*event.Event{newEvent("good")}))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	m, err := c.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "good", m.Event().ID())
	require.NoError(t, m.Ack(ctx))
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, natsjs.Config{}.Validate())
	require.ErrorContains(t, natsjs.Config{Stream: "a.b"}.Validate(), "stream")
	require.ErrorContains(t, natsjs.Config{SubjectPrefix: "a.>"}.Validate(), "subjectPrefix")
	require.ErrorContains(t, natsjs.Config{Replicas: 7}.Validate(), "replicas")
	require.ErrorContains(t, natsjs.Config{MaxAge: time.Minute}.Validate(), "duplicateWindow")
	require.ErrorContains(t, natsjs.Config{CredsFile: "c", Token: "t"}.Validate(), "credsFile, token: set one kind of credentials")
	require.ErrorContains(t, natsjs.Config{NKeyFile: "n", User: "u"}.Validate(), "nkeyFile, user")
	require.ErrorContains(t, natsjs.Config{Password: "p"}.Validate(), "password: needs user")
}

func openEmbedded(t testing.TB) *embedded.Engine {
	t.Helper()
	eng, err := embedded.Open(context.Background(), embedded.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

func newEvent(id string) *event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/jetstream-test")
	e.SetType("test")
	return &e
}

func itoa(i int) string { return strconv.Itoa(i) }

// A watch sees the writes of another client, and carries on by itself after
// the server was down for longer than its consumer's heartbeats: what
// changed while it was down is reported once the server is back.
func TestWatchOutlivesServerRestart(t *testing.T) {
	url, stop, restart := infra.StartNATS(t)
	watcher, writer := connect(t, url), connect(t, url)
	kv, err := watcher.KV(t.Context(), "watched")
	require.NoError(t, err)
	changes, err := kv.Watch(t.Context(), "")
	require.NoError(t, err)
	next := func() mesh.Change {
		t.Helper()
		select {
		case c, ok := <-changes:
			require.True(t, ok, "watch channel closed")
			return c
		case <-time.After(30 * time.Second):
			t.Fatal("no change reported")
			return mesh.Change{}
		}
	}
	require.Equal(t, mesh.Change{}, next(), "no current values")

	other, err := writer.KV(t.Context(), "watched")
	require.NoError(t, err)
	rev, err := other.Put(t.Context(), "before", []byte("1"))
	require.NoError(t, err)
	require.Equal(t, mesh.Change{Key: "before", Value: []byte("1"), Revision: rev}, next())

	stop()
	// Longer than the ordered consumer's heartbeat interval (5 s), so that
	// it notices and has to be made again.
	time.Sleep(7 * time.Second) // the outage being tested, not a synchronisation
	restart()
	back := time.Now()
	var after uint64
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		after, err = other.Put(ctx, "after", []byte("2"))
		return err == nil
	}, 20*time.Second, 100*time.Millisecond)
	stored := time.Since(back)
	require.Equal(t, mesh.Change{Key: "after", Value: []byte("2"), Revision: after}, next())
	t.Logf("stored %s after the restart, reported %s after it", stored.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))

	// The watch starts its watcher again 2, 5 and 10 s after the
	// reconnect: changes written across those times are each reported
	// once, in order.
	for i := range 12 {
		rev, err := other.Put(t.Context(), "later", []byte(strconv.Itoa(i)))
		require.NoError(t, err)
		require.Equal(t, mesh.Change{Key: "later", Value: []byte(strconv.Itoa(i)), Revision: rev}, next(), "change %d", i)
		time.Sleep(time.Second) // spreads the writes over the re-watches: the pacing under test
	}
	select {
	case c := <-changes:
		t.Fatalf("reported again: %+v", c)
	case <-time.After(time.Second):
	}
}

func TestBucketExists(t *testing.T) {
	eng := openEmbedded(t)
	ok, err := eng.BucketExists(t.Context(), "not-yet")
	require.NoError(t, err)
	require.False(t, ok)
	_, err = eng.KV(t.Context(), "not-yet")
	require.NoError(t, err)
	ok, err = eng.BucketExists(t.Context(), "not-yet")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = eng.BucketExists(t.Context(), "not a name")
	require.NoError(t, err)
	require.False(t, ok)
}

// Groups are kept apart by scope (the app id): two apps' subscriptions of
// one id on one topic each get every event, and one deleting its group
// leaves the other's alone. A group made before scopes is carried on.
func TestGroupScopes(t *testing.T) {
	url, _, _ := infra.StartNATS(t)
	open := func(scope string) *natsjs.Engine {
		eng, err := natsjs.Connect(t.Context(), natsjs.Config{URLs: []string{url}, Name: "scope-" + scope, GroupScope: scope})
		require.NoError(t, err)
		t.Cleanup(func() { _ = eng.Close() })
		return eng
	}
	ctx := t.Context()
	publish := func(eng *natsjs.Engine, ids ...string) {
		for _, id := range ids {
			require.NoError(t, eng.Publish(ctx, "orders", []*event.Event{newEvent(id)}))
		}
	}
	receive := func(c mesh.Consumer, n int) []string {
		var got []string
		for range n {
			nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			m, err := c.Next(nctx)
			cancel()
			require.NoError(t, err, "after %v", got)
			require.NoError(t, m.Ack(ctx))
			got = append(got, m.Event().ID())
		}
		return got
	}
	quiet := func(c mesh.Consumer) {
		nctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		m, err := c.Next(nctx)
		if err == nil {
			t.Fatalf("unexpected delivery of %s", m.Event().ID())
		}
	}

	// A group made before scopes, half consumed.
	old := open("")
	// (Two in flight: a closed member's unacked events wait out AckWait.)
	c, err := old.Consume(ctx, mesh.ConsumerConfig{Topic: "orders", Group: "audit", MaxInFlight: 2})
	require.NoError(t, err)
	publish(old, "e1", "e2", "e3", "e4")
	require.Equal(t, []string{"e1", "e2"}, receive(c, 2))
	require.NoError(t, c.Close())

	// App a carries it on: the rest of the backlog, not all of it again.
	a, b := open("a"), open("b")
	ca, err := a.Consume(ctx, mesh.ConsumerConfig{Topic: "orders", Group: "audit", MaxInFlight: 1})
	require.NoError(t, err)
	require.Equal(t, []string{"e3", "e4"}, receive(ca, 2))
	ackFloor(t, a, 4)
	require.NoError(t, ca.Close())
	require.NoError(t, a.DeleteGroup(ctx, "orders", "audit")) // the old group is gone

	// Apps a and b, one group name each: each its own group, every event.
	ca, err = a.Consume(ctx, mesh.ConsumerConfig{Topic: "orders", Group: "audit", StartAtNew: true})
	require.NoError(t, err)
	cb, err := b.Consume(ctx, mesh.ConsumerConfig{Topic: "orders", Group: "audit", StartAtNew: true})
	require.NoError(t, err)
	publish(a, "f1", "f2", "f3")
	assert.Equal(t, []string{"f1", "f2", "f3"}, receive(ca, 3))
	assert.Equal(t, []string{"f1", "f2", "f3"}, receive(cb, 3))
	quiet(ca)

	// a deleting its group does not touch b's.
	require.NoError(t, ca.Close())
	require.NoError(t, a.DeleteGroup(ctx, "orders", "audit"))
	_, err = a.GroupInfo(ctx, "orders", "audit")
	require.ErrorIs(t, err, mesh.ErrGroupNotFound)
	publish(b, "g1")
	assert.Equal(t, []string{"g1"}, receive(cb, 1))
	ackFloor(t, b, 8)
}

// ackFloor waits for the group orders/audit to have acknowledged up to seq:
// an ack is a message the server takes in its own time, so a GroupInfo
// right after it can still see the floor before it.
func ackFloor(t *testing.T, eng *natsjs.Engine, seq uint64) {
	t.Helper()
	var last uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		gi, err := eng.GroupInfo(t.Context(), "orders", "audit")
		require.NoError(t, err)
		if last = gi.AckFloor; last == seq {
			return
		}
	}
	t.Fatalf("ack floor %d, want %d", last, seq)
}

// A member dies holding events: six delivered (three taken, three fetched
// ahead), none acked or handed back, its connection gone. With
// RedeliverFirst the next member gets them, in stream order, before the
// events published since; without, the newer ones overtake them.
func TestRedeliverFirstAfterAMemberDied(t *testing.T) {
	url, _, _ := infra.StartNATS(t)
	eng := connect(t, url)
	ctx := t.Context()
	for _, first := range []bool{true, false} {
		topic := "orders." + strconv.FormatBool(first)
		cfg := mesh.ConsumerConfig{Topic: topic, Group: "g", AckWait: 2 * time.Second, MaxInFlight: 100}
		nc, err := nats.Connect(url)
		require.NoError(t, err)
		dying, err := natsjs.New(ctx, nc, natsjs.Config{Name: "dying"})
		require.NoError(t, err)
		c, err := dying.Consume(ctx, cfg)
		require.NoError(t, err)
		for i := range 6 {
			require.NoError(t, eng.Publish(ctx, topic, []*event.Event{newEvent("old-" + strconv.Itoa(i))}))
		}
		for range 3 {
			nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := c.Next(nctx)
			cancel()
			require.NoError(t, err)
		}
		nc.Close() // the process died: nothing acked, nothing handed back
		for i := range 3 {
			require.NoError(t, eng.Publish(ctx, topic, []*event.Event{newEvent("new-" + strconv.Itoa(i))}))
		}

		cfg.RedeliverFirst = first
		next, err := eng.Consume(ctx, cfg)
		require.NoError(t, err)
		var got []string
		for range 9 {
			nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			m, err := next.Next(nctx)
			cancel()
			require.NoError(t, err, "after %v", got)
			require.NoError(t, m.Ack(ctx))
			got = append(got, m.Event().ID())
		}
		if first {
			assert.Equal(t, []string{"old-0", "old-1", "old-2", "old-3", "old-4", "old-5", "new-0", "new-1", "new-2"}, got)
		} else {
			assert.True(t, strings.HasPrefix(got[0], "new-"), "without RedeliverFirst newer events come first: %v", got)
		}
		require.NoError(t, next.Close())
	}
}

// member opens a member of cfg on a connection of its own; die closes that
// connection: the process died, nothing settled or handed back.
func member(t *testing.T, url string, cfg mesh.ConsumerConfig) (c mesh.Consumer, die func()) {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	eng, err := natsjs.New(t.Context(), nc, natsjs.Config{Name: "member"})
	require.NoError(t, err)
	c, err = eng.Consume(t.Context(), cfg)
	require.NoError(t, err)
	return c, nc.Close
}

// groupInfo is the server's state of the one group on topic.
func groupInfo(t *testing.T, url, topic string) *jetstream.ConsumerInfo {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(t.Context(), natsjs.DefaultStream)
	require.NoError(t, err)
	var found *jetstream.ConsumerInfo
	list := s.ListConsumers(t.Context())
	for ci := range list.Info() {
		if strings.Contains(ci.Config.Description, strconv.Quote(topic)) {
			found = ci
		}
	}
	require.NoError(t, list.Err())
	require.NotNil(t, found, "no group on %q", topic)
	return found
}

// nextWithin returns the next event of c, failing after d.
func nextWithin(t *testing.T, c mesh.Consumer, d time.Duration, after []string) mesh.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	m, err := c.Next(ctx)
	require.NoError(t, err, "after %v", after)
	return m
}

// publishN publishes prefix-0 … prefix-(n-1), one by one (in stream order).
func publishN(t *testing.T, eng mesh.Engine, topic, prefix string, n int) {
	t.Helper()
	for i := range n {
		require.NoError(t, eng.Publish(t.Context(), topic, []*event.Event{newEvent(prefix + "-" + strconv.Itoa(i))}))
	}
}

// dieHolding makes a member of cfg take `take` of the six old events and
// die holding them and what it fetched ahead; then three new events are
// published.
func dieHolding(t *testing.T, url string, eng mesh.Engine, cfg mesh.ConsumerConfig, take int) {
	t.Helper()
	c, die := member(t, url, cfg)
	publishN(t, eng, cfg.Topic, "old", 6)
	for range take {
		nextWithin(t, c, 5*time.Second, nil)
	}
	die()
	waitNoPullRequest(t, url, cfg.Topic)
	publishN(t, eng, cfg.Topic, "new", 3)
}

// waitNoPullRequest waits until the server dropped the pull requests of
// the group on topic: a member that died has none left to take events
// published from now on (TestRedeliverFirstZombiePullRequest is about
// the time before).
func waitNoPullRequest(t *testing.T, url, topic string) {
	t.Helper()
	require.Eventually(t, func() bool { return groupInfo(t, url, topic).NumWaiting == 0 },
		10*time.Second, 20*time.Millisecond, "the dead member's pull requests are dropped")
}

var inOrder = []string{"old-0", "old-1", "old-2", "old-3", "old-4", "old-5", "new-0", "new-1", "new-2"}

// A RedeliverFirst member dies too — while its gate waits for the first
// member's events, holding newer ones, or after the gate opened and it
// acked some: the next RedeliverFirst member still gets every event not
// acked, in stream order.
func TestRedeliverFirstAfterTwoMembersDied(t *testing.T) {
	url, _, _ := infra.StartNATS(t)
	eng := connect(t, url)
	for _, acked := range []int{0, 2} {
		t.Run("acked="+strconv.Itoa(acked), func(t *testing.T) {
			topic := "twice." + strconv.Itoa(acked)
			cfg := mesh.ConsumerConfig{Topic: topic, Group: "g", AckWait: 2 * time.Second, MaxInFlight: 100}
			dieHolding(t, url, eng, cfg, 3)
			cfg.RedeliverFirst = true
			second, die := member(t, url, cfg)
			if acked == 0 {
				go func() { _, _ = second.Next(t.Context()) }() // the gate waits in here
				require.Eventually(t, func() bool { return groupInfo(t, url, topic).Delivered.Stream == 9 },
					10*time.Second, 20*time.Millisecond, "the new events reach the waiting gate")
			} else {
				var got []string
				for range acked {
					m := nextWithin(t, second, 10*time.Second, got)
					got = append(got, m.Event().ID())
					require.NoError(t, m.Ack(t.Context()))
				}
				require.Equal(t, inOrder[:acked], got)
			}
			die()
			waitNoPullRequest(t, url, topic)

			start := time.Now()
			third, err := eng.Consume(t.Context(), cfg)
			require.NoError(t, err)
			defer third.Close()
			var got []string
			for range 9 - acked {
				m := nextWithin(t, third, 10*time.Second, got)
				got = append(got, m.Event().ID())
				require.NoError(t, m.Ack(t.Context()))
			}
			assert.Equal(t, inOrder[acked:], got)
			assert.Less(t, time.Since(start), 2*time.Second+2*time.Second+2*time.Second, "within ack wait + slack (+ margin)")
		})
	}
}

// Close while Next waits in the gate: Close returns soon, Next ends with
// ErrClosed, and the newer events the gate held go back at once (not
// after their ack wait).
func TestCloseWhileTheGateWaits(t *testing.T) {
	const ackWait = 30 * time.Second
	url, _, _ := infra.StartNATS(t)
	eng := connect(t, url)
	topic := "close-gate"
	cfg := mesh.ConsumerConfig{Topic: topic, Group: "g", AckWait: ackWait, MaxInFlight: 100}
	dieHolding(t, url, eng, cfg, 3)
	cfg.RedeliverFirst = true
	second, err := eng.Consume(t.Context(), cfg)
	require.NoError(t, err)
	nextErr := make(chan error, 1)
	go func() {
		_, err := second.Next(t.Context())
		nextErr <- err
	}()
	require.Eventually(t, func() bool { return groupInfo(t, url, topic).Delivered.Stream == 9 },
		10*time.Second, 20*time.Millisecond, "the new events reach the waiting gate")
	start := time.Now()
	require.NoError(t, second.Close())
	assert.Less(t, time.Since(start), 3*time.Second, "Close waited for the gate")
	select {
	case err := <-nextErr:
		require.ErrorIs(t, err, mesh.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Next still blocked after Close")
	}

	cfg.RedeliverFirst = false
	third, err := eng.Consume(t.Context(), cfg)
	require.NoError(t, err)
	defer third.Close()
	var got []string
	for range 3 {
		m := nextWithin(t, third, 5*time.Second, got)
		got = append(got, m.Event().ID())
		require.NoError(t, m.Ack(t.Context()))
	}
	// In the order they were handed back (not promised to a member
	// without RedeliverFirst).
	assert.ElementsMatch(t, []string{"new-0", "new-1", "new-2"}, got, "handed back at once; the old ones wait out their ack wait of %v", ackWait)
}

// Events a dead member left unacknowledged that will not come back within
// the gate's deadline — naked with a long delay, past MaxDeliver, deleted
// from the stream — hold the gate no longer than ack wait + slack; the
// newer events follow in order, and the delayed ones come later, once.
func TestRedeliverFirstWaitsAtMostItsDeadline(t *testing.T) {
	const ackWait = 2 * time.Second
	const deadline = ackWait + 2*time.Second
	url, _, _ := infra.StartNATS(t)
	eng := connect(t, url)
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		cfg     func(*mesh.ConsumerConfig)
		prepare func(t *testing.T, cfg mesh.ConsumerConfig)
		want    []string // in this order from the gate on
		later   []string // afterwards, in any order
	}{{
		name: "naked-with-delay",
		prepare: func(t *testing.T, cfg mesh.ConsumerConfig) {
			c, die := member(t, url, cfg)
			publishN(t, eng, cfg.Topic, "old", 6)
			for range 2 {
				m := nextWithin(t, c, 5*time.Second, nil)
				require.NoError(t, m.Nak(t.Context(), 8*time.Second)) // a retry backoff
			}
			nextWithin(t, c, 5*time.Second, nil)
			die()
			waitNoPullRequest(t, url, cfg.Topic)
			publishN(t, eng, cfg.Topic, "new", 3)
		},
		want:  []string{"old-2", "old-3", "old-4", "old-5", "new-0", "new-1", "new-2"},
		later: []string{"old-0", "old-1"},
	}, {
		name: "past-max-deliver",
		cfg:  func(cfg *mesh.ConsumerConfig) { cfg.MaxDeliver = 1 },
		prepare: func(t *testing.T, cfg mesh.ConsumerConfig) {
			dieHolding(t, url, eng, cfg, 3)
		},
		want: []string{"new-0", "new-1", "new-2"},
	}, {
		name: "deleted-from-the-stream",
		prepare: func(t *testing.T, cfg mesh.ConsumerConfig) {
			s, err := js.Stream(t.Context(), natsjs.DefaultStream)
			require.NoError(t, err)
			info, err := s.Info(t.Context())
			require.NoError(t, err)
			base := info.State.LastSeq // the old events follow it
			dieHolding(t, url, eng, cfg, 3)
			for seq := base + 1; seq <= base+6; seq++ {
				require.NoError(t, s.DeleteMsg(t.Context(), seq))
			}
		},
		want: []string{"new-0", "new-1", "new-2"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mesh.ConsumerConfig{Topic: "deadline." + tc.name, Group: "g", AckWait: ackWait, MaxInFlight: 100}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			tc.prepare(t, cfg)
			if tc.name != "deleted-from-the-stream" { // the server forgets deleted events at once
				require.Positive(t, groupInfo(t, url, cfg.Topic).NumAckPending, "the gate has something to wait for")
			}
			cfg.RedeliverFirst = true
			start := time.Now()
			c, err := eng.Consume(t.Context(), cfg)
			require.NoError(t, err)
			defer c.Close()
			var got []string
			for range tc.want {
				m := nextWithin(t, c, deadline+5*time.Second, got)
				if got == nil {
					assert.Less(t, time.Since(start), deadline+2*time.Second, "the gate waited past its deadline")
				}
				got = append(got, m.Event().ID())
				require.NoError(t, m.Ack(t.Context()))
			}
			assert.Equal(t, tc.want, got)
			var later []string
			for range tc.later {
				m := nextWithin(t, c, 15*time.Second, later)
				later = append(later, m.Event().ID())
				require.NoError(t, m.Ack(t.Context()))
			}
			assert.ElementsMatch(t, tc.later, later)
			ctx, cancel := context.WithTimeout(t.Context(), ackWait+time.Second) // quiet: nothing twice
			defer cancel()
			m, err := c.Next(ctx)
			if err == nil {
				t.Fatalf("delivered again: %s (attempt %d)", m.Event().ID(), m.Attempt())
			}
			require.ErrorIs(t, err, context.DeadlineExceeded)
		})
	}
}

// A member died without the server noticing yet (a frozen process): its
// pull request is still registered when a RedeliverFirst member opens. The
// new member waits for that request to expire (a member's requests live
// pullExpiry, 5 s) before it takes its snapshot, so no event published
// after it opened goes to the dead member and comes back late.
func TestRedeliverFirstOutwaitsADeadMembersPullRequest(t *testing.T) {
	url, _, _ := infra.StartNATS(t)
	eng := connect(t, url)
	topic := "zombie"
	cfg := mesh.ConsumerConfig{Topic: topic, Group: "g", AckWait: 3 * time.Second, MaxInFlight: 100}
	c, die := member(t, url, cfg)
	publishN(t, eng, topic, "old", 6)
	for range 3 {
		nextWithin(t, c, 5*time.Second, nil)
	}
	die()
	waitNoPullRequest(t, url, topic)
	// The frozen member's request, as meshd makes them: expiring after 5 s.
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	inbox := nats.NewInbox()
	zombie, err := nc.SubscribeSync(inbox)
	require.NoError(t, err)
	req, err := json.Marshal(map[string]any{"batch": 1, "expires": int64(5 * time.Second)})
	require.NoError(t, err)
	require.NoError(t, nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+natsjs.DefaultStream+"."+groupInfo(t, url, topic).Name, inbox, req))
	require.NoError(t, nc.Flush())
	require.Eventually(t, func() bool { return groupInfo(t, url, topic).NumWaiting == 1 }, 5*time.Second, 20*time.Millisecond)

	cfg.RedeliverFirst = true
	next, err := eng.Consume(t.Context(), cfg)
	require.NoError(t, err)
	defer next.Close()
	publishN(t, eng, topic, "new", 3)
	var got []string
	for range 9 {
		m := nextWithin(t, next, 15*time.Second, got)
		got = append(got, m.Event().ID())
		require.NoError(t, m.Ack(t.Context()))
	}
	assert.Equal(t, inOrder, got)
	for {
		m, err := zombie.NextMsg(100 * time.Millisecond)
		if err != nil {
			break
		}
		assert.Empty(t, m.Data, "the dead member's request got an event (%s)", m.Header.Get("ce-id"))
	}
}
