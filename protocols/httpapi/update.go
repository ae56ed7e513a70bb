package httpapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/problem"
)

// updater is the bridge's update in place; backends without it answer
// PUT with 405.
type updater interface {
	UpdateSubscription(ctx context.Context, sub bridge.Subscription) (bridge.Subscription, error)
}

var _ updater = (*bridge.Bridge)(nil)

// updateSubscription replaces the settings of an existing subscription
// (PUT /v1/subscriptions/{id}): the body is the whole subscription, as for
// POST; its id may be left out. The subscription keeps its consumer group
// and position unless topic or group change, and stays paused if it was.
func (h *handler) updateSubscription(w http.ResponseWriter, r *http.Request) {
	u, ok := h.b.(updater)
	if !ok {
		methodNotAllowed("GET, HEAD, DELETE")(w, r)
		return
	}
	var sub bridge.Subscription
	if err := problem.ReadJSON(w, r, &sub, h.cfg.MaxBodyBytes, problem.CodeInvalidSubscription); err != nil {
		h.fail(w, r, "decoding subscription", err)
		return
	}
	id := r.PathValue("id")
	if sub.ID == "" {
		sub.ID = id
	}
	if sub.ID != id {
		problem.Write(w, problem.New(problem.CodeInvalidSubscription, fmt.Sprintf("id: %q differs from the id in the path, %q; a subscription cannot be renamed", sub.ID, id)))
		return
	}
	stored, err := u.UpdateSubscription(r.Context(), sub)
	if err != nil {
		h.fail(w, r, "updating subscription", err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, stored)
}
