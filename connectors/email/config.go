// Package email is the email-sink connector: it sends each event as one
// mail over SMTP (STARTTLS, implicit TLS, or plain on loopback), with
// sender, recipients, subject and body made by templates over the event's
// attributes and data.
//
// A task keeps one SMTP connection and sends the events of a batch over it
// one after the other, reconnecting when the server dropped it. SMTP 4xx
// replies retry the event, 5xx replies dead-letter it with the server's
// reply, and a server that cannot be reached (or refuses the session, the
// TLS handshake or the credentials) holds the batch.
package email

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/meshd/meshd/bridge/tlsconf"
	"github.com/meshd/meshd/connectors"
)

// Type is the connector.type of this connector.
const Type = "email-sink"

// Config field names.
const (
	FieldHost          = "host"
	FieldPort          = "port"
	FieldTLSMode       = "tls.mode"
	FieldTLSCAFile     = "tls.ca.file"
	FieldTLSInsecure   = "tls.insecure"
	FieldUsername      = "username"
	FieldPassword      = "password"
	FieldAuthMechanism = "auth.mechanism"
	FieldHeloName      = "helo.name"
	FieldTimeout       = "timeout"
	FieldFrom          = "from"
	FieldTo            = "to"
	FieldCc            = "cc"
	FieldBcc           = "bcc"
	FieldSubject       = "subject"
	FieldBody          = "body"
	FieldContentType   = "content.type"
)

// TLS modes.
const (
	TLSStartTLS = "starttls" // plain connection upgraded with STARTTLS (port 587)
	TLSImplicit = "tls"      // TLS from the first byte, "SMTPS" (port 465)
	TLSNone     = "none"     // no encryption (port 25; tests, local relays)
)

// AUTH mechanisms.
const (
	AuthAuto  = "auto"
	AuthPlain = "plain"
	AuthLogin = "login"
)

// Body content types.
const (
	ContentText = "text/plain"
	ContentHTML = "text/html"
)

// Defaults.
const (
	// DefaultSubject is the subject template when none is given.
	DefaultSubject = "{{.Type}}"
	// DefaultBatchSize is this type's batch.size.
	DefaultBatchSize = 20
)

// Spec is the registered spec of email-sink.
var Spec = connectors.Spec{
	Name:    Type,
	Kind:    connectors.KindSink,
	Summary: "Sends each event as an email over SMTP, with templates for sender, recipients, subject and body.",
	Fields: []connectors.Field{
		{Name: FieldHost, Type: connectors.TypeString, Required: true, Description: "SMTP server host name (also the name its TLS certificate is checked against)."},
		{Name: FieldPort, Type: connectors.TypeInt, Description: "SMTP server port (default: 587 with tls.mode starttls, 465 with tls, 25 with none)."},
		{Name: FieldTLSMode, Type: connectors.TypeString, Default: TLSStartTLS, Enum: []string{TLSStartTLS, TLSImplicit, TLSNone},
			Description: "starttls: upgrade the connection with STARTTLS, and refuse a server that does not offer it; tls: implicit TLS from the first byte; none: no encryption (a password is then sent only to a loopback host)."},
		{Name: FieldTLSCAFile, Type: connectors.TypeString, Description: "PEM file of the CAs the server certificate is verified with (default: the system's)."},
		{Name: FieldTLSInsecure, Type: connectors.TypeBool, Default: false, Description: "Skip verification of the server certificate (tests only)."},
		{Name: FieldUsername, Type: connectors.TypeString, Description: "User to authenticate as (none: no AUTH)."},
		{Name: FieldPassword, Type: connectors.TypeString, Secret: true, Description: "Password of username."},
		{Name: FieldAuthMechanism, Type: connectors.TypeString, Default: AuthAuto, Enum: []string{AuthAuto, AuthPlain, AuthLogin},
			Description: "SASL mechanism: auto takes PLAIN if the server offers it, else LOGIN."},
		{Name: FieldHeloName, Type: connectors.TypeString, Description: "Name sent with EHLO (default: this machine's host name)."},
		{Name: FieldTimeout, Type: connectors.TypeDuration, Default: 30 * time.Second, Description: "Longest wait for the connection (dial, TLS, greeting, AUTH) and for the sending of one message."},
		{Name: FieldFrom, Type: connectors.TypeString, Required: true, Description: "Template of the sender address, e.g. \"Shop <noreply@shop.example>\"; also the envelope sender."},
		{Name: FieldTo, Type: connectors.TypeString, Description: "Template of the To addresses (a comma-separated address list), e.g. \"{{.Data.email}}\"."},
		{Name: FieldCc, Type: connectors.TypeString, Description: "Template of the Cc addresses."},
		{Name: FieldBcc, Type: connectors.TypeString, Description: "Template of the Bcc addresses (envelope only, never in the headers)."},
		{Name: FieldSubject, Type: connectors.TypeString, Default: DefaultSubject, Description: "Template of the subject."},
		{Name: FieldBody, Type: connectors.TypeString, Description: "Template of the body (default: the event data as it is; a JSON string is unquoted)."},
		{Name: FieldContentType, Type: connectors.TypeString, Default: ContentText, Enum: []string{ContentText, ContentHTML},
			Description: "Content type of the body. With text/html a body template escapes what it inserts as HTML."},
	},
	// A batch is acked once all its mails are sent: after a crash its sent
	// mails are sent again. The connection outlives the batch, so small
	// batches cost little and narrow that window.
	Defaults: map[string]any{connectors.FieldBatchSize: int64(DefaultBatchSize)},
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &Task{} }, connectors.EveryTask)
	},
	Check: func(cfg connectors.Config) []connectors.FieldError {
		_, errs := parseConfig(cfg)
		return errs
	},
}

func init() { connectors.Register(Spec) }

// settings is a config ready to use: templates parsed, TLS set up.
type settings struct {
	addr     string // host:port
	host     string
	mode     string
	tls      *tls.Config // nil with TLSNone
	username string
	password string
	mech     string
	helo     string
	timeout  time.Duration
	tmpl     templates
	html     bool
}

// parseConfig turns a config into settings, or names every bad field. It
// does no network I/O; it reads tls.ca.file.
func parseConfig(cfg connectors.Config) (*settings, []connectors.FieldError) {
	var errs []connectors.FieldError
	bad := func(field, reason string) { errs = append(errs, connectors.FieldError{Field: field, Reason: reason}) }
	s := &settings{
		host:     strings.TrimSpace(cfg.String(FieldHost)),
		mode:     cfg.String(FieldTLSMode),
		username: cfg.String(FieldUsername),
		password: cfg.String(FieldPassword),
		mech:     cfg.String(FieldAuthMechanism),
		helo:     cfg.String(FieldHeloName),
		timeout:  cfg.Duration(FieldTimeout),
		html:     cfg.String(FieldContentType) == ContentHTML,
	}
	switch {
	case s.host == "":
		bad(FieldHost, "must not be empty")
	case strings.ContainsAny(s.host, "/:@ \r\n") && net.ParseIP(s.host) == nil:
		bad(FieldHost, "want a host name or IP address alone (no scheme, port or user; the port goes in port)")
	}
	port := cfg.Int(FieldPort)
	if port == 0 {
		port = map[string]int64{TLSStartTLS: 587, TLSImplicit: 465, TLSNone: 25}[s.mode]
	}
	if port < 1 || port > 65535 {
		bad(FieldPort, fmt.Sprintf("%d is not a port number (1 to 65535)", port))
	}
	s.addr = net.JoinHostPort(s.host, fmt.Sprint(port))
	if s.timeout <= 0 {
		bad(FieldTimeout, "must be positive")
	}
	if s.helo == "" {
		s.helo, _ = os.Hostname()
		if s.helo == "" {
			s.helo = "localhost"
		}
	} else if strings.ContainsAny(s.helo, " \t\r\n") {
		bad(FieldHeloName, "must be one word")
	}
	if s.password != "" && s.username == "" {
		bad(FieldPassword, "needs username")
	}
	if strings.ContainsAny(s.username, "\x00\r\n") {
		bad(FieldUsername, "must not hold NUL, CR or LF")
	}
	// The password is never echoed, not even in part.
	if strings.ContainsRune(s.password, 0) {
		bad(FieldPassword, "must not hold a NUL character")
	}
	caFile, insecure := cfg.String(FieldTLSCAFile), cfg.Bool(FieldTLSInsecure)
	if s.mode == TLSNone {
		if caFile != "" || insecure {
			bad(FieldTLSMode, "tls.ca.file and tls.insecure need tls.mode starttls or tls")
		}
		if s.username != "" && !isLoopback(s.host) {
			bad(FieldTLSMode, "none sends the password unencrypted; allowed only to a loopback host")
		}
	} else {
		tc, err := tlsconf.Client{ServerName: s.host, CAFile: caFile, InsecureSkipVerify: insecure}.Config()
		if err != nil {
			bad(FieldTLSCAFile, err.Error())
		}
		s.tls = tc
	}
	var terrs []connectors.FieldError
	s.tmpl, terrs = parseTemplates(cfg, s.html)
	errs = append(errs, terrs...)
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// isLoopback says whether host names this machine (the host names net/smtp
// also trusts with a password over an unencrypted connection).
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
