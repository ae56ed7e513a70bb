package injector

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshd/meshd/sidecar"
)

// Commands are meshd inject and meshd injector, for sidecar.Main: the meshd
// binary's main adds them, so sidecar itself links none of this package.
func Commands() []sidecar.Command {
	return []sidecar.Command{{
		Name:     "inject",
		Synopsis: "inject [-f FILE]",
		Summary:  "add the meshd sidecar to Kubernetes manifests (stdout)",
		Run: func(args []string, stdout, stderr io.Writer) error {
			return RunInject(context.Background(), args, os.Stdin, stdout, stderr)
		},
	}, {
		Name:     "injector",
		Synopsis: "injector [--listen :8443 --cert F --key F]",
		Summary:  "serve the sidecar-injecting admission webhook",
		Run: func(args []string, _, stderr io.Writer) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return RunInjector(ctx, args, stderr)
		},
	}}
}

// RunInject is the `meshd inject` command: args are what follows "inject"
// (-f FILE, repeatable, "-" for stdin, which is also the default, plus the
// Config flags). The injected YAML goes to stdout; what was injected,
// skipped and warned about goes to stderr. A document that cannot be
// read is an error; an invalid annotation is only a warning, as in the
// webhook, unless --reject-invalid is set.
func RunInject(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	cfg.InjectByDefault = true
	fs := flag.NewFlagSet("meshd inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var files []string
	fs.Func("f", "manifest file to inject, repeatable; - for stdin (default -)", func(s string) error {
		files = append(files, s)
		return nil
	})
	quiet := fs.Bool("q", false, "print only warnings on stderr")
	cfg.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: meshd inject [-f FILE]... [flags]\n\nAdds the meshd sidecar to the pods of Kubernetes manifests, as the injector webhook would.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (files go after -f)", fs.Arg(0))
	}
	if len(files) == 0 {
		files = []string{"-"}
	}
	var rejected int
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		var r io.Reader = stdin
		if f != "-" {
			fh, err := os.Open(f)
			if err != nil {
				return fmt.Errorf("opening manifests: %w", err)
			}
			defer fh.Close()
			r = fh
		}
		if f != files[0] {
			if _, err := io.WriteString(stdout, "---\n"); err != nil {
				return err
			}
		}
		rep, err := InjectManifests(r, stdout, cfg)
		if err != nil {
			return fmt.Errorf("injecting %s: %w", f, err)
		}
		if !*quiet {
			for _, s := range rep.Injected {
				fmt.Fprintf(stderr, "%s injected\n", s)
			}
			for _, s := range rep.Skipped {
				fmt.Fprintf(stderr, "%s skipped\n", s)
			}
		}
		for _, s := range append(rep.Invalid, rep.Warnings...) {
			fmt.Fprintf(stderr, "warning: %s\n", s)
		}
		rejected += len(rep.Invalid)
	}
	if cfg.RejectInvalid && rejected > 0 {
		return fmt.Errorf("%d object(s) have invalid meshd annotations: %w", rejected, ErrInvalidAnnotation)
	}
	return nil
}

// ServerConfig is the `meshd injector` command's own settings besides the
// injection Config.
type ServerConfig struct {
	Listen   string // default ":8443"
	CertFile string // default /etc/meshd-injector/tls/tls.crt
	KeyFile  string // default /etc/meshd-injector/tls/tls.key
	LogLevel slog.Level
	Inject   Config
}

// RunInjector is the `meshd injector` command: args are what follows
// "injector" (see ParseInjectorArgs). It serves the webhook over TLS until
// ctx ends and logs JSON to stderr.
func RunInjector(ctx context.Context, args []string, stderr io.Writer) error {
	sc, err := ParseInjectorArgs(args, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: sc.LogLevel})).With("component", "injector")
	return ServeInjector(ctx, sc, logger)
}

// ParseInjectorArgs reads the flags of `meshd injector`: --listen, --cert,
// --key, --server-log-level and the Config flags (--image, --mesh-url, ...).
// Usage and parse errors go to stderr.
func ParseInjectorArgs(args []string, stderr io.Writer) (ServerConfig, error) {
	sc := ServerConfig{
		Listen:   ":8443",
		CertFile: "/etc/meshd-injector/tls/tls.crt",
		KeyFile:  "/etc/meshd-injector/tls/tls.key",
		Inject:   DefaultConfig(),
	}
	fs := flag.NewFlagSet("meshd injector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&sc.Listen, "listen", sc.Listen, "address of the webhook's HTTPS server (/mutate, /healthz, /readyz)")
	fs.StringVar(&sc.CertFile, "cert", sc.CertFile, "TLS certificate file, reloaded when it changes")
	fs.StringVar(&sc.KeyFile, "key", sc.KeyFile, "TLS key file, reloaded when it changes")
	fs.TextVar(&sc.LogLevel, "server-log-level", sc.LogLevel, "the injector's own log level: DEBUG, INFO, WARN, ERROR")
	sc.Inject.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return sc, err
	}
	if fs.NArg() > 0 {
		return sc, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := sc.Inject.Validate(); err != nil {
		return sc, err
	}
	return sc, nil
}

// ServeInjector runs the webhook server of sc until ctx ends.
func ServeInjector(ctx context.Context, sc ServerConfig, logger *slog.Logger) error {
	if sc.Listen == "" || sc.CertFile == "" || sc.KeyFile == "" {
		return errors.New("the injector needs --listen, --cert and --key")
	}
	wh, err := NewWebhook(sc.Inject, logger)
	if err != nil {
		return err
	}
	return Serve(ctx, sc.Listen, sc.CertFile, sc.KeyFile, NewMux(wh), logger)
}
