// Package httpsource is the http-source connector: an endpoint on meshd's
// public webhook listener that turns HTTP requests into events. It accepts
// CloudEvents in binary, structured and batch mode, and wraps any other body
// in a CloudEvent. Every request must carry the configured token or
// signature (a shared token, a GitHub-style HMAC of the body, or a Standard
// Webhooks signature with its timestamp window) unless the config says
// auth: none. It answers 204 only once the mesh stored the events (503 when
// it could not in time).
package httpsource

import (
	"time"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/internal/webhook"
)

// Type is the connector.type of this connector.
const Type = "http-source"

// Config field names.
const (
	FieldPath          = webhook.FieldPath
	FieldAuth          = webhook.FieldAuth
	FieldToken         = "token"
	FieldHMACSecret    = "hmac.secret"
	FieldHMACHeader    = "hmac.header"
	FieldHMACScheme    = "hmac.scheme"
	FieldHMACTolerance = "hmac.tolerance"
	FieldEventType     = "type"
	FieldEventSource   = "source"
	FieldTimeout       = "timeout"
	FieldMaxBodyBytes  = "max.body.bytes"
)

// Signature schemes of hmac.scheme.
const (
	// SchemeSHA256 is GitHub's: "sha256=<hex HMAC-SHA256 of the body>" in
	// hmac.header. Nothing is timestamped: a captured request can be
	// replayed.
	SchemeSHA256 = "sha256"
	// SchemeStandard is Standard Webhooks': webhook-id, webhook-timestamp
	// and webhook-signature ("v1,<base64>"), the timestamp signed and
	// checked against hmac.tolerance.
	SchemeStandard = "standard-webhooks"
)

// Defaults.
const (
	DefaultHMACHeader = "X-Hub-Signature-256"
	DefaultEventType  = "meshd.webhook"
	// TokenHeader carries the shared token (as does Authorization: Bearer).
	TokenHeader = webhook.TokenHeader
)

// Spec is the registered spec of http-source.
var Spec = connectors.Spec{
	Name:    Type,
	Kind:    connectors.KindSource,
	Summary: "Receives HTTP requests (webhooks, CloudEvents in any HTTP mode) on the public webhook listener and publishes them as events.",
	Fields: []connectors.Field{
		webhook.PathField(),
		webhook.AuthField(),
		{Name: FieldToken, Type: connectors.TypeString, Secret: true, Description: "Shared secret a request must carry as 'Authorization: Bearer <token>' or in the " + TokenHeader + " header."},
		{Name: FieldHMACSecret, Type: connectors.TypeString, Secret: true, Description: "Key of the signature a request must carry (see hmac.scheme); for standard-webhooks the whsec_... secret as the sender shows it."},
		{Name: FieldHMACScheme, Type: connectors.TypeString, Default: SchemeSHA256, Enum: []string{SchemeSHA256, SchemeStandard},
			Description: "sha256: GitHub style 'sha256=<hex>' HMAC of the body in hmac.header (no timestamp: no replay protection); standard-webhooks: webhook-id/webhook-timestamp/webhook-signature, the signed timestamp must be within hmac.tolerance."},
		{Name: FieldHMACHeader, Type: connectors.TypeString, Default: DefaultHMACHeader, Description: "Header holding the sha256 signature."},
		{Name: FieldHMACTolerance, Type: connectors.TypeDuration, Default: webhook.DefaultTolerance, Description: "standard-webhooks: how far the signed timestamp may be from now, either way; older requests are refused as replays."},
		{Name: FieldEventType, Type: connectors.TypeString, Default: DefaultEventType, Description: "type of the CloudEvent wrapped around a plain body."},
		{Name: FieldEventSource, Type: connectors.TypeString, Description: "source of the CloudEvent wrapped around a plain body (default /webhooks/<connector name>)."},
		{Name: FieldTimeout, Type: connectors.TypeDuration, Default: 30 * time.Second, Description: "Longest wait for the mesh to store a request's events before answering 503."},
		{Name: FieldMaxBodyBytes, Type: connectors.TypeInt, Default: int64(4 << 20), Formerly: []string{"maxBodyBytes"}, Description: "Largest request body accepted, in bytes."},
	},
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &Task{} }, connectors.OneTask) // a path is served by one task
	},
	Check:       check,
	WebhookPath: webhook.Path,
}

func init() { connectors.Register(Spec) }

func check(cfg connectors.Config) []connectors.FieldError {
	errs := append(webhook.CheckAuth(cfg, FieldToken, FieldHMACSecret), webhook.CheckPath(cfg)...)
	if sec := cfg.String(FieldHMACSecret); sec != "" && cfg.String(FieldHMACScheme) == SchemeStandard {
		if _, err := webhook.ParseStandardSecret(sec); err != nil {
			errs = append(errs, connectors.FieldError{Field: FieldHMACSecret, Reason: err.Error()})
		}
	}
	if cfg.Duration(FieldHMACTolerance) <= 0 {
		errs = append(errs, connectors.FieldError{Field: FieldHMACTolerance, Reason: "must be positive"})
	}
	if cfg.Duration(FieldTimeout) <= 0 {
		errs = append(errs, connectors.FieldError{Field: FieldTimeout, Reason: "must be positive"})
	}
	if cfg.Int(FieldMaxBodyBytes) <= 0 {
		errs = append(errs, connectors.FieldError{Field: FieldMaxBodyBytes, Reason: "must be positive"})
	}
	if cfg.String(FieldEventType) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldEventType, Reason: "must not be empty"})
	}
	return errs
}
