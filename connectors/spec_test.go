package connectors

import (
	"context"
	"encoding/json"
	"strings"
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

// A SecretURL field is shown with its user info and query values masked;
// the masked form put back keeps the stored URL; its secret parts are among
// the values masked in traces.
func TestSecretURL(t *testing.T) {
	s := Spec{
		Name: "hook-sink", Kind: KindSink,
		New: func() Connector { return nopConnector{} },
		Fields: []Field{
			{Name: "url", Type: TypeString, SecretURL: true},
			{Name: "password", Type: TypeString, Secret: true},
			{Name: "secret.headers", Type: TypeMap, Secret: true},
		},
	}
	stored := map[string]any{
		FieldConnectorType: "hook-sink", FieldTopic: "t",
		"url":            "https://alice:s3cr3t@hooks.example/in?token=t0k3n&v=2",
		"password":       "pw-123",
		"secret.headers": map[string]any{"Authorization": "Bearer b34rer"},
	}
	shown := s.Masked(stored)
	if got, want := shown["url"], "https://"+Mask+"@hooks.example/in?token="+Mask+"&v="+Mask; got != want {
		t.Errorf("url shown as %q, want %q", got, want)
	}
	if shown["password"] != Mask || shown["secret.headers"] != Mask {
		t.Errorf("secret fields shown as %v, %v", shown["password"], shown["secret.headers"])
	}
	if stored["url"] != "https://alice:s3cr3t@hooks.example/in?token=t0k3n&v=2" {
		t.Error("Masked changed its argument")
	}

	back := s.Unmask(shown, stored)
	for _, f := range []string{"url", "password", "secret.headers"} {
		if !jsonEq(back[f], stored[f]) {
			t.Errorf("%s put back as %v, want the stored %v", f, back[f], stored[f])
		}
	}
	edited := s.Unmask(map[string]any{"url": "https://" + Mask + "@other.example/in"}, stored)
	if edited["url"] != "https://"+Mask+"@other.example/in" {
		t.Errorf("an edited URL is taken as given, got %v", edited["url"])
	}

	got := map[string]bool{}
	for _, v := range s.SecretValues(stored) {
		got[v] = true
	}
	for _, want := range []string{"alice", "s3cr3t", "t0k3n", "2", "pw-123", "Bearer b34rer"} {
		if !got[want] {
			t.Errorf("SecretValues misses %q (got %v)", want, got)
		}
	}
	if got["https://alice:s3cr3t@hooks.example/in?token=t0k3n&v=2"] || got["hooks.example"] {
		t.Error("SecretValues returns the whole URL or its host; only its secret parts are secret")
	}
}

func jsonEq(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// A type the build leaves out is refused saying so; another unknown type
// as unknown.
func TestOmittedTypes(t *testing.T) {
	reg := NewRegistry()
	reg.Omit("the lean build leaves it out", "jdbc-sink")
	for typ, want := range map[string]string{
		"jdbc-sink": `connector.type: "jdbc-sink": not in this build of meshd: the lean build leaves it out`,
		"jdbc-sank": `connector.type: "jdbc-sank": unknown connector type`,
	} {
		_, _, err := reg.Validate(map[string]any{FieldConnectorType: typ})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", typ, err, want)
		}
	}
}
