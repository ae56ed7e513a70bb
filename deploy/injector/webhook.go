package injector

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
)

// DefaultMaxRequestBytes bounds an AdmissionReview body; the API server
// sends at most 3 MiB objects, plus the review's envelope.
const DefaultMaxRequestBytes = 8 << 20

// Webhook is the mutating admission webhook: an http.Handler for /mutate
// that answers every AdmissionReview v1 it can decode. Pods to inject get
// a JSON patch; pods not annotated, opted out or already injected, and
// objects that are not pods, are allowed unchanged; pods with invalid
// annotations are allowed unchanged with a warning (denied when
// Config.RejectInvalid is set).
type Webhook struct {
	cfg    Config
	logger *slog.Logger
	// MaxRequestBytes bounds a request body (default DefaultMaxRequestBytes).
	MaxRequestBytes int64
}

// NewWebhook checks cfg and returns the handler of /mutate. logger may be nil.
func NewWebhook(cfg Config, logger *slog.Logger) (*Webhook, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Webhook{cfg: cfg, logger: logger, MaxRequestBytes: DefaultMaxRequestBytes}, nil
}

// NewMux serves the webhook at /mutate and the injector's own /healthz and
// /readyz (ready once it serves, since it needs nothing else).
func NewMux(wh *Webhook) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("POST /mutate", wh)
	ok := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	}
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /readyz", ok)
	return mux
}

var _ http.Handler = (*Webhook)(nil)

func (wh *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, fmt.Sprintf("content type %q: want application/json", ct), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wh.MaxRequestBytes))
	if err != nil {
		http.Error(w, fmt.Sprintf("reading the AdmissionReview: %v", err), http.StatusRequestEntityTooLarge)
		return
	}
	var review AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		if err == nil {
			err = errors.New("no request")
		}
		http.Error(w, fmt.Sprintf("decoding the AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	resp := wh.Review(review.Request)
	out := AdmissionReview{Kind: "AdmissionReview", APIVersion: "admission.k8s.io/v1", Response: resp}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		wh.logger.Warn("writing the admission response", "uid", review.Request.UID, "error", err)
	}
}

// Review decides one admission request. It never fails: whatever it cannot
// use is allowed unchanged, with a warning where the user can act on it.
func (wh *Webhook) Review(req *AdmissionRequest) *AdmissionResponse {
	resp := &AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" ||
		req.Operation != "CREATE" {
		return resp
	}
	log := wh.logger.With("uid", req.UID, "namespace", req.Namespace)
	var patched map[string]any
	var warnings []string
	pod, err := decodePod(req.Object)
	if err == nil {
		log = log.With("pod", podName(pod))
		patched, warnings, err = Inject(pod, wh.cfg)
	}
	switch {
	case errors.Is(err, ErrBadPod):
		log.Warn("decoding the pod", "error", err)
		resp.Warnings = []string{"meshd: pod not injected: cannot decode it"}
		return resp
	case err != nil && wh.cfg.RejectInvalid:
		log.Info("pod denied", "error", err)
		resp.Allowed = false
		resp.Result = &StatusResult{
			Status: "Failure", Code: http.StatusBadRequest,
			Reason: "BadRequest", Message: "meshd: " + err.Error(),
		}
		return resp
	case err != nil:
		log.Info("pod admitted without sidecar", "error", err)
		resp.Warnings = []string{"meshd: pod not injected: " + err.Error()}
		return resp
	case patched == nil:
		return resp
	}
	ops, err := CreatePatch(pod, patched)
	if err == nil {
		resp.Patch, err = json.Marshal(ops)
	}
	if err != nil {
		log.Error("building the patch", "error", err)
		resp.Warnings = []string{"meshd: pod not injected: internal error"}
		return resp
	}
	pt := PatchTypeJSONPatch
	resp.PatchType = &pt
	resp.Warnings = warnings
	log.Info("pod injected", "operations", len(ops))
	return resp
}

// decodePod decodes a pod as generic JSON.
func decodePod(b []byte) (map[string]any, error) {
	v, err := decodeJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPod, err)
	}
	pod, ok := v.(map[string]any)
	if !ok && v != nil {
		return nil, fmt.Errorf("%w: a pod is a JSON object, not %s", ErrBadPod, jsonType(v))
	}
	return pod, nil
}

// podName is how the log names a pod: its name, or its generateName and "*".
func podName(pod map[string]any) string {
	meta, _ := pod["metadata"].(map[string]any)
	if name, _ := meta["name"].(string); name != "" {
		return name
	}
	gen, _ := meta["generateName"].(string)
	return gen + "*"
}
