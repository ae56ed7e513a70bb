package chatbot

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/meshd/meshd/bridge"
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

// Settings are the common fields of a config, ready to use.
type Settings struct {
	Rates   []Rate
	Wait    time.Duration
	Backoff time.Duration
	Client  cehttp.ClientConfig
}

// ParseSettings reads the common fields of cfg, naming the bad ones. It
// reads tls.ca.file.
func ParseSettings(cfg connectors.Config) (Settings, []connectors.FieldError) {
	var errs []connectors.FieldError
	bad := func(field, reason string) { errs = append(errs, connectors.FieldError{Field: field, Reason: reason}) }
	s := Settings{
		Wait:    cfg.Duration(FieldRateWait),
		Backoff: cfg.Duration(FieldBackoff),
		Client:  cehttp.ClientConfig{Timeout: cfg.Duration(FieldTimeout), MaxIdleConnsPerHost: 4},
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
	return s, errs
}

// CheckURL checks that a URL field holds an absolute http or https URL
// with a host. The value is never echoed: it may hold a credential.
func CheckURL(field, raw string) (*url.URL, *connectors.FieldError) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &connectors.FieldError{Field: field, Reason: "want an absolute http or https URL with a host"}
	}
	return u, nil
}

// PostJSON posts body as JSON to target and returns the body of a 2xx
// answer, or an error classified by cehttp.Client.Do. The target is never
// in the error: it may hold a credential.
func PostJSON(ctx context.Context, c *cehttp.Client, target string, header http.Header, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, bridge.PermanentError(errors.New("building the request: the URL is malformed"))
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.Do(req)
}

// Refused returns the status and the start of the body of a non-2xx
// answer that cehttp.Client.Do turned into err (ok false for other
// errors). Vendors put their error code in that body.
func Refused(err error) (status int, body string, ok bool) {
	var de *bridge.DeliveryError
	if !errors.As(err, &de) || de.StatusCode == 0 || de.Err == nil {
		return 0, "", false
	}
	return de.StatusCode, de.Err.Error(), true
}

// jsonField finds "key": value in a JSON text that may be cut short.
var jsonField = regexp.MustCompile(`"([A-Za-z_]+)"\s*:\s*("(?:[^"\\]|\\.)*"|-?[0-9]+)`)

// Field returns the value of the first top-level-looking "key" in a JSON
// object that may be cut short (the start of an error answer): strings
// unquoted, numbers as written. ok is false if it is not there.
func Field(body, key string) (string, bool) {
	for _, m := range jsonField.FindAllStringSubmatch(body, -1) {
		if m[1] != key {
			continue
		}
		v := m[2]
		if v != "" && v[0] == '"' {
			var s string
			if json.Unmarshal([]byte(v), &s) != nil {
				return "", false
			}
			return s, true
		}
		return v, true
	}
	return "", false
}

// TooLarge is the failure of a message above the vendor's size limit.
func TooLarge(what string, size, limit int) error {
	return fmt.Errorf("%s is %d bytes, above the vendor's limit of %d", what, size, limit)
}

// HMACBase64 is the base64 (standard, padded) of HMAC-SHA256 of msg with
// key: the signatures of both vendors' custom robots, which differ in what
// they take as key and message.
func HMACBase64(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Required names each of fields that cfg leaves empty, saying why it is
// needed ("required with mode app").
func Required(cfg connectors.Config, why string, fields ...string) []connectors.FieldError {
	var errs []connectors.FieldError
	for _, f := range fields {
		if cfg.String(f) == "" {
			errs = append(errs, connectors.FieldError{Field: f, Reason: "required " + why})
		}
	}
	return errs
}

// Unused names each of fields that cfg sets although they are not used
// ("used only with mode app").
func Unused(cfg connectors.Config, why string, fields ...string) []connectors.FieldError {
	var errs []connectors.FieldError
	for _, f := range fields {
		if v, ok := cfg[f]; ok && v != "" && v != false {
			errs = append(errs, connectors.FieldError{Field: f, Reason: "used only " + why})
		}
	}
	return errs
}
