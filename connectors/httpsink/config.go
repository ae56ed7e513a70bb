// Package httpsink is the http-sink connector: it POSTs each event to a
// URL, in binary or structured mode, with optional headers and TLS
// settings. Answers are classified like subscription deliveries
// (bridge/cehttp): 2xx acks; 408, 429 and 5xx are retried with backoff
// (honouring Retry-After); a target that cannot be reached holds the batch
// without spending attempts; any other status, redirects included,
// dead-letters the event at once.
package httpsink

import (
	"net/url"
	"time"

	"github.com/meshd/meshd/connectors"
)

// Type is the connector.type of this connector.
const Type = "http-sink"

// Config field names.
const (
	FieldURL           = "url"
	FieldMode          = "mode"
	FieldHeaders       = "headers"
	FieldSecretHeaders = "secret.headers"
	FieldTimeout       = "timeout"
	FieldTLSInsecure   = "tls.insecure"
	FieldTLSCA         = "tls.ca.file"
	FieldTLSCert       = "tls.cert.file"
	FieldTLSKey        = "tls.key.file"
)

// Spec is the registered spec of http-sink.
var Spec = connectors.Spec{
	Name:    Type,
	Kind:    connectors.KindSink,
	Summary: "POSTs events to an HTTP endpoint (CloudEvents binary or structured mode).",
	Fields: []connectors.Field{
		{Name: FieldURL, Type: connectors.TypeString, Required: true, SecretURL: true, Description: "Absolute http or https URL events are POSTed to. Its user info (user:password@, sent as Basic authentication) and query values are masked whenever the config is shown."},
		{Name: FieldMode, Type: connectors.TypeString, Default: "binary", Enum: []string{"binary", "structured"}, Description: "CloudEvents HTTP content mode."},
		{Name: FieldHeaders, Type: connectors.TypeMap, Description: "Extra request headers."},
		{Name: FieldSecretHeaders, Type: connectors.TypeMap, Secret: true, Description: "Extra request headers whose values are secret, e.g. {\"Authorization\": \"Bearer ...\"}; masked whenever the config is shown."},
		{Name: FieldTimeout, Type: connectors.TypeDuration, Default: 10 * time.Second, Description: "Timeout of one request."},
		{Name: FieldTLSInsecure, Type: connectors.TypeBool, Default: false, Formerly: []string{"tls.insecureSkipVerify"}, Description: "Skip verification of the server certificate (tests only)."},
		{Name: FieldTLSCA, Type: connectors.TypeString, Formerly: []string{"tls.caFile"}, Description: "PEM file of CAs to verify the server with (default: the system's)."},
		{Name: FieldTLSCert, Type: connectors.TypeString, Formerly: []string{"tls.certFile"}, Description: "PEM client certificate (with tls.key.file) for mutual TLS."},
		{Name: FieldTLSKey, Type: connectors.TypeString, Formerly: []string{"tls.keyFile"}, Description: "PEM key of tls.cert.file."},
	},
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &Task{} }, connectors.EveryTask)
	},
	Check: check,
}

func init() { connectors.Register(Spec) }

func check(cfg connectors.Config) []connectors.FieldError {
	var errs []connectors.FieldError
	// The URL is not echoed: it may carry credentials.
	u, err := url.Parse(cfg.String(FieldURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, connectors.FieldError{Field: FieldURL, Reason: "want an absolute http or https URL with a host"})
	}
	if cfg.Duration(FieldTimeout) <= 0 {
		errs = append(errs, connectors.FieldError{Field: FieldTimeout, Reason: "must be positive"})
	}
	if (cfg.String(FieldTLSCert) == "") != (cfg.String(FieldTLSKey) == "") {
		errs = append(errs, connectors.FieldError{Field: FieldTLSCert, Reason: "tls.cert.file and tls.key.file go together"})
	}
	return errs
}
