// Package httpsource is the http-source connector: an endpoint on meshd's
// public webhook listener that turns HTTP requests into events. It accepts
// CloudEvents in binary, structured and batch mode, and wraps any other body
// in a CloudEvent. It answers 204 only once the mesh stored the events
// (503 when it could not in time), optionally after checking a shared
// token or an HMAC signature of the body.
package httpsource

import (
	"strings"
	"time"

	"github.com/meshd/meshd/connectors"
)

// Type is the connector.type of this connector.
const Type = "http-source"

// Config field names.
const (
	FieldPath         = "path"
	FieldToken        = "token"
	FieldHMACSecret   = "hmac.secret"
	FieldHMACHeader   = "hmac.header"
	FieldEventType    = "type"
	FieldEventSource  = "source"
	FieldTimeout      = "timeout"
	FieldMaxBodyBytes = "max.body.bytes"
)

// Defaults.
const (
	DefaultHMACHeader = "X-Hub-Signature-256"
	DefaultEventType  = "meshd.webhook"
	// TokenHeader carries the shared token (as does Authorization: Bearer).
	TokenHeader = "X-Meshd-Token"
)

// Spec is the registered spec of http-source.
var Spec = connectors.Spec{
	Name:    Type,
	Kind:    connectors.KindSource,
	Summary: "Receives HTTP requests (webhooks, CloudEvents in any HTTP mode) on the public webhook listener and publishes them as events.",
	Fields: []connectors.Field{
		{Name: FieldPath, Type: connectors.TypeString, Description: "Path served on the webhook listener (default /<connector name>)."},
		{Name: FieldToken, Type: connectors.TypeString, Secret: true, Description: "Shared secret a request must carry as 'Authorization: Bearer <token>' or in the " + TokenHeader + " header."},
		{Name: FieldHMACSecret, Type: connectors.TypeString, Secret: true, Description: "Key of an HMAC-SHA256 signature of the body that a request must carry (GitHub style: sha256=<hex>)."},
		{Name: FieldHMACHeader, Type: connectors.TypeString, Default: DefaultHMACHeader, Description: "Header holding the HMAC signature."},
		{Name: FieldEventType, Type: connectors.TypeString, Default: DefaultEventType, Description: "type of the CloudEvent wrapped around a plain body."},
		{Name: FieldEventSource, Type: connectors.TypeString, Description: "source of the CloudEvent wrapped around a plain body (default /webhooks/<connector name>)."},
		{Name: FieldTimeout, Type: connectors.TypeDuration, Default: 30 * time.Second, Description: "Longest wait for the mesh to store a request's events before answering 503."},
		{Name: FieldMaxBodyBytes, Type: connectors.TypeInt, Default: int64(4 << 20), Formerly: []string{"maxBodyBytes"}, Description: "Largest request body accepted, in bytes."},
	},
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &Task{} }, connectors.OneTask) // a path is served by one task
	},
	Check: check,
}

func init() { connectors.Register(Spec) }

func check(cfg connectors.Config) []connectors.FieldError {
	var errs []connectors.FieldError
	if p := cfg.String(FieldPath); p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# ")) {
		errs = append(errs, connectors.FieldError{Field: FieldPath, Reason: "want an absolute path like /hooks/github"})
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
