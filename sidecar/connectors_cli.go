package sidecar

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshd/meshd/connectors/api"
)

const connectorsUsage = `Usage: meshd connectors COMMAND [--admin URL] [--admin-token TOKEN] [flags]

Commands:
  list                                    list connector instances and their states
  plugins                                 list the connector types and their config fields
  create --name NAME --config JSON|@FILE  create an instance
  status NAME                             show an instance's state and its tasks
  pause NAME | resume NAME | restart NAME
  delete NAME

--admin is the admin server of the meshd to talk to (env MESHD_ADMIN_URL,
default http://127.0.0.1:10106); --admin-token its admin.token (default: env
MESHD_ADMIN_TOKEN, the variable that sets admin.token for meshd run).
`

// connectorsCmd calls the connector API of a running meshd.
func connectorsCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, connectorsUsage)
		return &usageError{cmd: "connectors", msg: "a command is required"}
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, connectorsUsage)
		return nil
	}
	cmd := args[0]
	fs := flag.NewFlagSet("meshd connectors "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", envOr("MESHD_ADMIN_URL", "http://127.0.0.1:10106"), "admin server of meshd (env MESHD_ADMIN_URL)")
	adminToken := fs.String("admin-token", "", "admin token (default: env "+EnvName("admin.token")+")")
	name := fs.String("name", "", "connector name (create)")
	config := fs.String("config", "", "connector config as JSON, or @FILE (create)")
	fs.Usage = func() { fmt.Fprint(stderr, connectorsUsage) }
	// Accept the name before or after the flags.
	positional, err := parseInterleaved(fs, args[1:], "connectors "+cmd)
	if err != nil {
		return err
	}
	c := &api.Client{BaseURL: *admin, Token: *adminToken}
	if c.Token == "" {
		c.Token = os.Getenv(EnvName("admin.token"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	target := func() (string, error) {
		switch {
		case len(positional) == 0:
			return "", &usageError{cmd: "connectors " + cmd, msg: "a connector name is required"}
		case len(positional) > 1:
			return "", &usageError{cmd: "connectors " + cmd, msg: fmt.Sprintf("unexpected argument %q: %s takes one connector name", positional[1], cmd)}
		}
		return positional[0], nil
	}
	noArgs := func() error {
		if len(positional) > 0 {
			return &usageError{cmd: "connectors " + cmd, msg: fmt.Sprintf("unexpected argument %q: %s takes only flags", positional[0], cmd)}
		}
		return nil
	}
	switch cmd {
	case "list", "plugins":
		if err := noArgs(); err != nil {
			return err
		}
	case "create":
		if len(positional) > 1 || len(positional) == 1 && *name != "" {
			return &usageError{cmd: "connectors create", msg: fmt.Sprintf("unexpected argument %q: give the name once, as --name or as the argument", positional[len(positional)-1])}
		}
	}
	switch cmd {
	case "list":
		names, err := c.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tTYPE\tSTATE\tTASKS")
		for _, n := range names {
			st, err := c.Status(ctx, n)
			if err != nil {
				return err
			}
			var tasks []string
			for _, t := range st.Tasks {
				tasks = append(tasks, fmt.Sprintf("%d:%s", t.ID, t.State))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n, st.Type, st.Connector.State, strings.Join(tasks, " "))
		}
		return tw.Flush()
	case "plugins":
		ps, err := c.Plugins(ctx)
		if err != nil {
			return err
		}
		return printJSON(stdout, ps)
	case "create":
		if *name == "" && len(positional) == 1 {
			*name = positional[0]
		}
		if *name == "" || *config == "" {
			return &usageError{cmd: "connectors create", msg: "--name and --config are required"}
		}
		data := []byte(*config)
		if strings.HasPrefix(*config, "@") {
			var err error
			if data, err = os.ReadFile((*config)[1:]); err != nil {
				return fmt.Errorf("connectors create: %w", err)
			}
		}
		var cfg map[string]any
		if err := json.Unmarshal(data, &cfg); err != nil {
			return fmt.Errorf("connectors create: --config is not a JSON object: %w", err)
		}
		info, err := c.Create(ctx, *name, cfg)
		if err != nil {
			return err
		}
		return printJSON(stdout, info)
	case "status":
		n, err := target()
		if err != nil {
			return err
		}
		st, err := c.Status(ctx, n)
		if err != nil {
			return err
		}
		return printJSON(stdout, st)
	case "pause", "resume", "restart", "delete":
		n, err := target()
		if err != nil {
			return err
		}
		f := map[string]func(context.Context, string) error{"pause": c.Pause, "resume": c.Resume, "restart": c.Restart, "delete": c.Delete}[cmd]
		if err := f(ctx, n); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s done\n", n, cmd)
		return nil
	}
	return &usageError{cmd: "connectors", msg: fmt.Sprintf("unknown command %q", cmd)}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
