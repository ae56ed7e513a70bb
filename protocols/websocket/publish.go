package websocket

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/mesh"
)

// servePublish: every data message is one structured-mode CloudEvent or a
// JSON array of them (a batch). Each stored event is acked by id; a message
// that fails is answered with the problem the HTTP API would give, and
// nothing of it is stored (a batch is all or nothing). Messages are handled
// in order, one at a time; a client may send the next before the ack.
func (h *Handler) servePublish(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if err := mesh.ValidateTopic(topic); err != nil {
		problem.Write(w, problem.FromError(err))
		return
	}
	c := h.upgrade(w, r)
	if c == nil {
		return
	}
	defer h.done(c)
	log := h.log.With("topic", topic, "remote", r.RemoteAddr)
	stop := make(chan struct{})
	pinger := make(chan struct{})
	go func() { defer close(pinger); c.keepAlive(stop) }()
	defer func() { close(stop); <-pinger }()

	for {
		msg, err := c.readMessage()
		if isTooLarge(err) {
			if err := c.writeError(problem.FromError(err), "", nil); err != nil {
				return
			}
			continue
		}
		if err != nil {
			if !normalClose(err) {
				log.Debug("websocket publish connection ended", "error", err)
			}
			return
		}
		if err := c.writeJSONs(h.publishMessage(r.Context(), topic, msg)); err != nil {
			log.Debug("writing publish reply", "error", err)
			return
		}
	}
}

func (c *conn) writeJSONs(replies []reply) error {
	for i := range replies {
		if err := c.writeJSON(replies[i]); err != nil {
			return err
		}
	}
	return nil
}

// publishMessage stores the events of one message and returns the replies:
// one ack per event, or one error. The codec and the errors are the HTTP
// API's: structured mode for an object, batch mode for an array.
func (h *Handler) publishMessage(ctx context.Context, topic string, msg []byte) []reply {
	trimmed := bytes.TrimLeft(msg, " \t\r\n")
	batch := len(trimmed) > 0 && trimmed[0] == '['
	var events []*event.Event
	var err error
	if batch {
		events, err = h.parser.ParseBatch(msg)
	} else {
		var e *event.Event
		if e, err = h.parser.ParseStructured(msg); err == nil {
			events = []*event.Event{e}
		}
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, h.cfg.PublishTimeout)
		err = h.b.Publish(ctx, topic, events)
		cancel()
	}
	if err != nil {
		p := problem.FromError(err)
		if p.Code == problem.CodeInternal {
			h.log.Error("publishing a WebSocket message", "topic", topic, "error", err)
		}
		ids := peekIDs(trimmed, batch)
		if batch {
			return []reply{{Error: &p, IDs: ids}}
		}
		id := ""
		if len(ids) == 1 {
			id = ids[0]
		}
		return []reply{{Error: &p, ID: id}}
	}
	out := make([]reply, len(events))
	for i, e := range events {
		out[i] = reply{Ack: e.ID()}
	}
	return out
}

// peekIDs reads the ids it can find in a message that failed, for the
// error reply. It never fails: what cannot be read has no id.
func peekIDs(msg []byte, batch bool) (ids []string) {
	if !batch {
		return []string{peekID(msg)}
	}
	var raws []json.RawMessage
	_ = json.Unmarshal(msg, &raws)
	for _, raw := range raws {
		ids = append(ids, peekID(raw))
	}
	return ids
}

func peekID(raw []byte) string {
	// The SDK's decoder first: it is what the HTTP endpoint stores with, and
	// it accepts some input encoding/json does not.
	e := event.New()
	if e.UnmarshalJSON(raw) == nil && e.ID() != "" {
		return e.ID()
	}
	var v struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	s, _ := v.ID.(string)
	return s
}
