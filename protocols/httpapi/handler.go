package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/apitoken"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/mesh"
)

// backend is what the handler needs of the bridge; *bridge.Bridge satisfies
// it, tests use recording fakes.
type backend interface {
	Publish(ctx context.Context, topic string, events []*event.Event) error
	CreateSubscription(ctx context.Context, sub bridge.Subscription) (bridge.Subscription, error)
	LookupSubscription(ctx context.Context, id string) (bridge.Subscription, uint64, error)
	UpdateSubscription(ctx context.Context, sub bridge.Subscription, revision uint64) (bridge.Subscription, uint64, error)
	ListSubscriptions(ctx context.Context) ([]bridge.Subscription, error)
	DeleteSubscription(ctx context.Context, id string) error
	ReplaySubscription(ctx context.Context, id, from string) error
}

var _ backend = (*bridge.Bridge)(nil)

type handler struct {
	b      backend
	cfg    Config
	log    *slog.Logger
	source types.URIRef // source of wrapped bodies
	parser cehttp.Parser
	// unavailable throttles the warnings of failed publishes.
	unavailable bridge.Throttle
	token       apitoken.Checker
	origins     apitoken.Origins
	mux         *http.ServeMux
}

// NewHandler returns the app API:
//
//	POST   /v1/publish/{topic}
//	GET    /v1/subscriptions
//	POST   /v1/subscriptions
//	GET    /v1/subscriptions/{id}          (ETag: the subscription's revision)
//	PUT    /v1/subscriptions/{id}          (If-Match: a revision; 409 on a lost race)
//	DELETE /v1/subscriptions/{id}
//	POST   /v1/subscriptions/{id}/replay   {"from": <RFC 3339 time | stream sequence | "earliest">}
//
// Errors are application/problem+json from package problem.
//
// A request from a browser page whose origin is not allowed (see
// Config.AllowedOrigins) is refused with 403 before anything else; an
// allowed page gets CORS answers, preflights included. JSON endpoints
// require Content-Type: application/json (problem.ReadJSON), which a page
// of another site cannot send without a preflight.
//
// A body that is not a CloudEvent is wrapped in one whose source is
// cfg.AppID when that is a valid URI-reference (an app id such as "orders"
// is a relative one), else the app id percent-encoded as a path segment, and
// "meshd" when AppID is empty.
func NewHandler(b *bridge.Bridge, cfg Config, logger *slog.Logger) http.Handler {
	return newHandler(b, cfg, logger)
}

func newHandler(b backend, cfg Config, logger *slog.Logger) *handler {
	if logger == nil {
		logger = slog.Default()
	}
	cfg = cfg.withDefaults()
	h := &handler{
		b:      b,
		cfg:    cfg,
		log:    logger.With("endpoint", "http"),
		source: wrappedSource(cfg.AppID),
	}
	h.token = apitoken.New(cfg.Token)
	h.origins = apitoken.NewOrigins(cfg.AllowedOrigins)
	h.unavailable.Every = 10 * time.Second
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/publish/{topic}", h.publish)
	mux.HandleFunc("/v1/publish/{topic}", methodNotAllowed("POST"))
	mux.HandleFunc("GET /v1/subscriptions", h.listSubscriptions)
	mux.HandleFunc("POST /v1/subscriptions", h.createSubscription)
	mux.HandleFunc("/v1/subscriptions", methodNotAllowed("GET, HEAD, POST"))
	mux.HandleFunc("GET /v1/subscriptions/{id}", h.getSubscription)
	mux.HandleFunc("PUT /v1/subscriptions/{id}", h.putSubscription)
	mux.HandleFunc("DELETE /v1/subscriptions/{id}", h.deleteSubscription)
	mux.HandleFunc("/v1/subscriptions/{id}", methodNotAllowed("GET, HEAD, PUT, DELETE"))
	mux.HandleFunc("POST /v1/subscriptions/{id}/replay", h.replaySubscription)
	mux.HandleFunc("/v1/subscriptions/{id}/replay", methodNotAllowed("POST"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, problem.New(problem.CodeNotFound, "no API at "+r.Method+" "+r.URL.Path))
	})
	h.mux = mux
	return h
}

func wrappedSource(appID string) types.URIRef {
	if appID == "" {
		appID = "meshd"
	}
	if u := types.ParseURIRef(appID); u != nil && u.String() == appID {
		return *u
	}
	return *types.ParseURIRef(url.PathEscape(appID))
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.origins.Allowed(r) {
		h.log.Debug("refusing a request of a page of another origin", "origin", r.Header.Get("Origin"), "method", r.Method, "path", r.URL.Path)
		problem.Write(w, problem.New(problem.CodeForbidden, fmt.Sprintf("origin %q may not call this API; list it in api.allowedOrigins", r.Header.Get("Origin"))))
		return
	}
	if r.Header.Get("Origin") != "" && cors(w, r) {
		return
	}
	if h.token.Required() && !h.token.Match(apitoken.FromRequest(r)) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="meshd"`)
		problem.Write(w, problem.New(problem.CodeUnauthorized, "send the API token as \"Authorization: Bearer <token>\" or \"meshd-api-token: <token>\""))
		return
	}
	if topic, ok := publishFastPath(r); ok {
		h.publishTo(w, r, topic)
		return
	}
	if p := r.URL.Path; p != "" && path.Clean(p) != p && strings.TrimSuffix(p, "/") != path.Clean(p) {
		// Dot segments: the mux would redirect (a POST becoming a GET);
		// name the problem instead.
		if topic, ok := strings.CutPrefix(p, publishPrefix); ok {
			problem.Write(w, problem.FromError(mesh.ValidateTopic(topic)))
			return
		}
		problem.Write(w, problem.New(problem.CodeNotFound, "no API at "+r.Method+" "+p))
		return
	}
	h.mux.ServeHTTP(w, r)
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		problem.Write(w, problem.New(problem.CodeMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, allow)))
	}
}

// fail writes the problem for err, logging what the client cannot fix.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	p := problem.FromError(err)
	switch {
	case p.Status >= 500 && p.Code != problem.CodeMeshUnavailable:
		h.log.Error(what, "path", r.URL.Path, "error", err)
	case p.Status >= 500:
		// While the mesh is down every publish fails: one line now and then.
		h.unavailable.Warn(h.log, what, "path", r.URL.Path, "error", err)
	default:
		h.log.Debug(what, "path", r.URL.Path, "error", err)
	}
	problem.Write(w, p)
}

func (h *handler) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	subs, err := h.b.ListSubscriptions(r.Context())
	if err != nil {
		h.fail(w, r, "listing subscriptions", err)
		return
	}
	if subs == nil {
		subs = []bridge.Subscription{}
	}
	for i := range subs {
		subs[i] = masked(subs[i])
	}
	problem.WriteJSON(w, http.StatusOK, subs)
}

func (h *handler) getSubscription(w http.ResponseWriter, r *http.Request) {
	sub, rev, err := h.b.LookupSubscription(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, "getting subscription", err)
		return
	}
	w.Header().Set("ETag", etag(rev))
	problem.WriteJSON(w, http.StatusOK, masked(sub))
}

// putSubscription replaces a subscription. With If-Match (the ETag of a
// GET), only the revision it names is replaced; without, the one it read.
// Either way a change by anyone else first is a 409, never overwritten. A
// sink given back masked, as a GET shows it, keeps its stored credentials.
func (h *handler) putSubscription(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rev, err := ifMatch(r.Header.Get("If-Match"))
	if err != nil {
		h.fail(w, r, "replacing subscription", err)
		return
	}
	var sub bridge.Subscription
	if err := problem.ReadJSON(w, r, &sub, h.cfg.MaxBodyBytes, problem.CodeInvalidSubscription); err != nil {
		h.fail(w, r, "decoding subscription", err)
		return
	}
	switch sub.ID {
	case "":
		sub.ID = id
	case id:
	default:
		h.fail(w, r, "replacing subscription", problem.New(problem.CodeInvalidSubscription,
			fmt.Sprintf("id: %q in the body differs from %q in the path", sub.ID, id)))
		return
	}
	if old, oldRev, err := h.b.LookupSubscription(r.Context(), id); err == nil &&
		sub.Sink != old.Sink && sub.Sink == masked(old).Sink {
		// The sink as a GET showed it, credentials masked: keep the stored
		// one, and replace only what was read here.
		sub.Sink = old.Sink
		if rev == 0 {
			rev = oldRev
		}
	}
	stored, rev, err := h.b.UpdateSubscription(r.Context(), sub, rev)
	if err != nil {
		h.fail(w, r, "replacing subscription", err)
		return
	}
	w.Header().Set("ETag", etag(rev))
	problem.WriteJSON(w, http.StatusOK, masked(stored))
}

// replayRequest is the body of POST /v1/subscriptions/{id}/replay.
type replayRequest struct {
	// From is an RFC 3339 time, a stream sequence (a JSON number or
	// string) or "earliest".
	From json.RawMessage `json:"from"`
}

func (h *handler) replaySubscription(w http.ResponseWriter, r *http.Request) {
	var req replayRequest
	if err := problem.ReadJSON(w, r, &req, h.cfg.MaxBodyBytes, problem.CodeInvalidRequest); err != nil {
		h.fail(w, r, "decoding replay", err)
		return
	}
	from, err := replayFrom(req.From)
	if err != nil {
		h.fail(w, r, "decoding replay", err)
		return
	}
	if err := h.b.ReplaySubscription(r.Context(), r.PathValue("id"), from); err != nil {
		h.fail(w, r, "replaying subscription", err)
		return
	}
	problem.WriteJSON(w, http.StatusAccepted, map[string]string{"id": r.PathValue("id"), "from": from})
}

// replayFrom reads "from": a string as is, a number as a sequence.
func replayFrom(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		if _, err := strconv.ParseUint(n.String(), 10, 64); err == nil {
			return n.String(), nil
		}
	}
	return "", problem.New(problem.CodeInvalidRequest, `from: want an RFC 3339 time, a stream sequence or "earliest"`)
}

// etag is the entity tag of a subscription revision.
func etag(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }

// ifMatch reads an If-Match header: a revision, or 0 for none or "*".
func ifMatch(v string) (uint64, error) {
	v = strings.TrimSpace(v)
	if v == "" || v == "*" {
		return 0, nil
	}
	rev, err := strconv.ParseUint(strings.Trim(strings.TrimPrefix(v, "W/"), `"`), 10, 64)
	if err != nil || rev == 0 {
		return 0, problem.New(problem.CodeInvalidRequest, "If-Match: want one ETag of GET /v1/subscriptions/{id}, such as \"12\"")
	}
	return rev, nil
}

func (h *handler) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	if err := h.b.DeleteSubscription(r.Context(), r.PathValue("id")); err != nil {
		h.fail(w, r, "deleting subscription", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) createSubscription(w http.ResponseWriter, r *http.Request) {
	var sub bridge.Subscription
	if err := problem.ReadJSON(w, r, &sub, h.cfg.MaxBodyBytes, problem.CodeInvalidSubscription); err != nil {
		h.fail(w, r, "decoding subscription", err)
		return
	}
	stored, err := h.b.CreateSubscription(r.Context(), sub)
	if err != nil {
		h.fail(w, r, "creating subscription", err)
		return
	}
	w.Header().Set("Location", "/v1/subscriptions/"+url.PathEscape(stored.ID))
	problem.WriteJSON(w, http.StatusCreated, masked(stored))
}

// masked is sub as the API shows it: credentials in its sink URL (user
// info, query values) replaced by "********".
func masked(sub bridge.Subscription) bridge.Subscription {
	sub.Sink = cehttp.MaskURL(sub.Sink, cehttp.Mask)
	return sub
}

// cors answers the CORS preflight of an allowed page (and reports true),
// or adds the CORS headers to the answer of its request.
func cors(w http.ResponseWriter, r *http.Request) (answered bool) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
	h.Add("Vary", "Origin")
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		h.Set("Access-Control-Expose-Headers", "Location, Retry-After")
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
	if hdrs := r.Header.Get("Access-Control-Request-Headers"); hdrs != "" {
		h.Set("Access-Control-Allow-Headers", hdrs)
	}
	if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		h.Set("Access-Control-Allow-Private-Network", "true")
	}
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}
