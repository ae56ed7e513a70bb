package e2e

import (
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// taskPlace is one task of a connector status: its state and the sidecar
// (worker_id) running it.
type taskPlace struct {
	ID     int    `json:"id"`
	State  string `json:"state"`
	Worker string `json:"worker_id"`
}

// places returns the tasks of connector name as m reports them (nil when
// m does not answer).
func (m *meshd) places(name string) []taskPlace {
	m.t.Helper()
	resp, err := http.Get("http://" + m.admin + "/v1/connectors/" + name + "/status")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st struct{ Tasks []taskPlace }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	return st.Tasks
}

// workerPort is the admin port in a worker id (hostname:port), which tells
// the sidecars of one host apart.
func workerPort(id string) string {
	_, port, _ := net.SplitHostPort(id)
	return port
}

func (m *meshd) adminPort() string {
	_, port, _ := net.SplitHostPort(m.admin)
	return port
}

// runsOn says whether every task of each connector is RUNNING on one of
// the sidecars in on, each asked about the tasks it runs itself (the
// others learn of it at their next heartbeat), and returns the placement.
func runsOn(on []*meshd, names ...string) (bool, string) {
	ok := true
	var b strings.Builder
	for _, name := range names {
		where := map[int]string{}
		n := 0
		for _, m := range on {
			tasks := m.places(name)
			n = max(n, len(tasks))
			for _, tp := range tasks {
				if tp.State == "RUNNING" && workerPort(tp.Worker) == m.adminPort() {
					where[tp.ID] = m.name
				}
			}
		}
		for id := range n {
			w, found := where[id]
			if !found {
				ok, w = false, "-"
			}
			fmt.Fprintf(&b, "%s/%d:%s ", name, id, w)
		}
		if n == 0 {
			ok = false
		}
	}
	return ok, b.String()
}

// holder is the sidecar of ms that runs task id of name, by its own word.
func holder(t *testing.T, ms []*meshd, name string, id int) *meshd {
	t.Helper()
	for _, m := range ms {
		for _, tp := range m.places(name) {
			if tp.ID == id && tp.State == "RUNNING" && workerPort(tp.Worker) == m.adminPort() {
				return m
			}
		}
	}
	t.Fatalf("no sidecar runs task %d of %s", id, name)
	return nil
}

// arrivals is an HTTP target recording when each event id arrived.
type arrivals struct {
	mu   sync.Mutex
	when map[string][]time.Time
}

func (a *arrivals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	id := r.Header.Get("Ce-Id")
	a.when[id] = append(a.when[id], time.Now())
	a.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (a *arrivals) count() (distinct, total int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ts := range a.when {
		total += len(ts)
	}
	return len(a.when), total
}

// Three sidecars of one app share a jdbc-source with three tasks and an
// http-sink. One is paused (SIGSTOP) past its lease and resumed, then one
// is killed with -9, then another: each time the tasks resume on the
// sidecars left within the lease time, the paused one stops what it had
// lost, and the target receives every row inserted meanwhile, twice only
// for what a stopped sink had in flight.
func TestConnectorTasksFailOverBetweenSidecars(t *testing.T) {
	dsn := infra.StartPostgres(t)
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	defer db.Close()
	tables := []string{"t1", "t2", "t3"}
	for _, tb := range tables {
		_, err := db.Exec("CREATE TABLE " + tb + " (id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL)")
		require.NoError(t, err)
	}
	natsURL, _, _ := infra.StartNATS(t)

	target := &arrivals{when: map[string][]time.Time{}}
	targetAddr := freeAddr(t)
	srv := &http.Server{Addr: targetAddr, Handler: target, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", targetAddr)
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	yaml := fastRetry + "mesh:\n  url: " + natsURL + "\nsecrets:\n  key: " + base64.StdEncoding.EncodeToString(key) + "\n" +
		"connectors:\n" +
		"  - name: rows-in\n    config: {connector.type: jdbc-source, url: '" + dsn + "', table: [t1, t2, t3], mode: incrementing,\n" +
		"      incrementing.column.name: id, topic: rows, tasks.max: 3, poll.interval: 100ms}\n" +
		"  - name: rows-out\n    config: {connector.type: http-sink, topic: [rows], url: 'http://" + targetAddr + "/rows', batch.size: 50}\n"
	var sidecars []*meshd
	for i := 1; i <= 3; i++ {
		m := newMeshdOf(t, fmt.Sprintf("fleet-%d", i), "fleet", yaml, nil)
		t.Cleanup(func() { _ = m.cmd.Process.Signal(syscall.SIGCONT) }) // never leave one stopped
		sidecars = append(sidecars, m)
	}
	// The source's tasks spread one per sidecar.
	var placed string
	require.Eventually(t, func() bool {
		ok, p := runsOn(sidecars, "rows-in", "rows-out")
		placed = p
		if !ok {
			return false
		}
		seen := map[string]bool{}
		for _, tp := range sidecars[0].places("rows-in") {
			seen[tp.Worker] = true
		}
		return len(seen) == 3
	}, 60*time.Second, 100*time.Millisecond, "tasks should run one per sidecar: %s", &placed)
	t.Logf("placed: %s", placed)

	// Rows go in all along, one table after another.
	var inserted atomic.Int64
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := db.Exec("INSERT INTO "+tables[i%3]+" (n) VALUES ($1)", i); err != nil {
				t.Errorf("inserting: %v", err)
				return
			}
			inserted.Add(1)
		}
	})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		writer.Wait()
	}()
	progress := func(what string) {
		t.Helper()
		from, _ := target.count()
		require.Eventually(t, func() bool { n, _ := target.count(); return n > from+100 }, 60*time.Second, 50*time.Millisecond,
			"rows should keep arriving %s", what)
	}
	progress("at first")

	type disruption struct {
		what string
		at   time.Time
	}
	var disruptions []disruption
	// failover waits until the tasks run on live alone and returns how long
	// that took since at.
	failover := func(live []*meshd, at time.Time, what string) time.Duration {
		t.Helper()
		require.Eventually(t, func() bool { ok, p := runsOn(live, "rows-in", "rows-out"); placed = p; return ok },
			60*time.Second, 100*time.Millisecond, "tasks should move off the sidecar %s: %s", what, &placed)
		took := time.Since(at)
		t.Logf("%s: every task RUNNING on the others after %s: %s", what, took.Round(100*time.Millisecond), placed)
		return took
	}

	// A paused sidecar loses its tasks, and stops them when it resumes.
	paused := sidecars[2]
	at := time.Now()
	require.NoError(t, paused.cmd.Process.Signal(syscall.SIGSTOP))
	disruptions = append(disruptions, disruption{"SIGSTOP " + paused.name, at})
	pauseTook := failover(sidecars[:2], at, "SIGSTOP "+paused.name)
	require.NoError(t, paused.cmd.Process.Signal(syscall.SIGCONT))
	require.Eventually(t, func() bool {
		return strings.Contains(paused.logString(), "stopping a task here: another sidecar took its lease over")
	}, 30*time.Second, 50*time.Millisecond, "the resumed sidecar should find its leases taken and stop their tasks")
	require.Eventually(t, func() bool {
		ok, p := runsOn(sidecars, "rows-in", "rows-out")
		placed = p
		return ok && strings.Contains(p, ":"+paused.name+" ")
	}, 60*time.Second, 100*time.Millisecond, "the resumed sidecar should get tasks again: %s", &placed)
	progress("after the pause")

	// kill -9 the sidecar running the sink, then one of the two left.
	first := holder(t, sidecars, "rows-out", 0)
	var rest []*meshd
	for _, m := range sidecars {
		if m != first {
			rest = append(rest, m)
		}
	}
	at = time.Now()
	first.kill9()
	disruptions = append(disruptions, disruption{"kill -9 " + first.name, at})
	kill1 := failover(rest, at, "kill -9 "+first.name)
	progress("after the first kill")

	second, last := rest[1], rest[0]
	at = time.Now()
	second.kill9()
	disruptions = append(disruptions, disruption{"kill -9 " + second.name, at})
	kill2 := failover([]*meshd{last}, at, "kill -9 "+second.name)
	progress("after the second kill")

	close(stop)
	writer.Wait()
	total := inserted.Load()
	require.Eventually(t, func() bool { n, _ := target.count(); return int64(n) == total }, 90*time.Second, 100*time.Millisecond,
		"the target should receive every one of the %d rows", total)
	distinct, deliveries := target.count()

	// A duplicate is inside the at-least-once window when it arrived
	// within the lease time plus the ack wait (5s here) and a margin of a
	// disruption: what a stopped sink had in flight, delivered again.
	const window = 10*time.Second + 5*time.Second + 10*time.Second
	target.mu.Lock()
	perDisruption := map[string]int{}
	var outside []string
	for id, ts := range target.when {
		for _, at := range ts[1:] {
			found := false
			for _, d := range disruptions {
				if at.After(d.at) && at.Sub(d.at) < window {
					perDisruption[d.what]++
					found = true
					break
				}
			}
			if !found {
				outside = append(outside, id)
			}
		}
	}
	target.mu.Unlock()
	t.Logf("RESULT rows=%d delivered=%d distinct=%d duplicates=%d by disruption=%v; all tasks moved after SIGSTOP in %s, kill -9 #1 in %s, kill -9 #2 in %s (lease 10s)",
		total, deliveries, distinct, deliveries-distinct, perDisruption, pauseTook.Round(100*time.Millisecond),
		kill1.Round(100*time.Millisecond), kill2.Round(100*time.Millisecond))
	assert.Equal(t, int(total), distinct)
	assert.Empty(t, outside, "duplicates outside the at-least-once window of a failover")
	for _, took := range []time.Duration{pauseTook, kill1, kill2} {
		assert.Less(t, took, 15*time.Second, "tasks resume within the lease time (10s) plus a heartbeat and their start")
	}
}
