// Package websocket is meshd's app-facing WebSocket endpoint, following the
// CloudEvents WebSocket binding (subprotocol cloudevents.json): publish with
// a per-event ack, and subscribe with explicit acks and a bound on unacked
// events. The message format is documented in docs/websocket.md.
package websocket

import (
	"fmt"
	"time"

	"github.com/meshd/meshd/bridge/apitoken"
)

// Defaults of Config.
const (
	DefaultMaxMessageBytes = 4 << 20
	DefaultPingInterval    = 30 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultAckTimeout      = 30 * time.Second
	DefaultMaxInFlight     = 64
	DefaultPublishTimeout  = 10 * time.Second
)

// Config configures the WebSocket handler. Zero fields take the defaults.
type Config struct {
	// Token, when set, is required at the upgrade as "Authorization: Bearer
	// <token>", "meshd-api-token: <token>", or (for browsers, which cannot
	// set headers) the subprotocol "meshd.token.<base64url(token)>" offered
	// next to cloudevents.json. Never logged.
	Token string
	// AllowedOrigins are the browser origins ("https://app.example:8443")
	// allowed to connect besides requests without an Origin header (CLIs,
	// servers) and localhost pages; "*" allows any. The rule is
	// apitoken.Origins, shared with the HTTP API.
	AllowedOrigins []string
	// MaxMessageBytes bounds one client message (default 4 MiB, like the
	// HTTP body limit). A larger message is answered with a too-large error
	// and the connection stays open.
	MaxMessageBytes int64
	// PingInterval is how often the server pings; a client that answers no
	// ping for two intervals is dead (default 30s).
	PingInterval time.Duration
	// WriteTimeout bounds writing one message to a client (default 10s); a
	// client that does not read for that long is disconnected.
	WriteTimeout time.Duration
	// AckTimeout is how long a delivered event may stay unacked before it is
	// delivered again (default 30s).
	AckTimeout time.Duration
	// MaxInFlight bounds the unacked events of one subscription (default
	// 64); a client may ask for fewer with ?maxInFlight=N.
	MaxInFlight int
	// PublishTimeout bounds storing the events of one message (default 10s);
	// past it the client gets a retryable mesh-unavailable error.
	PublishTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	return c
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if c.MaxMessageBytes < 0 {
		return fmt.Errorf("maxMessageBytes: %d must not be negative", c.MaxMessageBytes)
	}
	if c.MaxInFlight < 0 {
		return fmt.Errorf("maxInFlight: %d must not be negative", c.MaxInFlight)
	}
	if err := apitoken.CheckOrigins(c.AllowedOrigins); err != nil {
		return fmt.Errorf("allowedOrigins%w", err)
	}
	return nil
}
