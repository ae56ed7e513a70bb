package natsjs

// Edge mode: the engine's server is a NATS leaf node of a hub, each with
// its own JetStream domain, and the stream of either side sources the
// other's:
//
//   - events published here are stored here on "<prefix>.t.<topic>" (the
//     app's 204 never waits for the hub) with a Meshd-Origin header naming
//     this edge's domain;
//   - the hub's stream sources them from here (filter "<prefix>.t.>"), at
//     their own subjects, whenever the link is up: sourcing resumes after
//     the last event it copied, and the hub's duplicate window drops a
//     copy made twice. HubSync adds that source to the hub's stream;
//   - this stream sources the hub's events, stored here on
//     "<prefix>.h.<topic>" so the hub does not source them back; a
//     consumer of topic T reads both subjects, and skips (acks) the hub's
//     copy of an event that originated here.
//
// The leaf link must not carry the mesh's subjects themselves (the
// embedded server denies "<prefix>.>" on it): an event reaches the other
// side only by sourcing, once.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/mesh"
)

// hdrOrigin names the edge domain an event was published in.
const hdrOrigin = "Meshd-Origin"

// DefaultHubDomain is the JetStream domain of the hub when EdgeConfig does
// not say.
const DefaultHubDomain = "hub"

// EdgeConfig makes the engine the store of an edge: its server is a leaf
// node of a hub, and events move between the two streams by JetStream
// sourcing across domains (see edge.go).
type EdgeConfig struct {
	// Domain is the JetStream domain of this engine's server. Required;
	// unique among the edges of one hub.
	Domain string
	// HubDomain is the hub's JetStream domain (default DefaultHubDomain).
	HubDomain string
}

func (c *EdgeConfig) hubDomain() string {
	if c.HubDomain == "" {
		return DefaultHubDomain
	}
	return c.HubDomain
}

func (c *EdgeConfig) validate() error {
	switch {
	case !mesh.IsToken(c.Domain, 64):
		return fmt.Errorf("edge domain %q: want letters, digits, '-' and '_'", c.Domain)
	case !mesh.IsToken(c.hubDomain(), 64):
		return fmt.Errorf("hub domain %q: want letters, digits, '-' and '_'", c.HubDomain)
	case c.Domain == c.hubDomain():
		return fmt.Errorf("edge domain %q: must differ from the hub's", c.Domain)
	}
	return nil
}

func apiPrefix(domain string) string { return "$JS." + domain + ".API" }

// hubPrefix starts the subjects here of the hub's events.
func (e *Engine) hubPrefix() string { return e.cfg.SubjectPrefix + ".h." }

// edgeSources returns the sources of this edge's stream as they are: the
// hub's stream once HubSync added it.
func (e *Engine) edgeSources(ctx context.Context) []*jetstream.StreamSource {
	if s, err := e.js.Stream(ctx, e.cfg.Stream); err == nil {
		return s.CachedInfo().Config.Sources
	}
	return nil
}

// hubSource is the source of this edge's stream that copies the hub's
// events to the hub prefix, from the hub's sequence from.
func (e *Engine) hubSource(from uint64) *jetstream.StreamSource {
	return &jetstream.StreamSource{
		Name:              e.cfg.Stream,
		OptStartSeq:       from,
		SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: e.prefix + ">", Destination: e.hubPrefix() + ">"}},
		External:          &jetstream.ExternalStream{APIPrefix: apiPrefix(e.cfg.Edge.hubDomain())},
	}
}

// sourceOf says whether src copies the stream of the domain with API
// prefix origin.
func (e *Engine) sourceOf(origin string) func(*jetstream.StreamSource) bool {
	return func(src *jetstream.StreamSource) bool {
		return src != nil && src.External != nil && src.External.APIPrefix == origin && src.Name == e.cfg.Stream
	}
}

// HubSync links the two streams, once the link is up: the hub's stream
// sources this edge's events from the first one still stored here
// (creating the hub's stream if there is none), and this edge's stream
// sources the hub's events from the hub's next sequence on (those
// published on the hub before an edge first linked up do not reach it).
// Start positions are sequences, not times: a source that has copied
// nothing yet and starts at a time would start instead at the time of the
// copying stream's last event. It fails with an error wrapping
// mesh.ErrUnavailable while the link is down. Calling it again changes
// nothing.
func (e *Engine) HubSync(ctx context.Context) error {
	if e.cfg.Edge == nil {
		return errors.New("hub sync: the engine is not an edge")
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	hub, err := jetstream.NewWithDomain(e.nc, e.cfg.Edge.hubDomain())
	if err != nil {
		return fmt.Errorf("hub sync: %w", err)
	}
	mine := &jetstream.StreamSource{
		Name:          e.cfg.Stream,
		OptStartSeq:   1,
		FilterSubject: e.prefix + ">",
		External:      &jetstream.ExternalStream{APIPrefix: apiPrefix(e.cfg.Edge.Domain)},
	}
	var info *jetstream.StreamInfo
	s, err := hub.Stream(ctx, e.cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		sc := e.streamConfig()
		sc.Sources = []*jetstream.StreamSource{mine}
		if s, err = hub.CreateStream(ctx, sc); err != nil {
			return fmt.Errorf("hub sync: creating the hub's stream %q: %w", e.cfg.Stream, e.classify(ctx, err))
		}
		info = s.CachedInfo()
	case err != nil:
		return fmt.Errorf("hub sync: reading the hub's stream %q: %w", e.cfg.Stream, e.classify(ctx, err))
	default:
		info = s.CachedInfo()
		if !slices.ContainsFunc(info.Config.Sources, e.sourceOf(mine.External.APIPrefix)) {
			// Several edges may add themselves at once and one update
			// overwrite another's: each calls HubSync again later.
			cfg := info.Config
			cfg.Sources = append(slices.Clone(cfg.Sources), mine)
			if _, err := hub.UpdateStream(ctx, cfg); err != nil {
				return fmt.Errorf("hub sync: adding this edge (domain %q) to the sources of the hub's stream %q: %w", e.cfg.Edge.Domain, e.cfg.Stream, e.classify(ctx, err))
			}
			e.log.Info("the hub's stream now copies this edge's events", "stream", e.cfg.Stream, "domain", e.cfg.Edge.Domain, "hub_domain", e.cfg.Edge.hubDomain())
		}
	}
	local, err := e.js.Stream(ctx, e.cfg.Stream)
	if err != nil {
		return fmt.Errorf("hub sync: %w", e.classify(ctx, err))
	}
	cfg := local.CachedInfo().Config
	if slices.ContainsFunc(cfg.Sources, e.sourceOf(apiPrefix(e.cfg.Edge.hubDomain()))) {
		return nil
	}
	cfg.Sources = append(slices.Clone(cfg.Sources), e.hubSource(info.State.LastSeq+1))
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("hub sync: copying the hub's events here: %w", e.classify(ctx, err))
	}
	e.log.Info("this edge now copies the hub's events", "stream", e.cfg.Stream, "from_hub_seq", info.State.LastSeq+1)
	return nil
}

// RestartStalledSources restarts the copying of events, either way
// between this edge and the hub, that has been silent for longer than
// stall (a working copy hears from the other side every second), by
// removing its source from the stream that copies and adding it again. A
// stream remembers how far each of its sources was copied, so nothing is
// copied twice or skipped. Without this, a copy that failed while the link
// was down is retried by the server only after a backoff that grows to two
// minutes, plus up to 30 seconds waiting for an answer lost with the link.
// It returns what it restarted ("hub to edge", "edge to hub").
func (e *Engine) RestartStalledSources(ctx context.Context, stall time.Duration) ([]string, error) {
	if e.cfg.Edge == nil {
		return nil, errors.New("restarting sources: the engine is not an edge")
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	hub, err := jetstream.NewWithDomain(e.nc, e.cfg.Edge.hubDomain())
	if err != nil {
		return nil, err
	}
	var restarted []string
	for _, side := range []struct {
		what   string
		js     jetstream.JetStream
		origin string // API prefix of the source's stream
	}{{"hub to edge", e.js, apiPrefix(e.cfg.Edge.hubDomain())}, {"edge to hub", hub, apiPrefix(e.cfg.Edge.Domain)}} {
		done, err := e.restartIfStalled(ctx, side.js, side.origin, stall)
		if err != nil {
			return restarted, fmt.Errorf("restarting the copy %s: %w", side.what, e.classify(ctx, err))
		}
		if done {
			restarted = append(restarted, side.what)
		}
	}
	return restarted, nil
}

// restartIfStalled restarts the source of the stream in js whose origin
// has API prefix origin, if it is silent for longer than stall.
func (e *Engine) restartIfStalled(ctx context.Context, js jetstream.JetStream, origin string, stall time.Duration) (bool, error) {
	s, err := js.Stream(ctx, e.cfg.Stream)
	if err != nil {
		return false, err
	}
	info := s.CachedInfo()
	stalled := false
	for _, si := range info.Sources {
		if si.External != nil && si.External.APIPrefix == origin && si.Name == e.cfg.Stream {
			stalled = si.Active < 0 || si.Active > stall
		}
	}
	if !stalled {
		return false, nil
	}
	mine := e.sourceOf(origin)
	cfg := info.Config
	i := slices.IndexFunc(cfg.Sources, mine)
	if i < 0 {
		return false, nil
	}
	src := cfg.Sources[i]
	cfg.Sources = slices.Delete(slices.Clone(cfg.Sources), i, i+1)
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return false, err
	}
	// Read again: another edge may have changed the hub's stream meanwhile.
	if s, err = js.Stream(ctx, e.cfg.Stream); err != nil {
		return false, err
	}
	cfg = s.CachedInfo().Config
	if !slices.ContainsFunc(cfg.Sources, mine) {
		cfg.Sources = append(cfg.Sources, src)
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return false, err
	}
	return true, nil
}

// markOrigin adds this edge's domain to a message being published.
func (e *Engine) markOrigin(m *nats.Msg) {
	if e.cfg.Edge != nil {
		m.Header[hdrOrigin] = []string{e.cfg.Edge.Domain}
	}
}

// echo says whether m is the hub's copy of an event published here: the
// event reached this edge's subscribers when it was stored here.
func (e *Engine) echo(m jetstream.Msg) bool {
	return e.cfg.Edge != nil && len(m.Subject()) > len(e.hubPrefix()) && m.Subject()[:len(e.hubPrefix())] == e.hubPrefix() &&
		m.Headers().Get(hdrOrigin) == e.cfg.Edge.Domain
}

// filterSubjects are the subjects a consumer of subject (a topic's)
// reads: an edge's consumers read the hub's events of the topic as well.
func (e *Engine) filterSubjects(subject string) []string {
	if e.cfg.Edge == nil {
		return []string{subject}
	}
	return []string{subject, e.hubPrefix() + subject[len(e.prefix):]}
}
