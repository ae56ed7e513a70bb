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
	"os"
	"path/filepath"
	"sync"
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

	apiLn, adminLn   net.Listener
	apiSrv, adminSrv *http.Server
	serving          sync.WaitGroup

	stopOnce sync.Once
	stopErr  error
}

// Start opens the mesh, restores subscriptions and starts serving. On error
// everything started so far is stopped again.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (s *Sidecar, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s = &Sidecar{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			_ = s.Shutdown(context.Background())
		}
	}()

	if s.telemetry, err = newTelemetry(ctx, cfg.App.ID, logger); err != nil {
		return nil, fmt.Errorf("starting OpenTelemetry export: %w", err)
	}
	if s.metrics, err = newMetrics(s.telemetry.metricOptions()...); err != nil {
		return nil, fmt.Errorf("starting metrics: %w", err)
	}
	if s.engine, err = openEngine(ctx, cfg, logger); err != nil {
		return nil, err
	}
	s.bridge, err = bridge.New(bridge.Options{
		Engine:    s.engine,
		Logger:    logger,
		Meter:     s.metrics.meter,
		Tracer:    s.telemetry.tracer,
		Sender:    cehttp.NewSender(cehttp.ClientConfig{Timeout: cfg.Delivery.Timeout}),
		DedupSize: cfg.Delivery.DedupSize,
		Backoff:   cfg.Delivery.backoff(),
		AckWait:   cfg.Delivery.AckWait,
		AppPort:   cfg.App.Port,
		// Per app: sidecars sharing a cluster must not run each other's
		// subscriptions (their sinks are on other hosts' loopback).
		SubscriptionBucket: cfg.stateBucket(bridge.DefaultSubscriptionBucket),
	})
	if err != nil {
		return nil, fmt.Errorf("starting bridge: %w", err)
	}
	if err := s.bridge.Start(ctx); err != nil {
		return nil, fmt.Errorf("restoring subscriptions: %w", err)
	}
	for _, sub := range cfg.Subscriptions {
		if _, err := s.bridge.PutSubscription(ctx, sub); err != nil {
			return nil, fmt.Errorf("config subscription %q: %w", sub.ID, err)
		}
	}
	if err := s.startConnectors(ctx); err != nil {
		return nil, err
	}

	api := httpapi.NewHandler(s.bridge, httpapi.Config{
		AppID:        cfg.App.ID,
		DefaultType:  cfg.API.DefaultType,
		Token:        cfg.API.Token,
		MaxBodyBytes: cfg.API.MaxBodyBytes,
	}, logger)
	if s.apiLn, err = net.Listen("tcp", cfg.API.Listen); err != nil {
		return nil, fmt.Errorf("api.listen: %w", err)
	}
	if s.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	s.apiSrv = newServer(s.appAPI(api), logger)
	s.adminSrv = newServer(s.adminHandler(), logger)
	s.serve(s.apiSrv, s.apiLn)
	s.serve(s.adminSrv, s.adminLn)
	if err := s.startMQTT(ctx); err != nil {
		return nil, err
	}
	logger.Info("meshd started", "api", s.APIAddr(), "admin", s.AdminAddr(), "mesh", meshDescription(cfg), "app", cfg.App.ID)
	return s, nil
}

func meshDescription(cfg Config) string {
	if cfg.Mesh.URL != "" {
		return cfg.Mesh.URL
	}
	if cfg.Mesh.Listen != "" {
		return "embedded, listening on " + cfg.Mesh.Listen
	}
	return "embedded"
}

func openEngine(ctx context.Context, cfg Config, logger *slog.Logger) (mesh.Engine, error) {
	jsCfg := natsjs.Config{
		Stream:   cfg.Mesh.Stream,
		Replicas: cfg.Mesh.Replicas,
		MaxAge:   cfg.Mesh.MaxAge,
		Name:     "meshd-" + cfg.App.ID,
		Logger:   logger,
	}
	if urls := cfg.MeshURLs(); len(urls) > 0 {
		jsCfg.URLs = urls
		jsCfg.CredsFile = cfg.Mesh.Creds
		eng, err := natsjs.Connect(ctx, jsCfg)
		if err != nil {
			return nil, fmt.Errorf("connecting to mesh %s: %w", cfg.Mesh.URL, err)
		}
		return eng, nil
	}
	dir, err := filepath.Abs(cfg.Data.Dir)
	if err != nil {
		return nil, fmt.Errorf("data.dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data.dir: %w", err)
	}
	eng, err := embedded.Open(ctx, embedded.Config{
		DataDir:    dir,
		Listen:     cfg.Mesh.Listen,
		SyncAlways: cfg.Mesh.SyncAlways,
		Mesh:       jsCfg,
		Logger:     logger,
	})
	if err != nil {
		return nil, fmt.Errorf("starting embedded mesh in %s: %w", dir, err)
	}
	return eng, nil
}

func newServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
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
		if s.adminSrv != nil {
			errs = append(errs, s.adminSrv.Shutdown(ctx))
		} else if s.adminLn != nil {
			errs = append(errs, s.adminLn.Close())
		}
		s.serving.Wait()
		if s.metrics != nil {
			errs = append(errs, s.metrics.shutdown(ctx))
		}
		errs = append(errs, s.telemetry.shutdown(ctx))
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}
