package websocket

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/protocols/httpapi"
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
// one ack per event, or one error.
func (h *Handler) publishMessage(ctx context.Context, topic string, msg []byte) []reply {
	batch, ids := peekIDs(msg)
	ctx, cancel := context.WithTimeout(ctx, h.cfg.PublishTimeout)
	defer cancel()
	if p := h.storeMessage(ctx, topic, msg, batch); p != nil {
		if batch {
			return []reply{{Error: p, IDs: ids}}
		}
		id := ""
		if len(ids) == 1 {
			id = ids[0]
		}
		return []reply{{Error: p, ID: id}}
	}
	out := make([]reply, len(ids))
	for i, id := range ids {
		out[i] = reply{Ack: id}
	}
	return out
}

// storeMessage hands msg to the HTTP endpoint's publish handler in-process
// (no socket): structured mode for an object, batch mode for an array. So
// validation, problem types and details are the HTTP API's by construction.
func (h *Handler) storeMessage(ctx context.Context, topic string, msg []byte, batch bool) *problem.Problem {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/v1/publish/"+url.PathEscape(topic), bytes.NewReader(msg))
	if err != nil {
		p := problem.New(problem.CodeInternal, "")
		return &p
	}
	req.ContentLength = int64(len(msg))
	if batch {
		req.Header.Set("Content-Type", httpapi.MediaTypeBatch)
	} else {
		req.Header.Set("Content-Type", httpapi.MediaTypeStructured)
	}
	rec := &recorder{header: http.Header{}}
	h.publish.ServeHTTP(rec, req)
	if rec.status == http.StatusNoContent || rec.status == http.StatusOK {
		return nil
	}
	var p problem.Problem
	if err := json.Unmarshal(rec.body.Bytes(), &p); err != nil || p.Code == "" {
		h.log.Error("unexpected answer of the publish path", "status", rec.status)
		p = problem.New(problem.CodeInternal, "")
	}
	return &p
}

// peekIDs says whether msg is a batch (a JSON array) and reads the ids it
// can find, for the replies. It never fails: what cannot be read has no id.
func peekIDs(msg []byte) (batch bool, ids []string) {
	trimmed := bytes.TrimLeft(msg, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var raws []json.RawMessage
		_ = json.Unmarshal(trimmed, &raws)
		for _, raw := range raws {
			ids = append(ids, peekID(raw))
		}
		return true, ids
	}
	return false, []string{peekID(trimmed)}
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

// recorder is the minimal http.ResponseWriter of the in-process publish.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
