package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/meshd/meshd/protocols/mqtt"
	"github.com/meshd/meshd/protocols/websocket"
)

// endpoints are the app-facing endpoints besides HTTP: the WebSocket
// handler on the app API port and the MQTT bridges.
type endpoints struct {
	ws   *websocket.Handler
	mqtt []*mqtt.Link
}

// appAPI puts the WebSocket handler under /v1/ws/ next to the HTTP API.
func (s *Sidecar) appAPI(httpAPI http.Handler) http.Handler {
	s.endpoints.ws = websocket.NewHandler(s.bridge, s.engine, websocket.Config{
		Token:           s.cfg.API.Token,
		AllowedOrigins:  s.cfg.API.AllowedOrigins,
		MaxMessageBytes: s.cfg.API.MaxBodyBytes,
	}, s.logger)
	ws := s.endpoints.ws
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/ws/") {
			// api.readTimeout bounds reading a request; a WebSocket lives
			// on (its pings find dead clients).
			_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
			ws.ServeHTTP(w, r)
			return
		}
		httpAPI.ServeHTTP(w, r)
	})
}

// startMQTT starts the configured MQTT bridges. A broker that is down does
// not fail the start: the bridge keeps connecting in the background.
func (s *Sidecar) startMQTT(ctx context.Context) error {
	for _, c := range s.cfg.MQTT {
		c.Backoff = s.cfg.Delivery.backoff()
		b, err := mqtt.Start(ctx, c, s.bridge, s.engine, s.logger)
		if err != nil {
			return fmt.Errorf("starting mqtt bridge: %w", err)
		}
		s.endpoints.mqtt = append(s.endpoints.mqtt, b)
	}
	return nil
}

// stopEndpoints closes WebSocket connections (handing unacked events back
// to the mesh) and stops the MQTT bridges; before the mesh closes.
func (s *Sidecar) stopEndpoints(ctx context.Context) error {
	if s.endpoints.ws != nil {
		s.endpoints.ws.Close()
	}
	var errs []error
	for _, b := range s.endpoints.mqtt {
		errs = append(errs, b.Stop(ctx))
	}
	return errors.Join(errs...)
}

// validateEndpoints checks the mqtt: list.
func (c *Config) validateEndpoints() error {
	seen := map[string]bool{}
	for i, m := range c.MQTT {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("mqtt[%d]: %w", i, err)
		}
		if seen[m.Name] {
			return fmt.Errorf("mqtt[%d].name: %q declared twice", i, m.Name)
		}
		seen[m.Name] = true
		for _, f := range []struct{ field, path string }{{"caFile", m.TLS.CAFile}, {"certFile", m.TLS.CertFile}, {"keyFile", m.TLS.KeyFile}} {
			if err := checkReadable(fmt.Sprintf("mqtt[%d].tls.%s", i, f.field), f.path); err != nil {
				return err
			}
		}
		if _, err := m.TLS.Config(); err != nil {
			return fmt.Errorf("mqtt[%d].tls: %w", i, err)
		}
	}
	return nil
}
