// Package jetstream is the mesh engine on NATS JetStream.
//
// All topics live in one stream (Config.Stream) on subjects
// "<prefix>.t.<topic>"; a consumer group is a durable pull consumer filtered
// on its topic's subject; a KV bucket is a JetStream key/value bucket.
package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/mesh"
)

var _ mesh.Engine = (*Engine)(nil)

// maxCachedTopics bounds the cache of validated topic subjects: topics come
// from request paths, so the cache must not grow without limit.
const maxCachedTopics = 4096

// readyTimeout bounds the JetStream round trip made by Ready.
const readyTimeout = 2 * time.Second

// Engine is a mesh.Engine on a NATS JetStream server or cluster.
type Engine struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	cjs     jetstream.JetStream // consumers' pulls and acks (cfg.ConsumeConn, else js)
	cnc     *nats.Conn          // cjs's connection
	cfg     Config
	log     *slog.Logger
	ownConn bool // Close closes nc
	prefix  string

	closed atomic.Bool
	done   chan struct{} // closed by Close: ends key/value watches

	reconnMu sync.Mutex
	reconn   chan struct{} // closed at the next reconnect of nc; nil until asked for

	subjects   sync.Map // topic → subject, for validated topics
	nSubjects  atomic.Int64
	buckets    sync.Map // bucket name → *kvBucket
	bucketsMu  sync.Mutex
	dups       sync.Map   // topic → *atomic.Int64: publishes acknowledged as duplicates
	consumerMu sync.Mutex // guards consumers; never held while calling into a consumer's iterator
	consumers  map[*consumer]struct{}
}

// Connect dials the NATS servers in cfg.URLs and returns an engine that owns
// the connection. The connection reconnects forever; while it is down,
// Publish fails at once with an error wrapping mesh.ErrUnavailable.
func Connect(ctx context.Context, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("jetstream config: %w", err)
	}
	cfg = cfg.withDefaults()
	if len(cfg.URLs) == 0 {
		return nil, errors.New("jetstream config: urls: at least one server URL is required")
	}
	log := cfg.Logger
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectBufSize(-1), // fail publishes while disconnected instead of buffering them
		nats.Timeout(cfg.ConnectTimeout),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			log.Warn("nats disconnected", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			log.Warn("nats error", "error", err)
		}),
	}
	auth, err := cfg.authOptions()
	if err != nil {
		return nil, fmt.Errorf("jetstream config: %w", err)
	}
	opts = append(opts, auth...)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	nc, err := nats.Connect(strings.Join(cfg.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to nats: %w: %w", mesh.ErrUnavailable, err)
	}
	e, err := newEngine(ctx, nc, cfg, true)
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetReconnectHandler(func(nc *nats.Conn) {
		log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		e.noteReconnect()
	})
	return e, nil
}

// New returns an engine on an existing connection, which the caller keeps
// owning: Close does not close it. cfg.URLs and the auth fields are ignored.
func New(ctx context.Context, nc *nats.Conn, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("jetstream config: %w", err)
	}
	return newEngine(ctx, nc, cfg.withDefaults(), false)
}

func newEngine(ctx context.Context, nc *nats.Conn, cfg Config, own bool) (*Engine, error) {
	js, err := jetstream.New(nc,
		jetstream.WithDefaultTimeout(cfg.PublishTimeout),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(asyncWindow),
	)
	if err != nil {
		return nil, fmt.Errorf("opening jetstream: %w", err)
	}
	cjs, cnc := js, nc
	if cc := cfg.ConsumeConn; cc != nil && cc != nc {
		cnc = cc
		if cjs, err = jetstream.New(cc, jetstream.WithDefaultTimeout(cfg.PublishTimeout)); err != nil {
			return nil, fmt.Errorf("opening jetstream: %w", err)
		}
	}
	e := &Engine{
		nc:        nc,
		js:        js,
		cjs:       cjs,
		cnc:       cnc,
		cfg:       cfg,
		log:       cfg.Logger,
		ownConn:   own,
		prefix:    cfg.SubjectPrefix + ".t.",
		consumers: make(map[*consumer]struct{}),
		done:      make(chan struct{}),
	}
	if err := e.ensureStream(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// ensureStream creates the stream or updates its limits, keeping its data.
func (e *Engine) ensureStream(ctx context.Context) error {
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	sc := e.streamConfig()
	if e.cfg.Edge != nil {
		sc.Sources = e.edgeSources(ctx)
	}
	if _, err := e.js.CreateOrUpdateStream(ctx, sc); err != nil {
		return fmt.Errorf("creating stream %q: %w", e.cfg.Stream, e.classify(ctx, err))
	}
	return nil
}

// streamConfig is the configuration of the events stream.
func (e *Engine) streamConfig() jetstream.StreamConfig {
	maxAge := e.cfg.MaxAge
	if maxAge < 0 {
		maxAge = 0
	}
	return jetstream.StreamConfig{
		Name:         e.cfg.Stream,
		Description:  "meshd events",
		Subjects:     []string{e.prefix + ">"},
		Retention:    jetstream.LimitsPolicy,
		Storage:      jetstream.FileStorage,
		Discard:      jetstream.DiscardOld,
		Replicas:     e.cfg.Replicas,
		MaxAge:       maxAge,
		MaxBytes:     e.cfg.MaxBytes,
		MaxMsgs:      -1,
		Duplicates:   e.cfg.DuplicateWindow,
		MaxConsumers: e.cfg.MaxConsumers,
	}
}

// withTimeout bounds ctx by the publish timeout unless it has a deadline.
func (e *Engine) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, e.cfg.PublishTimeout)
}

// subject returns the subject of topic, validating it once.
func (e *Engine) subject(topic string) (string, error) {
	if s, ok := e.subjects.Load(topic); ok {
		return s.(string), nil
	}
	if err := mesh.ValidateTopic(topic); err != nil {
		return "", err
	}
	s := e.prefix + topic
	if e.nSubjects.Load() < maxCachedTopics {
		if _, loaded := e.subjects.LoadOrStore(topic, s); !loaded {
			e.nSubjects.Add(1)
		}
	}
	return s, nil
}

// reconnected returns a channel closed when the connection next reconnects
// (to the same server or another one of the cluster).
func (e *Engine) reconnected() <-chan struct{} {
	e.reconnMu.Lock()
	defer e.reconnMu.Unlock()
	if e.reconn == nil {
		e.reconn = make(chan struct{})
	}
	return e.reconn
}

func (e *Engine) noteReconnect() {
	e.reconnMu.Lock()
	defer e.reconnMu.Unlock()
	if e.reconn != nil {
		close(e.reconn)
		e.reconn = nil
	}
}

// Conn returns the engine's NATS connection.
func (e *Engine) Conn() *nats.Conn { return e.nc }

// Ready reports whether the connection is up and JetStream answers.
func (e *Engine) Ready(ctx context.Context) error {
	if e.closed.Load() {
		return mesh.ErrClosed
	}
	if st := e.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: nats connection %s", mesh.ErrUnavailable, st)
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if _, err := e.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("checking jetstream: %w", e.classify(ctx, err))
	}
	return nil
}

// DeleteGroup removes the durable consumer of group on topic.
func (e *Engine) DeleteGroup(ctx context.Context, topic, group string) error {
	if e.closed.Load() {
		return mesh.ErrClosed
	}
	if _, err := e.subject(topic); err != nil {
		return err
	}
	if group == "" {
		return errors.New("deleting group: empty group name")
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	name, err := e.durable(ctx, group, topic)
	if err == nil {
		err = e.js.DeleteConsumer(ctx, e.cfg.Stream, name)
	}
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("deleting group %q on %q: %w", group, topic, e.classify(ctx, err))
	}
	return nil
}

// Close stops every consumer opened from e and, if e owns it, flushes and
// closes the connection. It is idempotent.
func (e *Engine) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(e.done)
	e.consumerMu.Lock()
	cs := make([]*consumer, 0, len(e.consumers))
	for c := range e.consumers {
		cs = append(cs, c)
	}
	e.consumerMu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
	if e.ownConn {
		if e.nc.IsConnected() {
			_ = e.nc.FlushTimeout(time.Second) // send pending acks
		}
		e.nc.Close()
	}
	return nil
}

// classify wraps err with mesh.ErrUnavailable unless it is the caller's
// cancellation, the engine being closed, or a request the server rejects
// for its content.
func (e *Engine) classify(ctx context.Context, err error) error {
	switch {
	case e.closed.Load():
		return fmt.Errorf("%w: %w", mesh.ErrClosed, err)
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return err
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: %w", mesh.ErrTooLarge, err)
	case errors.Is(err, &jetstream.APIError{ErrorCode: jetstream.JSErrCodeMaximumConsumersLimit}):
		return fmt.Errorf("%w: the stream has as many consumers as it may (mesh.maxConsumers): %w", mesh.ErrLimit, err)
	case errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrInvalidArg), errors.Is(err, jetstream.ErrInvalidOption),
		errors.Is(err, mesh.ErrInvalidTopic), errors.Is(err, jetstream.ErrMsgAlreadyAckd):
		return err
	default:
		return fmt.Errorf("%w: %w", mesh.ErrUnavailable, err)
	}
}
