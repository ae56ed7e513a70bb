package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/connectors"
)

// Defaults of WebhookOptions.
const (
	DefaultWebhookReadHeaderTimeout = 10 * time.Second
	DefaultWebhookReadTimeout       = time.Minute
	DefaultWebhookIdleTimeout       = time.Minute
	DefaultWebhookMaxConns          = 512
)

const (
	// webhookMaxHeaderBytes bounds a request's headers (webhooks send few).
	webhookMaxHeaderBytes = 64 << 10
	// webhookShutdownGrace is how long requests may finish once the last
	// webhook source is gone.
	webhookShutdownGrace = 5 * time.Second
	// pausedRetryAfter is the Retry-After of a paused source's 503.
	pausedRetryAfter = 30 * time.Second
)

// WebhookOptions configures the public webhook listener (its address is
// Options.WebhookListen).
type WebhookOptions struct {
	// TLSCert and TLSKey are PEM files; with both set the listener speaks
	// HTTPS (HTTP/2 and HTTP/1.1) only. The files are read again when they
	// change, so a renewed certificate needs no restart.
	TLSCert, TLSKey string
	// ReadHeaderTimeout bounds reading a request's headers (and the TLS
	// handshake); default 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included; default
	// 1m.
	ReadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle that long; default 1m.
	IdleTimeout time.Duration
	// MaxConns bounds the open connections; further ones wait in the
	// kernel's queue until one closes. Default 512.
	MaxConns int
}

func (o WebhookOptions) withDefaults() WebhookOptions {
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultWebhookReadHeaderTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultWebhookReadTimeout
	}
	o.ReadHeaderTimeout = min(o.ReadHeaderTimeout, o.ReadTimeout)
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultWebhookIdleTimeout
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultWebhookMaxConns
	}
	return o
}

// webhookServer is the public listener of webhook sources. It opens on the
// first Handle and closes when the last path is gone; requests are routed
// by exact path. The paths of a paused instance stay, answering 503 with
// Retry-After, so senders retry instead of dropping their deliveries.
type webhookServer struct {
	listen string
	opts   WebhookOptions
	log    *slog.Logger

	mu     sync.RWMutex // guards the fields below
	routes map[string]*route
	held   map[string]bool // instances (by name) whose paths stay while they are paused
	srv    *http.Server
	ln     *notifyListener
	closed bool // between close and reopen: Handle fails
	wg     sync.WaitGroup
}

// route is a served path: h, or (h nil) the path of a paused instance.
type route struct {
	owner string
	h     http.Handler
}

func newWebhookServer(listen string, opts WebhookOptions, log *slog.Logger) *webhookServer {
	return &webhookServer{listen: listen, opts: opts.withDefaults(), log: log, routes: map[string]*route{}, held: map[string]bool{}}
}

// For returns the listener as the instance named owner sees it.
func (w *webhookServer) For(owner string) connectors.Webhooks { return ownedWebhooks{w, owner} }

type ownedWebhooks struct {
	w     *webhookServer
	owner string
}

// Handle implements connectors.Webhooks.
func (o ownedWebhooks) Handle(path string, h http.Handler) (func(), error) {
	return o.w.handle(o.owner, path, h)
}

func (w *webhookServer) handle(owner, path string, h http.Handler) (func(), error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("webhook path %q must start with '/'", path)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, errors.New("webhook listener closed")
	}
	if old, ok := w.routes[path]; ok && (old.h != nil || old.owner != owner) {
		return nil, fmt.Errorf("webhook path %q is served by connector %q", path, old.owner)
	}
	if w.srv == nil {
		if err := w.openLocked(); err != nil {
			return nil, err
		}
	}
	rt := &route{owner: owner, h: h}
	w.routes[path] = rt
	var once sync.Once
	return func() { once.Do(func() { w.remove(path, rt) }) }, nil
}

// remove drops rt, or keeps its path answering 503 while its owner is
// paused, and closes the listener when no path is left.
func (w *webhookServer) remove(path string, rt *route) {
	w.mu.Lock()
	if w.routes[path] == rt {
		if w.held[rt.owner] {
			w.routes[path] = &route{owner: rt.owner}
		} else {
			delete(w.routes, path)
		}
	}
	srv, ln := w.detachIfIdleLocked()
	w.mu.Unlock()
	w.shutdown(srv, ln)
}

// hold keeps the paths of owner, answering 503, while it is paused.
func (w *webhookServer) hold(owner string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held[owner] = true
}

// reserve keeps path for owner, answering 503 as paused, until owner's
// task serves it again (handle) or owner is released: the path of an
// instance that is paused or stopped at start, whose task never ran here.
// A path another instance serves is left to it.
func (w *webhookServer) reserve(owner, path string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held[owner] = true
	if _, ok := w.routes[path]; ok || w.closed {
		return nil
	}
	if w.srv == nil {
		if err := w.openLocked(); err != nil {
			return err
		}
	}
	w.routes[path] = &route{owner: owner}
	return nil
}

// unhold forgets that owner is paused; its paused paths answer 503 until
// its tasks serve them again.
func (w *webhookServer) unhold(owner string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.held, owner)
}

// release forgets that owner is paused and drops its paused paths (it is
// reconfigured or deleted).
func (w *webhookServer) release(owner string) {
	w.mu.Lock()
	delete(w.held, owner)
	for p, rt := range w.routes {
		if rt.owner == owner && rt.h == nil {
			delete(w.routes, p)
		}
	}
	srv, ln := w.detachIfIdleLocked()
	w.mu.Unlock()
	w.shutdown(srv, ln)
}

// detachIfIdleLocked takes the server away when no path is left; the
// caller shuts it down after unlocking. w.mu must be held.
func (w *webhookServer) detachIfIdleLocked() (*http.Server, *notifyListener) {
	if len(w.routes) > 0 || w.srv == nil {
		return nil, nil
	}
	srv, ln := w.srv, w.ln
	w.srv, w.ln = nil, nil
	w.wg.Add(1) // the shutdown goroutine; added under mu so close's Wait sees it
	w.log.Info("webhook listener closed: no webhook source left", "addr", ln.Addr().String())
	return srv, ln
}

// shutdown stops srv: the socket closes at once (so the address can be
// opened again), requests in progress get webhookShutdownGrace to finish.
func (w *webhookServer) shutdown(srv *http.Server, ln *notifyListener) {
	if srv == nil {
		return
	}
	go func() {
		defer w.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), webhookShutdownGrace)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
	}()
	<-ln.closed
}

// openLocked opens the listener. w.mu must be held.
func (w *webhookServer) openLocked() error {
	var tlsCfg *tls.Config
	if w.opts.TLSCert != "" || w.opts.TLSKey != "" {
		certs := &certFiles{cert: w.opts.TLSCert, key: w.opts.TLSKey, log: w.log}
		if _, err := certs.get(nil); err != nil {
			return fmt.Errorf("opening the webhook listener: webhook.tls.cert, webhook.tls.key: %w", err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get}
	}
	tcp, err := net.Listen("tcp", w.listen)
	if err != nil {
		return fmt.Errorf("opening the webhook listener (webhook.listen %s): %w", w.listen, err)
	}
	ln := &notifyListener{Listener: netutil.LimitListener(tcp, w.opts.MaxConns), closed: make(chan struct{})}
	srv := &http.Server{
		Handler:           w,
		ReadHeaderTimeout: w.opts.ReadHeaderTimeout,
		ReadTimeout:       w.opts.ReadTimeout,
		IdleTimeout:       w.opts.IdleTimeout,
		MaxHeaderBytes:    webhookMaxHeaderBytes,
		TLSConfig:         tlsCfg,
		ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelDebug),
	}
	w.srv, w.ln = srv, ln
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		var err error
		if tlsCfg != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			w.log.Error("webhook listener stopped", "error", err)
		}
	}()
	w.log.Info("webhook listener open", "addr", tcp.Addr().String(), "tls", tlsCfg != nil)
	return nil
}

func (w *webhookServer) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	w.mu.RLock()
	rt := w.routes[req.URL.Path]
	w.mu.RUnlock()
	switch {
	case rt == nil:
		problem.Write(rw, problem.New(problem.CodeNotFound, "no webhook source is running at "+req.URL.Path))
	case rt.h == nil:
		problem.Write(retryAfterWriter{rw, pausedRetryAfter}, problem.New(problem.CodePaused,
			"the webhook source at "+req.URL.Path+" is paused; nothing was stored, send it again later"))
	default:
		rt.h.ServeHTTP(rw, req)
	}
}

// retryAfterWriter sets its own Retry-After on the answer.
type retryAfterWriter struct {
	http.ResponseWriter
	after time.Duration
}

func (w retryAfterWriter) WriteHeader(code int) {
	w.Header().Set("Retry-After", strconv.Itoa(int(w.after/time.Second)))
	w.ResponseWriter.WriteHeader(code)
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

// close shuts the listener down, letting requests finish until ctx is
// done, and forgets every path.
func (w *webhookServer) close(ctx context.Context) error {
	w.mu.Lock()
	srv := w.srv
	w.srv, w.ln, w.closed = nil, nil, true
	w.routes, w.held = map[string]*route{}, map[string]bool{}
	w.mu.Unlock()
	var err error
	if srv != nil {
		if err = srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
	}
	w.wg.Wait()
	return err
}

// notifyListener closes its channel when it is closed.
type notifyListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *notifyListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}

// certFiles serves the certificate of two PEM files, read again when
// either changes (checked at most once a second).
type certFiles struct {
	cert, key string
	log       *slog.Logger

	mu      sync.Mutex
	pair    *tls.Certificate
	mod     time.Time
	checked time.Time
}

func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.pair != nil && now.Sub(c.checked) < time.Second {
		return c.pair, nil
	}
	c.checked = now
	var mod time.Time
	for _, f := range []string{c.cert, c.key} {
		fi, err := os.Stat(f)
		if err != nil {
			if c.pair != nil {
				return c.pair, nil // keep serving the loaded one
			}
			return nil, err
		}
		if fi.ModTime().After(mod) {
			mod = fi.ModTime()
		}
	}
	if c.pair != nil && !mod.After(c.mod) {
		return c.pair, nil
	}
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		if c.pair != nil {
			c.log.Warn("reloading the webhook listener's certificate; keeping the previous one", "error", err)
			return c.pair, nil
		}
		return nil, err
	}
	if c.pair != nil {
		c.log.Info("webhook listener certificate reloaded", "cert", c.cert)
	}
	c.pair, c.mod = &pair, mod
	return c.pair, nil
}
