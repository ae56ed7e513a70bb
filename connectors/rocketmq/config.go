// Package rocketmq holds the rocketmq-sink and rocketmq-source connectors
// for Apache RocketMQ 4.x and 5.x brokers (remoting protocol).
//
// The sink sends each event as a message with
// github.com/apache/rocketmq-client-go/v2 (v2.1.2): one producer per
// connector instance, synchronous sends, batches as batch sends; the
// CloudEvent's attributes travel as CE_ user properties (the mapping in
// mapping.go) and its data as the body.
//
// The source reads a topic's queues with pull requests of its own
// (package remoting) rather than the client's consumers, whose offsets
// live in the client: here the offset of each queue is kept in meshd's
// offset store and moves only once the mesh stored the events, so a
// source resumes exactly where the mesh stopped, and Stop does not wait
// for a broker's 20-second long poll. Messages are decoded with the
// client's primitive.DecodeMessage.
package rocketmq

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
)

// Connector types.
const (
	SinkType   = "rocketmq-sink"
	SourceType = "rocketmq-source"
)

// Config field names.
const (
	FieldNameServers      = "nameservers"
	FieldRocketTopic      = "rocketmq.topic"
	FieldGroup            = "group"
	FieldAccessKey        = "access.key"
	FieldSecretKey        = "secret.key"
	FieldNamespace        = "namespace"
	FieldTimeout          = "timeout"
	FieldTags             = "tags"
	FieldKeys             = "keys"
	FieldConsumeFrom      = "consume.from"
	FieldConsumeTimestamp = "consume.timestamp"
	FieldEventType        = "event.type"
	FieldEventID          = "event.id"
	FieldContentType      = "data.content.type"
	FieldPullBatch        = "pull.batch"
)

// Where a source starts in a queue its group has no offset for.
const (
	FromFirst     = "first"
	FromLast      = "last"
	FromTimestamp = "timestamp"
)

// What a source's event ids are.
const (
	IDMessageID = "msgid"
	IDKey       = "key"
)

// Defaults.
const (
	DefaultEventType   = "dev.meshd.rocketmq.message"
	DefaultContentType = "application/octet-stream"
	DefaultTimeout     = 10 * time.Second
)

// RocketMQ's name rules (TopicValidator, Validators): topics and groups are
// these characters, topics at most 127 long, groups 255.
var (
	nameRe      = regexp.MustCompile(`^[%|a-zA-Z0-9_-]+$`)
	namespaceRe = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
)

const (
	maxTopicLength = 127
	maxGroupLength = 255
)

func commonFields(topicDesc string) []connectors.Field {
	return []connectors.Field{
		{Name: FieldNameServers, Type: connectors.TypeList, Required: true, Description: "Name server addresses, IP:port (a list, or one string split at commas or semicolons)."},
		{Name: FieldRocketTopic, Type: connectors.TypeString, Required: true, Description: topicDesc},
		{Name: FieldGroup, Type: connectors.TypeString, Description: "Producer or consumer group (default meshd-<connector name>)."},
		{Name: FieldAccessKey, Type: connectors.TypeString, Description: "ACL access key (set with secret.key when the brokers have ACL on)."},
		{Name: FieldSecretKey, Type: connectors.TypeString, Secret: true, Description: "ACL secret key."},
		{Name: FieldNamespace, Type: connectors.TypeString, Description: "Namespace: topics and groups are namespace%name on the wire."},
		{Name: FieldTimeout, Type: connectors.TypeDuration, Default: DefaultTimeout, Description: "Bound of one call to a name server or broker (a send, a route lookup, an offset query)."},
	}
}

// SinkSpec is the registered spec of rocketmq-sink.
var SinkSpec = connectors.Spec{
	Name:    SinkType,
	Kind:    connectors.KindSink,
	Summary: "Sends each event as a RocketMQ message: CloudEvent attributes as CE_ properties, data as the body.",
	Fields: append(commonFields("Topic the messages are sent to: a template, {attribute} is replaced by the event's attribute or extension."),
		connectors.Field{Name: FieldTags, Type: connectors.TypeString, Description: "Tag of the messages: a template like rocketmq.topic (none when empty or when its attributes are missing)."},
		connectors.Field{Name: FieldKeys, Type: connectors.TypeString, Default: "{id}", Description: "Keys of the messages, separated by spaces: a template like rocketmq.topic."},
	),
	New:   func() connectors.Connector { return &sinkConnector{} },
	Check: checkSink,
}

// SourceSpec is the registered spec of rocketmq-source.
var SourceSpec = connectors.Spec{
	Name:    SourceType,
	Kind:    connectors.KindSource,
	Summary: "Reads a RocketMQ topic's queues, with offsets kept by meshd; each message becomes an event.",
	Fields: append(commonFields("Topic read."),
		connectors.Field{Name: FieldTags, Type: connectors.TypeString, Default: "*", Description: "Tag expression: * for every message, or tags joined by ||."},
		connectors.Field{Name: FieldConsumeFrom, Type: connectors.TypeString, Default: FromLast, Enum: []string{FromFirst, FromLast, FromTimestamp},
			Description: "Where to start in a queue that neither meshd nor the group on the broker has an offset for."},
		connectors.Field{Name: FieldConsumeTimestamp, Type: connectors.TypeString, Description: "RFC 3339 time to start at, with consume.from timestamp."},
		connectors.Field{Name: FieldEventType, Type: connectors.TypeString, Default: DefaultEventType, Description: "CloudEvents type of messages that carry no CE_type property."},
		connectors.Field{Name: FieldEventID, Type: connectors.TypeString, Default: IDMessageID, Enum: []string{IDMessageID, IDKey},
			Description: "Event id of messages that carry no CE_id property: the message id, or the first key (the message id when it has none)."},
		connectors.Field{Name: FieldContentType, Type: connectors.TypeString, Default: DefaultContentType, Description: "datacontenttype of messages that carry no CE_contenttype property."},
		connectors.Field{Name: FieldPullBatch, Type: connectors.TypeInt, Default: int64(32), Description: "Most messages per pull of a queue (1 to 1024; brokers send at most 32 from memory)."},
	),
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &SourceTask{} }, splitQueues)
	},
	Check: checkSource,
}

func init() {
	connectors.Register(SinkSpec)
	connectors.Register(SourceSpec)
}

// nameServers returns the configured name servers, split at commas and
// semicolons.
func nameServers(cfg connectors.Config) []string {
	var out []string
	for _, item := range cfg.Strings(FieldNameServers) {
		for _, a := range strings.Split(item, ";") {
			if a = strings.TrimSpace(a); a != "" {
				out = append(out, a)
			}
		}
	}
	return out
}

// group is the configured group, or meshd-<connector>.
func group(cfg connectors.Config, connector string) string {
	if g := cfg.String(FieldGroup); g != "" {
		return g
	}
	return "meshd-" + connector
}

func credentials(cfg connectors.Config) primitive.Credentials {
	return primitive.Credentials{AccessKey: cfg.String(FieldAccessKey), SecretKey: cfg.String(FieldSecretKey)}
}

// wrap puts the namespace in front of a topic or group, as the client
// does (utils.WrapNamespace).
func wrap(namespace, name string) string {
	if namespace == "" || strings.Contains(name, namespace+"%") {
		return name
	}
	return namespace + "%" + name
}

func checkTopicName(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("must not be empty")
	case len(topic) > maxTopicLength:
		return fmt.Errorf("%q is longer than %d characters", topic, maxTopicLength)
	case !nameRe.MatchString(topic):
		return fmt.Errorf("%q: topics are letters, digits, %%, |, _ and -", topic)
	}
	return nil
}

func checkCommon(cfg connectors.Config, hostNames bool) []connectors.FieldError {
	var errs []connectors.FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, connectors.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	addrs := nameServers(cfg)
	if len(addrs) == 0 {
		bad(FieldNameServers, "at least one name server is required")
	}
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			bad(FieldNameServers, "%q: want host:port", a)
		} else if !hostNames {
			if _, err := primitive.NewNamesrvAddr(a); err != nil {
				bad(FieldNameServers, "%q: want an IP address and port (rocketmq-client-go v2.1.2 refuses host names)", a)
			}
		}
	}
	if g := cfg.String(FieldGroup); g != "" && (len(g) > maxGroupLength || !nameRe.MatchString(g)) {
		bad(FieldGroup, "%q: groups are at most %d letters, digits, %%, |, _ and -", g, maxGroupLength)
	}
	if (cfg.String(FieldAccessKey) == "") != (cfg.String(FieldSecretKey) == "") {
		bad(FieldSecretKey, "access.key and secret.key go together")
	}
	if ns := cfg.String(FieldNamespace); ns != "" && !namespaceRe.MatchString(ns) {
		bad(FieldNamespace, "%q: namespaces are letters, digits, _ and -", ns)
	}
	if cfg.Duration(FieldTimeout) <= 0 {
		bad(FieldTimeout, "must be positive")
	}
	return errs
}

func checkSink(cfg connectors.Config) []connectors.FieldError {
	errs := checkCommon(cfg, false)
	for _, f := range []string{FieldRocketTopic, FieldTags, FieldKeys} {
		t, err := bridge.ParseTemplate(cfg.String(f))
		if err != nil {
			errs = append(errs, connectors.FieldError{Field: f, Reason: err.Error()})
			continue
		}
		if f == FieldRocketTopic && t.Literal() {
			if err := checkTopicName(cfg.String(f)); err != nil {
				errs = append(errs, connectors.FieldError{Field: f, Reason: err.Error()})
			}
		}
	}
	return errs
}

func checkSource(cfg connectors.Config) []connectors.FieldError {
	errs := checkCommon(cfg, true)
	bad := func(field, format string, args ...any) {
		errs = append(errs, connectors.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if err := checkTopicName(cfg.String(FieldRocketTopic)); err != nil {
		bad(FieldRocketTopic, "%v", err)
	}
	if strings.TrimSpace(cfg.String(FieldTags)) == "" {
		bad(FieldTags, "must not be empty (* reads every message)")
	}
	ts := cfg.String(FieldConsumeTimestamp)
	switch {
	case cfg.String(FieldConsumeFrom) == FromTimestamp && ts == "":
		bad(FieldConsumeTimestamp, "required with consume.from timestamp")
	case ts != "":
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			bad(FieldConsumeTimestamp, "%q is not an RFC 3339 time", ts)
		}
	}
	if cfg.String(FieldEventType) == "" {
		bad(FieldEventType, "must not be empty")
	}
	if ct := cfg.String(FieldContentType); ct == "" || strings.ContainsAny(ct, "\r\n") {
		bad(FieldContentType, "want a media type")
	}
	if n := cfg.Int(FieldPullBatch); n < 1 || n > 1024 {
		bad(FieldPullBatch, "%d is not between 1 and 1024", n)
	}
	return errs
}
