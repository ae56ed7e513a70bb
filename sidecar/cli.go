package sidecar

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/meshd/meshd/mesh"
)

// Version is set at build time with -ldflags "-X github.com/meshd/meshd/sidecar.Version=...".
var Version = "dev"

const (
	usageHead = `meshd — an event-mesh sidecar: CloudEvents in over HTTP, out to subscribers,
carried through a durable NATS JetStream mesh.

Usage:
  meshd run [--config FILE] [--api.listen ADDR ...]   start the sidecar (see meshd run -h)
  meshd publish --topic T --type TYPE [--data JSON]   publish one event to a running meshd
  meshd subscribe --topic T                           print events of a topic as they arrive
  meshd connectors list|create|status|pause|resume|delete   manage connectors (see meshd connectors -h)
  meshd connectors tasks|restart --task|stop|offsets NAME   tasks and offsets of a connector
  meshd topics                                        list topics: stored events, bytes, publish rate
  meshd subscriptions status|pause|resume [ID]        where subscriptions stand; pause and resume them
  meshd subscriptions replay ID --from TIME|SEQ|earliest   deliver a subscription's events again
  meshd deadletters list|redrive [TOPIC]              see dead letters and re-drive them
`
	usageTail = `  meshd version                                       print the version

Every setting of 'meshd run' can come from the YAML file, a MESHD_* environment
variable or a flag; 'meshd run -h' lists them all. While meshd runs, its
dashboard is at http://127.0.0.1:10106/ui/ (the admin port).
`
)

// Command is a subcommand that the meshd binary adds to Main from a package
// sidecar does not import: meshd inject and meshd injector come from
// deploy/injector, whose Kubernetes code stays out of sidecar's dependencies.
type Command struct {
	Name     string // "inject"
	Synopsis string // the command line shown by meshd -h: "inject [-f FILE]"
	Summary  string // what it does, shown by meshd -h
	// Run runs the command with the arguments after its name. An error
	// wrapping flag.ErrHelp exits 0 without a message.
	Run func(args []string, stdout, stderr io.Writer) error
}

func usage(extra []Command) string {
	var b strings.Builder
	b.WriteString(usageHead)
	for _, c := range extra {
		fmt.Fprintf(&b, "  %-51s %s\n", "meshd "+c.Synopsis, c.Summary)
	}
	b.WriteString(usageTail)
	return b.String()
}

// Main runs the meshd command line and returns the process exit code. extra
// are the commands besides sidecar's own.
func Main(args []string, stdout, stderr io.Writer, extra ...Command) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage(extra))
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = runCmd(args[1:], stderr)
	case "publish":
		err = publishCmd(args[1:], stdout, stderr)
	case "subscribe":
		err = subscribeCmd(args[1:], stdout, stderr)
	case "connectors":
		err = connectorsTopCmd(args[1:], stdout, stderr) // ops_cli.go
	case "topics":
		err = topicsCmd(args[1:], stdout, stderr)
	case "subscriptions":
		err = subscriptionsCmd(args[1:], stdout, stderr)
	case "deadletters":
		err = deadlettersCmd(args[1:], stdout, stderr)
	case "version", "--version":
		if len(args) > 1 {
			err = &usageError{cmd: "version", msg: fmt.Sprintf("unexpected argument %q: version takes none", args[1])}
			break
		}
		fmt.Fprintln(stdout, "meshd", Version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage(extra))
	default:
		i := slices.IndexFunc(extra, func(c Command) bool { return c.Name == args[0] })
		if i < 0 {
			fmt.Fprintf(stderr, "meshd: unknown command %q\n\n%s", args[0], usage(extra))
			return 2
		}
		err = extra[i].Run(args[1:], stdout, stderr)
	}
	var usage *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		if usage.msg != "" { // else package flag printed it, with the usage
			fmt.Fprintf(stderr, "meshd %s: %s (see 'meshd %s -h')\n", usage.cmd, usage.msg, usage.cmd)
		}
		return 2
	default:
		fmt.Fprintln(stderr, "meshd:", oneLine(err.Error()))
		return 1
	}
}

// usageError is a mistake in the command line: Main prints it on one line
// with a pointer to -h and exits 2, as package flag's own errors.
type usageError struct {
	cmd string // "run", "connectors list"
	msg string // "" when package flag already printed the error
}

func (e *usageError) Error() string { return "meshd " + e.cmd + ": " + e.msg }

// parseFlags parses args into fs, which takes no positional arguments
// (the command is fs.Name() without "meshd "). A stray argument is refused
// rather than ignored: package flag stops at it, so every flag after it
// would be silently dropped.
func parseFlags(fs *flag.FlagSet, args []string) error {
	cmd := strings.TrimPrefix(fs.Name(), "meshd ")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{cmd: cmd} // flag printed it
	}
	if fs.NArg() > 0 {
		return &usageError{cmd: cmd, msg: fmt.Sprintf("unexpected argument %q: %s takes only flags, and flags after it would be ignored", fs.Arg(0), cmd)}
	}
	return nil
}

// parseInterleaved parses args into fs, taking positional arguments
// before, between and after the flags (package flag stops at the first),
// and returns them. cmd names the command in a usage error.
func parseInterleaved(fs *flag.FlagSet, args []string, cmd string) ([]string, error) {
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{cmd: cmd} // flag printed it
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return positional, nil
}

func runCmd(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("meshd run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv("MESHD_CONFIG"), "YAML config file (env MESHD_CONFIG)")
	cfg := Defaults()
	applyFlags := cfg.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: meshd run [--config FILE] [flags]\n\nStarts meshd. Settings, lowest precedence first: defaults, the YAML file, MESHD_* environment, flags.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := LoadConfig(*configPath, &cfg, applyFlags); err != nil {
		return err
	}
	logger, err := NewLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	for _, u := range unknownEnv(os.Environ()) {
		if u.suggest != "" {
			logger.Warn("ignoring unknown environment variable", "name", u.name, "hint", "did you mean "+u.suggest+"?")
		} else {
			logger.Warn("ignoring unknown environment variable", "name", u.name, "hint", "'meshd run -h' lists the settings and their variables")
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	<-ctx.Done()
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// NewLogger builds the process logger from the log settings.
func NewLogger(c LogConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// clientFlags are shared by the commands that talk to a running meshd.
type clientFlags struct {
	url, token string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", envOr("MESHD_URL", "http://127.0.0.1:10105"), "app API of the meshd to talk to (env MESHD_URL)")
	fs.StringVar(&c.token, "token", "", "API token (default: env MESHD_API_TOKEN)")
}

func (c *clientFlags) do(ctx context.Context, method, path string, header http.Header, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.url, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token := c.apiToken(); token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling meshd at %s (is 'meshd run' up?): %w", c.url, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %w", method, path, responseError(resp))
	}
	return resp, nil
}

// responseError reads an error answer: its problem's title and detail, or
// its status and text.
func responseError(resp *http.Response) error {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var p struct{ Title, Detail string }
	if json.Unmarshal(msg, &p) == nil && p.Title != "" {
		return fmt.Errorf("%s: %s", p.Title, p.Detail)
	}
	return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
}

// apiToken is --token, else MESHD_API_TOKEN.
func (c *clientFlags) apiToken() string {
	if c.token != "" {
		return c.token
	}
	return os.Getenv("MESHD_API_TOKEN")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func publishCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("meshd publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c clientFlags
	c.register(fs)
	topic := fs.String("topic", "", "topic to publish to (required)")
	typ := fs.String("type", "", "CloudEvents type (required)")
	source := fs.String("source", "meshd-cli", "CloudEvents source")
	id := fs.String("id", "", "CloudEvents id (default: a new UUID)")
	subject := fs.String("subject", "", "CloudEvents subject")
	data := fs.String("data", "", "event data; @FILE reads a file, - reads stdin")
	contentType := fs.String("content-type", "", "datacontenttype of the data (default: application/json when the data is JSON, text/plain; charset=utf-8 when it is other text, else application/octet-stream)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *topic == "" || *typ == "" {
		return &usageError{cmd: "publish", msg: "--topic and --type are required"}
	}
	if err := mesh.ValidateTopic(*topic); err != nil {
		return &usageError{cmd: "publish", msg: "--topic: " + err.Error()}
	}
	body, err := readData(*data)
	if err != nil {
		return err
	}
	if *id == "" {
		*id = uuid.NewString()
	}
	h := http.Header{}
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", *id)
	h.Set("ce-source", *source)
	h.Set("ce-type", *typ)
	if *subject != "" {
		h.Set("ce-subject", *subject)
	}
	if ct := cmp.Or(*contentType, dataContentType(body)); ct != "" {
		h.Set("Content-Type", ct)
	}
	resp, err := c.do(context.Background(), http.MethodPost, "/v1/publish/"+url.PathEscape(*topic), h, body)
	if err != nil {
		return err
	}
	resp.Body.Close()
	fmt.Fprintf(stdout, "published %s to %s\n", *id, *topic)
	return nil
}

// dataContentType labels data given without --content-type: JSON as
// application/json, other text as text/plain, the rest as bytes; no data,
// no label.
func dataContentType(data []byte) string {
	switch {
	case len(data) == 0:
		return ""
	case json.Valid(data):
		return "application/json"
	case utf8.Valid(data):
		return "text/plain; charset=utf-8"
	default:
		return "application/octet-stream"
	}
}

func readData(arg string) ([]byte, error) {
	switch {
	case arg == "-":
		return io.ReadAll(os.Stdin)
	case strings.HasPrefix(arg, "@"):
		return os.ReadFile(arg[1:])
	default:
		return []byte(arg), nil
	}
}

// subscribeCmd prints the events of a topic as they arrive, one line of
// structured-mode JSON each, acking each once printed. It is a client of
// the WebSocket subscribe endpoint: without --group the server gives the
// connection a fresh group that ends with it, so nothing is left behind
// however the command or meshd stops.
func subscribeCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("meshd subscribe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c clientFlags
	c.register(fs)
	topic := fs.String("topic", "", "topic to subscribe to (required)")
	group := fs.String("group", "", "consumer group: members share the events, and the group resumes where it stopped (default: none; this receives every new event while it runs)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *topic == "" {
		return &usageError{cmd: "subscribe", msg: "--topic is required"}
	}
	if err := mesh.ValidateTopic(*topic); err != nil {
		return &usageError{cmd: "subscribe", msg: "--topic: " + err.Error()}
	}
	endpoint, err := wsURL(c.url, "/v1/ws/subscribe/"+url.PathEscape(*topic))
	if err != nil {
		return err
	}
	if *group != "" {
		endpoint += "?group=" + url.QueryEscape(*group)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	header := http.Header{}
	if token := c.apiToken(); token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{"cloudevents.json"}}
	conn, resp, err := dialer.DialContext(ctx, endpoint, header)
	if err != nil {
		if resp != nil && resp.StatusCode >= 300 {
			return fmt.Errorf("subscribing to %s: %w", *topic, responseError(resp))
		}
		return fmt.Errorf("calling meshd at %s (is 'meshd run' up?): %w", c.url, err)
	}
	defer conn.Close()
	// The server opened the consumer before answering the handshake: from
	// here on, every event published to the topic arrives.
	if *group != "" {
		fmt.Fprintf(stderr, "subscribed to %s in group %s; Ctrl-C to stop\n", *topic, *group)
	} else {
		fmt.Fprintf(stderr, "subscribed to %s; Ctrl-C to stop\n", *topic)
	}

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			_ = conn.Close()
		case <-done:
		}
	}()
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("subscription to %s ended: meshd at %s closed the connection: %w", *topic, c.url, err)
		}
		var m struct {
			SpecVersion string `json:"specversion"`
			ID          string `json:"id"`
		}
		if err := json.Unmarshal(msg, &m); err != nil || m.SpecVersion == "" {
			// Not an event: an error reply (docs/websocket.md).
			fmt.Fprintf(stderr, "meshd subscribe: meshd says: %s\n", bytes.TrimSpace(msg))
			continue
		}
		var line bytes.Buffer
		if json.Compact(&line, msg) != nil {
			line.Reset()
			line.Write(msg)
		}
		line.WriteByte('\n')
		if _, err := stdout.Write(line.Bytes()); err != nil {
			return fmt.Errorf("printing event %s: %w", m.ID, err)
		}
		ack, _ := json.Marshal(map[string]string{"ack": m.ID})
		if err := conn.WriteMessage(websocket.TextMessage, ack); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("acknowledging event %s: %w", m.ID, err)
		}
	}
}

// wsURL turns the app API's base URL (--url) into the WebSocket URL of path.
func wsURL(base, path string) (string, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil {
		return "", &usageError{cmd: "subscribe", msg: fmt.Sprintf("--url %q: %v", base, err)}
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", &usageError{cmd: "subscribe", msg: fmt.Sprintf("--url %q: want an http:// or https:// URL", base)}
	}
	return u.String() + path, nil
}
