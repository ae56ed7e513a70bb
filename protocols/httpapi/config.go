// Package httpapi is meshd's app-facing HTTP endpoint: the publish and
// subscription API an application calls on its sidecar. The CloudEvents
// codec it parses requests with, and the sender that pushes subscription
// deliveries to HTTP sinks, are bridge/cehttp.
package httpapi

// Defaults of Config.
const (
	DefaultType         = "meshd.raw"
	DefaultMaxBodyBytes = 4 << 20
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
	// AllowedOrigins are the browser origins allowed to call the API
	// besides requests without an Origin header and localhost pages
	// (apitoken.Origins, the rule of the WebSocket endpoints too); "*"
	// allows any. Requests of other pages are refused with 403, and the
	// allowed ones get CORS answers.
	AllowedOrigins []string
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
