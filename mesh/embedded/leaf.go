package embedded

// Edge mode: the embedded server is a leaf node of a hub (a NATS server or
// cluster with JetStream in its own domain, "hub" by default, and a leaf
// node listener). The app's publishes are stored here as always; the
// hub's stream sources them across domains whenever the link is up, and
// this stream sources the hub's events (mesh/natsjs/edge.go). The link
// carries JetStream API and sourcing traffic only: the mesh's subjects,
// key/value subjects and acks are denied on it both ways, so that nothing
// is stored on the other side by interest alone (twice, or in the other
// side's buckets).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/meshd/meshd/mesh/natsjs"
)

// Defaults of LeafConfig.
const (
	DefaultLeafSyncEvery  = 30 * time.Second
	leafReconnectInterval = time.Second
	// leafSyncRetry is the pause after a failed hub sync while linked.
	leafSyncRetry = time.Second
	// leafPoll is how often the link is looked at.
	leafPoll = 250 * time.Millisecond
	// stallCheck is how often, while linked, the copies both ways are
	// checked; a copy silent for stallAfter (it hears from the other side
	// every second) is restarted, at most every stallCheck, once the link
	// has been up for stallAfter (the server restarts them itself at
	// link-up, sometimes too early).
	stallCheck = 2 * time.Second
	stallAfter = 5 * time.Second
)

// LeafConfig makes the embedded server a leaf node of a hub.
type LeafConfig struct {
	// URLs are the hub's leaf node listeners, e.g. "nats://hub:7422"
	// ("tls://" or TLS for TLS). Required.
	URLs []string
	// Domain is this server's JetStream domain: unique among the edges of
	// the hub, and kept for the life of the store (the hub remembers how
	// far it copied each domain's stream). Required.
	Domain string
	// HubDomain is the hub's JetStream domain (default "hub").
	HubDomain string
	// Credentials presented to the hub, at most one kind: a NATS
	// credentials file, a user NKey seed, a user and password, a token.
	CredsFile string
	NKeySeed  string `json:"-"`
	User      string
	Password  string `json:"-"`
	Token     string `json:"-"`
	// TLS, if set, is used for the link (trusted CAs, a client
	// certificate, the server name).
	TLS *tls.Config `json:"-"`
	// SyncEvery is how often, while the link is up, the edge checks that
	// the hub's stream still sources it (default DefaultLeafSyncEvery).
	SyncEvery time.Duration
}

func (c *LeafConfig) syncEvery() time.Duration {
	if c.SyncEvery <= 0 {
		return DefaultLeafSyncEvery
	}
	return c.SyncEvery
}

func (c *LeafConfig) validate() error {
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("urls: at least one hub URL is required"))
	}
	for _, u := range c.URLs {
		if _, err := leafURL(u); err != nil {
			errs = append(errs, err)
		}
	}
	// The credentials follow natsjs's rules (the seed stands for a file).
	client := natsjs.Config{CredsFile: c.CredsFile, User: c.User, Password: c.Password, Token: c.Token,
		Edge: &natsjs.EdgeConfig{Domain: c.Domain, HubDomain: c.HubDomain}}
	if c.NKeySeed != "" {
		client.NKeyFile = "(seed)"
	}
	if err := client.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func leafURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("url %q: want nats://host:port", s)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return nil, fmt.Errorf("url %q: scheme %q: want nats, tls, ws or wss", s, u.Scheme)
	}
	return u, nil
}

// apply makes opts a leaf node of the hub in its own JetStream domain.
func (c *LeafConfig) apply(opts *server.Options, mesh natsjs.Config) error {
	remote := &server.RemoteLeafOpts{Credentials: c.CredsFile, Nkey: c.NKeySeed}
	for _, s := range c.URLs {
		u, err := leafURL(s)
		if err != nil {
			return err
		}
		switch {
		case c.User != "":
			u.User = url.UserPassword(c.User, c.Password)
		case c.Token != "":
			u.User = url.User(c.Token)
		}
		remote.URLs = append(remote.URLs, u)
		if u.Scheme == "tls" {
			remote.TLS = true
		}
	}
	if c.TLS != nil {
		remote.TLS, remote.TLSConfig = true, c.TLS.Clone()
	}
	prefix := mesh.SubjectPrefix
	if prefix == "" {
		prefix = natsjs.DefaultSubjectPrefix
	}
	deny := []string{prefix + ".>", "$KV.>", "$JS.ACK.>"}
	remote.DenyImports, remote.DenyExports = deny, deny
	opts.JetStreamDomain = c.Domain
	opts.LeafNode.Remotes = []*server.RemoteLeafOpts{remote}
	opts.LeafNode.ReconnectInterval = leafReconnectInterval
	return nil
}

// LeafConnected reports whether the link to the hub is up (false when the
// server is not a leaf node).
func (e *Engine) LeafConnected() bool { return e.srv.NumLeafNodes() > 0 }

// HubSynced reports whether the link is up and the streams of this edge
// and the hub source each other (natsjs.Engine.HubSync succeeded since the
// link last came up).
func (e *Engine) HubSynced() bool { return e.hubSynced.Load() && e.LeafConnected() }

// syncHub keeps the hub's stream sourcing this edge: at each link-up, then
// every syncEvery while the link stays up. It logs when the link comes and
// goes.
func (e *Engine) syncHub(ctx context.Context, every time.Duration) {
	up, failing := false, false
	var synced, upSince, checked time.Time
	for {
		wait := leafPoll
		linked := e.LeafConnected()
		switch {
		case !linked && up:
			up, synced = false, time.Time{}
			e.hubSynced.Store(false)
			e.log.Warn("the link to the hub is down; events are stored here and move to the hub when it is back")
		case linked && !up:
			up, upSince = true, time.Now()
			e.log.Info("the link to the hub is up")
		}
		if linked && time.Since(upSince) >= stallAfter && time.Since(checked) >= stallCheck {
			checked = time.Now()
			restarted, err := e.RestartStalledSources(ctx, stallAfter)
			if err != nil && ctx.Err() == nil {
				e.log.Debug("checking the copies between this edge and the hub", "error", err)
			}
			if len(restarted) > 0 {
				e.log.Info("restarted stalled copies of events between this edge and the hub", "copies", restarted)
			}
		}
		if linked && time.Since(synced) >= every {
			if err := e.HubSync(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				level := slog.LevelWarn
				if failing {
					level = slog.LevelDebug
				}
				e.log.Log(ctx, level, "making the hub's stream source this edge; will retry", "error", err)
				wait, synced, failing = leafSyncRetry, time.Time{}, true
			} else {
				synced, failing = time.Now(), false
				e.hubSynced.Store(true)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
