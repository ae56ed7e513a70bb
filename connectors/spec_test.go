package connectors

import (
	"context"
	"testing"
	"time"
)

type nopConnector struct{}

func (nopConnector) Start(context.Context, Config) error { return nil }
func (nopConnector) Stop(context.Context) error          { return nil }
func (nopConnector) NewTask() Task                       { return nil }
func (nopConnector) TaskConfigs(int) ([]Config, error)   { return nil, nil }

// A type's Defaults replace the common fields' defaults, and stay within
// their limits.
func TestSpecDefaults(t *testing.T) {
	s := Spec{
		Name: "bulk-sink", Kind: KindSink,
		New:      func() Connector { return nopConnector{} },
		Defaults: map[string]any{FieldBatchSize: int64(20_000), FieldBatchWait: time.Second},
	}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	cfg, err := s.Validate(map[string]any{FieldConnectorType: "bulk-sink", FieldTopic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Int(FieldBatchSize); got != 20_000 {
		t.Errorf("batch.size = %d, want the type's default 20000", got)
	}
	if got := cfg.Duration(FieldBatchWait); got != time.Second {
		t.Errorf("batch.wait = %v, want the type's default 1s", got)
	}
	if _, err := s.Validate(map[string]any{FieldConnectorType: "bulk-sink", FieldTopic: "t", FieldBatchSize: MaxBatchSize + 1}); err == nil {
		t.Errorf("batch.size %d validated; want an error", MaxBatchSize+1)
	}
	// Another type keeps the framework's default.
	plain := s
	plain.Name, plain.Defaults = "plain-sink", nil
	cfg, err = plain.Validate(map[string]any{FieldConnectorType: "plain-sink", FieldTopic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Int(FieldBatchSize); got != 100 {
		t.Errorf("plain batch.size = %d, want 100", got)
	}

	bad := s
	bad.Defaults = map[string]any{"url": "x"}
	if err := bad.check(); err == nil {
		t.Error("Defaults naming a type's own field passed check; want an error")
	}
	bad.Defaults = map[string]any{FieldBatchSize: "many"}
	if err := bad.check(); err == nil {
		t.Error("a default of the wrong type passed check; want an error")
	}
}

func TestEarlierFieldNamesAreRead(t *testing.T) {
	spec := Spec{Name: "old-sink", Kind: KindSink, New: func() Connector { return nopConnector{} }}
	cfg, err := spec.Validate(map[string]any{FieldConnectorType: spec.Name, FieldTopic: "t", "maxAttempts": 3, "deadLetterTopic": "dead"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Int(FieldAttempts); got != 3 {
		t.Errorf("max.attempts = %d, want 3 from maxAttempts", got)
	}
	if got := cfg.String(FieldDeadLetter); got != "dead" {
		t.Errorf("dead.letter.topic = %q, want dead from deadLetterTopic", got)
	}
	if _, ok := cfg["maxAttempts"]; ok {
		t.Error("the earlier name is stored too; want the new name only")
	}
	_, err = spec.Validate(map[string]any{FieldConnectorType: spec.Name, FieldTopic: "t", "maxAttempts": 3, FieldAttempts: 4})
	ve, ok := err.(*ValidationError)
	if !ok || len(ve.Field("maxAttempts")) == 0 {
		t.Errorf("old and new name together: got %v, want an error naming maxAttempts", err)
	}
}

func TestFieldNameStyle(t *testing.T) {
	for _, bad := range []string{"maxAttempts", "tls.caFile", "a_b", "a..b", "a."} {
		s := Spec{Name: "x-sink", Kind: KindSink, New: func() Connector { return nopConnector{} }, Fields: []Field{{Name: bad, Type: TypeString}}}
		if err := s.check(); err == nil {
			t.Errorf("field %q accepted; want lower-case words joined by dots", bad)
		}
	}
}
