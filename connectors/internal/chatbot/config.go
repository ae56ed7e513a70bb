package chatbot

import (
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/meshd/meshd/bridge/cehttp"
	"github.com/meshd/meshd/bridge/tlsconf"
	"github.com/meshd/meshd/connectors"
)

// Names of the config fields every chat sink has.
const (
	FieldRateLimits  = "rate.limits"
	FieldRateWait    = "rate.wait"
	FieldBackoff     = "backoff"
	FieldTimeout     = "timeout"
	FieldTLSCAFile   = "tls.ca.file"
	FieldTLSInsecure = "tls.insecure"
)

// Defaults of the common fields.
const (
	DefaultRateWait = 10 * time.Second
	DefaultTimeout  = 10 * time.Second
)

// CommonFields are the fields every chat sink has; rates and backoff are
// the vendor's defaults.
func CommonFields(rates []string, backoff time.Duration, backoffWhy string) []connectors.Field {
	return []connectors.Field{
		{Name: FieldRateLimits, Type: connectors.TypeList, Default: rates,
			Description: "Most messages per window, per robot, as count/duration (all must hold); the tasks of the instance share them. A batch above them waits."},
		{Name: FieldRateWait, Type: connectors.TypeDuration, Default: DefaultRateWait,
			Description: "Longest a batch waits for the rate limit; beyond it the rest of the batch is held by the runtime (no attempt spent) and sent when the limit allows. Keep it well below delivery.ackWait (30s), with the sends of a batch."},
		{Name: FieldBackoff, Type: connectors.TypeDuration, Default: backoff,
			Description: "How long the robot sends nothing after the vendor answered that it sends too fast (" + backoffWhy + ")."},
		{Name: FieldTimeout, Type: connectors.TypeDuration, Default: DefaultTimeout, Description: "Timeout of one HTTP request, answer included."},
		{Name: FieldTLSCAFile, Type: connectors.TypeString, Description: "PEM file of the CAs the vendor's certificate is verified with (default: the system's)."},
		{Name: FieldTLSInsecure, Type: connectors.TypeBool, Default: false, Description: "Skip verification of the vendor's certificate (tests only)."},
	}
}

// Robot modes: every chat sink has both.
const (
	ModeWebhook = "webhook" // a custom robot's webhook
	ModeApp     = "app"     // an app's robot, sending with an access token
)

// Names of the config fields every chat sink declares itself (their
// descriptions are the vendor's) and ParseSettings reads.
const (
	FieldMode      = "mode"
	FieldWebhook   = "webhook"
	FieldSecret    = "secret"
	FieldAppSecret = "app.secret"
	FieldAPIURL    = "api.url"
	FieldMsgType   = "msg.type"
	FieldAtAll     = "at.all"
)

// Settings are the fields every chat sink has, ready to use.
type Settings struct {
	Rates   []Rate
	Wait    time.Duration
	Backoff time.Duration
	Client  cehttp.ClientConfig

	Mode      string // ModeWebhook or ModeApp
	Webhook   string // the custom robot's webhook (mode webhook)
	Secret    string // its signing secret; "": the robot is not signed
	AppSecret string // the app's secret (mode app)
	APIURL    string // the vendor's API, without a trailing slash (mode app)
	MsgType   string // the message type, unless an event's extension chooses
	AtAll     bool
	Tmpl      map[string]*Template // by field, nil where absent
}

// Modes says what a vendor's two robot modes need, for ParseSettings to
// check.
type Modes struct {
	// App are the fields mode app requires; AppOptional the others only it
	// uses. Mode webhook refuses both.
	App, AppOptional []string
	// WebhookOnly are the fields besides webhook and secret that only mode
	// webhook uses; mode app refuses them all, "used only with mode
	// webhook" and WebhookNote.
	WebhookOnly []string
	WebhookNote string
	// CheckWebhook is the vendor's own check of its webhook URL: why it is
	// wrong, or "" (nil: none).
	CheckWebhook func(u *url.URL) string
	// Templates are the fields that are templates.
	Templates []string
}

// ParseSettings reads the fields every chat sink has, naming the bad ones:
// the common ones, the templates, and the fields of the robot modes as m
// says. It reads tls.ca.file.
func ParseSettings(cfg connectors.Config, m Modes) (Settings, []connectors.FieldError) {
	var errs []connectors.FieldError
	bad := func(field, reason string) { errs = append(errs, connectors.FieldError{Field: field, Reason: reason}) }
	s := Settings{
		Wait:      cfg.Duration(FieldRateWait),
		Backoff:   cfg.Duration(FieldBackoff),
		Client:    cehttp.ClientConfig{Timeout: cfg.Duration(FieldTimeout), MaxIdleConnsPerHost: 4},
		Mode:      cfg.String(FieldMode),
		Webhook:   cfg.String(FieldWebhook),
		Secret:    cfg.String(FieldSecret),
		AppSecret: cfg.String(FieldAppSecret),
		APIURL:    strings.TrimRight(cfg.String(FieldAPIURL), "/"),
		MsgType:   cfg.String(FieldMsgType),
		AtAll:     cfg.Bool(FieldAtAll),
	}
	rates, err := ParseRates(cfg.Strings(FieldRateLimits))
	if err != nil {
		bad(FieldRateLimits, err.Error())
	}
	s.Rates = rates
	if s.Wait < 0 {
		bad(FieldRateWait, "must not be negative")
	}
	if s.Backoff <= 0 {
		bad(FieldBackoff, "must be positive")
	}
	if s.Client.Timeout <= 0 {
		bad(FieldTimeout, "must be positive")
	}
	tc, err := tlsconf.Client{CAFile: cfg.String(FieldTLSCAFile), InsecureSkipVerify: cfg.Bool(FieldTLSInsecure)}.Config()
	if err != nil {
		bad(FieldTLSCAFile, err.Error())
	}
	s.Client.TLS = tc
	var terrs []connectors.FieldError
	s.Tmpl, terrs = Templates(cfg, m.Templates...)
	errs = append(errs, terrs...)
	return s, append(errs, m.check(cfg, &s)...)
}

// check names the fields of cfg that are missing or wrong for the mode of
// s, and those the mode does not use.
func (m Modes) check(cfg connectors.Config, s *Settings) []connectors.FieldError {
	var errs []connectors.FieldError
	switch s.Mode {
	case ModeWebhook:
		if s.Webhook == "" {
			errs = append(errs, required(cfg, "with mode webhook", FieldWebhook)...)
		} else if u, ferr := checkURL(FieldWebhook, s.Webhook); ferr != nil {
			errs = append(errs, *ferr)
		} else if m.CheckWebhook != nil {
			if why := m.CheckWebhook(u); why != "" {
				errs = append(errs, connectors.FieldError{Field: FieldWebhook, Reason: why})
			}
		}
		errs = append(errs, unused(cfg, "with mode app", slices.Concat(m.App, m.AppOptional)...)...)
	case ModeApp:
		errs = append(errs, required(cfg, "with mode app", m.App...)...)
		if _, ferr := checkURL(FieldAPIURL, s.APIURL); ferr != nil {
			errs = append(errs, *ferr)
		}
		why := strings.TrimSpace("with mode webhook " + m.WebhookNote)
		errs = append(errs, unused(cfg, why, slices.Concat([]string{FieldWebhook, FieldSecret}, m.WebhookOnly)...)...)
	}
	return errs
}

// checkURL checks that a URL field holds an absolute http or https URL
// with a host. The value is never echoed: it may hold a credential.
func checkURL(field, raw string) (*url.URL, *connectors.FieldError) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &connectors.FieldError{Field: field, Reason: "want an absolute http or https URL with a host"}
	}
	return u, nil
}

// required names each of fields that cfg leaves empty, saying why it is
// needed ("required with mode app").
func required(cfg connectors.Config, why string, fields ...string) []connectors.FieldError {
	var errs []connectors.FieldError
	for _, f := range fields {
		if cfg.String(f) == "" {
			errs = append(errs, connectors.FieldError{Field: f, Reason: "required " + why})
		}
	}
	return errs
}

// unused names each of fields that cfg sets although they are not used
// ("used only with mode app").
func unused(cfg connectors.Config, why string, fields ...string) []connectors.FieldError {
	var errs []connectors.FieldError
	for _, f := range fields {
		if v, ok := cfg[f]; ok && v != "" && v != false {
			errs = append(errs, connectors.FieldError{Field: f, Reason: "used only " + why})
		}
	}
	return errs
}
