package rocketmq

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/apache/rocketmq-client-go/v2/rlog"
)

// The client logs through rlog, one logger for the whole process (logrus
// to stderr at info level unless replaced; its Fatal exits the process).
// The first rocketmq-sink that starts (the source does not use the
// client's networking, which is what logs) replaces it, once, with
// clientLog, which hands each line to the slog logger of a running
// instance: the instance whose producer or consumer group the line names,
// else the instance that attached first. Lines logged while no instance
// runs are dropped. The client's levels are lowered by one step (its info
// is chatty): debug and info → debug, warning → info, error → warn, fatal
// → error (without exiting). This routing table is the package's one
// piece of mutable state besides the connector registry, forced by the
// client's global logger.
var (
	clientLogOnce sync.Once
	clientLogs    = &clientLog{byGroup: map[string]*slog.Logger{}}
)

// clientLog is an rlog.Logger over the attached instances' loggers.
type clientLog struct {
	mu      sync.Mutex
	order   []*slog.Logger          // attached, oldest first
	byGroup map[string]*slog.Logger // group → logger
}

// attachClientLog routes the client's lines about group to log until the
// returned function is called.
func attachClientLog(group string, log *slog.Logger) (detach func()) {
	clientLogOnce.Do(func() { rlog.SetLogger(clientLogs) })
	log = log.With("client", "rocketmq-client-go")
	c := clientLogs
	c.mu.Lock()
	c.order = append(c.order, log)
	c.byGroup[group] = log
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.order = slices.DeleteFunc(c.order, func(l *slog.Logger) bool { return l == log })
		if c.byGroup[group] == log {
			delete(c.byGroup, group)
		}
	}
}

func (c *clientLog) logger(fields map[string]any) *slog.Logger {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range []string{rlog.LogKeyProducerGroup, rlog.LogKeyConsumerGroup} {
		if g, ok := fields[k].(string); ok {
			if l := c.byGroup[g]; l != nil {
				return l
			}
		}
	}
	if len(c.order) == 0 {
		return nil
	}
	return c.order[0]
}

func (c *clientLog) log(level slog.Level, msg string, fields map[string]any) {
	l := c.logger(fields)
	if l == nil || !l.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]any, 0, 2*len(fields))
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		attrs = append(attrs, k, fields[k])
	}
	l.Log(context.Background(), level, msg, attrs...)
}

func (c *clientLog) Debug(msg string, fields map[string]any) { c.log(slog.LevelDebug, msg, fields) }
func (c *clientLog) Info(msg string, fields map[string]any)  { c.log(slog.LevelDebug, msg, fields) }
func (c *clientLog) Warning(msg string, fields map[string]any) {
	c.log(slog.LevelInfo, msg, fields)
}
func (c *clientLog) Error(msg string, fields map[string]any) { c.log(slog.LevelWarn, msg, fields) }
func (c *clientLog) Fatal(msg string, fields map[string]any) { c.log(slog.LevelError, msg, fields) }

// Level and OutputPath are no-ops: levels come from meshd's logger.
func (c *clientLog) Level(string)            {}
func (c *clientLog) OutputPath(string) error { return nil }
