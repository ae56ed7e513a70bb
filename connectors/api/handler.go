// Package api is the REST API of connector instances on the admin port,
// shaped like Kafka Connect's, and a small Go client for it (used by the
// meshd connectors command). Errors are RFC 9457 problem documents from
// protocols/problem; a bad config is a 400 whose detail names the field.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/worker"
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// Handler serves the connector API from a worker.
type Handler struct {
	rt  *worker.Runtime
	log *slog.Logger
}

// NewHandler returns the API of rt.
func NewHandler(rt *worker.Runtime, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{rt: rt, log: log}
}

// Register adds the API's routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/connector-plugins", h.plugins)
	mux.HandleFunc("PUT /v1/connector-plugins/{type}/config/validate", h.validate)
	mux.HandleFunc("GET /v1/connectors", h.list)
	mux.HandleFunc("POST /v1/connectors", h.create)
	mux.HandleFunc("GET /v1/connectors/{name}", h.get)
	mux.HandleFunc("DELETE /v1/connectors/{name}", h.delete)
	mux.HandleFunc("GET /v1/connectors/{name}/config", h.getConfig)
	mux.HandleFunc("PUT /v1/connectors/{name}/config", h.putConfig)
	mux.HandleFunc("GET /v1/connectors/{name}/status", h.status)
	mux.HandleFunc("PUT /v1/connectors/{name}/pause", h.pause)
	mux.HandleFunc("PUT /v1/connectors/{name}/resume", h.resume)
	mux.HandleFunc("POST /v1/connectors/{name}/restart", h.restart)
	mux.HandleFunc("GET /v1/connectors/{name}/tasks", h.tasks)
	mux.HandleFunc("GET /v1/connectors/{name}/offsets", h.offsets)
	h.registerTasks(mux) // tasks.go
}

// ServeHTTP serves the API on its own mux.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mux := http.NewServeMux()
	h.Register(mux)
	mux.ServeHTTP(w, r)
}

// Plugin describes a connector type.
type Plugin struct {
	Type    string             `json:"type"`
	Kind    connectors.Kind    `json:"kind"`
	Summary string             `json:"summary"`
	Config  []connectors.Field `json:"config"`
}

// Validation is the answer of the validate endpoint.
type Validation struct {
	Type       string            `json:"type"`
	ErrorCount int               `json:"error_count"`
	Configs    []FieldValidation `json:"configs"`
}

// FieldValidation is one field's value (masked when secret) and errors.
type FieldValidation struct {
	Name   string   `json:"name"`
	Value  any      `json:"value,omitempty"`
	Errors []string `json:"errors"`
}

// CreateRequest is the body of POST /v1/connectors.
type CreateRequest struct {
	Name   string         `json:"name"`
	Config map[string]any `json:"config"`
}

func (h *Handler) plugins(w http.ResponseWriter, r *http.Request) {
	specs := h.rt.Registry().Specs()
	out := make([]Plugin, len(specs))
	for i, s := range specs {
		out[i] = Plugin{Type: s.Name, Kind: s.Kind, Summary: s.Summary, Config: s.AllFields()}
	}
	problem.WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) validate(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	spec, ok := h.rt.Registry().Lookup(typ)
	if !ok {
		h.fail(w, r, fmt.Errorf("%w: connector type %q: %w", errNotFound, typ, connectors.ErrUnknownType))
		return
	}
	var raw map[string]any
	if !h.decode(w, r, &raw) {
		return
	}
	if _, set := raw[connectors.FieldConnectorType]; !set {
		raw[connectors.FieldConnectorType] = typ
	}
	_, err := spec.Validate(raw)
	var ve *connectors.ValidationError
	if err != nil && !errors.As(err, &ve) {
		h.fail(w, r, err)
		return
	}
	masked := spec.Masked(raw)
	out := Validation{Type: typ, Configs: []FieldValidation{}}
	names := map[string]bool{}
	for _, f := range spec.AllFields() {
		names[f.Name] = true
		fv := FieldValidation{Name: f.Name, Value: masked[f.Name], Errors: []string{}}
		if ve != nil {
			fv.Errors = append(fv.Errors, ve.Field(f.Name)...)
		}
		out.ErrorCount += len(fv.Errors)
		out.Configs = append(out.Configs, fv)
	}
	if ve != nil {
		for _, fe := range ve.Fields {
			if !names[fe.Field] {
				out.Configs = append(out.Configs, FieldValidation{Name: fe.Field, Errors: []string{fe.Reason}})
				out.ErrorCount++
			}
		}
	}
	problem.WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	names := h.rt.List()
	expand := r.URL.Query()["expand"]
	if len(expand) == 0 {
		problem.WriteJSON(w, http.StatusOK, names)
		return
	}
	out := map[string]map[string]any{}
	for _, n := range names {
		entry := map[string]any{}
		for _, e := range expand {
			switch e {
			case "status":
				if st, err := h.rt.Status(n); err == nil {
					entry["status"] = st
				}
			case "info":
				if info, err := h.rt.Get(n); err == nil {
					entry["info"] = info
				}
			}
		}
		out[n] = entry
	}
	problem.WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	var req CreateRequest
	if !h.decode(w, r, &req) {
		return
	}
	if req.Config == nil {
		h.fail(w, r, &connectors.ValidationError{Fields: []connectors.FieldError{{Field: "config", Reason: "required"}}})
		return
	}
	info, err := h.rt.Create(r.Context(), req.Name, req.Config)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	problem.WriteJSON(w, http.StatusCreated, info)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	info, err := h.rt.Get(r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, info)
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	if err := h.rt.Delete(r.Context(), r.PathValue("name")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) getConfig(w http.ResponseWriter, r *http.Request) {
	info, err := h.rt.Get(r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, info.Config)
}

func (h *Handler) putConfig(w http.ResponseWriter, r *http.Request) {
	var raw map[string]any
	if !h.decode(w, r, &raw) {
		return
	}
	info, created, err := h.rt.Put(r.Context(), r.PathValue("name"), raw)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	problem.WriteJSON(w, status, info)
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	st, err := h.rt.Status(r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, st)
}

func (h *Handler) pause(w http.ResponseWriter, r *http.Request) {
	h.act(w, r, h.rt.Pause, http.StatusAccepted)
}

func (h *Handler) resume(w http.ResponseWriter, r *http.Request) {
	h.act(w, r, h.rt.Resume, http.StatusAccepted)
}

func (h *Handler) restart(w http.ResponseWriter, r *http.Request) {
	h.act(w, r, h.rt.Restart, http.StatusNoContent)
}

func (h *Handler) act(w http.ResponseWriter, r *http.Request, f func(context.Context, string) error, status int) {
	if err := f(r.Context(), r.PathValue("name")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(status)
}

func (h *Handler) tasks(w http.ResponseWriter, r *http.Request) {
	ts, err := h.rt.Tasks(r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, ts)
}

func (h *Handler) offsets(w http.ResponseWriter, r *http.Request) {
	offs, err := h.rt.Offsets(r.Context(), r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, map[string]any{"offsets": offs})
}

var (
	errNotFound   = errors.New("not found")
	errBadRequest = errors.New("bad request")
)

// decode reads a JSON body strictly (one value, size-bounded).
func (h *Handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := problem.ReadJSON(w, r, v, maxBody, problem.CodeInvalidRequest); err != nil {
		p := problem.FromError(err)
		p.Instance = r.URL.Path
		problem.Write(w, p)
		return false
	}
	return true
}

// fail answers err as a problem document.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var p problem.Problem
	var ve *connectors.ValidationError
	switch {
	case errors.As(err, &ve):
		p = problem.New(problem.CodeInvalidRequest, ve.Error())
	case errors.Is(err, errBadRequest):
		p = problem.New(problem.CodeInvalidRequest, err.Error())
	case errors.Is(err, worker.ErrNotFound), errors.Is(err, worker.ErrTaskNotFound), errors.Is(err, errNotFound):
		p = problem.New(problem.CodeNotFound, err.Error())
	case errors.Is(err, worker.ErrExists), errors.Is(err, worker.ErrNotStopped), errors.Is(err, worker.ErrNotRunningState), errors.Is(err, worker.ErrConflict):
		p = problem.New(problem.CodeConflict, err.Error())
	case errors.Is(err, worker.ErrNotRunning):
		p = problem.New(problem.CodeMeshUnavailable, err.Error())
	default:
		p = problem.FromError(err)
		if p.Code == problem.CodeInternal {
			h.log.Error("connector API", "method", r.Method, "path", r.URL.Path, "error", err)
		}
	}
	p.Instance = r.URL.Path
	problem.Write(w, p)
}
