// Package httpapi is meshd's app-facing HTTP endpoint: the publish and
// subscription API an application calls on its sidecar, and the Sender that
// pushes subscription deliveries to HTTP sinks.
package httpapi

import (
	"time"
)

// Defaults of Config and SenderConfig.
const (
	DefaultType             = "meshd.raw"
	DefaultMaxBodyBytes     = 4 << 20
	DefaultSendTimeout      = 10 * time.Second
	DefaultMaxIdlePerHost   = 256
	DefaultMaxResponseBytes = 64 << 10
)

// Config configures the app API handler.
type Config struct {
	// AppID names the application; a wrapped (non-CloudEvent) body gets it
	// as its source (see NewHandler).
	AppID string
	// DefaultType is the type of wrapped bodies (default "meshd.raw").
	DefaultType string
	// Token, when set, is required on every call as "Authorization: Bearer
	// <token>" or "meshd-api-token: <token>". Never logged.
	Token string
	// MaxBodyBytes bounds a request body, after decompression (default 4 MiB).
	MaxBodyBytes int64
}

func (c Config) withDefaults() Config {
	if c.DefaultType == "" {
		c.DefaultType = DefaultType
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return c
}

// SenderConfig configures the Sender.
type SenderConfig struct {
	// Timeout bounds one delivery, response included (default 10s). It must
	// be shorter than the bridge's AckWait.
	Timeout time.Duration
	// MaxIdleConnsPerHost is the number of keep-alive connections kept per
	// sink host (default 256).
	MaxIdleConnsPerHost int
	// MaxResponseBytes is how much of a sink's response body is read (and
	// discarded) so the connection can be reused (default 64 KiB).
	MaxResponseBytes int64
}

func (c SenderConfig) withDefaults() SenderConfig {
	if c.Timeout <= 0 {
		c.Timeout = DefaultSendTimeout
	}
	if c.MaxIdleConnsPerHost <= 0 {
		c.MaxIdleConnsPerHost = DefaultMaxIdlePerHost
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	return c
}
