// Package embedded runs a NATS server with JetStream inside the meshd
// process and serves the mesh from it through mesh/natsjs: the default
// single-host mode, durable across restarts, with no network port unless
// Config.Listen asks for one.
package embedded

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/natsjs"
)

var _ mesh.Engine = (*Engine)(nil)

// DefaultStartTimeout bounds server start-up when ctx has no deadline.
const DefaultStartTimeout = 30 * time.Second

// MaxPayload is the embedded server's max_payload: the largest event,
// attributes and data, the embedded mesh stores (8 MiB; NATS advises
// against more). An external cluster has its own (1 MiB by default).
const MaxPayload = 8 << 20

// Config configures the embedded server and its engine.
type Config struct {
	// DataDir holds the JetStream store (in DataDir/jetstream). Required.
	DataDir string
	// Listen is a host:port on which other processes can reach the server
	// (e.g. "127.0.0.1:4222"; port 0 picks a free one). Empty: no socket.
	// Clients there must authenticate (Token, or User and Password) unless
	// NoAuth says otherwise.
	Listen string
	// Token is the token every client must present. The engine's own
	// in-process connection presents it too.
	Token string `json:"-"`
	// User and Password are the user/password pair every client must
	// present (instead of a token).
	User     string
	Password string `json:"-"`
	// NoAuth lets clients on Listen connect without credentials: anyone who
	// reaches the port can then read, publish and delete every stream and
	// key/value bucket. Without Listen it changes nothing.
	NoAuth bool
	// TLS, if set, makes clients on Listen speak TLS (with a ClientAuth
	// that requires certificates, mutual TLS). The in-process connection
	// does not need it.
	TLS *tls.Config `json:"-"`
	// SyncAlways makes the store fsync every write instead of periodically.
	SyncAlways bool
	// Leaf, if set, makes the server a leaf node of a hub with its own
	// JetStream domain (edge mode, see leaf.go).
	Leaf *LeafConfig
	// Mesh configures the stream, subjects and limits. URLs and the auth
	// and TLS fields are ignored. Mesh.Logger defaults to Logger.
	Mesh natsjs.Config
	// Logger receives server warnings and errors, and server notices when
	// it is enabled at debug level. Default: discard.
	Logger *slog.Logger
}

// Validate reports the first invalid field of cfg.
func (cfg Config) Validate() error {
	var errs []error
	if cfg.DataDir == "" {
		errs = append(errs, errors.New("dataDir: required"))
	}
	if cfg.Listen != "" {
		if _, _, err := splitListen(cfg.Listen); err != nil {
			errs = append(errs, fmt.Errorf("listen %q: %w", cfg.Listen, err))
		}
		if cfg.Token == "" && cfg.User == "" && !cfg.NoAuth {
			errs = append(errs, errors.New("listen: clients must authenticate: set token, or user and password (or noAuth, which lets anyone who reaches the port read and delete everything)"))
		}
	}
	switch {
	case cfg.Token != "" && cfg.User != "":
		errs = append(errs, errors.New("token, user: set one, not both"))
	case cfg.NoAuth && (cfg.Token != "" || cfg.User != ""):
		errs = append(errs, errors.New("noAuth: cannot be combined with token or user"))
	case (cfg.User == "") != (cfg.Password == ""):
		errs = append(errs, errors.New("user, password: set both or neither"))
	}
	if err := cfg.Mesh.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("mesh: %w", err))
	}
	if cfg.Leaf != nil {
		if err := cfg.Leaf.validate(); err != nil {
			errs = append(errs, fmt.Errorf("leaf: %w", err))
		}
	}
	return errors.Join(errs...)
}

func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want 0 to 65535", p)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// Engine is a natsjs.Engine on an in-process NATS server.
type Engine struct {
	*natsjs.Engine
	srv       *server.Server
	nc        *nats.Conn
	cc        *nats.Conn // the consumers' connection
	log       *slog.Logger
	srvLog    *serverLog
	dir       string
	stop      chan struct{}      // closed by Close: ends watchStore
	stopSync  context.CancelFunc // ends syncHub (edge mode)
	hubSynced atomic.Bool        // see HubSynced
	watch     sync.WaitGroup
	closeOnce sync.Once
}

// Open starts the server on cfg.DataDir, connects to it in-process and
// opens the engine. The server name is derived from the data dir, so a
// restart on the same dir finds its store again.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("embedded config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Mesh.Logger == nil {
		cfg.Mesh.Logger = log
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("embedded data dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded data dir: %w", err)
	}
	sum := sha256.Sum256([]byte(dir))
	opts := &server.Options{
		ServerName: "meshd-" + hex.EncodeToString(sum[:6]),
		JetStream:  true,
		StoreDir:   dir, // the server stores in dir/jetstream
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
		DontListen: cfg.Listen == "",
		// Room for the app API's largest body (4 MiB by default) with its
		// attributes; NATS's own default is 1 MiB.
		MaxPayload: MaxPayload,
		// The disk is the limit, not 75% of what was free at start (NATS's
		// default): that made the store refuse writes for good once full,
		// even after space was freed.
		JetStreamMaxStore: diskSize(dir),
	}
	if cfg.Listen != "" {
		opts.Host, opts.Port, _ = splitListen(cfg.Listen)
	}
	opts.Authorization, opts.Username, opts.Password = cfg.Token, cfg.User, cfg.Password
	if cfg.Leaf != nil {
		if err := cfg.Leaf.apply(opts, cfg.Mesh); err != nil {
			return nil, fmt.Errorf("embedded config: leaf: %w", err)
		}
		cfg.Mesh.Edge = &natsjs.EdgeConfig{Domain: cfg.Leaf.Domain, HubDomain: cfg.Leaf.HubDomain}
	}
	if cfg.TLS != nil {
		opts.TLS, opts.TLSConfig = true, cfg.TLS.Clone()
		opts.TLSVerify = cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("starting embedded nats: %w", err)
	}
	debug := log.Enabled(ctx, slog.LevelDebug)
	srvLog := &serverLog{log: log.With("component", "nats-server"), debug: debug}
	srv.SetLoggerV2(srvLog, debug, false, false)
	srv.Start()

	wait := DefaultStartTimeout
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("starting embedded nats: %w: not ready after %s", mesh.ErrUnavailable, wait.Round(time.Millisecond))
	}
	name := cfg.Mesh.Name
	if name == "" {
		name = "meshd"
	}
	var auth []nats.Option
	switch {
	case cfg.Token != "":
		auth = append(auth, nats.Token(cfg.Token))
	case cfg.User != "":
		auth = append(auth, nats.UserInfo(cfg.User, cfg.Password))
	}
	connect := func(name string) (*nats.Conn, error) {
		return nats.Connect("", append(auth, nats.InProcessServer(srv),
			nats.Name(name),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(250*time.Millisecond),
			nats.ReconnectBufSize(-1),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				log.Warn("embedded nats connection error", "error", err)
			}),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					log.Warn("embedded nats disconnected", "error", err)
				}
			}),
		)...)
	}
	// Two connections: publishes on one, the consumers' pulls and acks on
	// the other, so neither queues behind the other.
	nc, err := connect(name)
	if err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("connecting to embedded nats: %w", err)
	}
	cc, err := connect(name + "-consume")
	if err != nil {
		nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("connecting to embedded nats: %w", err)
	}
	mcfg := cfg.Mesh
	mcfg.ConsumeConn = cc
	eng, err := natsjs.New(ctx, nc, mcfg)
	if err != nil {
		cc.Close()
		nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, err
	}
	e := &Engine{Engine: eng, srv: srv, nc: nc, cc: cc, log: log, srvLog: srvLog, stop: make(chan struct{}), dir: dir}
	e.watch.Add(1)
	go e.watchStore()
	if cfg.Leaf != nil {
		ctx, cancel := context.WithCancel(context.Background())
		e.stopSync = cancel
		e.watch.Go(func() { e.syncHub(ctx, cfg.Leaf.syncEvery()) })
	}
	return e, nil
}

// storeCheck is how often the engine checks that JetStream still runs.
const storeCheck = 2 * time.Second

// minFreeToRestart is the free space the store must have again before
// JetStream is restarted after running out of disk: a tenth of the disk, at
// most 16 MiB.
func minFreeToRestart(dir string) int64 { return min(16<<20, diskSize(dir)/10) }

// watchStore restarts JetStream after the disk was full, once there is
// room again: a stream whose write failed refuses every later write, and
// the server may have disabled JetStream altogether; neither recovers by
// itself. Meanwhile Ready reports not ready and publishes fail with a 503.
func (e *Engine) watchStore() {
	defer e.watch.Done()
	t := time.NewTicker(storeCheck)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		broken := e.srvLog.storeFull.Load() || !e.srv.JetStreamEnabled()
		if !broken || diskFree(e.dir) < minFreeToRestart(e.dir) {
			continue
		}
		cfg := server.JetStreamConfig{MaxMemory: -1}
		if cur := e.srv.JetStreamConfig(); cur != nil {
			cfg = *cur
		}
		// EnableJetStream adds "jetstream" to the store dir again.
		cfg.StoreDir, cfg.MaxStore = e.dir, diskSize(e.dir)
		if err := e.srv.ShutdownJetStream(); err != nil {
			e.log.Warn("stopping the embedded store to restart it after the disk was full", "error", err)
			continue
		}
		e.srvLog.storeFull.Store(false)
		if err := e.srv.EnableJetStream(&cfg); err != nil {
			e.log.Warn("restarting the embedded store after the disk was full", "error", err)
			continue
		}
		e.log.Info("embedded store restarted: there is room on the disk again")
	}
}

// Publish fails at once while the store cannot write, instead of after the
// publish timeout.
func (e *Engine) Publish(ctx context.Context, topic string, events []*event.Event, opts ...mesh.PublishOption) error {
	if e.srvLog.storeFull.Load() {
		return fmt.Errorf("publishing to %q: %w: the embedded store cannot write: the disk holding %s is full", topic, mesh.ErrUnavailable, e.dir)
	}
	return e.Engine.Publish(ctx, topic, events, opts...)
}

// Ready reports not ready while the store cannot write (the disk was full
// and watchStore has not restarted it yet).
func (e *Engine) Ready(ctx context.Context) error {
	if e.srvLog.storeFull.Load() || !e.srv.JetStreamEnabled() {
		return fmt.Errorf("%w: the embedded store cannot write: the disk holding %s is full", mesh.ErrUnavailable, e.dir)
	}
	return e.Engine.Ready(ctx)
}

// ClientURL is the URL on which other processes reach the server, or ""
// when it does not listen.
func (e *Engine) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	addr, ok := e.srv.Addr().(*net.TCPAddr)
	if !ok {
		return ""
	}
	return "nats://" + addr.String()
}

// Close closes the engine, its connection and the server. Idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		close(e.stop)
		if e.stopSync != nil {
			e.stopSync()
		}
		e.watch.Wait()
		_ = e.Engine.Close()
		for _, c := range []*nats.Conn{e.cc, e.nc} {
			if c.IsConnected() {
				_ = c.FlushTimeout(time.Second)
			}
			c.Close()
		}
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
	})
	return nil
}

// serverLog adapts slog to the nats-server logger: warnings and errors
// always, notices and debug only when debug is on.
type serverLog struct {
	log   *slog.Logger
	debug bool
	// storeFull is set when the server reports that a write failed for
	// want of space; the store then refuses every write until JetStream is
	// restarted (watchStore does it once there is room again).
	storeFull atomic.Bool
}

// noteStoreError watches the server's errors for a full disk: the server
// tells it only in its log (a stream's write error is sticky and not in
// any API answer).
func (l *serverLog) noteStoreError(msg string) {
	if strings.Contains(msg, "no space left on device") || strings.Contains(msg, "out of space") ||
		strings.Contains(msg, "out of resources") || strings.Contains(msg, "out of file resources") {
		l.storeFull.Store(true)
	}
}

func (l *serverLog) Noticef(format string, v ...any) {
	if l.debug {
		l.log.Debug(fmt.Sprintf(format, v...))
	}
}
func (l *serverLog) Warnf(format string, v ...any)  { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLog) Fatalf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLog) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.noteStoreError(msg)
	l.log.Error(msg)
}
func (l *serverLog) Debugf(format string, v ...any) {
	if l.debug {
		l.log.Debug(fmt.Sprintf(format, v...))
	}
}
func (l *serverLog) Tracef(string, ...any) {}

// diskSize is the size of the file system holding dir (0: unknown, and the
// server picks its own limit).
func diskSize(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0
	}
	return int64(st.Blocks) * int64(st.Bsize)
}

// diskFree is the space free to us on the file system holding dir.
func diskFree(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
