package worker

// The worker group: the sidecars of one app (one connector bucket) share
// the tasks of its connectors. Each task runs on exactly one member at a
// time, held by a lease in the mesh KV; a member that dies loses its
// leases after LeaseTime and the other members take its tasks over at the
// offsets it committed.
//
// Key layout of Options.GroupBucket (default "meshd-workers"):
//
//	member.<base64url(id)>  {"id": <worker id>, "inc": <incarnation>,
//	                        "connectors": [<name>, ...]}
//	                        written by the member every heartbeat
//	                        (LeaseTime/5); "connectors" are the instances
//	                        it can run now. Deleted when it stops.
//	task.<name>.<n>         {"worker": <id>, "inc": <incarnation>,
//	                        "state": ..., "trace": ..., "restarts": n}
//	                        the lease of task n of connector <name>;
//	                        "worker" is "" when nobody holds it. Its holder
//	                        renews it every heartbeat by KV.Update at the
//	                        revision it wrote last, and writes its state.
//
// Each member follows the bucket with one watch (group.watch) and keeps
// what it reports; it reads no key at a heartbeat.
//
// Liveness is judged by revisions, not clocks: a member or lease whose
// revision has not changed for LeaseTime, as the observing member measures
// it on its own clock, is gone. No two clocks are compared.
//
// Fencing: a holder counts its lease valid until LeaseTime minus one
// heartbeat after it sent the write that renewed it last; anyone else
// waits LeaseTime after it first saw that write before taking the lease
// over, by KV.Update at the revision it saw, so at most one taker wins and
// the old holder's next write fails. A source task confirms its lease
// before it publishes a poll's records and again before it commits their
// offsets; a sink task before each Put. A confirmation older than one
// heartbeat is renewed on the spot, so a process paused for longer than
// that finds, when it resumes, that its lease was taken (the write fails)
// or is still its own (the write succeeds), and stops in the first case
// before publishing or committing anything. What it had already handed to
// the mesh before the pause is published once more by the successor
// (at-least-once; sources whose event ids derive from their offsets are
// stored once inside the mesh's duplicate window).

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd/mesh"
)

// Defaults of the worker group.
const (
	DefaultGroupBucket = "meshd-workers"
	// DefaultLeaseTime is how long a member may go silent before its tasks
	// are given to another: failover after kill -9 takes at most this
	// plus one heartbeat (LeaseTime/5).
	DefaultLeaseTime = 10 * time.Second
	// MinLeaseTime bounds LeaseTime from below: a heartbeat must fit a KV
	// round trip many times over.
	MinLeaseTime = time.Second
)

const (
	keyMember = "member."
	keyTask   = "task."
	// maxLeaseTrace bounds the trace a lease carries to the other members.
	maxLeaseTrace = 4 << 10
	// forgetMembers: a member record not renewed for this many lease
	// times is deleted.
	forgetMembers = 6
	// releaseTimeout bounds the write that frees a lease.
	releaseTimeout = 5 * time.Second
)

// errFenced is the error of a lease another member took over.
var errFenced = errors.New("the task's lease was taken over by another sidecar")

type memberRecord struct {
	ID         string   `json:"id"`
	Inc        string   `json:"inc"`
	Connectors []string `json:"connectors"`
}

type leaseRecord struct {
	Worker   string `json:"worker"`
	Inc      string `json:"inc,omitempty"`
	State    State  `json:"state,omitempty"`
	Trace    string `json:"trace,omitempty"`
	Restarts int    `json:"restarts,omitempty"`
}

// observed is a key as this member saw it: its revision, since when (on
// this member's clock) it has had that revision, and its value.
type observed struct {
	rev   uint64
	since time.Time
	value []byte
}

func (o observed) expired(now time.Time, lease time.Duration) bool {
	return now.Sub(o.since) >= lease
}

// group is this sidecar's membership in the worker group of its app and
// the leases of the tasks it runs.
//
// Lock order: group.mu, then lease.mu, then instance.mu. group.mu is held
// only around map updates, never during KV calls; lease.mu is held during
// a lease's own writes, which read the task's state (instance.mu).
type group struct {
	kv          mesh.KV
	self, inc   string // worker id; incarnation (random per start)
	lease, beat time.Duration
	log         *slog.Logger

	kick   chan struct{} // asks the loop for a step now
	cancel context.CancelFunc
	loop   sync.WaitGroup // the loop
	tasks  sync.WaitGroup // task goroutines and releases

	watching atomic.Bool // the watch of the bucket is open

	mu        sync.Mutex
	units     map[string]*unit    // by instance name
	members   map[string]observed // by key, as the watch reports them
	leases    map[string]observed // by key, as the watch reports them
	synced    bool                // the watch reported every current value
	snapshot  map[string]bool     // the keys reported until then
	dupWarned time.Time           // last warning about another member with our id
}

// unit is an instance as the group runs it: its task count and how to run
// one of its tasks.
type unit struct {
	inst    *instance
	n       int
	run     func(ctx context.Context, l *lease, id int)
	held    map[int]*heldTask
	leaving bool
}

// heldTask is a task this member holds the lease of and runs.
type heldTask struct {
	l        *lease
	cancel   context.CancelFunc
	done     chan struct{}
	stopping bool // handed over: stopping, then releasing its lease
}

func newGroup(kv mesh.KV, self string, leaseTime time.Duration, log *slog.Logger) *group {
	return &group{
		kv: kv, self: self, inc: randomID(), lease: leaseTime, beat: leaseTime / 5,
		log:   log.With("worker", self),
		kick:  make(chan struct{}, 1),
		units: map[string]*unit{}, members: map[string]observed{}, leases: map[string]observed{},
	}
}

func memberKey(id string) string { return keyMember + base64.RawURLEncoding.EncodeToString([]byte(id)) }
func taskKey(name string, id int) string {
	return keyTask + name + "." + strconv.Itoa(id)
}

// start runs the loop until close.
func (g *group) start() {
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.loop.Go(func() { g.run(ctx) })
}

// close stops the loop, waits for task goroutines (the instances must have
// left) and removes this member's record, so the others rebalance at once.
func (g *group) close(ctx context.Context) error {
	g.stopLoop()
	g.tasks.Wait()
	if err := g.kv.Delete(ctx, memberKey(g.self)); err != nil {
		return fmt.Errorf("leaving the worker group: %w", err)
	}
	return nil
}

// stopLoop stops renewing leases and membership.
func (g *group) stopLoop() {
	g.cancel()
	g.loop.Wait()
}

func (g *group) poke() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// run steps every heartbeat, when poked, and as soon as a member or lease
// expires, so that a task is taken over without waiting another beat.
func (g *group) run(ctx context.Context) {
	t := time.NewTimer(g.beat)
	defer t.Stop()
	for {
		started := time.Now()
		g.step(ctx)
		wait := g.beat - time.Since(started)
		if next, ok := g.nextExpiry(); ok {
			wait = min(wait, time.Until(next))
		}
		t.Reset(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-g.kick:
		}
	}
}

// nextExpiry is the earliest time another member's record or a lease held
// by another member expires, as observed.
func (g *group) nextExpiry() (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var next time.Time
	now := time.Now()
	consider := func(o observed) {
		if at := o.since.Add(g.lease); at.After(now) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	for k, o := range g.members {
		if k != memberKey(g.self) {
			consider(o)
		}
	}
	for _, o := range g.leases {
		var rec leaseRecord
		if json.Unmarshal(o.value, &rec) == nil && rec.Worker != "" && rec.Worker != g.self {
			consider(o)
		}
	}
	return next, !next.IsZero()
}

// step renews this member's leases and record, and once the watch of the
// group has reported it whole, claims or hands over tasks as the
// assignment says.
func (g *group) step(ctx context.Context) {
	g.renewAll(ctx)
	if ctx.Err() != nil {
		return
	}
	if err := g.putMember(ctx); err != nil {
		g.log.Warn("renewing worker group membership", "error", err)
	}
	if err := g.watch(ctx); err != nil {
		if ctx.Err() == nil {
			g.log.Warn("watching the worker group", "error", err)
		}
		return
	}
	g.mu.Lock()
	synced := g.synced
	g.mu.Unlock()
	if !synced {
		return // the watch pokes the loop once it has
	}
	if err := g.forgetGone(ctx); err != nil {
		if ctx.Err() == nil {
			g.log.Warn("removing the records of sidecars gone", "error", err)
		}
		return
	}
	g.balance(ctx)
}

// renewAll renews every lease held, and forgets those lost whose task has
// stopped.
func (g *group) renewAll(ctx context.Context) {
	g.mu.Lock()
	var ls []*lease
	for _, u := range g.units {
		for i, h := range u.held {
			if h.l.isLost() {
				select {
				case <-h.done:
					delete(u.held, i)
					u.inst.setHere(i, false)
				default:
				}
				continue
			}
			ls = append(ls, h.l)
		}
	}
	g.mu.Unlock()
	for _, l := range ls {
		if err := l.renew(ctx); err != nil && !errors.Is(err, errFenced) && ctx.Err() == nil {
			g.log.Warn("renewing a task lease; will retry", "connector", l.inst.name, "task", l.id, "error", err)
		}
	}
}

func (g *group) putMember(ctx context.Context) error {
	g.mu.Lock()
	rec := memberRecord{ID: g.self, Inc: g.inc, Connectors: []string{}}
	for name, u := range g.units {
		if !u.leaving {
			rec.Connectors = append(rec.Connectors, name)
		}
	}
	g.mu.Unlock()
	slices.Sort(rec.Connectors)
	data, _ := json.Marshal(rec)
	_, err := g.kv.Put(ctx, memberKey(g.self), data)
	return err
}

// watch opens the watch of the group's bucket unless it is open. Each
// member sees every write of the others as it happens, one message each,
// instead of listing and reading the bucket every heartbeat (which cost
// each member a request per key: O(members²) at fleet scale). The watch
// reports in revision order, so a lease is seen after the record of the
// member that claimed it.
func (g *group) watch(ctx context.Context) error {
	if g.watching.Load() {
		return nil
	}
	g.mu.Lock()
	g.synced, g.snapshot = false, map[string]bool{}
	g.mu.Unlock()
	changes, err := g.kv.Watch(ctx, "")
	if err != nil {
		return err
	}
	g.watching.Store(true)
	g.tasks.Go(func() {
		for c := range changes {
			g.apply(c, time.Now())
		}
		// The group is closing, or the engine is: the loop opens it again
		// if it goes on.
		g.watching.Store(false)
		g.poke()
	})
	return nil
}

// apply records a change the watch reported at now: a key whose revision
// changed is observed anew (its "since" is now), a deleted key forgotten.
func (g *group) apply(c mesh.Change, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var m map[string]observed
	switch {
	case c.Key == "":
		// Every current value is reported: what was not is gone (a watch
		// opened again does not report what was deleted meanwhile).
		for _, m := range []map[string]observed{g.members, g.leases} {
			for k := range m {
				if !g.snapshot[k] {
					delete(m, k)
				}
			}
		}
		g.synced, g.snapshot = true, nil
		g.poke()
		return
	case strings.HasPrefix(c.Key, keyMember):
		m = g.members
	case strings.HasPrefix(c.Key, keyTask):
		m = g.leases
	default:
		return
	}
	if c.Deleted {
		delete(m, c.Key)
		return
	}
	if g.snapshot != nil {
		g.snapshot[c.Key] = true
	}
	if o, ok := m[c.Key]; ok && o.rev == c.Revision {
		return
	}
	m[c.Key] = observed{rev: c.Revision, since: now, value: c.Value}
}

// forgetGone deletes the records of members silent for forgetMembers lease
// times, and warns when another member writes this one's record.
func (g *group) forgetGone(ctx context.Context) error {
	now := time.Now()
	g.mu.Lock()
	var gone []string
	for k, o := range g.members {
		if now.Sub(o.since) > forgetMembers*g.lease {
			gone = append(gone, k)
		}
	}
	if o, ok := g.members[memberKey(g.self)]; ok {
		var rec memberRecord
		if json.Unmarshal(o.value, &rec) == nil && rec.Inc != g.inc && now.Sub(g.dupWarned) > time.Minute {
			g.dupWarned = now
			g.log.Error("another sidecar of this app uses the same worker id: give each its own (worker.id); meanwhile they take tasks from each other")
		}
	}
	g.mu.Unlock()
	for _, k := range gone {
		// A member silent this long is dead (one that comes back writes its
		// record again): keep the bucket from filling up with pods gone.
		if err := g.kv.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// live returns the live members' records by worker id, this one included
// (with its units). g.mu must be held.
func (g *group) live(now time.Time) map[string]memberRecord {
	out := map[string]memberRecord{}
	for _, o := range g.members {
		var rec memberRecord
		if o.expired(now, g.lease) || json.Unmarshal(o.value, &rec) != nil || rec.ID == "" {
			continue
		}
		out[rec.ID] = rec
	}
	self := memberRecord{ID: g.self, Inc: g.inc}
	for name, u := range g.units {
		if !u.leaving {
			self.Connectors = append(self.Connectors, name)
		}
	}
	out[g.self] = self
	return out
}

// holder returns who holds the lease o as this member sees it: "" when it
// is free, its holder is gone or it was not renewed for LeaseTime.
func (g *group) holder(o observed, ok bool, live map[string]memberRecord, now time.Time) (leaseRecord, string) {
	var rec leaseRecord
	if !ok || json.Unmarshal(o.value, &rec) != nil || rec.Worker == "" || o.expired(now, g.lease) {
		return rec, ""
	}
	if _, alive := live[rec.Worker]; !alive {
		return rec, ""
	}
	return rec, rec.Worker
}

// claim is a lease this member may try to take: the key and the revision to
// update (0: create).
type claim struct {
	u   *unit
	id  int
	rev uint64
	key string
}

// balance computes the assignment of every unit's tasks, hands over the
// tasks it no longer owns and claims those it owns and nobody holds.
func (g *group) balance(ctx context.Context) {
	now := time.Now()
	var claims []claim
	g.mu.Lock()
	live := g.live(now)
	for _, name := range slices.Sorted(maps.Keys(g.units)) {
		u := g.units[name]
		if u.leaving {
			continue
		}
		var eligible []string
		for id, rec := range live {
			if slices.Contains(rec.Connectors, name) {
				eligible = append(eligible, id)
			}
		}
		slices.Sort(eligible)
		holders := make([]string, u.n)
		obs := make([]observed, u.n)
		found := make([]bool, u.n)
		recs := make([]leaseRecord, u.n)
		for i := range u.n {
			obs[i], found[i] = g.leases[taskKey(name, i)]
			recs[i], holders[i] = g.holder(obs[i], found[i], live, now)
			if h, ok := u.held[i]; ok && !h.l.isLost() {
				holders[i] = g.self
			}
		}
		owners := assign(name, eligible, holders)
		for i, owner := range owners {
			h, held := u.held[i]
			switch {
			case owner != g.self && held && !h.stopping && !h.l.isLost():
				g.handOver(u, i, h)
			case owner == g.self && !held:
				// Free, expired, held by a member gone, or by an earlier
				// incarnation of this one: take it.
				if holders[i] != "" && recs[i].Worker != g.self {
					continue // its holder releases it once it sees the assignment
				}
				c := claim{u: u, id: i, key: taskKey(name, i)}
				if found[i] {
					c.rev = obs[i].rev
				}
				claims = append(claims, c)
			}
		}
	}
	g.mu.Unlock()
	for _, c := range claims {
		g.claim(ctx, c)
	}
}

// handOver stops a task this member no longer owns and then frees its
// lease. g.mu must be held.
func (g *group) handOver(u *unit, i int, h *heldTask) {
	h.stopping = true
	h.cancel()
	g.log.Info("handing a task over to another sidecar", "connector", u.inst.name, "task", i)
	g.tasks.Go(func() {
		<-h.done
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		defer cancel()
		h.l.release(ctx)
		g.mu.Lock()
		if u.held[i] == h {
			delete(u.held, i)
			u.inst.setHere(i, false)
		}
		g.mu.Unlock()
		g.poke()
	})
}

// claim takes the lease of c by create or compare-and-set, and starts the
// task. A lost race is not an error: the next step sees the winner.
func (g *group) claim(ctx context.Context, c claim) {
	l := &lease{g: g, key: c.key, id: c.id, inst: c.u.inst}
	sent := time.Now()
	var (
		rev uint64
		err error
	)
	if c.rev == 0 {
		rev, err = g.kv.Create(ctx, c.key, l.record())
	} else {
		rev, err = g.kv.Update(ctx, c.key, l.record(), c.rev)
	}
	if err != nil {
		if !errors.Is(err, mesh.ErrConflict) && ctx.Err() == nil {
			g.log.Warn("claiming a task lease", "connector", c.u.inst.name, "task", c.id, "error", err)
		}
		return
	}
	l.rev, l.sent = rev, sent
	tctx, cancel := context.WithCancel(context.Background())
	l.onLost = cancel
	h := &heldTask{l: l, cancel: cancel, done: make(chan struct{})}
	g.mu.Lock()
	if c.u.leaving || g.units[c.u.inst.name] != c.u || c.u.held[c.id] != nil {
		g.mu.Unlock()
		cancel()
		l.release(ctx)
		return
	}
	c.u.held[c.id] = h
	c.u.inst.setHere(c.id, true)
	g.tasks.Add(1)
	g.mu.Unlock()
	g.log.Info("running a task of the worker group here", "connector", c.u.inst.name, "task", c.id)
	go func() {
		defer g.tasks.Done()
		defer close(h.done)
		c.u.run(tctx, l, c.id)
	}()
}

// join makes inst's n tasks part of the group's assignment; run runs one
// of them until its context is done. It returns at once: the loop claims
// the tasks this member owns.
func (g *group) join(inst *instance, n int, run func(ctx context.Context, l *lease, id int)) *unit {
	u := &unit{inst: inst, n: n, run: run, held: map[int]*heldTask{}}
	g.mu.Lock()
	g.units[inst.name] = u
	g.mu.Unlock()
	g.poke()
	return u
}

// leave stops u's tasks, waits for them and frees their leases.
func (g *group) leave(u *unit) {
	g.mu.Lock()
	u.leaving = true
	held := maps.Clone(u.held)
	g.mu.Unlock()
	for _, h := range held {
		h.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	for _, h := range held {
		<-h.done
		if !h.stopping {
			h.l.release(ctx)
		}
	}
	g.mu.Lock()
	if g.units[u.inst.name] == u {
		delete(g.units, u.inst.name)
	}
	g.mu.Unlock()
	g.poke()
}

// forget removes the leases of a deleted instance.
func (g *group) forget(ctx context.Context, name string) error {
	if g == nil {
		return nil
	}
	keys, err := g.kv.Keys(ctx, keyTask+name+".")
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		errs = append(errs, g.kv.Delete(ctx, k))
	}
	return errors.Join(errs...)
}

// view fills in the worker and state of the tasks of name that do not run
// here, from the leases as last read.
func (g *group) view(name string, tasks []TaskState, here []bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	live := g.live(now)
	for i := range tasks {
		if i < len(here) && here[i] {
			tasks[i].WorkerID = g.self
			continue
		}
		o, ok := g.leases[taskKey(name, i)]
		rec, holder := g.holder(o, ok, live, now)
		if holder == "" || holder == g.self {
			continue // UNASSIGNED
		}
		tasks[i].State, tasks[i].WorkerID, tasks[i].Trace, tasks[i].Restarts = rec.State, holder, rec.Trace, rec.Restarts
		if tasks[i].State == "" {
			tasks[i].State = StateUnassigned
		}
	}
}

// assign returns the owner of each task of connector name among eligible
// (sorted worker ids): every member gets n/len(eligible) tasks or one
// more, a task stays with its holder while that keeps the balance, and the
// members that take the remainder are picked by a hash of the name, so
// that connectors with few tasks spread over the group. holders[i] is the
// live holder of task i ("" if none). With no eligible member every owner
// is "".
func assign(name string, eligible []string, holders []string) []string {
	n, k := len(holders), len(eligible)
	owners := make([]string, n)
	if k == 0 {
		return owners
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	rot := int(h.Sum32() % uint32(k))
	order := append(slices.Clone(eligible[rot:]), eligible[:rot]...)
	base, extra := n/k, n%k
	load := map[string]int{}
	above := 0 // members holding base+1
	take := func(i int, m string) bool {
		switch {
		case load[m] < base:
		case load[m] == base && above < extra:
			above++
		default:
			return false
		}
		owners[i] = m
		load[m]++
		return true
	}
	for pass := range 2 { // holders below base first, then up to base+1
		for i, m := range holders {
			if owners[i] != "" || !slices.Contains(eligible, m) || pass == 0 && load[m] >= base {
				continue
			}
			take(i, m)
		}
	}
	for i := range owners {
		if owners[i] == "" {
			// The least loaded member, first in hash order among equals:
			// one with room, as n tasks fill the quotas exactly.
			take(i, slices.MinFunc(order, func(a, b string) int { return cmp.Compare(load[a], load[b]) }))
		}
	}
	return owners
}

// lease is this member's hold on one task. Its holder renews it; the task
// confirms it before it publishes, commits or puts.
type lease struct {
	g    *group
	key  string
	id   int
	inst *instance

	mu     sync.Mutex // serialises the lease's writes
	rev    uint64     // revision of the last write
	sent   time.Time  // when that write was sent
	lost   bool
	onLost context.CancelFunc // stops the task
}

// changed tells the group that the task's state changed, so that the
// lease carries it to the other members at once.
func (l *lease) changed() {
	if l != nil {
		l.g.poke()
	}
}

func (l *lease) isLost() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// record is the lease's value: this member and the task's state.
func (l *lease) record() []byte {
	st := l.inst.taskState(l.id)
	rec := leaseRecord{Worker: l.g.self, Inc: l.g.inc, State: st.State, Trace: st.Trace, Restarts: st.Restarts}
	if len(rec.Trace) > maxLeaseTrace {
		rec.Trace = rec.Trace[:maxLeaseTrace] + "…"
	}
	data, _ := json.Marshal(rec)
	return data
}

// renew writes the lease at its revision.
func (l *lease) renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewLocked(ctx)
}

// confirm returns nil when the lease was renewed less than a heartbeat ago
// or renewing it now succeeds, errFenced when it was taken over (the task
// is being stopped), another error when the mesh could not be asked.
func (l *lease) confirm(ctx context.Context) error {
	if l == nil { // a task of every sidecar
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return errFenced
	}
	if time.Since(l.sent) < l.g.beat {
		return nil
	}
	return l.renewLocked(ctx)
}

func (l *lease) renewLocked(ctx context.Context) error {
	if l.lost {
		return errFenced
	}
	sent := time.Now()
	rev, err := l.g.kv.Update(ctx, l.key, l.record(), l.rev)
	switch {
	case err == nil:
		l.rev, l.sent = rev, sent
		return nil
	case errors.Is(err, mesh.ErrConflict), errors.Is(err, mesh.ErrKeyNotFound):
		l.loseLocked("another sidecar took its lease over")
		return errFenced
	case time.Since(l.sent) >= l.g.lease-l.g.beat:
		l.loseLocked(fmt.Sprintf("its lease could not be renewed for %s (%v): another sidecar may take it over", time.Since(l.sent).Round(time.Millisecond), err))
		return errFenced
	}
	return fmt.Errorf("renewing the lease of task %d of %q: %w", l.id, l.inst.name, err)
}

func (l *lease) loseLocked(why string) {
	l.lost = true
	if l.onLost != nil {
		l.onLost()
	}
	l.g.log.Warn("stopping a task here: "+why, "connector", l.inst.name, "task", l.id)
	l.g.poke()
}

// release frees the lease for the next owner, unless it was lost. Later
// writes fail.
func (l *lease) release(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return
	}
	l.lost = true
	free, _ := json.Marshal(leaseRecord{})
	if _, err := l.g.kv.Update(ctx, l.key, free, l.rev); err != nil {
		l.g.log.Debug("freeing a task lease; it expires instead", "connector", l.inst.name, "task", l.id, "error", err)
	}
}

// isFenced says whether err is a lease taken over.
func isFenced(err error) bool { return errors.Is(err, errFenced) }

// randomID returns 16 random hex digits.
func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
