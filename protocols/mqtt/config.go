// Package mqtt bridges MQTT 3.1.1 brokers and the mesh: meshd connects as a
// client (eclipse/paho.mqtt.golang), turns messages on subscribed topic
// filters into CloudEvents on mesh topics (inbound), and publishes events of
// mesh topics to MQTT topics in structured mode (outbound). QoS 1 messages
// are acknowledged to the broker only after the mesh stored them, and to the
// mesh only after the broker acknowledged them. See docs/mqtt.md.
package mqtt

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/tlsconf"
	"github.com/meshd/meshd/mesh"
)

// Defaults of LinkConfig.
const (
	DefaultKeepAlive            = 30 * time.Second
	DefaultConnectTimeout       = 10 * time.Second
	DefaultPublishTimeout       = 10 * time.Second
	DefaultMaxReconnectInterval = 30 * time.Second
	DefaultOutboundMaxInFlight  = 16
	DefaultWrappedType          = "meshd.mqtt"
)

// LinkConfig is one broker connection (the mqtt: list of the config file).
type LinkConfig struct {
	// Name identifies the bridge in logs, metrics and default group names.
	Name string `yaml:"name" json:"name"`
	// Broker is the broker URL: tcp://host:1883, ssl:// (or tls://,
	// mqtts://) for TLS, ws:// or wss://.
	Broker string `yaml:"broker" json:"broker"`
	// ClientID is the MQTT client id; it keys the broker session, so keep it
	// stable across restarts (default "meshd-<name>").
	ClientID string `yaml:"clientId" json:"clientId,omitempty"`
	Username string `yaml:"username" json:"username,omitempty"`
	Password Secret `yaml:"password" json:"password,omitempty"`
	TLS      TLS    `yaml:"tls" json:"tls,omitempty"`
	// KeepAlive is the MQTT keep-alive interval (default 30s).
	KeepAlive time.Duration `yaml:"keepAlive" json:"keepAlive,omitempty"`
	// ConnectTimeout bounds one connection attempt (default 10s).
	ConnectTimeout time.Duration `yaml:"connectTimeout" json:"connectTimeout,omitempty"`
	// MaxReconnectInterval caps the reconnect backoff (default 30s).
	MaxReconnectInterval time.Duration `yaml:"maxReconnectInterval" json:"maxReconnectInterval,omitempty"`
	// PublishTimeout bounds waiting for the broker's PUBACK (outbound) and
	// for the mesh to store a message (inbound) before retrying (default 10s).
	PublishTimeout time.Duration `yaml:"publishTimeout" json:"publishTimeout,omitempty"`
	// AckWait is the mesh redelivery time of outbound events (default 30s);
	// it must exceed PublishTimeout.
	AckWait  time.Duration `yaml:"ackWait" json:"ackWait,omitempty"`
	Inbound  []Inbound     `yaml:"inbound" json:"inbound,omitempty"`
	Outbound []Outbound    `yaml:"outbound" json:"outbound,omitempty"`
	// Backoff spaces retries of inbound stores and outbound publishes (the
	// sidecar's delivery.backoff* settings; zero: bridge.DefaultBackoff).
	Backoff bridge.Backoff `yaml:"-" json:"-"`
}

// TLS configures TLS to the broker (ssl://, tls://, mqtts://, wss://).
type TLS = tlsconf.Client

// Inbound maps MQTT topic filters to a mesh topic.
type Inbound struct {
	// Filter is an MQTT topic filter, e.g. "sensors/+/temperature".
	Filter string `yaml:"filter" json:"filter"`
	// QoS of the subscription: 0 or 1.
	QoS int `yaml:"qos" json:"qos"`
	// Topic is the mesh topic the events are published to.
	Topic string `yaml:"topic" json:"topic"`
	// Type is the type of wrapped (non-CloudEvent) payloads (default "meshd.mqtt").
	Type string `yaml:"type" json:"type,omitempty"`
	// ContentType is the datacontenttype of wrapped payloads (default:
	// application/json for JSON, text/plain for other UTF-8, else
	// application/octet-stream).
	ContentType string `yaml:"contentType" json:"contentType,omitempty"`
}

// Outbound publishes the events of a mesh topic to MQTT.
type Outbound struct {
	// Topic is the mesh topic consumed.
	Topic string `yaml:"topic" json:"topic"`
	// Group is the mesh consumer group (default "mqtt-<name>-<topic>").
	Group string `yaml:"group" json:"group,omitempty"`
	// Filters select the events (CloudEvents Subscriptions API dialects);
	// others are acked and skipped.
	Filters []map[string]any `yaml:"filters" json:"filters,omitempty"`
	// MQTTTopic is the MQTT topic template: {attribute} is replaced by the
	// event's attribute or extension, e.g. "devices/{subject}/cmd".
	MQTTTopic string `yaml:"mqttTopic" json:"mqttTopic"`
	// QoS of the publishes: 0 or 1.
	QoS int `yaml:"qos" json:"qos"`
	// Retain sets the MQTT retain flag.
	Retain bool `yaml:"retain" json:"retain,omitempty"`
	// MaxInFlight bounds publishes awaiting the broker's ack (default 16);
	// 1 publishes strictly in order.
	MaxInFlight int `yaml:"maxInFlight" json:"maxInFlight,omitempty"`
	// MaxAttempts is the most publishes of an event the broker refused or
	// did not confirm before it is dead-lettered (default 0: retry for as
	// long as the mesh keeps it). A broken connection spends no attempts.
	MaxAttempts int `yaml:"maxAttempts" json:"maxAttempts,omitempty"`
	// DeadLetterTopic receives events given up on (an event whose MQTT
	// topic cannot be rendered, or after MaxAttempts); none: dropped.
	DeadLetterTopic string `yaml:"deadLetterTopic" json:"deadLetterTopic,omitempty"`
}

// Secret is a string that is never printed or logged.
type Secret string

func (Secret) String() string { return "<redacted>" }

// LogValue keeps the secret out of slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue("<redacted>") }

// MarshalJSON keeps the secret out of API answers.
func (s Secret) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte(`""`), nil
	}
	return []byte(`"<redacted>"`), nil
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c LinkConfig) WithDefaults() LinkConfig {
	if c.ClientID == "" {
		c.ClientID = "meshd-" + c.Name
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxReconnectInterval <= 0 {
		c.MaxReconnectInterval = DefaultMaxReconnectInterval
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.AckWait <= 0 {
		c.AckWait = mesh.DefaultAckWait
	}
	c.Inbound = append([]Inbound(nil), c.Inbound...)
	for i := range c.Inbound {
		if c.Inbound[i].Type == "" {
			c.Inbound[i].Type = DefaultWrappedType
		}
	}
	c.Outbound = append([]Outbound(nil), c.Outbound...)
	for i := range c.Outbound {
		o := &c.Outbound[i]
		if o.Group == "" {
			o.Group = "mqtt-" + c.Name + "-" + o.Topic
		}
		if o.MaxInFlight <= 0 {
			o.MaxInFlight = DefaultOutboundMaxInFlight
		}
	}
	return c
}

// Validate names the first bad field, prefixed with the bridge's name.
func (c LinkConfig) Validate() error {
	err := c.WithDefaults().validate()
	if err != nil {
		return fmt.Errorf("mqtt %q: %w", c.Name, err)
	}
	return nil
}

func (c LinkConfig) validate() error {
	if !mesh.IsToken(c.Name, 100) {
		return errors.New("name: want letters, digits, '-' and '_'")
	}
	u, err := url.Parse(c.Broker)
	if err != nil || u.Host == "" {
		return fmt.Errorf("broker %q: want a URL such as tcp://127.0.0.1:1883", c.Broker)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return fmt.Errorf("broker %q: scheme %q is not one of tcp, mqtt, ssl, tls, mqtts, ws, wss", c.Broker, u.Scheme)
	}
	if len(c.ClientID) > 23 {
		// MQTT 3.1.1 brokers must accept 1-23 characters; most accept more.
		if !mesh.IsToken(c.ClientID, 100) {
			return fmt.Errorf("clientId %q: want letters, digits, '-' and '_'", c.ClientID)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls.certFile and tls.keyFile: set both or neither")
	}
	if c.AckWait <= c.PublishTimeout {
		return fmt.Errorf("ackWait (%s) must exceed publishTimeout (%s)", c.AckWait, c.PublishTimeout)
	}
	if len(c.Inbound) == 0 && len(c.Outbound) == 0 {
		return errors.New("inbound, outbound: configure at least one")
	}
	for i, in := range c.Inbound {
		p := fmt.Sprintf("inbound[%d]", i)
		if err := validateFilter(in.Filter); err != nil {
			return fmt.Errorf("%s.filter: %w", p, err)
		}
		if in.QoS != 0 && in.QoS != 1 {
			return fmt.Errorf("%s.qos: %d is not 0 or 1", p, in.QoS)
		}
		if err := mesh.ValidateTopic(in.Topic); err != nil {
			return fmt.Errorf("%s.topic: %w", p, err)
		}
	}
	for i, o := range c.Outbound {
		p := fmt.Sprintf("outbound[%d]", i)
		if err := mesh.ValidateTopic(o.Topic); err != nil {
			return fmt.Errorf("%s.topic: %w", p, err)
		}
		if _, err := parseTemplate(o.MQTTTopic); err != nil {
			return fmt.Errorf("%s.mqttTopic: %w", p, err)
		}
		if o.QoS != 0 && o.QoS != 1 {
			return fmt.Errorf("%s.qos: %d is not 0 or 1", p, o.QoS)
		}
		if _, err := bridge.CompileFilters(o.Filters); err != nil {
			return fmt.Errorf("%s.%w", p, err)
		}
		if o.MaxAttempts < 0 {
			return fmt.Errorf("%s.maxAttempts: must not be negative", p)
		}
		if o.DeadLetterTopic != "" {
			if err := mesh.ValidateTopic(o.DeadLetterTopic); err != nil {
				return fmt.Errorf("%s.deadLetterTopic: %w", p, err)
			}
		}
	}
	return nil
}

// validateFilter checks an MQTT topic filter: '+' and '#' fill whole levels,
// '#' only last.
func validateFilter(f string) error {
	if f == "" || len(f) > 65535 || strings.ContainsRune(f, 0) {
		return fmt.Errorf("%q: want a non-empty MQTT topic filter", f)
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) != 1 {
			return fmt.Errorf("%q: wildcards + and # must fill a whole level", f)
		}
		if l == "#" && i != len(levels)-1 {
			return fmt.Errorf("%q: # must be the last level", f)
		}
	}
	return nil
}

// matchFilter reports whether an MQTT topic matches a topic filter
// (MQTT 3.1.1 section 4.7; topics starting with '$' match no leading
// wildcard).
func matchFilter(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fl := strings.Split(filter, "/")
	tl := strings.Split(topic, "/")
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i >= len(tl) {
			return false
		}
		if f != "+" && f != tl[i] {
			return false
		}
	}
	return len(fl) == len(tl)
}
