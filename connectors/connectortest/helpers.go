package connectortest

import (
	"log/slog"
	"maps"
	"testing"

	"github.com/meshd/meshd/bridge/cehttp"
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
func (c taskContext) MaxEventBytes() int64          { return 1 << 20 }
func (c taskContext) Guard() *cehttp.Guard          { return nil }

// Config validates a config of spec made of its connector.type, the topic
// "test" and the given field/value pairs, failing the test if it is bad.
func Config(t testing.TB, spec connectors.Spec, fieldValues ...any) connectors.Config {
	t.Helper()
	raw := map[string]any{connectors.FieldConnectorType: spec.Name, connectors.FieldTopic: "test"}
	for i := 0; i+1 < len(fieldValues); i += 2 {
		raw[fieldValues[i].(string)] = fieldValues[i+1]
	}
	cfg, err := spec.Validate(raw)
	if err != nil {
		t.Fatalf("validating a %s config: %v", spec.Name, err)
	}
	return cfg
}

// With returns a copy of base with the field, value pairs kv set.
func With(base map[string]any, kv ...any) map[string]any {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}
