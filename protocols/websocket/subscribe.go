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
	ephemeral   bool // no group given: a consumer of its own, gone with the connection
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
		// Past AckTimeout the loop hands an unacked event back itself; the
		// mesh's own redelivery is the backstop if meshd dies.
		AckWait:    2 * h.cfg.AckTimeout,
		StartAtNew: params.ephemeral,
		Ephemeral:  params.ephemeral,
	})
	if err != nil {
		problem.Write(w, problem.FromError(fmt.Errorf("opening the consumer: %w", err)))
		return
	}
	c := h.upgrade(w, r)
	if c == nil {
		_ = consumer.Close()
		return
	}
	defer h.done(c)
	s := &subscription{
		c:       c,
		params:  params,
		log:     h.log.With("topic", params.topic, "group", params.group, "remote", r.RemoteAddr),
		ackWait: h.cfg.AckTimeout,
		pending: map[string][]*pending{},
	}
	s.run(h.eng, consumer)
}

// subscription delivers a consumer's events to one connection: a handler
// of the bridge's delivery loop with maxInFlight workers. Each worker
// writes one event and waits for the client's ack or nack, or the ack
// timeout, so at most maxInFlight events are unacked and a slow client
// slows delivery.
type subscription struct {
	c       *conn
	params  subscribeParams
	log     *slog.Logger
	ackWait time.Duration

	mu      sync.Mutex            // guards pending
	pending map[string][]*pending // unacked events by id, oldest first
}

// pending is one event written to the client and not yet answered.
type pending struct {
	id     string
	answer chan error // buffered 1: nil for an ack, the retry for a nack
}

var (
	errAckTimeout = errors.New("the client did not ack in time")
	errNacked     = errors.New("the client nacked the event")
	errConnGone   = errors.New("the connection is closed")
)

func (s *subscription) run(eng mesh.Engine, consumer mesh.Consumer) {
	ctx, cancel := context.WithCancel(context.Background())
	loop := bridge.StartLoop(ctx, bridge.LoopConfig{
		Name:      "websocket/" + s.params.group,
		Engine:    eng,
		Consumers: []mesh.Consumer{consumer},
		Start:     s.start,
		Filter:    s.params.filter,
		Workers:   s.params.maxInFlight,
		AckWait:   2 * s.ackWait,
		Logger:    s.log,
	})
	var wg sync.WaitGroup
	wg.Go(func() { s.c.keepAlive(ctx.Done()) })
	s.readAcks()
	cancel() // unanswered events go back to the group at once
	loop.Stop(context.Background())
	wg.Wait()
}

// start writes one event (in the order events arrive) and returns the
// wait for the client's answer.
func (s *subscription) start(ctx context.Context, m mesh.Message) func() error {
	ev := m.Event()
	body, err := json.Marshal(ev)
	if err != nil {
		return bridge.Finished(bridge.PermanentError(fmt.Errorf("encoding the event for a WebSocket client: %w", err)))
	}
	p := s.track(ev.ID())
	if err := s.c.write(body); err != nil {
		s.untrack(p)
		s.log.Debug("writing an event", "error", err)
		_ = s.c.ws.Close() // ends the read loop, and so the subscription
		return bridge.Finished(bridge.UnavailableError(errConnGone, 0))
	}
	return func() error {
		timer := time.NewTimer(s.ackWait)
		defer timer.Stop()
		select {
		case err := <-p.answer:
			return err
		case <-timer.C:
			if s.untrack(p) {
				return errAckTimeout
			}
			return <-p.answer // answered just now
		case <-ctx.Done():
			s.untrack(p)
			return ctx.Err()
		}
	}
}

// track records an event written to the client as unanswered.
func (s *subscription) track(id string) *pending {
	p := &pending{id: id, answer: make(chan error, 1)}
	s.mu.Lock()
	s.pending[id] = append(s.pending[id], p)
	s.mu.Unlock()
	return p
}

// untrack removes p if it is still unanswered and says whether it was.
func (s *subscription) untrack(p *pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.pending[p.id]
	for i, q := range list {
		if q == p {
			list = append(list[:i], list[i+1:]...)
			if len(list) == 0 {
				delete(s.pending, p.id)
			} else {
				s.pending[p.id] = list
			}
			return true
		}
	}
	return false
}

// answer hands the client's answer to the oldest unanswered delivery of
// id; false when there is none.
func (s *subscription) answer(id string, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.pending[id]
	if len(list) == 0 {
		return false
	}
	p := list[0]
	if len(list) == 1 {
		delete(s.pending, id)
	} else {
		s.pending[id] = list[1:]
	}
	p.answer <- err
	return true
}

// readAcks handles the client's acks and nacks until the connection ends.
func (s *subscription) readAcks() {
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
		if p, id := s.handleAck(b); p != nil {
			if s.c.writeError(*p, id, nil) != nil {
				return
			}
		}
	}
}

func (s *subscription) handleAck(b []byte) (*problem.Problem, string) {
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
		if !s.answer(*m.Ack, nil) {
			return bad(*m.Ack, "no unacked event with id %q on this connection (already acked, or redelivered after the ack timeout)", *m.Ack)
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
		if !s.answer(*m.Nack, bridge.RetryError(errNacked, delay)) {
			return bad(*m.Nack, "no unacked event with id %q on this connection", *m.Nack)
		}
	default:
		return bad("", `want exactly one of {"ack":"<id>"} or {"nack":"<id>","delay":"5s"}`)
	}
	return nil, ""
}
