// Package github is the github-source connector: GitHub webhook deliveries
// received on meshd's public webhook listener become CloudEvents. Each
// delivery's X-Hub-Signature-256 (HMAC-SHA256 of the raw body with the
// webhook secret) is checked in constant time before anything else is read;
// the event's id is the delivery's GUID (so a redelivery is the same
// event), its type com.github.<event>[.<action>], its source the
// repository's (or organization's) page, its subject the natural key (PR or
// issue number, ref, release tag...), its data the payload unchanged. The
// delivery is answered 2xx only once the mesh stored the event, within
// GitHub's 10 seconds.
package github

import (
	"time"

	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/internal/webhook"
)

// Type is the connector.type of this connector.
const Type = "github-source"

// Config field names.
const (
	FieldPath         = webhook.FieldPath
	FieldAuth         = webhook.FieldAuth
	FieldSecret       = "secret"
	FieldPingPublish  = "ping.publish"
	FieldSource       = "source"
	FieldTimeout      = "timeout"
	FieldMaxBodyBytes = "max.body.bytes"
)

// Limits and defaults.
const (
	// MaxTimeout is GitHub's: a delivery not answered within 10 seconds
	// counts as failed.
	MaxTimeout     = 10 * time.Second
	DefaultTimeout = 8 * time.Second
	// DefaultMaxBodyBytes is GitHub's cap on payloads (25 MB).
	DefaultMaxBodyBytes = 25 << 20
	// DefaultSource is the source of events whose payload names no
	// repository, organization, enterprise, account or sender.
	DefaultSource = "https://github.com"
)

// Spec is the registered spec of github-source.
var Spec = connectors.Spec{
	Name:    Type,
	Kind:    connectors.KindSource,
	Summary: "Receives GitHub webhook deliveries (signature checked) on the public webhook listener and publishes each as a CloudEvent.",
	Fields: []connectors.Field{
		webhook.PathField(),
		webhook.AuthField(),
		{Name: FieldSecret, Type: connectors.TypeString, Secret: true, Description: "The webhook's secret: every delivery must carry X-Hub-Signature-256, its HMAC-SHA256 of the body."},
		{Name: FieldPingPublish, Type: connectors.TypeBool, Default: false, Description: "Publish GitHub's ping deliveries too (they are always answered 2xx)."},
		{Name: FieldSource, Type: connectors.TypeString, Default: DefaultSource, Description: "source of events whose payload names no repository, organization, enterprise, account or sender."},
		{Name: FieldTimeout, Type: connectors.TypeDuration, Default: DefaultTimeout, Description: "Longest wait for the mesh to store a delivery before answering 503; at most 10s, GitHub's own limit."},
		{Name: FieldMaxBodyBytes, Type: connectors.TypeInt, Default: int64(DefaultMaxBodyBytes), Description: "Largest delivery accepted, in bytes (GitHub caps payloads at 25 MB)."},
	},
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &Task{} }, connectors.OneTask) // a path is served by one task
	},
	Check:       check,
	WebhookPath: webhook.Path,
}

func init() { connectors.Register(Spec) }

func check(cfg connectors.Config) []connectors.FieldError {
	errs := append(webhook.CheckAuth(cfg, FieldSecret), webhook.CheckPath(cfg)...)
	if d := cfg.Duration(FieldTimeout); d <= 0 || d > MaxTimeout {
		errs = append(errs, connectors.FieldError{Field: FieldTimeout, Reason: "must be positive and at most 10s: GitHub gives up on a delivery after 10 seconds"})
	}
	if n := cfg.Int(FieldMaxBodyBytes); n <= 0 {
		errs = append(errs, connectors.FieldError{Field: FieldMaxBodyBytes, Reason: "must be positive"})
	}
	if s := cfg.String(FieldSource); s == "" || types.ParseURIRef(s) == nil {
		errs = append(errs, connectors.FieldError{Field: FieldSource, Reason: "want a URI-reference such as https://github.com"})
	}
	return errs
}
