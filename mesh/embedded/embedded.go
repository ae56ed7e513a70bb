// Package embedded runs a NATS server with JetStream inside the meshd
// process and serves the mesh from it through mesh/natsjs: the default
// single-host mode, durable across restarts, with no network port unless
// Config.Listen asks for one.
package embedded

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

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
	Listen string
	// SyncAlways makes the store fsync every write instead of periodically.
	SyncAlways bool
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
	}
	if err := cfg.Mesh.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("mesh: %w", err))
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
	}
	if cfg.Listen != "" {
		opts.Host, opts.Port, _ = splitListen(cfg.Listen)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("starting embedded nats: %w", err)
	}
	debug := log.Enabled(ctx, slog.LevelDebug)
	srv.SetLoggerV2(&serverLog{log: log.With("component", "nats-server"), debug: debug}, debug, false, false)
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
	nc, err := nats.Connect("", nats.InProcessServer(srv),
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
	)
	if err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("connecting to embedded nats: %w", err)
	}
	eng, err := natsjs.New(ctx, nc, cfg.Mesh)
	if err != nil {
		nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, err
	}
	return &Engine{Engine: eng, srv: srv, nc: nc}, nil
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
		_ = e.Engine.Close()
		if e.nc.IsConnected() {
			_ = e.nc.FlushTimeout(time.Second)
		}
		e.nc.Close()
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
}

func (l *serverLog) Noticef(format string, v ...any) {
	if l.debug {
		l.log.Debug(fmt.Sprintf(format, v...))
	}
}
func (l *serverLog) Warnf(format string, v ...any)  { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLog) Fatalf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLog) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLog) Debugf(format string, v ...any) {
	if l.debug {
		l.log.Debug(fmt.Sprintf(format, v...))
	}
}
func (l *serverLog) Tracef(string, ...any) {}
