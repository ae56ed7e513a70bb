package sidecar

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors/api"
	"github.com/meshd/meshd/connectors/worker"
)

// The operator's commands: meshd topics, meshd subscriptions, meshd
// deadletters, and the task and offset commands of meshd connectors. They
// call the admin API (docs/operations.md) with the admin token.

const (
	subscriptionsUsage = `Usage: meshd subscriptions COMMAND [--admin URL] [--admin-token TOKEN] [--json]

Commands:
  status [ID]     where a subscription's delivery stands (all without ID):
                  state, backlog (pending + unacked), redeliveries, dead-lettered, last error
  pause ID        stop delivering; the group keeps its position (survives restarts)
  resume ID       deliver again from where the group stopped
  replay ID --from TIME|SEQ|earliest
                  deliver the events again from there, on every sidecar of the app
                  (through the app API: --url, --token; see meshd subscriptions replay -h)
` + adminFlagsHelp

	deadlettersUsage = `Usage: meshd deadletters COMMAND [--admin URL] [--admin-token TOKEN]

Commands:
  list                    the dead-letter topics of subscriptions, connectors and MQTT routes
  list TOPIC [--from SEQ] [--limit N] [--by WHO] [--json]
                          the events in a dead-letter topic: who gave up (--by subscription/ID,
                          connector/NAME), why, after how many attempts, where each came from
  redrive TOPIC (--seq SEQ[,SEQ...] | --all) [--by WHO] [--to TOPIC] [--keep]
                          publish them again to the topic each came from (--to: another);
                          the copies are deleted once re-published, unless --keep
` + adminFlagsHelp

	connectorsOpsUsage = `
Task and offset commands (Kafka Connect's):
  tasks NAME                              the tasks of an instance, their states and members
  restart NAME --task ID                  restart one task
  stop NAME                               stop an instance (STOPPED: no tasks; offsets may change)
  offsets NAME                            committed offsets (a sink: per topic, the stream
                                          sequence its group settled up to)
  offsets NAME --reset                    forget them (the instance must be stopped)
  offsets NAME --set P=O [--set P=O ...] [--remove P ...]
                                          change them (the instance must be stopped)
`

	adminFlagsHelp = `
--admin is the admin server of the meshd to talk to (env MESHD_ADMIN_URL,
default http://127.0.0.1:10106); --admin-token its admin.token (default: env
MESHD_ADMIN_TOKEN).
`
)

// adminFlags are the flags of the commands that call the admin API.
type adminFlags struct {
	url, token string
	json       bool
}

func (a *adminFlags) register(fs *flag.FlagSet, withJSON bool) {
	fs.StringVar(&a.url, "admin", envOr("MESHD_ADMIN_URL", "http://127.0.0.1:10106"), "admin server of meshd (env MESHD_ADMIN_URL)")
	fs.StringVar(&a.token, "admin-token", "", "admin token (default: env "+EnvName("admin.token")+")")
	if withJSON {
		fs.BoolVar(&a.json, "json", false, "print the API's JSON answer")
	}
}

func (a *adminFlags) client() *api.Client {
	c := &api.Client{BaseURL: a.url, Token: a.token}
	if c.Token == "" {
		c.Token = os.Getenv(EnvName("admin.token"))
	}
	return c
}

// parseMixed parses flags and positional arguments in any order (names
// before or after flags); want bounds the positional arguments.
func parseMixed(fs *flag.FlagSet, args []string, minArgs, maxArgs int, what string) ([]string, error) {
	cmd := strings.TrimPrefix(fs.Name(), "meshd ")
	positional, err := parseInterleaved(fs, args, cmd) // cli.go
	if err != nil {
		return nil, err
	}
	switch {
	case len(positional) > maxArgs:
		return nil, &usageError{cmd: cmd, msg: fmt.Sprintf("unexpected argument %q: %s takes %s", positional[maxArgs], cmd, what)}
	case len(positional) < minArgs:
		return nil, &usageError{cmd: cmd, msg: what + " is required"}
	}
	return positional, nil
}

// get calls GET path into out; with --json it prints the answer as well,
// and done says the command has nothing more to print.
func (a *adminFlags) get(ctx context.Context, path string, out any, stdout io.Writer) (done bool, err error) {
	if err := a.client().Do(ctx, http.MethodGet, path, nil, out); err != nil {
		return false, err
	}
	if a.json {
		return true, printJSON(stdout, out)
	}
	return false, nil
}

func opsContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 60*time.Second)
}

// topicsCmd lists the topics of the mesh.
func topicsCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("meshd topics", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a adminFlags
	a.register(fs, true)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: meshd topics [--admin URL] [--admin-token TOKEN] [--json]\n\nLists the topics the mesh stores events of: events, bytes (estimated), first and last\nevent, and the rate this meshd publishes to each (events/s over the last minute).\n"+adminFlagsHelp)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := opsContext()
	defer cancel()
	var topics []TopicView
	if done, err := a.get(ctx, "/v1/topics", &topics, stdout); done || err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tEVENTS\tBYTES\tFIRST\tLAST\tRATE/S")
	for _, t := range topics {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%.1f\n", t.Name, t.Events, t.Bytes, cliTime(t.First), cliTime(t.Last), t.Rate)
	}
	return tw.Flush()
}

func cliTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// subcommand starts "meshd GROUP COMMAND ...": the usage for -h (and
// flag.ErrHelp) or without a command, else the command and its flag set
// with the admin flags.
func subcommand(group, usage string, args []string, stdout, stderr io.Writer) (string, *flag.FlagSet, *adminFlags, error) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return "", nil, nil, &usageError{cmd: group, msg: "a command is required"}
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return "", nil, nil, flag.ErrHelp
	}
	fs := flag.NewFlagSet("meshd "+group+" "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	a := &adminFlags{}
	a.register(fs, true)
	return args[0], fs, a, nil
}

// subscriptionsCmd shows, pauses and resumes subscriptions.
func subscriptionsCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "replay" {
		return replayCmd(args, stdout, stderr) // subscriptions_cli.go
	}
	cmd, fs, a, err := subcommand("subscriptions", subscriptionsUsage, args, stdout, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := opsContext()
	defer cancel()
	switch cmd {
	case "status":
		pos, err := parseMixed(fs, args[1:], 0, 1, "at most one subscription id")
		if err != nil {
			return err
		}
		var views []SubscriptionView
		if len(pos) == 1 {
			var v SubscriptionView
			if done, err := a.get(ctx, "/v1/subscriptions/"+url.PathEscape(pos[0])+"/status", &v, stdout); done || err != nil {
				return err
			}
			views = []SubscriptionView{v}
		} else if done, err := a.get(ctx, "/v1/subscriptions", &views, stdout); done || err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTOPIC\tSTATE\tBACKLOG\tUNACKED\tREDELIVERIES\tDELIVERED\tDEAD-LETTERED\tLAST ERROR")
		for _, v := range views {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%.0f\t%.0f\t%s\n", v.ID, v.Topic, v.State, v.Backlog, v.Unacked, v.Redelivered, v.Delivered, v.DeadLettered, printable(oneLine(v.LastError)))
		}
		return tw.Flush()
	case "pause", "resume":
		pos, err := parseMixed(fs, args[1:], 1, 1, "one subscription id")
		if err != nil {
			return err
		}
		var v SubscriptionView
		if err := a.client().Do(ctx, http.MethodPut, "/v1/subscriptions/"+url.PathEscape(pos[0])+"/"+cmd, nil, &v); err != nil {
			return err
		}
		if a.json {
			return printJSON(stdout, v)
		}
		fmt.Fprintf(stdout, "%s: %s (backlog %d)\n", v.ID, v.State, v.Backlog)
		return nil
	}
	return &usageError{cmd: "subscriptions", msg: fmt.Sprintf("unknown command %q", cmd)}
}

func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "help" }

// seqList is a flag of sequences, comma-separated or repeated.
type seqList []uint64

func (l *seqList) String() string { return fmt.Sprint([]uint64(*l)) }
func (l *seqList) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(part), 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a stream sequence", part)
		}
		*l = append(*l, n)
	}
	return nil
}

// deadlettersCmd lists and re-drives dead letters.
func deadlettersCmd(args []string, stdout, stderr io.Writer) error {
	cmd, fs, a, err := subcommand("deadletters", deadlettersUsage, args, stdout, stderr)
	if err != nil {
		return err
	}
	by := fs.String("by", "", "only the copies given up on by this: subscription/ID, connector/NAME, mqtt/LINK")
	ctx, cancel := opsContext()
	defer cancel()
	switch cmd {
	case "list":
		from := fs.Uint64("from", 0, "first stream sequence to list")
		limit := fs.Int("limit", bridge.DefaultDeadLetterPage, "most events to list")
		pos, err := parseMixed(fs, args[1:], 0, 1, "at most one topic")
		if err != nil {
			return err
		}
		if len(pos) == 0 {
			var dls []DeadLetterTopic
			if done, err := a.get(ctx, "/v1/deadletters", &dls, stdout); done || err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TOPIC\tEVENTS\tWRITTEN BY")
			for _, d := range dls {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", d.Topic, d.Events, strings.Join(d.Writers, " "))
			}
			return tw.Flush()
		}
		q := url.Values{}
		q.Set("from", strconv.FormatUint(*from, 10))
		q.Set("limit", strconv.Itoa(*limit))
		if *by != "" {
			q.Set("by", *by)
		}
		var page DeadLetterPage
		if done, err := a.get(ctx, "/v1/deadletters/"+url.PathEscape(pos[0])+"?"+q.Encode(), &page, stdout); done || err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tSTORED\tFROM\tBY\tATTEMPTS\tID\tERROR")
		for _, e := range page.Events {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", e.Seq, cliTime(e.Time), printable(e.Topic), printable(e.By), e.Attempts, printable(e.ID), printable(oneLine(e.Error)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if page.Next != 0 {
			fmt.Fprintf(stdout, "more: --from %d\n", page.Next)
		}
		return nil
	case "redrive":
		var seqs seqList
		fs.Var(&seqs, "seq", "stream sequence(s) of the copies to re-drive, comma-separated or repeated")
		all := fs.Bool("all", false, "re-drive every event in the topic")
		to := fs.String("to", "", "publish to this topic instead of each event's deliverytopic")
		keep := fs.Bool("keep", false, "leave the copies in the dead-letter topic")
		pos, err := parseMixed(fs, args[1:], 1, 1, "one dead-letter topic")
		if err != nil {
			return err
		}
		if *all == (len(seqs) > 0) {
			return &usageError{cmd: "deadletters redrive", msg: "give either --seq or --all"}
		}
		req := bridge.RedriveRequest{Seqs: seqs, All: *all, By: *by, To: *to, Keep: *keep}
		var res bridge.RedriveResult
		if err := a.client().Do(ctx, http.MethodPost, "/v1/deadletters/"+url.PathEscape(pos[0])+"/redrive", req, &res); err != nil {
			return err
		}
		if a.json {
			return printJSON(stdout, res)
		}
		fmt.Fprintf(stdout, "re-driven %d, deleted %d, skipped %d\n", res.Redriven, res.Deleted, len(res.Skipped))
		for _, s := range res.Skipped {
			fmt.Fprintf(stdout, "  skipped %d: %s\n", s.Seq, s.Reason)
		}
		return nil
	}
	return &usageError{cmd: "deadletters", msg: fmt.Sprintf("unknown command %q", cmd)}
}

// printable replaces control characters of untrusted text (event ids,
// sinks' error texts) so they cannot move the terminal's cursor.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return '?'
		}
		return r
	}, s)
}

// connectorsTopCmd runs meshd connectors: the task and offset commands
// here, the others in connectors_cli.go.
func connectorsTopCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, connectorsUsage+connectorsOpsUsage)
		return nil
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, connectorsUsage+connectorsOpsUsage)
		return &usageError{cmd: "connectors", msg: "a command is required"}
	}
	switch args[0] {
	case "tasks", "stop", "offsets":
		return connectorsOpsCmd(args, stdout, stderr)
	case "restart":
		for _, a := range args[1:] {
			if a == "--task" || a == "-task" || strings.HasPrefix(a, "--task=") || strings.HasPrefix(a, "-task=") {
				return connectorsOpsCmd(args, stdout, stderr)
			}
		}
	}
	return connectorsCmd(args, stdout, stderr)
}

func connectorsOpsCmd(args []string, stdout, stderr io.Writer) error {
	cmd := args[0]
	fs := flag.NewFlagSet("meshd connectors "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, connectorsUsage+connectorsOpsUsage) }
	var a adminFlags
	a.register(fs, true)
	task := fs.Int("task", -1, "task id (restart)")
	reset := fs.Bool("reset", false, "forget the offsets (offsets; the connector must be stopped)")
	var set, remove stringList
	fs.Var(&set, "set", "PARTITION=OFFSET to store (offsets; repeatable)")
	fs.Var(&remove, "remove", "PARTITION whose offset to remove (offsets; repeatable)")
	pos, err := parseMixed(fs, args[1:], 1, 1, "one connector name")
	if err != nil {
		return err
	}
	var misplaced error
	fs.Visit(func(f *flag.Flag) {
		if owner := map[string]string{"task": "restart", "reset": "offsets", "set": "offsets", "remove": "offsets"}[f.Name]; owner != "" && owner != cmd && misplaced == nil {
			misplaced = &usageError{cmd: "connectors " + cmd, msg: fmt.Sprintf("--%s belongs to connectors %s", f.Name, owner)}
		}
	})
	if misplaced != nil {
		return misplaced
	}
	name := pos[0]
	c := a.client()
	ctx, cancel := opsContext()
	defer cancel()
	switch cmd {
	case "tasks":
		st, err := c.Status(ctx, name)
		if err != nil {
			return err
		}
		if a.json {
			return printJSON(stdout, st.Tasks)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TASK\tSTATE\tMEMBER\tRESTARTS\tTRACE")
		for _, t := range st.Tasks {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\n", t.ID, t.State, t.WorkerID, t.Restarts, printable(oneLine(t.Trace)))
		}
		return tw.Flush()
	case "restart":
		if *task < 0 {
			return &usageError{cmd: "connectors restart", msg: "--task is required"}
		}
		if err := c.RestartTask(ctx, name, *task); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: task %d restarted\n", name, *task)
		return nil
	case "stop":
		if err := c.Stop(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: stopped\n", name)
		return nil
	}
	// offsets
	switch {
	case *reset && (len(set) > 0 || len(remove) > 0):
		return &usageError{cmd: "connectors offsets", msg: "--reset takes no --set or --remove"}
	case *reset:
		if err := c.ResetOffsets(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: offsets reset\n", name)
		return nil
	case len(set) > 0 || len(remove) > 0:
		var changes []worker.OffsetChange
		for _, kv := range set {
			p, o, ok := strings.Cut(kv, "=")
			if !ok || p == "" {
				return &usageError{cmd: "connectors offsets", msg: fmt.Sprintf("--set %q: want PARTITION=OFFSET", kv)}
			}
			changes = append(changes, worker.OffsetChange{Partition: p, Offset: &o})
		}
		for _, p := range remove {
			changes = append(changes, worker.OffsetChange{Partition: p})
		}
		if err := c.AlterOffsets(ctx, name, changes); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d offsets changed\n", name, len(changes))
		return nil
	}
	offs, err := c.Offsets(ctx, name)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, offs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOFFSET")
	for _, o := range offs {
		fmt.Fprintf(tw, "%s\t%s\n", printable(o.Partition), printable(o.Offset))
	}
	return tw.Flush()
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
