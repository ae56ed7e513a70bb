package connectortest

import (
	"log/slog"

	"github.com/meshd/meshd/connectors"
)

// TaskContext returns a TaskContext for driving a task without the
// runtime: task 0 of connector "test" with these committed offsets (nil:
// none), a discarding logger and no webhook listener.
func TaskContext(offsets map[string]string) connectors.TaskContext {
	return taskContext{offsets}
}

type taskContext struct{ offsets map[string]string }

func (c taskContext) Connector() string             { return "test" }
func (c taskContext) TaskID() int                   { return 0 }
func (c taskContext) Logger() *slog.Logger          { return slog.New(slog.DiscardHandler) }
func (c taskContext) Offsets() map[string]string    { return c.offsets }
func (c taskContext) Webhooks() connectors.Webhooks { return nil }
