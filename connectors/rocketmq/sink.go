package rocketmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	rmqerrors "github.com/apache/rocketmq-client-go/v2/errors"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/rocketmq/remoting"
)

var (
	_ connectors.Connector   = (*sinkConnector)(nil)
	_ connectors.SinkTask    = (*SinkTask)(nil)
	_ connectors.Initializer = (*SinkTask)(nil)
)

// maxBatchBytes bounds the body of one batch send: the broker's default
// maxMessageSize (4 MiB) refuses larger batches whole.
const maxBatchBytes = 4 << 20

// batchOverhead is a message's framing in a batch body: TOTALSIZE,
// MAGICCODE, BODYCRC, FLAG, BODYSIZE and PROPERTIESSIZE.
const batchOverhead = 4 + 4 + 4 + 4 + 4 + 2

// sendRetries is the client's own retry count of a send (to another
// queue, another broker); the runtime retries beyond that.
const sendRetries = 2

// sinkConnector holds the instance's one producer, shared by its tasks:
// made by the first task that starts (it knows the instance's name and
// logger), shut down when the instance stops.
type sinkConnector struct {
	cfg connectors.Config

	mu       sync.Mutex
	producer *sinkProducer
}

type sinkProducer struct {
	p      sender
	group  string
	detach func()
}

// sender is the part of the client's producer the sink uses.
type sender interface {
	Start() error
	Shutdown() error
	SendSync(ctx context.Context, msgs ...*primitive.Message) (*primitive.SendResult, error)
}

func (c *sinkConnector) Start(_ context.Context, cfg connectors.Config) error {
	c.cfg = cfg
	return nil
}

func (c *sinkConnector) Stop(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.producer == nil {
		return nil
	}
	err := c.producer.p.Shutdown()
	c.producer.detach()
	c.producer = nil
	return err
}

func (c *sinkConnector) NewTask() connectors.Task { return &SinkTask{conn: c} }

func (c *sinkConnector) TaskConfigs(maxTasks int) ([]connectors.Config, error) {
	return connectors.EveryTask(c.cfg, maxTasks), nil
}

// acquire returns the instance's producer, starting it on first use.
func (c *sinkConnector) acquire(cfg connectors.Config, connector string, log *slog.Logger) (*sinkProducer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.producer != nil {
		return c.producer, nil
	}
	g := group(cfg, connector)
	detach := attachClientLog(wrap(cfg.String(FieldNamespace), g), log)
	opts := []producer.Option{
		producer.WithNameServer(nameServers(cfg)),
		producer.WithGroupName(g),
		// The client shares one connection set per instance name in a
		// process; each connector instance has its own.
		producer.WithInstanceName(connector + "-" + randomSuffix()),
		producer.WithRetry(sendRetries),
		producer.WithNamespace(cfg.String(FieldNamespace)),
	}
	if creds := credentials(cfg); !creds.IsEmpty() {
		opts = append(opts, producer.WithCredentials(creds))
	}
	p, err := producer.NewDefaultProducer(opts...)
	if err == nil {
		err = p.Start()
	}
	if err != nil {
		detach()
		return nil, fmt.Errorf("starting the RocketMQ producer: %w", err)
	}
	c.producer = &sinkProducer{p: p, group: g, detach: detach}
	return c.producer, nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// SinkTask sends batches with the instance's producer.
type SinkTask struct {
	conn *sinkConnector
	tc   connectors.TaskContext
	log  *slog.Logger

	ownConn     bool // conn was made by Start (a task run without its connector)
	producer    sender
	nameservers []string
	timeout     time.Duration
	topic       bridge.Template
	tags, keys  bridge.Template
}

// Init keeps the task context (the instance's name and logger).
func (t *SinkTask) Init(tc connectors.TaskContext) { t.tc = tc }

// Start parses the templates and takes the instance's producer.
func (t *SinkTask) Start(_ context.Context, cfg connectors.Config) error {
	connector, log := "sink", slog.New(slog.DiscardHandler)
	if t.tc != nil {
		connector, log = t.tc.Connector(), t.tc.Logger()
	}
	t.log = log
	var err error
	if t.topic, err = bridge.ParseTemplate(cfg.String(FieldRocketTopic)); err != nil {
		return err
	}
	if t.tags, err = bridge.ParseTemplate(cfg.String(FieldTags)); err != nil {
		return err
	}
	if t.keys, err = bridge.ParseTemplate(cfg.String(FieldKeys)); err != nil {
		return err
	}
	t.nameservers = nameServers(cfg)
	t.timeout = cfg.Duration(FieldTimeout)
	if t.conn == nil {
		t.conn, t.ownConn = &sinkConnector{cfg: cfg}, true
	}
	p, err := t.conn.acquire(cfg, connector, log)
	if err != nil {
		return err
	}
	t.producer = p.p
	return nil
}

// Stop leaves the producer to the connector, which shuts it down (or shuts
// it down itself when it runs without one).
func (t *SinkTask) Stop(ctx context.Context) error {
	if t.ownConn {
		return t.conn.Stop(ctx)
	}
	return nil
}

// Put sends the batch: events for one topic go together in batch sends of
// at most 4 MiB, in order. An event no message can carry (a bad topic,
// separators in an attribute, oversized properties) and a message the
// broker refuses as illegal are dead-lettered at once; a broker that
// cannot be reached holds the batch (bridge.ErrUnavailable); other
// refusals are retried.
func (t *SinkTask) Put(ctx context.Context, events []event.Event) error {
	failed := map[int]error{}
	type pending struct {
		idx  []int
		msg  []*primitive.Message
		size []int // each message's share of a batch body
	}
	var topics []string
	byTopic := map[string]*pending{}
	for i := range events {
		m, err := t.message(&events[i])
		if err != nil {
			failed[i] = bridge.PermanentError(err)
			continue
		}
		p := byTopic[m.Topic]
		if p == nil {
			p = &pending{}
			byTopic[m.Topic] = p
			topics = append(topics, m.Topic)
		}
		p.idx = append(p.idx, i)
		p.msg = append(p.msg, m)
		p.size = append(p.size, messageSize(m))
	}
	var down error // set once the broker or name servers proved unreachable
	for _, topic := range topics {
		p := byTopic[topic]
		for start := 0; start < len(p.msg); {
			end, size := start, 0
			for end < len(p.msg) && (end == start || size+p.size[end] <= maxBatchBytes) {
				size += p.size[end]
				end++
			}
			idx, msgs := p.idx[start:end], p.msg[start:end]
			start = end
			if down != nil {
				for _, i := range idx {
					failed[i] = down
				}
				continue
			}
			err := t.send(ctx, topic, msgs)
			if err != nil && len(msgs) > 1 && errors.Is(err, bridge.ErrPermanent) {
				// One illegal message refuses its whole batch: find it.
				for j, m := range msgs {
					if down == nil {
						err = t.send(ctx, topic, []*primitive.Message{m})
					}
					if err != nil {
						failed[idx[j]] = err
					}
					if errors.Is(err, bridge.ErrUnavailable) {
						down = err
					}
				}
				continue
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, bridge.ErrUnavailable) {
					down = err
				}
				for _, i := range idx {
					failed[i] = err
				}
			}
		}
	}
	switch {
	case len(failed) == 0:
		return nil
	case down != nil && len(failed) == len(events):
		return down
	}
	return &connectors.PartialError{Failed: failed}
}

// messageSize is a message's share of a batch body.
func messageSize(m *primitive.Message) int {
	return batchOverhead + len(m.Body) + propertiesSize(m.GetProperties())
}

// message builds the message of an event.
func (t *SinkTask) message(e *event.Event) (*primitive.Message, error) {
	topic, missing := t.topic.Render(e)
	if len(missing) > 0 {
		return nil, fmt.Errorf("the event has no %s for rocketmq.topic", strings.Join(missing, ", "))
	}
	if err := checkTopicName(topic); err != nil {
		return nil, fmt.Errorf("rocketmq.topic: %w", err)
	}
	props, err := eventProperties(e)
	if err != nil {
		return nil, err
	}
	if tag, _ := t.tags.Render(e); tag != "" {
		props[propTags] = tag
	}
	if keys, _ := t.keys.Render(e); strings.TrimSpace(keys) != "" {
		props[propKeys] = strings.Join(strings.Fields(keys), rocketKeySep)
	}
	for _, k := range []string{propTags, propKeys} {
		if strings.ContainsAny(props[k], separators) {
			return nil, fmt.Errorf("%w: its %s hold the property separators \\x01 or \\x02", errUnrepresentable, strings.ToLower(k))
		}
	}
	// A message id of our own, as the Java client sets one on every
	// message (the Go client leaves batched messages without).
	props[propUniqKey] = primitive.CreateUniqID()
	if n := propertiesSize(props); n > maxPropertiesSize {
		return nil, fmt.Errorf("%w: its properties take %d bytes; brokers take at most %d", errUnrepresentable, n, maxPropertiesSize)
	}
	m := primitive.NewMessage(topic, e.Data())
	m.WithProperties(props)
	return m, nil
}

// send sends msgs, all for topic, in one call and classifies a failure.
func (t *SinkTask) send(ctx context.Context, topic string, msgs []*primitive.Message) error {
	for _, m := range msgs {
		m.Topic = topic // the client puts the namespace in front at each send
	}
	sctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	res, err := t.producer.SendSync(sctx, msgs...)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return t.classify(ctx, topic, err)
	}
	// SendResult may be nil, and its String method panics on a result
	// without a queue: read its fields only.
	if res == nil {
		return fmt.Errorf("sending %d message(s) to %q: the client returned no result", len(msgs), topic)
	}
	if res.Status != primitive.SendOK {
		// Stored, but not flushed or replicated as the broker is set to:
		// send again (a duplicate is better than a loss).
		return fmt.Errorf("sending %d message(s) to %q: the broker answered %s", len(msgs), topic, sendStatus(res.Status))
	}
	return nil
}

func sendStatus(s primitive.SendStatus) string {
	switch s {
	case primitive.SendFlushDiskTimeout:
		return "FLUSH_DISK_TIMEOUT"
	case primitive.SendFlushSlaveTimeout:
		return "FLUSH_SLAVE_TIMEOUT"
	case primitive.SendSlaveNotAvailable:
		return "SLAVE_NOT_AVAILABLE"
	}
	return "status " + strconv.Itoa(int(s))
}

// brokerCodeRe reads the broker's answer from the client's error text
// ("CODE: %d, DESC: %s"), the only form the client gives it in.
var brokerCodeRe = regexp.MustCompile(`CODE: (-?\d+), DESC: `)

// classify says what a failed send means for its events.
func (t *SinkTask) classify(ctx context.Context, topic string, err error) error {
	wrapped := fmt.Errorf("sending to RocketMQ topic %q: %w", topic, err)
	if m := brokerCodeRe.FindStringSubmatch(err.Error()); m != nil {
		code, _ := strconv.Atoi(m[1])
		switch int16(code) {
		case remoting.MessageIllegal, remoting.RequestCodeNotSupported, remoting.VersionNotSupported:
			return bridge.PermanentError(wrapped)
		case remoting.SystemBusy, remoting.ServiceNotAvailable:
			return bridge.UnavailableError(wrapped, 0)
		case remoting.SystemError:
			if strings.Contains(err.Error(), "AclException") {
				// Refused credentials refuse every event: hold them
				// until the configuration is fixed.
				return bridge.UnavailableError(wrapped, 0)
			}
		}
		return wrapped
	}
	var netErr net.Error
	switch {
	case errors.Is(err, rmqerrors.ErrRequestTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, rmqerrors.ErrService), errors.Is(err, rmqerrors.ErrNotRunning):
		return bridge.UnavailableError(wrapped, 0)
	case strings.Contains(err.Error(), "route info not found"):
		// No route: the name servers are down, or know no such topic
		// (and no default topic to create it from).
		if !t.nameServerUp(ctx) {
			return bridge.UnavailableError(fmt.Errorf("sending to RocketMQ topic %q: no name server answers", topic), 0)
		}
		return fmt.Errorf("sending to RocketMQ topic %q: the name servers know no route to it (does it exist?)", topic)
	}
	return wrapped
}

// nameServerUp reports whether a name server accepts connections.
func (t *SinkTask) nameServerUp(ctx context.Context) bool {
	d := net.Dialer{Timeout: min(t.timeout, 2*time.Second)}
	for _, a := range t.nameservers {
		if c, err := d.DialContext(ctx, "tcp", a); err == nil {
			c.Close()
			return true
		}
	}
	return false
}
