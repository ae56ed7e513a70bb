// Package sidecar assembles meshd: config, the mesh engine, the bridge, the
// app API and the admin server, and their lifecycle.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/mesh/natsjs"
	"github.com/meshd/meshd/protocols/httpapi"
)

// Sidecar is a running meshd.
type Sidecar struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	// telemetry is OTLP export of traces and metrics (telemetry.go).
	telemetry *telemetry
	engine    mesh.Engine
	bridge    *bridge.Bridge
	// connectors runs connector instances; nil until started.
	connectors *worker.Runtime
	endpoints  endpoints // WebSocket and MQTT (endpoints.go)
	ops        *ops      // the operator's view (overview.go)

	apiLn, adminLn, probeLn    net.Listener
	apiSrv, adminSrv, probeSrv *http.Server
	serving                    sync.WaitGroup

	// dataLock holds data.dir (embedded mesh only) until Shutdown.
	dataLock *dataLock

	stopOnce sync.Once
	stopErr  error
}

// Start opens the mesh, restores subscriptions and starts serving. On error
// everything started so far is stopped again, and the error names the
// setting to fix (api.listen, data.dir, mesh.url, subscriptions[1], ...).
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Sidecar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sidecar{cfg: cfg, logger: logger}
	setMemoryLimit(cfg.Memory, logger)
	if err := s.start(ctx); err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if serr := s.Shutdown(stopCtx); serr != nil {
			logger.Debug("stopping after a failed start", "error", serr)
		}
		return nil, err
	}
	attrs := []any{"api", s.APIAddr(), "admin", s.AdminAddr(), "mesh", meshDescription(cfg), "app", cfg.App.ID}
	if s.probeLn != nil {
		attrs = append(attrs, "probe", s.ProbeAddr())
	}
	logger.Info("meshd started", attrs...)
	return s, nil
}

// start does the work of Start on s, leaving what it started in s for
// Shutdown. The ports and the data dir are taken first, so that the
// commonest mistakes fail before anything is opened.
func (s *Sidecar) start(ctx context.Context) (err error) {
	cfg, logger := s.cfg, s.logger
	if cfg.Mesh.URL == "" {
		dir, err := filepath.Abs(cfg.Data.Dir)
		if err != nil {
			return fmt.Errorf("data.dir: %w", err)
		}
		if s.dataLock, err = lockDataDir(dir); err != nil {
			return err
		}
	}
	if err := s.listenAPI(); err != nil {
		return err
	}
	if s.adminLn, err = listen("admin.listen", cfg.Admin.Listen); err != nil {
		return err
	}
	warnOpenAdmin(logger, cfg, s.adminLn.Addr())
	if cfg.Admin.ProbeListen != "" {
		if s.probeLn, err = listen("admin.probeListen", cfg.Admin.ProbeListen); err != nil {
			return err
		}
	}
	guard, err := s.guard()
	if err != nil {
		return err
	}

	if s.telemetry, err = newTelemetry(ctx, cfg.App.ID, logger); err != nil {
		return fmt.Errorf("starting OpenTelemetry export: %w", err)
	}
	if s.metrics, err = newMetrics(s.telemetry.metricOptions()...); err != nil {
		return fmt.Errorf("starting metrics: %w", err)
	}
	if s.engine, err = openEngine(ctx, cfg, logger); err != nil {
		return err
	}
	s.noteMovedState(ctx)
	s.bridge, err = bridge.New(bridge.Options{
		Engine:    s.engine,
		Logger:    logger,
		Meter:     s.metrics.meter,
		Tracer:    s.telemetry.tracer,
		Sender:    cehttp.NewSender(cehttp.ClientConfig{Timeout: cfg.Delivery.Timeout, Guard: guard}),
		DedupSize: cfg.Delivery.DedupSize,
		Backoff:   cfg.Delivery.backoff(),
		AckWait:   cfg.Delivery.AckWait,
		AppPort:   cfg.App.Port,
		// Per app: sidecars sharing a cluster must not run each other's
		// subscriptions (their sinks are on other hosts' loopback).
		SubscriptionBucket: cfg.stateBucket(bridge.DefaultSubscriptionBucket),
	})
	if err != nil {
		return fmt.Errorf("starting bridge: %w", err)
	}
	if err := s.bridge.Start(ctx); err != nil {
		return fmt.Errorf("restoring subscriptions: %w", err)
	}
	if err := s.startConnectors(ctx, guard); err != nil {
		return err
	}
	if err := s.applyDeclared(ctx); err != nil {
		return err
	}

	api := httpapi.NewHandler(s.bridge, httpapi.Config{
		AppID:          cfg.App.ID,
		DefaultType:    cfg.API.DefaultType,
		Token:          cfg.API.Token,
		MaxBodyBytes:   cfg.API.MaxBodyBytes,
		AllowedOrigins: cfg.API.AllowedOrigins,
	}, logger)
	s.apiSrv = s.apiServer(s.appAPI(api))
	admin := s.adminHandler()
	s.adminSrv = newServer(s.adminAuth(admin), logger)
	s.serve(s.apiSrv, s.apiLn)
	s.serve(s.adminSrv, s.adminLn)
	if s.probeLn != nil {
		s.probeSrv = newServer(s.probeHandler(admin), logger)
		s.serve(s.probeSrv, s.probeLn)
	}
	return s.startMQTT(ctx)
}

// listen opens the listener of setting, saying plainly when the port is
// taken.
func listen(setting, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s: %s is already in use by another process", setting, addr)
	}
	var op *net.OpError
	if errors.As(err, &op) {
		err = op.Err
	}
	return nil, fmt.Errorf("%s: cannot listen on %s: %w", setting, addr, err)
}

func meshDescription(cfg Config) string {
	if cfg.Mesh.URL != "" {
		return redactedMeshURL(cfg)
	}
	desc := "embedded"
	if cfg.Mesh.Listen != "" {
		desc += ", listening on " + cfg.Mesh.Listen
	}
	if cfg.Mesh.Leaf != "" {
		desc += ", leaf node of " + redactedURLs(cfg.leafURLs())
	}
	return desc
}

// redactedMeshURL is mesh.url with any password replaced by "xxxxx", for
// logs and errors.
func redactedMeshURL(cfg Config) string { return redactedURLs(cfg.MeshURLs()) }

// redactedURLs joins urls with any password replaced by "xxxxx".
func redactedURLs(urls []string) string {
	var out []string
	for _, u := range urls {
		if p, err := url.Parse(u); err == nil {
			u = p.Redacted()
		}
		out = append(out, u)
	}
	return strings.Join(out, ",")
}

func openEngine(ctx context.Context, cfg Config, logger *slog.Logger) (mesh.Engine, error) {
	jsCfg := natsjs.Config{
		Stream:          cfg.Mesh.Stream,
		Replicas:        cfg.Mesh.Replicas,
		MaxAge:          cfg.Mesh.MaxAge,
		Name:            "meshd-" + cfg.App.ID,
		GroupScope:      cfg.App.ID, // apps never share a consumer group by name
		ConnectTimeout:  cfg.Mesh.ConnectTimeout,
		DuplicateWindow: cfg.Mesh.DuplicateWindow,
		MaxConsumers:    cfg.Mesh.MaxConsumers,
		Logger:          logger,
	}
	if urls := cfg.MeshURLs(); len(urls) > 0 {
		jsCfg.URLs = urls
		if err := cfg.meshClient(&jsCfg); err != nil {
			return nil, err
		}
		// Each server is dialled for at most connectTimeout; setting up the
		// stream gets one more.
		ctx, cancel := context.WithTimeout(ctx, time.Duration(len(urls)+1)*cfg.Mesh.ConnectTimeout)
		defer cancel()
		eng, err := natsjs.Connect(ctx, jsCfg)
		if err != nil {
			return nil, explainMeshError(cfg, err)
		}
		return eng, nil
	}
	if cfg.Mesh.Listen != "" {
		ln, err := listen("mesh.listen", cfg.Mesh.Listen)
		if err != nil {
			return nil, err
		}
		ln.Close() // only a check: the embedded server opens its own
	}
	dir, err := filepath.Abs(cfg.Data.Dir)
	if err != nil {
		return nil, fmt.Errorf("data.dir: %w", err)
	}
	ecfg := embedded.Config{
		DataDir:    dir,
		Listen:     cfg.Mesh.Listen,
		SyncAlways: cfg.Mesh.SyncAlways,
		Mesh:       jsCfg,
		Logger:     logger,
	}
	if err := cfg.meshListen(&ecfg, dir, logger); err != nil {
		return nil, err
	}
	if ecfg.Leaf, err = cfg.leafConfig(dir, logger); err != nil {
		return nil, err
	}
	eng, err := embedded.Open(ctx, ecfg)
	if err != nil {
		return nil, fmt.Errorf("data.dir: starting the embedded mesh in %s: %w", dir, err)
	}
	return eng, nil
}

// rootCause is the innermost error of err's chain (the last one of a
// join), for messages that already say what was being done.
func rootCause(err error) error {
	for {
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			next := u.Unwrap()
			if next == nil {
				return err
			}
			err = next
		case interface{ Unwrap() []error }:
			errs := u.Unwrap()
			if len(errs) == 0 {
				return err
			}
			err = errs[len(errs)-1]
		default:
			return err
		}
	}
}

// newServer is the server of an admin listener; the app API's changes its
// timeouts (apiServer).
func newServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		IdleTimeout:       adminIdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
}

func (s *Sidecar) serve(srv *http.Server, ln net.Listener) {
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("server stopped", "addr", ln.Addr().String(), "error", err)
		}
	}()
}

// APIAddr is the address the app API listens on.
func (s *Sidecar) APIAddr() string { return s.apiLn.Addr().String() }

// AdminAddr is the address the admin server listens on.
func (s *Sidecar) AdminAddr() string { return s.adminLn.Addr().String() }

// ProbeAddr is the address of the probe listener ("" without one).
func (s *Sidecar) ProbeAddr() string {
	if s.probeLn == nil {
		return ""
	}
	return s.probeLn.Addr().String()
}

// Engine is the mesh this sidecar runs on.
func (s *Sidecar) Engine() mesh.Engine { return s.engine }

// Shutdown stops accepting requests, lets requests in flight finish (their
// events are stored or refused), stops deliveries and closes the mesh.
// It is idempotent and safe after a failed Start.
func (s *Sidecar) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		var errs []error
		if s.apiSrv != nil {
			errs = append(errs, s.apiSrv.Shutdown(ctx))
		} else if s.apiLn != nil {
			errs = append(errs, s.apiLn.Close())
		}
		errs = append(errs, s.stopEndpoints(ctx))
		errs = append(errs, s.stopConnectors(ctx))
		if s.bridge != nil {
			errs = append(errs, s.bridge.Stop(ctx))
		}
		if s.engine != nil {
			errs = append(errs, s.engine.Close())
		}
		for _, l := range []struct {
			srv *http.Server
			ln  net.Listener
		}{{s.adminSrv, s.adminLn}, {s.probeSrv, s.probeLn}} {
			if l.srv != nil {
				errs = append(errs, l.srv.Shutdown(ctx))
			} else if l.ln != nil {
				errs = append(errs, l.ln.Close())
			}
		}
		s.serving.Wait()
		s.ops.close()
		if s.metrics != nil {
			errs = append(errs, s.metrics.shutdown(ctx))
		}
		errs = append(errs, s.telemetry.shutdown(ctx))
		errs = append(errs, s.dataLock.release())
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}
