package httpapi

import (
	"net/http"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge/cehttp"
)

func (h *handler) publish(w http.ResponseWriter, r *http.Request) {
	h.publishTo(w, r, r.PathValue("topic"))
}

const publishPrefix = "/v1/publish/"

// publishFastPath recognises "POST /v1/publish/{topic}" without the mux's
// routing cost; anything unusual (escapes, dot segments, more segments)
// goes through the mux.
func publishFastPath(r *http.Request) (topic string, ok bool) {
	if r.Method != http.MethodPost || r.URL.RawPath != "" || !strings.HasPrefix(r.URL.Path, publishPrefix) {
		return "", false
	}
	topic = r.URL.Path[len(publishPrefix):]
	if topic == "" || topic == "." || topic == ".." || strings.IndexByte(topic, '/') >= 0 {
		return "", false
	}
	return topic, true
}

func (h *handler) publishTo(w http.ResponseWriter, r *http.Request, topic string) {
	body, err := cehttp.ReadBody(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		h.fail(w, r, "reading publish body", err)
		return
	}
	events, raw, err := h.parser.Parse(r.Header, body)
	if err != nil {
		h.fail(w, r, "parsing publish request", err)
		return
	}
	if raw {
		events = []*event.Event{cehttp.Wrap(r.Header.Get("Content-Type"), body, h.source, h.cfg.DefaultType)}
	}
	if err := h.b.Publish(r.Context(), topic, events); err != nil {
		h.fail(w, r, "publishing", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
