package rocketmq

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd/connectors/rocketmq/remoting"
)

// subscription is a consumer's filter of one topic.
type subscription struct {
	expr  string
	all   bool
	codes map[int64]bool
}

// parseSubscription reads a TAG expression, "tag1 || tag2" or "*", as
// FilterAPI.buildSubscriptionData does.
func parseSubscription(expr string) subscription {
	sub := subscription{expr: expr, codes: map[int64]bool{}}
	if e := strings.TrimSpace(expr); e == "" || e == "*" {
		sub.all = true
		return sub
	}
	for _, tag := range strings.Split(expr, "||") {
		if tag = strings.TrimSpace(tag); tag != "" {
			sub.codes[tagsCode(tag)] = true
		}
	}
	return sub
}

func (s subscription) match(code int64) bool { return s.all || s.codes[code] }

// groups holds the consumers that sent heartbeats, by group, as the
// broker's ConsumerManager does.
//
// Lock order: groups.mu, then nothing (notices are sent after unlocking).
type groups struct {
	mu        sync.Mutex
	consumers map[string]map[string]*member // group → client id →
}

type member struct {
	c    *conn
	subs map[string]subscription // topic →
}

func newGroups() *groups { return &groups{consumers: map[string]map[string]*member{}} }

func (g *groups) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.consumers = map[string]map[string]*member{}
}

// heartbeat is the body of HEART_BEAT (HeartbeatData.java).
type heartbeat struct {
	ClientID  string `json:"clientID"`
	Consumers []struct {
		GroupName    string `json:"groupName"`
		MessageModel string `json:"messageModel"`
		Subs         []struct {
			Topic     string `json:"topic"`
			SubString string `json:"subString"`
			ExpType   string `json:"expressionType"`
		} `json:"subscriptionDataSet"`
	} `json:"consumerDataSet"`
}

// register records the consumers of a heartbeat and returns the groups
// whose members changed.
func (g *groups) register(c *conn, hb heartbeat) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var changed []string
	for _, cd := range hb.Consumers {
		subs := map[string]subscription{}
		for _, sd := range cd.Subs {
			subs[sd.Topic] = parseSubscription(sd.SubString)
		}
		ms := g.consumers[cd.GroupName]
		if ms == nil {
			ms = map[string]*member{}
			g.consumers[cd.GroupName] = ms
		}
		old, ok := ms[hb.ClientID]
		if !ok || old.c != c {
			changed = append(changed, cd.GroupName)
		}
		ms[hb.ClientID] = &member{c: c, subs: subs}
	}
	return changed
}

// remove drops the members on c (or, with group set, the client's member
// of that group) and returns the groups that changed.
func (g *groups) remove(c *conn, clientID, group string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var changed []string
	for name, ms := range g.consumers {
		if group != "" && name != group {
			continue
		}
		for id, m := range ms {
			if m.c == c || (clientID != "" && id == clientID && group != "") {
				delete(ms, id)
				changed = append(changed, name)
			}
		}
		if len(ms) == 0 {
			delete(g.consumers, name)
		}
	}
	return changed
}

func (g *groups) clientIDs(group string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	ids := make([]string, 0, len(g.consumers[group]))
	for id := range g.consumers[group] {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// subscription returns the registered filter of group on topic.
func (g *groups) subscription(group, topic string) (subscription, bool, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := g.consumers[group]
	if len(ms) == 0 {
		return subscription{}, false, false
	}
	for _, m := range ms {
		if sub, ok := m.subs[topic]; ok {
			return sub, true, true
		}
	}
	return subscription{}, true, false
}

func (g *groups) conns(group string) []*conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*conn
	for _, m := range g.consumers[group] {
		if !slices.Contains(out, m.c) {
			out = append(out, m.c)
		}
	}
	return out
}

// notify sends NOTIFY_CONSUMER_IDS_CHANGED, one-way, to the members of
// each group, so they rebalance.
func (s *Server) notify(changed []string) {
	for _, group := range changed {
		for _, c := range s.groups.conns(group) {
			cmd := &remoting.Command{Code: remoting.NotifyConsumerIdsChanged, Language: "JAVA", Version: brokerVersion,
				Flag: remoting.FlagOneway, ExtFields: map[string]string{"consumerGroup": group}}
			_ = c.send(cmd, remoting.SerializeJSON)
		}
	}
}

func (s *Server) clientGone(ctx context.Context, c *conn) {
	changed := s.groups.remove(c, "", "")
	if ctx.Err() == nil {
		s.notify(changed)
	}
}

// locks are the queue locks of orderly consumers (RebalanceLockManager):
// a lock expires 60 s after it was last taken.
type locks struct {
	mu   sync.Mutex
	held map[string]map[mqID]lockEntry // group →
}

type mqID struct {
	Topic      string `json:"topic"`
	BrokerName string `json:"brokerName"`
	QueueID    int    `json:"queueId"`
}

type lockEntry struct {
	clientID string
	at       time.Time
}

const lockTTL = 60 * time.Second

func newLocks() *locks { return &locks{held: map[string]map[mqID]lockEntry{}} }

func (l *locks) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = map[string]map[mqID]lockEntry{}
}

// lockBody is the body of LOCK_BATCH_MQ and UNLOCK_BATCH_MQ.
type lockBody struct {
	ConsumerGroup string `json:"consumerGroup"`
	ClientID      string `json:"clientId"`
	MQs           []mqID `json:"mqSet"`
}

func (l *locks) lock(b lockBody) []mqID {
	l.mu.Lock()
	defer l.mu.Unlock()
	held := l.held[b.ConsumerGroup]
	if held == nil {
		held = map[mqID]lockEntry{}
		l.held[b.ConsumerGroup] = held
	}
	now := time.Now()
	ok := []mqID{}
	for _, mq := range b.MQs {
		e, taken := held[mq]
		if taken && e.clientID != b.ClientID && now.Sub(e.at) < lockTTL {
			continue
		}
		held[mq] = lockEntry{clientID: b.ClientID, at: now}
		ok = append(ok, mq)
	}
	return ok
}

func (l *locks) unlock(b lockBody) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, mq := range b.MQs {
		if e, ok := l.held[b.ConsumerGroup][mq]; ok && e.clientID == b.ClientID {
			delete(l.held[b.ConsumerGroup], mq)
		}
	}
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
