package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/connectors/api"
	_ "github.com/meshd/meshd/connectors/standard" // the connector types meshd ships
	"github.com/meshd/meshd/connectors/worker"
)

// WebhookConfig is the public listener of webhook sources (http-source,
// github-source, chatgpt-source). It binds all interfaces by default —
// webhooks come from outside — and every source on it must authenticate
// its callers unless its config says auth: none.
type WebhookConfig struct {
	Listen            string           `yaml:"listen" usage:"public webhook listener (all interfaces by default), opened only while a webhook source runs"`
	TLS               WebhookTLSConfig `yaml:"tls"`
	ReadHeaderTimeout time.Duration    `yaml:"readHeaderTimeout" usage:"webhook listener: longest wait for a request's headers (and TLS handshake)"`
	ReadTimeout       time.Duration    `yaml:"readTimeout" usage:"webhook listener: longest wait for a whole request, body included"`
	IdleTimeout       time.Duration    `yaml:"idleTimeout" usage:"webhook listener: keep-alive connections idle this long are closed"`
	MaxConns          int              `yaml:"maxConns" usage:"webhook listener: most open connections; more wait to be accepted"`
}

// WebhookTLSConfig makes the webhook listener speak HTTPS only.
type WebhookTLSConfig struct {
	Cert string `yaml:"cert" usage:"webhook listener: PEM certificate file (with webhook.tls.key): HTTPS only; re-read when it changes"`
	Key  string `yaml:"key" usage:"webhook listener: PEM private key file of webhook.tls.cert"`
}

func defaultWebhook() WebhookConfig {
	return WebhookConfig{
		Listen:            worker.DefaultWebhookListen,
		ReadHeaderTimeout: worker.DefaultWebhookReadHeaderTimeout,
		ReadTimeout:       worker.DefaultWebhookReadTimeout,
		IdleTimeout:       worker.DefaultWebhookIdleTimeout,
		MaxConns:          worker.DefaultWebhookMaxConns,
	}
}

func (w WebhookConfig) options() worker.WebhookOptions {
	return worker.WebhookOptions{
		TLSCert:           w.TLS.Cert,
		TLSKey:            w.TLS.Key,
		ReadHeaderTimeout: w.ReadHeaderTimeout,
		ReadTimeout:       w.ReadTimeout,
		IdleTimeout:       w.IdleTimeout,
		MaxConns:          w.MaxConns,
	}
}

func (w WebhookConfig) validate() error {
	if _, _, err := net.SplitHostPort(w.Listen); err != nil {
		return fmt.Errorf("webhook.listen: %q is not host:port: %w", w.Listen, err)
	}
	if (w.TLS.Cert == "") != (w.TLS.Key == "") {
		return errors.New("webhook.tls.cert and webhook.tls.key: set both or neither")
	}
	if w.TLS.Cert != "" {
		if _, err := tls.LoadX509KeyPair(w.TLS.Cert, w.TLS.Key); err != nil {
			return fmt.Errorf("webhook.tls.cert, webhook.tls.key: %w", err)
		}
	}
	for name, d := range map[string]time.Duration{"webhook.readHeaderTimeout": w.ReadHeaderTimeout, "webhook.readTimeout": w.ReadTimeout, "webhook.idleTimeout": w.IdleTimeout} {
		if d <= 0 {
			return fmt.Errorf("%s: must be positive", name)
		}
	}
	if w.MaxConns <= 0 {
		return errors.New("webhook.maxConns: must be positive")
	}
	return nil
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
	if err := c.Webhook.validate(); err != nil {
		return err
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
func (s *Sidecar) startConnectors(ctx context.Context, guard *cehttp.Guard) error {
	rt, err := worker.New(worker.Options{
		Engine:        s.engine,
		Bridge:        s.bridge,
		Logger:        s.logger.With("component", "connectors"),
		Meter:         s.metrics.meter,
		Tracer:        s.telemetry.tracer,
		WorkerID:      s.workerID(),
		Backoff:       s.cfg.Delivery.backoff(),
		AckWait:       s.cfg.Delivery.AckWait,
		WebhookListen: s.cfg.Webhook.Listen,
		Webhook:       s.cfg.Webhook.options(),
		ConfigBucket:  s.cfg.stateBucket(worker.DefaultConfigBucket),
		OffsetBucket:  s.cfg.stateBucket(worker.DefaultOffsetBucket),
		GroupBucket:   s.cfg.stateBucket(worker.DefaultGroupBucket),
		LeaseTime:     s.cfg.Worker.LeaseTime,
		SecretsKey:    s.cfg.secretsKey(s.logger),
		Guard:         guard,
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

// workerID is worker.id, or hostname:port of the admin listener: unique
// among live sidecars, as no two processes of a host hold one port, and
// the same when this sidecar restarts, so it takes its own tasks back at
// once.
func (s *Sidecar) workerID() string {
	if s.cfg.Worker.ID != "" {
		return s.cfg.Worker.ID
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "meshd"
	}
	_, port, _ := net.SplitHostPort(s.AdminAddr())
	return net.JoinHostPort(host, port)
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
