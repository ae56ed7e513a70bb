package sidecar

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"golang.org/x/net/netutil"

	"github.com/meshd/meshd/bridge/apitoken"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/bridge/problem"
)

// Timeouts of the admin and probe listeners (the app API's are settings).
const (
	adminReadHeaderTimeout = 10 * time.Second
	adminReadTimeout       = time.Minute
	adminIdleTimeout       = 2 * time.Minute
)

// validateEdges checks the settings of who may call meshd and whom meshd
// may call: api timeouts and connection limit, allowed origins, the probe
// listener, allowed delivery targets.
func (c *Config) validateEdges() error {
	for name, d := range map[string]time.Duration{
		"api.readHeaderTimeout": c.API.ReadHeaderTimeout, "api.readTimeout": c.API.ReadTimeout, "api.idleTimeout": c.API.IdleTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("%s: %s must be positive", name, d)
		}
	}
	if c.API.MaxConns <= 0 {
		return fmt.Errorf("api.maxConns: %d must be positive", c.API.MaxConns)
	}
	if err := apitoken.CheckOrigins(c.API.AllowedOrigins); err != nil {
		return fmt.Errorf("api.allowedOrigins%w", err)
	}
	if c.Admin.ProbeListen != "" {
		_, port, err := net.SplitHostPort(c.Admin.ProbeListen)
		if err != nil {
			return fmt.Errorf("admin.probeListen: %q is not host:port: %w", c.Admin.ProbeListen, err)
		}
		if c.Admin.ProbeListen == c.Admin.Listen && port != "0" {
			return errors.New("admin.probeListen: must differ from admin.listen")
		}
	}
	if _, err := cehttp.NewGuard(cehttp.GuardConfig{Allowed: c.Delivery.AllowedTargets}); err != nil {
		return fmt.Errorf("delivery.allowedTargets%w", err)
	}
	return nil
}

// guard is the rule of which addresses subscriptions and HTTP connectors
// may dial: delivery.allowedTargets, and never one of meshd's own
// listeners (the bound addresses of the app API, admin and probe
// listeners; webhook.listen and mesh.listen as configured).
func (s *Sidecar) guard() (*cehttp.Guard, error) {
	own := []string{s.apiLn.Addr().String(), s.adminLn.Addr().String(), s.cfg.Webhook.Listen}
	if s.probeLn != nil {
		own = append(own, s.probeLn.Addr().String())
	}
	if s.cfg.Mesh.Listen != "" {
		own = append(own, s.cfg.Mesh.Listen)
	}
	g, err := cehttp.NewGuard(cehttp.GuardConfig{Allowed: s.cfg.Delivery.AllowedTargets, Own: own})
	if err != nil {
		return nil, fmt.Errorf("delivery.allowedTargets: %w", err)
	}
	return g, nil
}

// listenAPI opens the app API's listener, holding at most api.maxConns
// connections open (more wait in the kernel's queue).
func (s *Sidecar) listenAPI() error {
	ln, err := listen("api.listen", s.cfg.API.Listen)
	if err != nil {
		return err
	}
	s.apiLn = netutil.LimitListener(ln, s.cfg.API.MaxConns)
	return nil
}

// apiServer is the app API's server: its headers and body must arrive
// within their timeouts (a request that trickles in is cut off, so slow
// clients cannot hold connections and memory), except on WebSocket
// upgrades, whose connections live on.
func (s *Sidecar) apiServer(h http.Handler) *http.Server {
	srv := newServer(h, s.logger)
	srv.ReadHeaderTimeout = s.cfg.API.ReadHeaderTimeout
	srv.ReadTimeout = s.cfg.API.ReadTimeout
	srv.IdleTimeout = s.cfg.API.IdleTimeout
	return srv
}

// adminAuth lets through the probes (/healthz, /readyz, and /metrics with
// admin.openMetrics) and, when admin.token is set, only requests bearing
// it: the connectors API and every admin endpoint to come. A browser page
// of another origin is refused whatever it sends (the rule of the app
// API).
func (s *Sidecar) adminAuth(next http.Handler) http.Handler {
	token := apitoken.New(s.cfg.Admin.Token)
	origins := apitoken.NewOrigins(s.cfg.API.AllowedOrigins)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !origins.Allowed(r) {
			problem.Write(w, problem.New(problem.CodeForbidden, fmt.Sprintf("origin %q may not call the admin API", r.Header.Get("Origin"))))
			return
		}
		if token.Required() && !s.openRequest(r) && !token.Match(apitoken.Bearer(r)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshd-admin"`)
			problem.Write(w, problem.New(problem.CodeUnauthorized, "send the admin token as \"Authorization: Bearer <token>\" (admin.token; the CLI reads MESHD_ADMIN_TOKEN)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// probePath says whether path is one of the probes, served without the
// admin token and on the probe listener.
func (s *Sidecar) probePath(path string) bool {
	switch path {
	case "/healthz", "/readyz":
		return true
	case "/metrics":
		return s.cfg.Admin.OpenMetrics
	}
	return false
}

// openRequest says whether r is served without the admin token: the
// probes (but /readyz?verbose, which names every subscription and
// connector) and the dashboard's static files (a browser opening the page
// cannot send a token; its API calls do).
func (s *Sidecar) openRequest(r *http.Request) bool {
	if r.URL.Path == "/readyz" && r.URL.Query().Has("verbose") {
		return false
	}
	return s.probePath(r.URL.Path) || IsUIAsset(r.URL.Path)
}

// probeHandler serves the probe listener: the open paths of the admin API
// and nothing else.
func (s *Sidecar) probeHandler(admin http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.probePath(r.URL.Path) || r.URL.Query().Has("verbose") {
			open := "/healthz and /readyz"
			if s.cfg.Admin.OpenMetrics {
				open = "/healthz, /readyz and /metrics"
			}
			problem.Write(w, problem.New(problem.CodeNotFound, "the probe listener serves only "+open))
			return
		}
		admin.ServeHTTP(w, r)
	})
}

// warnOpenAdmin says at start when the admin API, which creates
// connectors that read databases and post anywhere, is reachable from
// other hosts without a token.
func warnOpenAdmin(logger *slog.Logger, cfg Config, addr net.Addr) {
	if cfg.Admin.Token != "" {
		return
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil || ap.Addr().IsLoopback() {
		return
	}
	logger.Warn("the admin API listens beyond loopback without admin.token: anyone who reaches it can create connectors; set admin.token or bind admin.listen to 127.0.0.1", "admin", addr.String())
}
