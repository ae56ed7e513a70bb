package websocket

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/mesh"
)

// clientAck is what a subscriber sends: {"ack":"<id>"} or
// {"nack":"<id>","delay":"5s"}.
type clientAck struct {
	Ack   *string `json:"ack"`
	Nack  *string `json:"nack"`
	Delay string  `json:"delay"`
}

// subscribeParams are the query parameters of /v1/ws/subscribe/{topic}.
type subscribeParams struct {
	topic       string
	group       string
	ephemeral   bool // no group given: a fresh group, deleted at disconnect
	filter      bridge.Filter
	maxInFlight int
}

func (h *Handler) parseSubscribe(r *http.Request) (subscribeParams, error) {
	q := r.URL.Query()
	p := subscribeParams{topic: r.PathValue("topic"), group: q.Get("group"), maxInFlight: h.cfg.MaxInFlight}
	if err := mesh.ValidateTopic(p.topic); err != nil {
		return p, err
	}
	if p.group == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		p.group = "ws-" + hex.EncodeToString(b[:])
		p.ephemeral = true
	} else if err := mesh.ValidateTopic(p.group); err != nil {
		return p, problem.New(problem.CodeInvalidRequest, fmt.Sprintf("group %q: want dot-separated tokens of letters, digits, '-' and '_'", p.group))
	}
	if s := q.Get("maxInFlight"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return p, problem.New(problem.CodeInvalidRequest, fmt.Sprintf("maxInFlight %q: want a positive integer", s))
		}
		p.maxInFlight = min(n, h.cfg.MaxInFlight)
	}
	var specs []map[string]any
	for i, s := range q["filter"] {
		var spec map[string]any
		if err := json.Unmarshal([]byte(s), &spec); err != nil {
			return p, problem.New(problem.CodeInvalidRequest, fmt.Sprintf("filter[%d]: want a JSON object such as {\"exact\":{\"type\":\"x\"}}: %v", i, err))
		}
		specs = append(specs, spec)
	}
	f, err := bridge.CompileFilters(specs)
	if err != nil {
		return p, problem.New(problem.CodeInvalidRequest, err.Error())
	}
	p.filter = f
	return p, nil
}

// serveSubscribe opens the consumer before the handshake, so a client that
// is connected is subscribed, and mesh errors are plain HTTP problems.
func (h *Handler) serveSubscribe(w http.ResponseWriter, r *http.Request) {
	params, err := h.parseSubscribe(r)
	if err != nil {
		problem.Write(w, problem.FromError(err))
		return
	}
	consumer, err := h.eng.Consume(r.Context(), mesh.ConsumerConfig{
		Topic:       params.topic,
		Group:       params.group,
		MaxInFlight: params.maxInFlight,
		AckWait:     h.cfg.AckTimeout,
		StartAtNew:  params.ephemeral,
	})
	if err != nil {
		problem.Write(w, problem.FromError(fmt.Errorf("opening the consumer: %w", err)))
		return
	}
	c := h.upgrade(w, r)
	if c == nil {
		_ = consumer.Close()
		h.dropGroup(params)
		return
	}
	defer h.done(c)
	s := &subscription{
		c:        c,
		consumer: consumer,
		params:   params,
		log:      h.log.With("topic", params.topic, "group", params.group, "remote", r.RemoteAddr),
		ackWait:  h.cfg.AckTimeout,
		slots:    make(chan struct{}, params.maxInFlight),
		pending:  map[string][]*pending{},
	}
	s.run()
	h.dropGroup(params)
}

// dropGroup deletes the fresh group of a subscription without ?group=.
func (h *Handler) dropGroup(p subscribeParams) {
	if !p.ephemeral {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.eng.DeleteGroup(ctx, p.topic, p.group); err != nil {
		h.log.Warn("deleting the group of a closed WebSocket subscription", "topic", p.topic, "group", p.group, "error", err)
	}
}

// subscription delivers a consumer's events to one connection.
//
// slots holds one token per unacked event; the delivery loop takes one
// before asking the mesh for the next event, so at most maxInFlight are
// outstanding and a slow client slows delivery. A token is given back on
// ack, nack or when the ack timeout passes (the mesh then redelivers).
type subscription struct {
	c        *conn
	consumer mesh.Consumer
	params   subscribeParams
	log      *slog.Logger
	ackWait  time.Duration
	slots    chan struct{}

	mu      sync.Mutex            // guards pending and the done flags
	pending map[string][]*pending // unacked events by id, oldest first
}

type pending struct {
	id    string
	msg   mesh.Message
	timer *time.Timer
	done  bool
}

func (s *subscription) run() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.c.keepAlive(ctx.Done()) }()
	go func() {
		defer wg.Done()
		s.deliver(ctx)
		_ = s.c.ws.Close() // a failed write ends the read loop too
	}()
	s.readAcks(ctx)
	cancel()
	_ = s.consumer.Close()
	wg.Wait()
	s.returnPending()
}

// deliver sends events until ctx is done or a write fails.
func (s *subscription) deliver(ctx context.Context) {
	failures := 0
	for {
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		msg, err := s.consumer.Next(ctx)
		if err != nil {
			<-s.slots
			if ctx.Err() != nil || errors.Is(err, mesh.ErrClosed) {
				return
			}
			failures++
			s.log.Warn("receiving from the mesh", "error", err)
			select {
			case <-time.After(bridge.DefaultBackoff.Delay(failures)):
				continue
			case <-ctx.Done():
				return
			}
		}
		failures = 0
		ev := msg.Event()
		if !s.params.filter.Match(ev) {
			<-s.slots
			if err := msg.Ack(ctx); err != nil {
				s.log.Debug("acking a filtered-out event", "error", err)
			}
			continue
		}
		body, err := json.Marshal(ev)
		if err != nil {
			<-s.slots
			s.log.Error("encoding an event for a WebSocket client; terminated", "id", ev.ID(), "error", err)
			_ = msg.Term(ctx)
			continue
		}
		s.track(msg)
		if err := s.c.write(body); err != nil {
			s.log.Debug("writing an event", "error", err)
			return
		}
	}
}

// track records msg as unacked, holding its slot until ack, nack or the
// ack timeout.
func (s *subscription) track(msg mesh.Message) {
	p := &pending{id: msg.Event().ID(), msg: msg}
	s.mu.Lock()
	s.pending[p.id] = append(s.pending[p.id], p)
	p.timer = time.AfterFunc(s.ackWait, func() { s.take(p) })
	s.mu.Unlock()
}

// take removes p if it is still pending and frees its slot.
func (s *subscription) take(p *pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.done {
		return false
	}
	p.done = true
	p.timer.Stop()
	list := s.pending[p.id]
	for i, q := range list {
		if q == p {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.pending, p.id)
	} else {
		s.pending[p.id] = list
	}
	<-s.slots
	return true
}

// oldest returns the oldest pending delivery of id.
func (s *subscription) oldest(id string) *pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	if list := s.pending[id]; len(list) > 0 {
		return list[0]
	}
	return nil
}

// readAcks handles the client's acks and nacks until the connection ends.
func (s *subscription) readAcks(ctx context.Context) {
	for {
		b, err := s.c.readMessage()
		if isTooLarge(err) {
			if s.c.writeError(problem.FromError(err), "", nil) != nil {
				return
			}
			continue
		}
		if err != nil {
			if !normalClose(err) {
				s.log.Debug("websocket subscribe connection ended", "error", err)
			}
			return
		}
		if p, id := s.handleAck(ctx, b); p != nil {
			if s.c.writeError(*p, id, nil) != nil {
				return
			}
		}
	}
}

func (s *subscription) handleAck(ctx context.Context, b []byte) (*problem.Problem, string) {
	bad := func(id, format string, args ...any) (*problem.Problem, string) {
		p := problem.New(problem.CodeInvalidRequest, fmt.Sprintf(format, args...))
		return &p, id
	}
	var m clientAck
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil || dec.More() {
		return bad("", `want {"ack":"<id>"} or {"nack":"<id>","delay":"5s"}`)
	}
	switch {
	case m.Ack != nil && m.Nack == nil && m.Delay == "":
		p := s.oldest(*m.Ack)
		if p == nil || !s.take(p) {
			return bad(*m.Ack, "no unacked event with id %q on this connection (already acked, or redelivered after the ack timeout)", *m.Ack)
		}
		if err := p.msg.Ack(ctx); err != nil {
			pr := problem.FromError(err)
			return &pr, *m.Ack
		}
	case m.Nack != nil && m.Ack == nil:
		var delay time.Duration
		if m.Delay != "" {
			d, err := time.ParseDuration(m.Delay)
			if err != nil || d < 0 {
				return bad(*m.Nack, "delay %q: want a duration such as \"5s\"", m.Delay)
			}
			delay = d
		}
		p := s.oldest(*m.Nack)
		if p == nil || !s.take(p) {
			return bad(*m.Nack, "no unacked event with id %q on this connection", *m.Nack)
		}
		if err := p.msg.Nak(ctx, delay); err != nil {
			pr := problem.FromError(err)
			return &pr, *m.Nack
		}
	default:
		return bad("", `want exactly one of {"ack":"<id>"} or {"nack":"<id>","delay":"5s"}`)
	}
	return nil, ""
}

// returnPending hands every unacked event back to the group at once.
func (s *subscription) returnPending() {
	s.mu.Lock()
	var all []*pending
	for _, list := range s.pending {
		for _, p := range list {
			if !p.done {
				p.done = true
				p.timer.Stop()
				all = append(all, p)
			}
		}
	}
	s.pending = map[string][]*pending{}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range all {
		if err := p.msg.Nak(ctx, 0); err != nil {
			s.log.Debug("returning an unacked event", "id", p.id, "error", err)
		}
	}
}
