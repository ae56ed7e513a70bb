package websocket

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/gorilla/websocket"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/apitoken"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/mesh"
)

// Subprotocols of the CloudEvents WebSocket binding. Only JSON is served;
// the other two are negotiated so that the client gets a clear close reason
// instead of a failed handshake.
const (
	SubprotocolJSON  = "cloudevents.json"
	SubprotocolAvro  = "cloudevents.avro"
	SubprotocolProto = "cloudevents.proto"
	// TokenSubprotocolPrefix carries the API token from browsers:
	// "meshd.token." + base64url(token), unpadded or padded.
	TokenSubprotocolPrefix = "meshd.token."
)

// Handler serves /v1/ws/publish/{topic} and /v1/ws/subscribe/{topic}. It
// tracks its connections: Close ends them (hijacked connections are not
// closed by http.Server.Shutdown).
type Handler struct {
	eng      mesh.Engine
	cfg      Config
	log      *slog.Logger
	b        publisher
	parser   cehttp.Parser
	upgrader websocket.Upgrader
	mux      *http.ServeMux
	token    apitoken.Checker
	origins  apitoken.Origins

	mu     sync.Mutex // guards conns, closed
	conns  map[*conn]struct{}
	closed bool
	wg     sync.WaitGroup // one per connection
}

var _ http.Handler = (*Handler)(nil)

// publisher is what the handler needs of the bridge.
type publisher interface {
	Publish(ctx context.Context, topic string, events []*event.Event) error
}

// NewHandler returns the WebSocket endpoint. b stores published events (its
// validation and errors are the HTTP endpoint's); eng feeds subscriptions.
func NewHandler(b *bridge.Bridge, eng mesh.Engine, cfg Config, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.Default()
	}
	cfg = cfg.withDefaults()
	h := &Handler{
		eng:   eng,
		cfg:   cfg,
		log:   logger.With("endpoint", "websocket"),
		b:     b,
		conns: map[*conn]struct{}{},
	}
	h.token = apitoken.New(cfg.Token)
	h.origins = apitoken.NewOrigins(cfg.AllowedOrigins)
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		Subprotocols:     []string{SubprotocolJSON, SubprotocolAvro, SubprotocolProto},
		CheckOrigin:      func(*http.Request) bool { return true }, // checked in ServeHTTP
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			p := problem.New(problem.CodeInvalidRequest, reason.Error())
			p.Status = status
			problem.Write(w, p)
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ws/publish/{topic}", h.servePublish)
	mux.HandleFunc("GET /v1/ws/subscribe/{topic}", h.serveSubscribe)
	mux.HandleFunc("/v1/ws/publish/{topic}", methodNotAllowed)
	mux.HandleFunc("/v1/ws/subscribe/{topic}", methodNotAllowed)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, problem.New(problem.CodeNotFound, "no WebSocket API at "+r.URL.Path+"; use /v1/ws/publish/{topic} or /v1/ws/subscribe/{topic}"))
	})
	h.mux = mux
	return h
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET")
	problem.Write(w, problem.New(problem.CodeMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; open a WebSocket with GET", r.Method, r.URL.Path)))
}

// ServeHTTP checks the origin and the token, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.origins.Allowed(r) {
		problem.Write(w, problem.New(problem.CodeForbidden, fmt.Sprintf("origin %q is not allowed to open a WebSocket; add it to the allowed origins", r.Header.Get("Origin"))))
		return
	}
	if h.token.Required() && !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="meshd"`)
		problem.Write(w, problem.New(problem.CodeUnauthorized, "send the API token as \"Authorization: Bearer <token>\", \"meshd-api-token: <token>\" or, from a browser, the subprotocol \"meshd.token.<base64url(token)>\""))
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) authorized(r *http.Request) bool {
	if tok := apitoken.FromRequest(r); tok != "" {
		return h.token.Match(tok)
	}
	for _, p := range websocket.Subprotocols(r) {
		if enc, ok := strings.CutPrefix(p, TokenSubprotocolPrefix); ok {
			b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(enc, "="))
			return err == nil && h.token.Match(string(b))
		}
	}
	return false
}

// upgrade completes the handshake and registers the connection. It returns
// nil when the handshake failed (the client got an answer) or the handler
// is closed.
func (h *Handler) upgrade(w http.ResponseWriter, r *http.Request) *conn {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		problem.Write(w, problem.New(problem.CodeMeshUnavailable, "meshd is shutting down"))
		return nil
	}
	ws, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		h.log.Debug("websocket handshake failed", "path", r.URL.Path, "error", err)
		return nil
	}
	c := &conn{ws: ws, cfg: h.cfg}
	switch ws.Subprotocol() {
	case SubprotocolJSON, "":
	default:
		c.close(websocket.CloseUnsupportedData, ws.Subprotocol()+" is not supported; use "+SubprotocolJSON)
		_ = ws.Close()
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		c.close(websocket.CloseGoingAway, "meshd is shutting down")
		_ = ws.Close()
		return nil
	}
	h.conns[c] = struct{}{}
	h.wg.Add(1)
	return c
}

// done unregisters c and closes it.
func (h *Handler) done(c *conn) {
	_ = c.ws.Close()
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	h.wg.Done()
}

// Close sends every client a going-away close frame, closes the
// connections and waits until their unacked events were handed back to the
// mesh. New upgrades are refused. Idempotent.
func (h *Handler) Close() {
	h.mu.Lock()
	h.closed = true
	conns := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.close(websocket.CloseGoingAway, "meshd is shutting down")
		_ = c.ws.Close()
	}
	h.wg.Wait()
}
