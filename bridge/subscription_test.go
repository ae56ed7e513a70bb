package bridge

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func validSub() Subscription {
	return Subscription{ID: "orders-audit", Topic: "orders", Sink: "http://127.0.0.1:8080/events"}
}

func TestValidateSubscriptionDefaults(t *testing.T) {
	got, err := ValidateSubscription(validSub())
	require.NoError(t, err)
	assert.Equal(t, Subscription{
		ID: "orders-audit", Topic: "orders", Group: "orders-audit", Sink: "http://127.0.0.1:8080/events",
		Protocol: "HTTP", ContentMode: "binary", MaxAttempts: DefaultMaxAttempts, MaxInFlight: DefaultMaxInFlight,
	}, got)

	s := validSub()
	s.Group, s.Protocol, s.ContentMode, s.MaxAttempts, s.MaxInFlight, s.DeadLetterTopic = "g.1", "http", "structured", 1, 1024, "orders.dead"
	s.Filters = []map[string]any{{"prefix": map[string]any{"type": "com."}}}
	got, err = ValidateSubscription(s)
	require.NoError(t, err)
	assert.Equal(t, "HTTP", got.Protocol)
	assert.Equal(t, "g.1", got.Group)
	assert.Equal(t, 1024, got.MaxInFlight)
}

func TestValidateSubscriptionErrors(t *testing.T) {
	tests := []struct {
		field  string
		mutate func(s *Subscription)
	}{
		{"id", func(s *Subscription) { s.ID = "" }},
		{"id", func(s *Subscription) { s.ID = "a b" }},
		{"id", func(s *Subscription) { s.ID = "a/b" }},
		{"id", func(s *Subscription) { s.ID = ".a" }},
		{"id", func(s *Subscription) { s.ID = "a..b" }},
		{"id", func(s *Subscription) { s.ID = "a." }},
		{"id", func(s *Subscription) { s.ID = strings.Repeat("a", 201) }},
		{"topic", func(s *Subscription) { s.Topic = "" }},
		{"topic", func(s *Subscription) { s.Topic = "a b" }},
		{"group", func(s *Subscription) { s.Group = "a*" }},
		{"sink", func(s *Subscription) { s.Sink = "" }},
		{"sink", func(s *Subscription) { s.Sink = "relative/path" }},
		{"sink", func(s *Subscription) { s.Sink = "//host/x" }},
		{"sink", func(s *Subscription) { s.Sink = "ftp://host/x" }},
		{"sink", func(s *Subscription) { s.Sink = "http:///nohost" }},
		{"sink", func(s *Subscription) { s.Sink = "http://[::1" }},
		{"protocol", func(s *Subscription) { s.Protocol = "MQTT3" }},
		{"contentMode", func(s *Subscription) { s.ContentMode = "batch" }},
		{"filters[0]", func(s *Subscription) { s.Filters = []map[string]any{{"exactt": map[string]any{"type": "x"}}} }},
		{"maxAttempts", func(s *Subscription) { s.MaxAttempts = -1 }},
		{"maxInFlight", func(s *Subscription) { s.MaxInFlight = -1 }},
		{"maxInFlight", func(s *Subscription) { s.MaxInFlight = 1025 }},
		{"deadLetterTopic", func(s *Subscription) { s.DeadLetterTopic = "bad topic" }},
		{"deadLetterTopic", func(s *Subscription) { s.DeadLetterTopic = "orders" }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			s := validSub()
			tt.mutate(&s)
			_, err := ValidateSubscription(s)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrInvalidSubscription), "%v", err)
			assert.Contains(t, err.Error(), "invalid subscription: "+tt.field)
		})
	}
}

func TestValidateSubscriptionDoesNotEchoSink(t *testing.T) {
	s := validSub()
	s.Sink = "ftp://user:secret@host/x"
	_, err := ValidateSubscription(s)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "secret")
}

func TestTruncate(t *testing.T) {
	assert.Equal(t, "abc", truncate("abc", 5))
	assert.Equal(t, "ab…", truncate("abcdef", 2))
	// Never cuts a multi-byte rune in half.
	assert.Equal(t, "é…", truncate("éé", 3))
}
