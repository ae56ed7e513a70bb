package rocketmq

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/rocketmq/remoting"
)

var (
	_ connectors.SourceTask  = (*SourceTask)(nil)
	_ connectors.Initializer = (*SourceTask)(nil)
	_ connectors.Committer   = (*SourceTask)(nil)
)

const (
	// pollWait is how long a Poll waits for messages.
	pollWait = time.Second
	// pullSuspend is how long a broker may hold a pull of a queue with
	// nothing new (long polling); a pull in flight outlives a Poll.
	pullSuspend = 15 * time.Second
	// routeEvery is how often the topic's route is looked up again.
	routeEvery = 30 * time.Second
	// sysFlag of a pull: the broker may suspend it, and it carries its
	// subscription (no heartbeat registers one).
	pullSysFlag = 1<<1 | 1<<2
)

// Hidden keys of the source's task configs: the task's share of the
// queues.
const (
	taskIndexKey = "task.index"
	taskCountKey = "task.count"
)

// queueBackoff spaces the pulls of a queue that fails.
var queueBackoff = bridge.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// splitQueues runs tasks.max tasks; task i of n reads the queues q with
// (q.id + hash(q.broker)) mod n == i, a share that does not move when
// queues are added.
func splitQueues(cfg connectors.Config, maxTasks int) []connectors.Config {
	out := connectors.EveryTask(cfg, maxTasks)
	for i := range out {
		out[i][taskIndexKey] = int64(i)
		out[i][taskCountKey] = int64(maxTasks)
	}
	return out
}

// SourceTask reads its share of a topic's queues.
//
// The position of each queue is the offset of the next message to read.
// It comes from meshd's offset store (the task context's offsets, by
// partition <topic>/<broker>/<queue>), else from the group's offset on the
// broker (QUERY_CONSUMER_OFFSET), else from consume.from; a position
// found through consume.from is written to the broker at once, so a
// restart before any event is stored starts there again. Each event's
// record carries the offset after its message; the runtime commits it once
// the mesh stored the event, and Commit then copies it to the group's
// offset on the broker (for tools that show a group's lag; meshd reads it
// only when its own offset store has none).
//
// Every owned queue has at most one pull in flight. Pulls run in
// goroutines owned by the task; Poll hands out what they returned, and
// moves a queue's position only then.
type SourceTask struct {
	tc  connectors.TaskContext
	log *slog.Logger

	topic, group, plainTopic string // topic and group on the wire; topic as configured
	tagExpr                  string
	tags                     map[string]bool // nil: every tag
	from                     string
	fromTime                 time.Time
	eventType, idFrom        string
	contentType              string
	batch                    int
	timeout                  time.Duration
	nameservers              []string
	index, count             int
	committed                map[string]string // partition → offset, from the task context

	client *brokerClient
	ctx    context.Context // the pulls' lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Owned by the goroutine calling Start, Poll and Commit.
	routeAt time.Time
	brokers map[string]brokerInfo
	queues  map[queueKey]*queueState
	order   []*queueState

	mu     sync.Mutex // guards done
	done   []pullDone
	notify chan struct{} // a pull finished
}

type brokerInfo struct{ addr, cluster string }

type queueKey struct {
	broker string
	id     int
}

type queueState struct {
	key       queueKey
	partition string
	next      int64 // position: the next offset to read
	resolved  bool  // next is known
	inflight  bool
	removed   bool // gone from the route while a pull was in flight
	retryAt   time.Time
	failures  int
	failSince time.Time // zero while the queue works
	lastErr   error
}

// pullDone is the outcome of one pull.
type pullDone struct {
	q        *queueState
	resolved bool  // start was resolved by this pull
	offset   int64 // where it pulled from
	resp     *remoting.Command
	err      error
}

// Init keeps the task context (offsets, logger).
func (t *SourceTask) Init(tc connectors.TaskContext) { t.tc = tc }

// Start reads the config and the topic's route.
func (t *SourceTask) Start(ctx context.Context, cfg connectors.Config) error {
	connector := "source"
	t.log = slog.New(slog.DiscardHandler)
	if t.tc != nil {
		connector, t.log, t.committed = t.tc.Connector(), t.tc.Logger(), t.tc.Offsets()
	}
	ns := cfg.String(FieldNamespace)
	t.plainTopic = cfg.String(FieldRocketTopic)
	t.topic, t.group = wrap(ns, t.plainTopic), wrap(ns, group(cfg, connector))
	t.tagExpr = strings.TrimSpace(cfg.String(FieldTags))
	if t.tagExpr != "*" {
		t.tags = map[string]bool{}
		for _, tag := range strings.Split(t.tagExpr, "||") {
			if tag = strings.TrimSpace(tag); tag != "" {
				t.tags[tag] = true
			}
		}
	}
	t.from = cfg.String(FieldConsumeFrom)
	if ts := cfg.String(FieldConsumeTimestamp); ts != "" {
		var err error
		if t.fromTime, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			return fmt.Errorf("%s: %w", FieldConsumeTimestamp, err)
		}
	}
	t.eventType, t.idFrom, t.contentType = cfg.String(FieldEventType), cfg.String(FieldEventID), cfg.String(FieldContentType)
	t.batch = int(cfg.Int(FieldPullBatch))
	t.timeout = cfg.Duration(FieldTimeout)
	t.nameservers = nameServers(cfg)
	t.index, t.count = int(cfg.Int(taskIndexKey)), max(int(cfg.Int(taskCountKey)), 1)
	t.client = newBrokerClient(t.timeout, cfg.String(FieldAccessKey), cfg.String(FieldSecretKey))
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.queues = map[queueKey]*queueState{}
	t.notify = make(chan struct{}, 1)
	return t.refreshRoute(ctx)
}

// Stop abandons the pulls in flight and closes the connections.
func (t *SourceTask) Stop(context.Context) error {
	if t.cancel != nil {
		t.cancel()
	}
	if t.client != nil {
		t.client.close()
	}
	t.wg.Wait()
	return nil
}

// refreshRoute looks the topic's route up when it is due, and adds or
// drops owned queues. A failed lookup keeps the last route, unless there
// is none.
func (t *SourceTask) refreshRoute(ctx context.Context) error {
	if t.brokers != nil && time.Since(t.routeAt) < routeEvery {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	route, err := t.client.route(rctx, t.nameservers, t.topic)
	t.routeAt = time.Now()
	if err != nil {
		if t.brokers == nil {
			return err
		}
		t.log.Warn("looking up the topic's route again; using the last one", "topic", t.topic, "error", err)
		return nil
	}
	t.brokers = map[string]brokerInfo{}
	for _, bd := range route.BrokerDatas {
		if addr := bd.BrokerAddrs[remoting.MasterID]; addr != "" {
			t.brokers[bd.BrokerName] = brokerInfo{addr: addr, cluster: bd.Cluster}
		}
	}
	seen := map[queueKey]bool{}
	for _, qd := range route.QueueDatas {
		if !remoting.Readable(qd.Perm) {
			continue
		}
		for id := range qd.ReadQueueNums {
			k := queueKey{qd.BrokerName, id}
			if !t.owns(k) {
				continue
			}
			seen[k] = true
			if t.queues[k] == nil {
				t.queues[k] = &queueState{key: k, partition: t.plainTopic + "/" + k.broker + "/" + strconv.Itoa(id)}
			}
		}
	}
	for k, q := range t.queues {
		if !seen[k] {
			q.removed = true
			delete(t.queues, k)
		}
	}
	t.order = t.order[:0]
	for _, q := range t.queues {
		t.order = append(t.order, q)
	}
	slices.SortFunc(t.order, func(a, b *queueState) int {
		if c := strings.Compare(a.key.broker, b.key.broker); c != 0 {
			return c
		}
		return a.key.id - b.key.id
	})
	return nil
}

// owns reports whether queue k is this task's.
func (t *SourceTask) owns(k queueKey) bool {
	h := fnv.New32a()
	h.Write([]byte(k.broker))
	return (k.id+int(h.Sum32()%1024))%t.count == t.index
}

// Poll returns the messages the pulls brought, waiting up to about a
// second for some. It fails when every owned queue has failed for longer
// than the timeout.
func (t *SourceTask) Poll(ctx context.Context) ([]connectors.Record, error) {
	if err := t.refreshRoute(ctx); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(pollWait)
	for {
		t.launch()
		recs := t.collect()
		if len(recs) > 0 {
			return recs, nil
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, t.outage()
		}
		for _, q := range t.order {
			if !q.inflight && q.retryAt.After(time.Now()) {
				wait = min(wait, time.Until(q.retryAt))
			}
		}
		timer := time.NewTimer(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-t.notify:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// outage is the error of a task whose every queue has failed for longer
// than the timeout, or nil.
func (t *SourceTask) outage() error {
	if len(t.order) == 0 {
		return nil
	}
	for _, q := range t.order {
		if q.failSince.IsZero() || time.Since(q.failSince) < t.timeout {
			return nil
		}
	}
	return fmt.Errorf("reading RocketMQ topic %q: every queue failed for more than %s; last: %w", t.topic, t.timeout, t.order[0].lastErr)
}

// launch starts a pull on each owned queue without one, unless it waits
// after a failure.
func (t *SourceTask) launch() {
	now := time.Now()
	for _, q := range t.order {
		if q.inflight || q.retryAt.After(now) {
			continue
		}
		b, ok := t.brokers[q.key.broker]
		if !ok {
			continue
		}
		q.inflight = true
		offset, resolved := q.next, q.resolved
		t.wg.Go(func() {
			d := t.pull(q, b.addr, offset, resolved)
			t.mu.Lock()
			t.done = append(t.done, d)
			t.mu.Unlock()
			select {
			case t.notify <- struct{}{}:
			default:
			}
		})
	}
}

// pull finds the queue's position if it is not known, then pulls from it.
// It runs in its own goroutine and touches no task state.
func (t *SourceTask) pull(q *queueState, addr string, offset int64, resolved bool) pullDone {
	d := pullDone{q: q, offset: offset}
	if !resolved {
		off, err := t.resolve(q, addr)
		if err != nil {
			d.err = err
			return d
		}
		d.resolved, d.offset = true, off
	}
	ctx, cancel := context.WithTimeout(t.ctx, pullSuspend+t.timeout)
	defer cancel()
	d.resp, d.err = t.client.invoke(ctx, addr, &remoting.Command{Code: remoting.PullMessage, ExtFields: map[string]string{
		"consumerGroup":        t.group,
		"topic":                t.topic,
		"queueId":              strconv.Itoa(q.key.id),
		"queueOffset":          strconv.FormatInt(d.offset, 10),
		"maxMsgNums":           strconv.Itoa(t.batch),
		"sysFlag":              strconv.Itoa(pullSysFlag),
		"commitOffset":         "0",
		"suspendTimeoutMillis": strconv.FormatInt(pullSuspend.Milliseconds(), 10),
		"subscription":         t.tagExpr,
		"subVersion":           "0",
		"expressionType":       "TAG",
	}})
	return d
}

// resolve finds where to start in a queue: meshd's committed offset, the
// group's offset on the broker, or consume.from (then written to the
// broker as the group's offset).
func (t *SourceTask) resolve(q *queueState, addr string) (int64, error) {
	if s, ok := t.committed[q.partition]; ok {
		off, err := strconv.ParseInt(s, 10, 64)
		if err != nil || off < 0 {
			return 0, fmt.Errorf("the committed offset %q of %s is not an offset", s, q.partition)
		}
		return off, nil
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.timeout)
	defer cancel()
	ext := func() map[string]string {
		return map[string]string{"consumerGroup": t.group, "topic": t.topic, "queueId": strconv.Itoa(q.key.id)}
	}
	off, found, err := t.client.offsetCall(ctx, addr, remoting.QueryConsumerOffset, ext())
	if err != nil {
		return 0, fmt.Errorf("asking for the group's offset of %s: %w", q.partition, err)
	}
	if found && off >= 0 {
		return off, nil
	}
	code, e := remoting.GetMaxOffset, ext()
	switch t.from {
	case FromFirst:
		code = remoting.GetMinOffset
	case FromTimestamp:
		code = remoting.SearchOffsetByTimestamp
		e["timestamp"] = strconv.FormatInt(t.fromTime.UnixMilli(), 10)
	}
	if off, _, err = t.client.offsetCall(ctx, addr, code, e); err != nil {
		return 0, fmt.Errorf("finding where %s starts (consume.from %s): %w", q.partition, t.from, err)
	}
	pin := ext()
	pin["commitOffset"] = strconv.FormatInt(off, 10)
	resp, err := t.client.invoke(ctx, addr, &remoting.Command{Code: remoting.UpdateConsumerOffset, ExtFields: pin})
	if err == nil && resp.Code != remoting.Success {
		err = fmt.Errorf("broker answered %d: %s", resp.Code, resp.Remark)
	}
	if err != nil {
		return 0, fmt.Errorf("keeping where %s starts as the group's offset: %w", q.partition, err)
	}
	return off, nil
}

// collect turns the finished pulls into records and moves positions.
func (t *SourceTask) collect() []connectors.Record {
	t.mu.Lock()
	done := t.done
	t.done = nil
	t.mu.Unlock()
	var recs []connectors.Record
	for _, d := range done {
		q := d.q
		q.inflight = false
		if q.removed {
			continue
		}
		if d.resolved {
			q.next, q.resolved = d.offset, true
		}
		if d.err == nil && d.resp.Code != remoting.Success && d.resp.Code != remoting.PullNotFound &&
			d.resp.Code != remoting.PullRetryImmediately && d.resp.Code != remoting.PullOffsetMoved {
			d.err = fmt.Errorf("pulling %s: broker answered %d: %s", q.partition, d.resp.Code, d.resp.Remark)
		}
		var next int64
		if d.err == nil {
			var err error
			if next, err = strconv.ParseInt(d.resp.ExtFields["nextBeginOffset"], 10, 64); err != nil {
				d.err = fmt.Errorf("pulling %s: the broker answered no next offset", q.partition)
			}
		}
		if d.err != nil {
			t.failed(q, d.err)
			continue
		}
		if !q.failSince.IsZero() {
			t.log.Info("reading the queue again", "queue", q.partition)
		}
		q.failures, q.failSince, q.lastErr = 0, time.Time{}, nil
		switch d.resp.Code {
		case remoting.Success:
			msgs, err := decodeMessages(d.resp.Body)
			if err != nil {
				t.failed(q, fmt.Errorf("pulling %s from offset %d: %w", q.partition, d.offset, err))
				continue
			}
			for _, m := range msgs {
				if m.QueueOffset < d.offset || t.tags != nil && !t.tags[m.GetTags()] {
					continue
				}
				recs = append(recs, connectors.Record{Event: t.event(m, q), Partition: q.partition, Offset: strconv.FormatInt(m.QueueOffset+1, 10)})
			}
		case remoting.PullOffsetMoved:
			t.log.Warn("the broker no longer holds the queue's position; continuing where it says",
				"queue", q.partition, "from", d.offset, "to", next, "skipped", max(next-d.offset, 0))
		}
		q.next = next
	}
	return recs
}

// decodeMessages decodes a pull's body with the client's decoder, which
// panics on some malformed bodies.
func decodeMessages(body []byte) (msgs []*primitive.MessageExt, err error) {
	defer func() {
		if r := recover(); r != nil {
			msgs, err = nil, fmt.Errorf("the broker sent malformed messages: %v", r)
		}
	}()
	return primitive.DecodeMessage(body), nil
}

func (t *SourceTask) failed(q *queueState, err error) {
	if errors.Is(err, context.Canceled) && t.ctx.Err() != nil {
		return // stopping
	}
	q.failures++
	q.retryAt = time.Now().Add(queueBackoff.Delay(q.failures))
	q.lastErr = err
	if q.failSince.IsZero() {
		q.failSince = time.Now()
		t.log.Warn("reading the queue; will retry", "queue", q.partition, "error", err)
		t.routeAt = time.Time{} // the broker may have moved
	}
}

// event turns a message into an event: the CloudEvent its CE_ properties
// carry when they make a valid one, else an event of the message, and in
// both cases the rocketmq* extensions.
func (t *SourceTask) event(m *primitive.MessageExt, q *queueState) event.Event {
	props := m.GetProperties()
	var e event.Event
	ok := false
	if hasCloudEvent(props) {
		var err error
		if e, err = propertiesEvent(props, m.Body); err == nil {
			ok = true
		} else {
			t.log.Debug("the message's CE_ properties make no valid event; reading it as a plain message", "msgid", m.MsgId, "error", err)
		}
	}
	if !ok {
		e = event.New()
		e.SetID(t.eventID(m))
		e.SetSource(t.source(props, q))
		e.SetType(t.eventType)
		e.SetTime(millis(m.BornTimestamp))
		e.SetDataContentType(t.contentType)
		if len(m.Body) > 0 {
			e.DataEncoded = m.Body
		}
	}
	if tags := props[propTags]; tags != "" {
		e.SetExtension("rocketmqtags", tags)
	}
	if keys := props[propKeys]; keys != "" {
		e.SetExtension("rocketmqkeys", keys)
	}
	e.SetExtension("rocketmqmsgid", m.MsgId)
	e.SetExtension("rocketmqbroker", q.key.broker)
	e.SetExtension("rocketmqqueueid", int32(q.key.id))
	e.SetExtension("rocketmqqueueoffset", strconv.FormatInt(m.QueueOffset, 10))
	e.SetExtension("rocketmqborntime", millis(m.BornTimestamp))
	e.SetExtension("rocketmqstoretime", millis(m.StoreTimestamp))
	return e
}

func (t *SourceTask) eventID(m *primitive.MessageExt) string {
	if t.idFrom == IDKey {
		if keys := strings.Fields(m.GetKeys()); len(keys) > 0 {
			return keys[0]
		}
	}
	return m.MsgId
}

// source is rocketmq://<cluster>/<topic>, or the first name server when
// the cluster is unknown.
func (t *SourceTask) source(props map[string]string, q *queueState) string {
	host := props[propCluster]
	if host == "" {
		host = t.brokers[q.key.broker].cluster
	}
	if host == "" && len(t.nameservers) > 0 {
		host = t.nameservers[0]
	}
	return (&url.URL{Scheme: "rocketmq", Host: host, Path: "/" + t.topic}).String()
}

// Commit copies the committed offsets to the group's offsets on the
// broker, one-way and best effort: meshd's offset store is the one that
// counts.
func (t *SourceTask) Commit(ctx context.Context, records []connectors.Record) error {
	last := map[string]string{}
	for _, r := range records {
		last[r.Partition] = r.Offset
	}
	cctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	for _, q := range t.order {
		off, ok := last[q.partition]
		if !ok {
			continue
		}
		b, ok := t.brokers[q.key.broker]
		if !ok {
			continue
		}
		err := t.client.oneway(cctx, b.addr, &remoting.Command{Code: remoting.UpdateConsumerOffset, ExtFields: map[string]string{
			"consumerGroup": t.group, "topic": t.topic, "queueId": strconv.Itoa(q.key.id), "commitOffset": off,
		}})
		if err != nil {
			t.log.Debug("copying the offset to the broker", "queue", q.partition, "error", err)
		}
	}
	return nil
}
