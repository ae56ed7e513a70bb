package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/mesh"
)

// Publisher stores events on the mesh; *bridge.Bridge is one.
type Publisher interface {
	Publish(ctx context.Context, topic string, events []*event.Event) error
}

var _ Publisher = (*bridge.Bridge)(nil)

// Link is one running broker connection with its inbound and outbound
// routes.
//
// Goroutines: one inbound worker and a delivery loop per outbound route
// (bridge.Loop). Stop waits for all of them. Paho's own
// goroutines end with Disconnect.
type Link struct {
	cfg        LinkConfig
	pub        Publisher
	eng        mesh.Engine
	log        *slog.Logger
	client     paho.Client
	brokerHost string

	incoming  chan paho.Message // bounded: a full queue blocks paho's reader (back-pressure)
	stop      chan struct{}     // closed by Stop
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	stopOnce  sync.Once
	connected atomic.Bool
}

// Start validates cfg, opens the outbound consumers and connects to the
// broker in the background (retrying with backoff until Stop): a broker
// that is down at start delays bridging but does not fail Start.
func Start(ctx context.Context, cfg LinkConfig, pub Publisher, eng mesh.Engine, logger *slog.Logger) (*Link, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if logger == nil {
		logger = slog.Default()
	}
	u, _ := url.Parse(cfg.Broker) // validated
	runCtx, cancel := context.WithCancel(context.Background())
	b := &Link{
		cfg:        cfg,
		pub:        pub,
		eng:        eng,
		log:        logger.With("mqtt", cfg.Name),
		brokerHost: u.Host,
		incoming:   make(chan paho.Message, 64),
		stop:       make(chan struct{}),
		cancel:     cancel,
	}
	opts, err := b.clientOptions()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("mqtt %q: %w", cfg.Name, err)
	}
	b.client = paho.NewClient(opts)

	for _, o := range cfg.Outbound {
		loop, err := b.startOutbound(runCtx, o)
		if err != nil {
			cancel()
			b.wg.Wait()
			return nil, fmt.Errorf("mqtt %q: outbound %q: %w", cfg.Name, o.Topic, err)
		}
		b.wg.Go(func() { <-loop.Done() })
	}
	b.wg.Go(func() { b.inboundWorker(runCtx) })
	b.client.Connect() // retries in the background (ConnectRetry)
	b.log.Info("mqtt bridge started", "broker", redactURL(u), "clientId", cfg.ClientID, "inbound", len(cfg.Inbound), "outbound", len(cfg.Outbound))
	return b, nil
}

// Connected reports whether the broker connection is up.
func (b *Link) Connected() bool { return b.connected.Load() }

// Stop ends the bridge: inbound messages not yet stored stay unacked (the
// broker redelivers them to the next session), outbound events not yet
// confirmed by the broker are handed back to the mesh. Idempotent.
func (b *Link) Stop(ctx context.Context) error {
	b.stopOnce.Do(func() {
		close(b.stop)
		b.cancel()
		done := make(chan struct{})
		go func() { b.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
		b.client.Disconnect(250)
		b.connected.Store(false)
		<-done
		b.log.Info("mqtt bridge stopped")
	})
	return nil
}

func (b *Link) clientOptions() (*paho.ClientOptions, error) {
	c := b.cfg
	opts := paho.NewClientOptions().
		AddBroker(c.Broker).
		SetClientID(c.ClientID).
		SetProtocolVersion(4). // MQTT 3.1.1
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		SetKeepAlive(c.KeepAlive).
		SetConnectTimeout(c.ConnectTimeout).
		SetWriteTimeout(c.PublishTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(c.MaxReconnectInterval).
		SetDefaultPublishHandler(b.onMessage).
		SetOnConnectHandler(b.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			b.connected.Store(false)
			b.log.Warn("mqtt connection lost; reconnecting", "error", err)
		})
	if c.Username != "" {
		opts.SetUsername(c.Username)
		opts.SetPassword(string(c.Password))
	}
	tlsCfg, err := c.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	if tlsCfg != nil {
		opts.SetTLSConfig(tlsCfg)
	}
	return opts, nil
}

// onConnect (re)subscribes every inbound filter. The session is persistent
// (clean session off), so the broker kept them; subscribing again is
// harmless and covers a broker that lost its state.
func (b *Link) onConnect(c paho.Client) {
	b.connected.Store(true)
	b.log.Info("mqtt connected")
	if len(b.cfg.Inbound) == 0 {
		return
	}
	filters := map[string]byte{}
	for _, in := range b.cfg.Inbound {
		if q, ok := filters[in.Filter]; !ok || byte(in.QoS) > q {
			filters[in.Filter] = byte(in.QoS)
		}
	}
	// A nil callback routes the messages to the default handler, which also
	// receives what the broker sends before these subscriptions are made.
	tok := c.SubscribeMultiple(filters, nil)
	go func() {
		if !tok.WaitTimeout(b.cfg.ConnectTimeout) {
			b.log.Warn("mqtt subscribe not acknowledged in time", "timeout", b.cfg.ConnectTimeout)
			return
		}
		if err := tok.Error(); err != nil {
			b.log.Error("mqtt subscribe failed", "error", err)
		}
	}()
}

// onMessage runs on paho's router goroutine, in order. It queues the
// message for the worker; a full queue blocks paho (back-pressure to the
// broker). The message is acked by the worker once stored.
func (b *Link) onMessage(_ paho.Client, m paho.Message) {
	select {
	case b.incoming <- m:
	case <-b.stop: // not acked: redelivered to the next session
	}
}

// inboundWorker stores queued messages in order and acks each to the
// broker only after the mesh stored it. Storing is retried with backoff
// until it succeeds or the bridge stops (then the message stays unacked and
// the broker redelivers it when meshd connects again).
func (b *Link) inboundWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-b.incoming:
			if b.store(ctx, m) {
				m.Ack()
			}
		}
	}
}

type routed struct {
	topic  string
	events []*event.Event
}

// store publishes m to the mesh topic of every inbound filter it matches.
// It returns false only when ctx ended first.
func (b *Link) store(ctx context.Context, m paho.Message) bool {
	var routes []routed
	for _, in := range b.cfg.Inbound {
		if !matchFilter(in.Filter, m.Topic()) {
			continue
		}
		dup := false
		for _, r := range routes {
			dup = dup || r.topic == in.Topic
		}
		if !dup {
			routes = append(routes, routed{topic: in.Topic, events: []*event.Event{Decode(b.brokerHost, m.Topic(), m.Payload(), in)}})
		}
	}
	if len(routes) == 0 {
		// A subscription this config no longer has (the session kept it).
		b.log.Debug("mqtt message matches no inbound filter; acked and dropped", "topic", m.Topic())
		return true
	}
	for _, r := range routes {
		for attempt := 1; ; attempt++ {
			pctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
			err := b.pub.Publish(pctx, r.topic, r.events)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return false
			}
			var invalid *bridge.InvalidEventError
			if errors.As(err, &invalid) {
				// Cannot happen for Decode's events; never loop on it.
				b.log.Error("mqtt message is not a valid event; dropped", "topic", m.Topic(), "error", err)
				break
			}
			delay := b.cfg.Backoff.Delay(attempt)
			b.log.Warn("storing an mqtt message; retrying", "mqttTopic", m.Topic(), "topic", r.topic, "attempt", attempt, "in", delay, "error", err)
			if !bridge.Sleep(ctx, delay) {
				return false
			}
		}
	}
	return true
}

func redactURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	return c.String()
}
