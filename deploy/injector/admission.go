package injector

import "encoding/json"

// The admission.k8s.io/v1 AdmissionReview, with the fields the webhook
// uses, under the API's JSON names (the tests decode what the webhook
// writes strictly into the k8s.io/api types).

// AdmissionReview is what the API server sends to /mutate (with Request)
// and gets back (with Response).
type AdmissionReview struct {
	Kind       string             `json:"kind,omitempty"`
	APIVersion string             `json:"apiVersion,omitempty"`
	Request    *AdmissionRequest  `json:"request,omitempty"`
	Response   *AdmissionResponse `json:"response,omitempty"`
}

// AdmissionRequest is one object the API server asks about.
type AdmissionRequest struct {
	UID         string           `json:"uid"`
	Kind        GroupVersionKind `json:"kind"`
	SubResource string           `json:"subResource,omitempty"`
	Namespace   string           `json:"namespace,omitempty"`
	Operation   string           `json:"operation"` // CREATE, UPDATE, DELETE, CONNECT
	// Object is the object as the API server would store it.
	Object json.RawMessage `json:"object,omitempty"`
}

// GroupVersionKind names the kind of the object; a pod is group "",
// version "v1", kind "Pod".
type GroupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// AdmissionResponse answers one AdmissionRequest.
type AdmissionResponse struct {
	UID     string        `json:"uid"`
	Allowed bool          `json:"allowed"`
	Result  *StatusResult `json:"status,omitempty"`
	// Patch is an RFC 6902 JSON Patch (base64 in JSON, as []byte is).
	Patch     []byte   `json:"patch,omitempty"`
	PatchType *string  `json:"patchType,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

// StatusResult is the meta/v1 Status of a denial.
type StatusResult struct {
	Metadata struct{} `json:"metadata"`
	Status   string   `json:"status,omitempty"` // Failure
	Message  string   `json:"message,omitempty"`
	Reason   string   `json:"reason,omitempty"` // BadRequest
	Code     int32    `json:"code,omitempty"`
}

// PatchTypeJSONPatch is the only patch type admission v1 has.
const PatchTypeJSONPatch = "JSONPatch"
