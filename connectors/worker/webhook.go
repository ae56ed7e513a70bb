package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd/bridge/problem"
)

// webhookServer is the public listener of webhook sources. It opens on the
// first Handle and stays open until close; requests are routed by exact
// path.
type webhookServer struct {
	listen string
	log    *slog.Logger

	mu     sync.RWMutex // guards routes, ln, srv, closed
	routes map[string]http.Handler
	ln     net.Listener
	srv    *http.Server
	closed bool
	wg     sync.WaitGroup
}

func newWebhookServer(listen string, log *slog.Logger) *webhookServer {
	return &webhookServer{listen: listen, log: log, routes: map[string]http.Handler{}}
}

// Handle implements connectors.Webhooks.
func (w *webhookServer) Handle(path string, h http.Handler) (func(), error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("webhook path %q must start with '/'", path)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, errors.New("webhook listener closed")
	}
	if _, ok := w.routes[path]; ok {
		return nil, fmt.Errorf("webhook path %q is served by another connector", path)
	}
	if w.ln == nil {
		ln, err := net.Listen("tcp", w.listen)
		if err != nil {
			return nil, fmt.Errorf("opening the webhook listener (webhook.listen %s): %w", w.listen, err)
		}
		w.ln = ln
		w.srv = &http.Server{
			Handler:           w,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelDebug),
		}
		w.wg.Add(1)
		go func(srv *http.Server) {
			defer w.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				w.log.Error("webhook listener stopped", "error", err)
			}
		}(w.srv)
		w.log.Info("webhook listener open", "addr", ln.Addr().String())
	}
	w.routes[path] = h
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			delete(w.routes, path)
			w.mu.Unlock()
		})
	}, nil
}

func (w *webhookServer) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	w.mu.RLock()
	h := w.routes[req.URL.Path]
	w.mu.RUnlock()
	if h == nil {
		problem.Write(rw, problem.New(problem.CodeNotFound, "no webhook source is running at "+req.URL.Path))
		return
	}
	h.ServeHTTP(rw, req)
}

// reopen lets a closed server open again (the runtime was restarted).
func (w *webhookServer) reopen() {
	w.mu.Lock()
	w.closed = false
	w.mu.Unlock()
}

func (w *webhookServer) addr() string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.ln == nil {
		return ""
	}
	return w.ln.Addr().String()
}

// close shuts the listener down, letting requests finish until ctx is done.
func (w *webhookServer) close(ctx context.Context) error {
	w.mu.Lock()
	srv := w.srv
	w.srv, w.ln, w.closed = nil, nil, true
	w.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	w.wg.Wait()
	return err
}
