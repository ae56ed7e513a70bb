package natsjs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/meshd/meshd/mesh"
	"github.com/nats-io/nats.go"
)

// Defaults for Config fields left at their zero value.
const (
	DefaultStream          = "MESHD"
	DefaultSubjectPrefix   = "meshd"
	DefaultReplicas        = 1
	DefaultMaxAge          = 72 * time.Hour
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultMaxConsumers    = 100_000
	// ephemeralIdle is how long an ephemeral consumer outlives a process
	// that died without closing it.
	ephemeralIdle         = time.Minute
	DefaultPublishTimeout = 5 * time.Second
	DefaultConnectTimeout = 5 * time.Second
)

// maxStreamName bounds stream and bucket names (a file store makes a
// directory of each).
const maxStreamName = 255

// Config configures an Engine. The zero value (plus URLs for Connect) is a
// working single-replica configuration.
type Config struct {
	// URLs of the NATS servers (Connect only), e.g. "nats://a:4222".
	URLs []string
	// Stream is the JetStream stream that holds every topic. Default "MESHD".
	Stream string
	// SubjectPrefix: topic T is stored on subject "<prefix>.t.T". Default "meshd".
	SubjectPrefix string
	// Replicas of the stream and of KV buckets. Default 1.
	Replicas int
	// MaxAge is how long events are kept. Default 72h; negative means forever.
	MaxAge time.Duration
	// MaxConsumers bounds the consumer groups and subscribers of the stream
	// (default 100000; NATS's own default is 1000, which a sidecar with a
	// thousand WebSocket subscribers reached).
	MaxConsumers int
	// MaxBytes bounds the stream size; the oldest events are dropped first.
	// 0 or negative means unlimited.
	MaxBytes int64
	// DuplicateWindow is how long a published event's topic+source+id is
	// remembered to drop re-publishes. Default 2m.
	DuplicateWindow time.Duration
	// PublishTimeout bounds a Publish whose ctx has no deadline. Default 5s.
	PublishTimeout time.Duration
	// ConnectTimeout bounds dialling one server (Connect only). Default 5s.
	ConnectTimeout time.Duration
	// Name is the NATS client name, shown in server monitoring.
	Name string
	// GroupScope keeps consumer groups apart: groups of one name on one
	// topic are one group only within a scope (meshd sets the app id, so
	// two apps' subscriptions of one id do not share their events). A group
	// made before scopes is used as it is while it exists.
	GroupScope string
	// Edge, if set, makes this the store of an edge whose server is a leaf
	// node of a hub (mesh/embedded sets it; see edge.go).
	Edge *EdgeConfig

	// Credentials (Connect only; at most one kind). CredsFile is a NATS
	// credentials file (user JWT and NKey seed).
	CredsFile string
	// NKeyFile is a file holding a user NKey seed ("SU..."): the server
	// knows the user by its public key.
	NKeyFile string
	// User and Password authenticate with a user/password pair.
	User     string
	Password string `json:"-"`
	// Token authenticates with a bearer token.
	Token string `json:"-"`
	// TLS, if set, is used for the connection (trusted CAs, a client
	// certificate, the server name); a server that requires TLS gets it
	// with the system's CAs otherwise.
	TLS *tls.Config `json:"-"`

	// ConsumeConn, if set, carries the consumers' pulls and acks, so a
	// flood of publishes and the deliveries do not queue behind each other
	// on one connection (the caller owns it; nil: the engine's connection).
	ConsumeConn *nats.Conn

	// Logger receives connection events and undecodable messages. Default: discard.
	Logger *slog.Logger
}

// withDefaults returns cfg with zero fields set to their defaults.
func (cfg Config) withDefaults() Config {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = DefaultSubjectPrefix
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = DefaultReplicas
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MaxConsumers <= 0 {
		cfg.MaxConsumers = DefaultMaxConsumers
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = -1
	}
	if cfg.DuplicateWindow == 0 {
		cfg.DuplicateWindow = DefaultDuplicateWindow
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// credentialKinds names the kinds of credentials cfg sets.
func (cfg Config) credentialKinds() []string {
	var kinds []string
	for _, k := range []struct {
		name string
		set  bool
	}{{"credsFile", cfg.CredsFile != ""}, {"nkeyFile", cfg.NKeyFile != ""}, {"user", cfg.User != ""}, {"token", cfg.Token != ""}} {
		if k.set {
			kinds = append(kinds, k.name)
		}
	}
	return kinds
}

// Validate reports the first invalid field of cfg (after defaults).
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	var errs []error
	if !mesh.IsToken(cfg.Stream, maxStreamName) {
		errs = append(errs, fmt.Errorf("stream %q: want letters, digits, '-' and '_'", cfg.Stream))
	}
	if !mesh.IsName(cfg.SubjectPrefix, mesh.MaxTopicLen) {
		errs = append(errs, fmt.Errorf("subjectPrefix %q: want dot-separated tokens of letters, digits, '-' and '_'", cfg.SubjectPrefix))
	}
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: want 1 to 5", cfg.Replicas))
	}
	if cfg.DuplicateWindow < 0 {
		errs = append(errs, fmt.Errorf("duplicateWindow %s: must not be negative", cfg.DuplicateWindow))
	}
	if cfg.MaxAge > 0 && cfg.DuplicateWindow > cfg.MaxAge {
		errs = append(errs, fmt.Errorf("duplicateWindow %s: must not exceed maxAge %s", cfg.DuplicateWindow, cfg.MaxAge))
	}
	if cfg.PublishTimeout < 0 {
		errs = append(errs, fmt.Errorf("publishTimeout %s: must not be negative", cfg.PublishTimeout))
	}
	if cfg.Edge != nil {
		if err := cfg.Edge.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if kinds := cfg.credentialKinds(); len(kinds) > 1 {
		errs = append(errs, fmt.Errorf("%s: set one kind of credentials, not several", strings.Join(kinds, ", ")))
	}
	if cfg.Password != "" && cfg.User == "" {
		errs = append(errs, errors.New("password: needs user"))
	}
	return errors.Join(errs...)
}
