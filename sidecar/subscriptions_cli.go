package sidecar

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

const subscriptionsUsage = `Usage: meshd subscriptions COMMAND [--url URL] [flags]

Commands:
  replay ID --from FROM   deliver the subscription's events again, from FROM on:
                          an RFC 3339 time (2026-11-30T08:00:00Z), a stream
                          sequence, or earliest (every event the mesh keeps)

--url is the app API of the meshd to talk to (env MESHD_URL, default
http://127.0.0.1:10105); --token its API token (env MESHD_API_TOKEN).
`

// subscriptionsCmd calls the subscriptions API of a running meshd.
func subscriptionsCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, subscriptionsUsage)
		return &usageError{cmd: "subscriptions", msg: "a command is required"}
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, subscriptionsUsage)
		return nil
	}
	cmd := args[0]
	if cmd != "replay" {
		fmt.Fprint(stderr, subscriptionsUsage)
		return &usageError{cmd: "subscriptions", msg: fmt.Sprintf("unknown command %q", cmd)}
	}
	fs := flag.NewFlagSet("meshd subscriptions "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c clientFlags
	c.register(fs)
	from := fs.String("from", "", "where to start: an RFC 3339 time, a stream sequence or earliest (required)")
	fs.Usage = func() { fmt.Fprint(stderr, subscriptionsUsage) }
	// Accept the id before or after the flags.
	positional, err := parseInterleaved(fs, args[1:], "subscriptions "+cmd)
	if err != nil {
		return err
	}
	switch {
	case len(positional) == 0:
		return &usageError{cmd: "subscriptions replay", msg: "a subscription id is required"}
	case len(positional) > 1:
		return &usageError{cmd: "subscriptions replay", msg: fmt.Sprintf("unexpected argument %q: replay takes one subscription id", positional[1])}
	case *from == "":
		return &usageError{cmd: "subscriptions replay", msg: "--from is required: an RFC 3339 time, a stream sequence or earliest"}
	}
	id := positional[0]
	body, _ := json.Marshal(map[string]string{"from": *from})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := c.do(ctx, http.MethodPost, "/v1/subscriptions/"+url.PathEscape(id)+"/replay",
		http.Header{"Content-Type": {"application/json"}}, body)
	if err != nil {
		return err
	}
	resp.Body.Close()
	fmt.Fprintf(stdout, "subscription %s replays from %s\n", id, *from)
	return nil
}
