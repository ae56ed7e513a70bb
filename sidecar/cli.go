package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
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
`
	usageTail = `  meshd version                                       print the version

Every setting of 'meshd run' can come from the YAML file, a MESHD_* environment
variable or a flag; 'meshd run -h' lists them all.
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
		err = connectorsCmd(args[1:], stdout, stderr)
	case "version", "--version":
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
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "meshd:", err)
		return 1
	}
	return 0
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := LoadConfig(*configPath, &cfg, applyFlags); err != nil {
		return err
	}
	logger, err := NewLogger(cfg.Log, stderr)
	if err != nil {
		return err
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
	token := c.token
	if token == "" {
		token = os.Getenv("MESHD_API_TOKEN")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling meshd at %s (is 'meshd run' up?): %w", c.url, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var p struct{ Title, Detail string }
		if json.Unmarshal(msg, &p) == nil && p.Title != "" {
			return nil, fmt.Errorf("%s %s: %s: %s", method, path, p.Title, p.Detail)
		}
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	return resp, nil
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
	contentType := fs.String("content-type", "application/json", "datacontenttype of the data")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *topic == "" || *typ == "" {
		fs.Usage()
		return errors.New("publish: --topic and --type are required")
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
	h.Set("Content-Type", *contentType)
	resp, err := c.do(context.Background(), http.MethodPost, "/v1/publish/"+*topic, h, body)
	if err != nil {
		return err
	}
	resp.Body.Close()
	fmt.Fprintf(stdout, "published %s to %s\n", *id, *topic)
	return nil
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

// subscribeCmd creates a temporary subscription whose sink is a small HTTP
// server of its own, prints each event as one line of structured JSON, and
// deletes the subscription on exit.
func subscribeCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("meshd subscribe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c clientFlags
	c.register(fs)
	topic := fs.String("topic", "", "topic to subscribe to (required)")
	group := fs.String("group", "", "consumer group (default: a new one, so this receives every new event)")
	listen := fs.String("listen", "127.0.0.1:0", "address of the local sink meshd delivers to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *topic == "" {
		fs.Usage()
		return errors.New("subscribe: --topic is required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening for deliveries: %w", err)
	}
	events := make(chan []byte)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		select {
		case events <- body:
			w.WriteHeader(http.StatusNoContent)
		case <-r.Context().Done():
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	id := "cli-" + uuid.NewString()[:8]
	sub := map[string]any{"id": id, "topic": *topic, "sink": "http://" + ln.Addr().String() + "/", "contentMode": "structured"}
	if *group != "" {
		sub["group"] = *group
	}
	body, _ := json.Marshal(sub)
	resp, err := c.do(ctx, http.MethodPost, "/v1/subscriptions", http.Header{"Content-Type": {"application/json"}}, body)
	if err != nil {
		return err
	}
	resp.Body.Close()
	defer func() {
		delCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if resp, err := c.do(delCtx, http.MethodDelete, "/v1/subscriptions/"+id, nil, nil); err == nil {
			resp.Body.Close()
		} else {
			fmt.Fprintln(stderr, "meshd: removing subscription", id+":", err)
		}
	}()
	fmt.Fprintf(stderr, "subscribed to %s as %s; Ctrl-C to stop\n", *topic, id)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-events:
			var buf bytes.Buffer
			if json.Compact(&buf, ev) != nil {
				buf.Reset()
				buf.Write(ev)
			}
			buf.WriteByte('\n')
			_, _ = stdout.Write(buf.Bytes())
		}
	}
}
