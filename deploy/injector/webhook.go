package injector

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		if err == nil {
			err = errors.New("no request")
		}
		http.Error(w, fmt.Sprintf("decoding the AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	resp := wh.Review(review.Request)
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		wh.logger.Warn("writing the admission response", "uid", review.Request.UID, "error", err)
	}
}

// Review decides one admission request. It never fails: whatever it cannot
// use is allowed unchanged, with a warning where the user can act on it.
func (wh *Webhook) Review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" ||
		req.Operation != admissionv1.Create {
		return resp
	}
	log := wh.logger.With("uid", req.UID, "namespace", req.Namespace)
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		log.Warn("decoding the pod", "error", err)
		resp.Warnings = []string{"meshd: pod not injected: cannot decode it"}
		return resp
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	log = log.With("pod", name)

	patched, warnings, err := Inject(&pod, wh.cfg)
	switch {
	case err != nil && wh.cfg.RejectInvalid:
		log.Info("pod denied", "error", err)
		resp.Allowed = false
		resp.Result = &metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusBadRequest,
			Reason: metav1.StatusReasonBadRequest, Message: "meshd: " + err.Error(),
		}
		return resp
	case err != nil:
		log.Info("pod admitted without sidecar", "error", err)
		resp.Warnings = []string{"meshd: pod not injected: " + err.Error()}
		return resp
	case patched == nil:
		return resp
	}
	ops, err := CreatePatch(&pod, patched)
	if err == nil {
		resp.Patch, err = json.Marshal(ops)
	}
	if err != nil {
		log.Error("building the patch", "error", err)
		resp.Warnings = []string{"meshd: pod not injected: internal error"}
		return resp
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.PatchType = &pt
	resp.Warnings = warnings
	log.Info("pod injected", "operations", len(ops))
	return resp
}
