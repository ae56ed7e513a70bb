package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/connectors/worker"
)

// The Kafka Connect routes of task control, STOPPED and offsets.
func (h *Handler) registerTasks(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/connectors/{name}/tasks/{id}/status", h.taskStatus)
	mux.HandleFunc("POST /v1/connectors/{name}/tasks/{id}/restart", h.restartTask)
	mux.HandleFunc("PUT /v1/connectors/{name}/stop", h.stop)
	mux.HandleFunc("DELETE /v1/connectors/{name}/offsets", h.resetOffsets)
	mux.HandleFunc("PATCH /v1/connectors/{name}/offsets", h.alterOffsets)
	mux.HandleFunc("GET /v1/connectors/{name}/topics", h.topics)
}

// OffsetsRequest is the body of PATCH /v1/connectors/{name}/offsets: for
// each partition its new offset, or null to remove it.
type OffsetsRequest struct {
	Offsets []worker.OffsetChange `json:"offsets"`
}

// OffsetsResult answers a change of offsets, as Kafka Connect does.
type OffsetsResult struct {
	Message string `json:"message"`
}

func taskID(r *http.Request) (int, error) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id < 0 {
		return 0, fmt.Errorf("%w: task id %q: want a number from 0", errBadRequest, r.PathValue("id"))
	}
	return id, nil
}

func (h *Handler) taskStatus(w http.ResponseWriter, r *http.Request) {
	id, err := taskID(r)
	if err == nil {
		var st worker.TaskState
		if st, err = h.rt.TaskStatus(r.PathValue("name"), id); err == nil {
			problem.WriteJSON(w, http.StatusOK, st)
			return
		}
	}
	h.fail(w, r, err)
}

func (h *Handler) restartTask(w http.ResponseWriter, r *http.Request) {
	id, err := taskID(r)
	if err == nil {
		err = h.rt.RestartTask(r.Context(), r.PathValue("name"), id)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) stop(w http.ResponseWriter, r *http.Request) {
	h.act(w, r, h.rt.StopConnector, http.StatusAccepted)
}

func (h *Handler) resetOffsets(w http.ResponseWriter, r *http.Request) {
	if err := h.rt.ResetOffsets(r.Context(), r.PathValue("name")); err != nil {
		h.fail(w, r, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, OffsetsResult{Message: "The offsets of this connector were reset."})
}

func (h *Handler) alterOffsets(w http.ResponseWriter, r *http.Request) {
	var req OffsetsRequest
	if !h.decode(w, r, &req) {
		return
	}
	if len(req.Offsets) == 0 {
		h.fail(w, r, fmt.Errorf("%w: offsets: give at least one {\"partition\": ..., \"offset\": ...}", errBadRequest))
		return
	}
	if err := h.rt.AlterOffsets(r.Context(), r.PathValue("name"), req.Offsets); err != nil {
		h.fail(w, r, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, OffsetsResult{Message: "The offsets of this connector were changed."})
}

// TopicsResult is the answer of GET /v1/connectors/{name}/topics, shaped
// like Kafka Connect's: {"<name>": {"topics": [...]}}.
type TopicsResult map[string]struct {
	Topics []string `json:"topics"`
}

func (h *Handler) topics(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ts, err := h.rt.Topics(name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := TopicsResult{}
	e := out[name]
	e.Topics = ts
	out[name] = e
	problem.WriteJSON(w, http.StatusOK, out)
}

// Tasks lists an instance's tasks and their masked configs.
func (c *Client) Tasks(ctx context.Context, name string) ([]worker.TaskInfo, error) {
	var out []worker.TaskInfo
	return out, c.do(ctx, http.MethodGet, "/v1/connectors/"+name+"/tasks", nil, &out)
}

// TaskStatus reports one task.
func (c *Client) TaskStatus(ctx context.Context, name string, id int) (worker.TaskState, error) {
	var out worker.TaskState
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/connectors/%s/tasks/%d/status", name, id), nil, &out)
}

// RestartTask restarts one task.
func (c *Client) RestartTask(ctx context.Context, name string, id int) error {
	return c.do(ctx, http.MethodPost, fmt.Sprintf("/v1/connectors/%s/tasks/%d/restart", name, id), nil, nil)
}

// Stop stops an instance (STOPPED).
func (c *Client) Stop(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPut, "/v1/connectors/"+name+"/stop", nil, nil)
}

// ResetOffsets resets the offsets of a stopped instance.
func (c *Client) ResetOffsets(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/connectors/"+name+"/offsets", nil, nil)
}

// AlterOffsets changes offsets of a stopped instance.
func (c *Client) AlterOffsets(ctx context.Context, name string, changes []worker.OffsetChange) error {
	return c.do(ctx, http.MethodPatch, "/v1/connectors/"+name+"/offsets", OffsetsRequest{Offsets: changes}, nil)
}

// Topics lists the topics an instance uses.
func (c *Client) Topics(ctx context.Context, name string) ([]string, error) {
	var out TopicsResult
	if err := c.do(ctx, http.MethodGet, "/v1/connectors/"+name+"/topics", nil, &out); err != nil {
		return nil, err
	}
	return out[name].Topics, nil
}

// Do calls another route of the admin API: in is sent as JSON, the answer
// decoded into out (nil: ignored). An error answer is a problem.Problem.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, method, path, in, out)
}
