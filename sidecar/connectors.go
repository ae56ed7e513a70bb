package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/connectors/api"
	_ "github.com/meshd/meshd/connectors/standard" // the connector types meshd ships
	"github.com/meshd/meshd/connectors/worker"
)

// WebhookConfig is the public listener of webhook sources (http-source).
type WebhookConfig struct {
	Listen string `yaml:"listen" usage:"public webhook listener, opened only while a webhook source (http-source) runs"`
}

// ConnectorConfig declares a connector instance in the config file. meshd
// creates it, or updates it to this config, at start.
type ConnectorConfig struct {
	Name   string         `yaml:"name"`
	Config map[string]any `yaml:"config"`
}

// validateConnectors checks the webhook and connectors settings; the
// connector configs themselves are validated by the runtime at start.
func (c *Config) validateConnectors() error {
	if _, _, err := net.SplitHostPort(c.Webhook.Listen); err != nil {
		return fmt.Errorf("webhook.listen: %q is not host:port: %w", c.Webhook.Listen, err)
	}
	seen := map[string]bool{}
	for i, cc := range c.Connectors {
		if cc.Name == "" {
			return fmt.Errorf("connectors[%d].name: required", i)
		}
		if seen[cc.Name] {
			return fmt.Errorf("connectors[%d].name: %q declared twice", i, cc.Name)
		}
		seen[cc.Name] = true
		if cc.Config == nil {
			return fmt.Errorf("connectors[%d].config: required", i)
		}
	}
	return nil
}

// startConnectors creates the connector runtime and restores the stored
// instances (applyDeclared then applies the declared ones).
func (s *Sidecar) startConnectors(ctx context.Context) error {
	rt, err := worker.New(worker.Options{
		Engine:        s.engine,
		Bridge:        s.bridge,
		Logger:        s.logger.With("component", "connectors"),
		Meter:         s.metrics.meter,
		Tracer:        s.telemetry.tracer,
		WorkerID:      s.cfg.App.ID,
		Backoff:       s.cfg.Delivery.backoff(),
		AckWait:       s.cfg.Delivery.AckWait,
		WebhookListen: s.cfg.Webhook.Listen,
		ConfigBucket:  s.cfg.stateBucket(worker.DefaultConfigBucket),
		OffsetBucket:  s.cfg.stateBucket(worker.DefaultOffsetBucket),
	})
	if err != nil {
		return fmt.Errorf("starting connectors: %w", err)
	}
	if err := rt.Start(ctx); err != nil {
		return fmt.Errorf("restoring connectors: %w", err)
	}
	s.connectors = rt
	return nil
}

// stopConnectors stops the connector tasks (sinks flush) and the webhook
// listener.
func (s *Sidecar) stopConnectors(ctx context.Context) error {
	if s.connectors == nil {
		return nil
	}
	return s.connectors.Stop(ctx)
}

// mountConnectors adds the connector API to the admin mux.
func (s *Sidecar) mountConnectors(mux *http.ServeMux) {
	if s.connectors == nil {
		mux.HandleFunc("/v1/connectors", connectorsUnavailable)
		return
	}
	api.NewHandler(s.connectors, s.logger.With("component", "connectors-api")).Register(mux)
}

func connectorsUnavailable(w http.ResponseWriter, _ *http.Request) {
	problem.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": errors.New("connectors not started").Error()})
}
