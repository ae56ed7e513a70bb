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

const replayUsage = `Usage: meshd subscriptions replay ID --from FROM [--url URL] [--token TOKEN]

Delivers the subscription's events again, from FROM on: an RFC 3339 time
(2026-11-30T08:00:00Z), a stream sequence, or earliest (every event the
mesh keeps). Every sidecar of the app starts over from there.

--url is the app API of the meshd to talk to (env MESHD_URL, default
http://127.0.0.1:10105); --token its API token (env MESHD_API_TOKEN).
`

// replayCmd calls the replay API of a running meshd (args[0] is "replay").
func replayCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 1 && isHelp(args[1]) {
		fmt.Fprint(stdout, replayUsage)
		return nil
	}
	cmd := args[0]
	fs := flag.NewFlagSet("meshd subscriptions "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c clientFlags
	c.register(fs)
	from := fs.String("from", "", "where to start: an RFC 3339 time, a stream sequence or earliest (required)")
	fs.Usage = func() { fmt.Fprint(stderr, replayUsage) }
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
