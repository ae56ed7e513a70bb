// Package problem is meshd's one table of errors that cross the wire: RFC
// 9457 problem details with stable codes, shared by every endpoint that
// answers over HTTP or WebSocket (the app API, the connectors' REST API,
// webhook sources). It lives under bridge so that protocols and connectors
// can both use it. Clients switch on Code (or on the equivalent Type URI);
// Title and Status come from the table, Detail says what exactly was wrong.
package problem

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/mesh"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// TypeBase prefixes every problem code to form its Type URI.
const TypeBase = "https://meshd.dev/problems/"

// RetryAfterSeconds is the Retry-After value Write sends with
// mesh-unavailable problems.
const RetryAfterSeconds = 1

// Stable problem codes. Never rename one; add new ones at the end of the
// table.
const (
	CodeInvalidEvent         = "invalid-event"
	CodeInvalidRequest       = "invalid-request"
	CodeInvalidTopic         = "invalid-topic"
	CodeInvalidSubscription  = "invalid-subscription"
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeNotFound             = "not-found"
	CodeMethodNotAllowed     = "method-not-allowed"
	CodeConflict             = "conflict"
	CodeTooLarge             = "too-large"
	CodeUnsupportedMediaType = "unsupported-media-type"
	CodeInternal             = "internal"
	CodeMeshUnavailable      = "mesh-unavailable"
	CodePaused               = "paused"
	CodeUpstream             = "upstream-error"
	CodeLimitReached         = "limit-reached"
)

// Problem is an RFC 9457 problem details document plus meshd's stable code.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Code     string `json:"code"`
	Instance string `json:"instance,omitempty"`
}

// Error makes a Problem usable as an error (e.g. in WebSocket replies).
func (p Problem) Error() string {
	if p.Detail == "" {
		return p.Title
	}
	return p.Title + ": " + p.Detail
}

type entry struct {
	status int
	title  string
}

// table is the one list of problems; read-only after init.
var table = map[string]entry{
	CodeInvalidEvent:         {http.StatusBadRequest, "Invalid CloudEvent"},
	CodeInvalidRequest:       {http.StatusBadRequest, "Invalid request"},
	CodeInvalidTopic:         {http.StatusBadRequest, "Invalid topic"},
	CodeInvalidSubscription:  {http.StatusBadRequest, "Invalid subscription"},
	CodeUnauthorized:         {http.StatusUnauthorized, "Missing or wrong API token"},
	CodeForbidden:            {http.StatusForbidden, "Not allowed"},
	CodeNotFound:             {http.StatusNotFound, "Not found"},
	CodeMethodNotAllowed:     {http.StatusMethodNotAllowed, "Method not allowed"},
	CodeConflict:             {http.StatusConflict, "Conflict"},
	CodeTooLarge:             {http.StatusRequestEntityTooLarge, "Request too large"},
	CodeUnsupportedMediaType: {http.StatusUnsupportedMediaType, "Unsupported media type or encoding"},
	CodeInternal:             {http.StatusInternalServerError, "Internal error"},
	CodeMeshUnavailable:      {http.StatusServiceUnavailable, "Mesh unavailable"},
	CodePaused:               {http.StatusServiceUnavailable, "Paused"},
	CodeUpstream:             {http.StatusBadGateway, "Upstream service failed"},
	CodeLimitReached:         {http.StatusTooManyRequests, "Limit reached"},
}

// Codes returns every problem code of the table.
func Codes() []string {
	out := make([]string, 0, len(table))
	for c := range table {
		out = append(out, c)
	}
	return out
}

// New returns the problem with code from the table and the given detail. An
// unknown code gives an internal problem (and is a bug in the caller).
func New(code, detail string) Problem {
	en, ok := table[code]
	if !ok {
		code, en = CodeInternal, table[CodeInternal]
	}
	return Problem{
		Type:   TypeBase + code,
		Title:  en.title,
		Status: en.status,
		Detail: detail,
		Code:   code,
	}
}

// FromError maps an error of the bridge, the mesh or the request plumbing to
// its problem. Errors it does not know become internal problems whose
// detail does not echo the error (the caller logs it).
func FromError(err error) Problem {
	var invalid *bridge.InvalidEventError
	var tooLarge *http.MaxBytesError
	var tooBig *mesh.TooLargeError
	var p Problem
	switch {
	case err == nil:
		return New(CodeInternal, "")
	case errors.As(err, &p):
		return p
	case errors.As(err, &invalid):
		return New(CodeInvalidEvent, invalid.Error())
	case errors.As(err, &tooLarge):
		return New(CodeTooLarge, "request body exceeds the limit of "+strconv.FormatInt(tooLarge.Limit, 10)+" bytes")
	case errors.Is(err, mesh.ErrInvalidTopic):
		return New(CodeInvalidTopic, err.Error())
	case errors.As(err, &tooBig):
		return New(CodeTooLarge, tooBig.Error())
	case errors.Is(err, mesh.ErrLimit):
		return New(CodeLimitReached, err.Error())
	case errors.Is(err, mesh.ErrTooLarge):
		return New(CodeTooLarge, "an event is larger than the mesh carries")
	case errors.Is(err, bridge.ErrInvalidSubscription):
		return New(CodeInvalidSubscription, err.Error())
	case errors.Is(err, bridge.ErrSubscriptionNotFound):
		return New(CodeNotFound, err.Error())
	case errors.Is(err, bridge.ErrSubscriptionExists), errors.Is(err, bridge.ErrSubscriptionChanged),
		errors.Is(err, bridge.ErrSharedGroup):
		return New(CodeConflict, err.Error())
	case errors.Is(err, bridge.ErrInvalidReplay):
		return New(CodeInvalidRequest, err.Error())
	case errors.Is(err, mesh.ErrConflict):
		// A compare-and-set lost to another writer: read again and retry.
		return New(CodeConflict, "changed by another request meanwhile; read it again and retry")
	case errors.Is(err, mesh.ErrUnavailable), errors.Is(err, mesh.ErrClosed):
		// The cause (NATS's words, repeated by each layer) goes to the log;
		// the client needs to know to retry.
		return New(CodeMeshUnavailable, "the mesh cannot store events now; retry after the Retry-After delay")
	case errors.Is(err, context.DeadlineExceeded):
		return New(CodeMeshUnavailable, "the mesh did not answer in time")
	case errors.Is(err, context.Canceled):
		return New(CodeMeshUnavailable, "the request was cancelled before the mesh answered")
	default:
		return New(CodeInternal, "")
	}
}

// Write sends p as application/problem+json with p.Status (500 when unset).
// A 503 also gets "Retry-After: 1".
func Write(w http.ResponseWriter, p Problem) {
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	body, err := json.Marshal(p)
	if err != nil { // cannot happen: only strings and an int
		body = []byte(`{"type":"` + TypeBase + CodeInternal + `","title":"Internal error","status":500,"code":"internal"}`)
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Set("X-Content-Type-Options", "nosniff")
	if p.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
	}
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// WriteJSON answers v as application/json with status, or an internal
// problem if v cannot be encoded: the success side of the same endpoints.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		Write(w, New(CodeInternal, ""))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
