package chatbottest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/internal/chatbot"
)

// Discard is a logger that drops everything.
var Discard = slog.New(slog.DiscardHandler)

// Clock is a fake clock that moves only when told, for a robot and a fake
// vendor to share.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at the current time.
func NewClock() *Clock { return &Clock{now: time.Now()} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock on.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Open validates fields against spec (with connector.type and a topic) and
// opens a sink of them with vendor's open and clock now (nil: time.Now),
// closed when the test ends.
func Open(t testing.TB, spec connectors.Spec, open func(connectors.Config, func() time.Time) (*chatbot.Sink, error), fields map[string]any, now func() time.Time) *chatbot.Sink {
	t.Helper()
	kv := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		kv = append(kv, k, v)
	}
	sink, err := open(connectortest.Config(t, spec, kv...), now)
	require.NoError(t, err)
	t.Cleanup(sink.Close)
	return sink
}

// FailedOf returns the failed events of a Put's *connectors.PartialError.
func FailedOf(t testing.TB, err error) map[int]error {
	t.Helper()
	var p *connectors.PartialError
	require.ErrorAs(t, err, &p)
	return p.Failed
}

// ClassOf is the delivery class of err.
func ClassOf(err error) bridge.Class {
	c, _ := bridge.Classify(err)
	return c
}

// RandHex returns n random bytes in hex.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// WriteJSON answers v as JSON with status and Content-Type ct.
func WriteJSON(w http.ResponseWriter, ct string, status int, v any) {
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Checks collects the ways the requests to a fake vendor deviate from the
// vendor's documentation; the test fails on any when it ends. Safe for
// concurrent use.
type Checks struct {
	mu         sync.Mutex
	violations []string
}

// NewChecks returns the checks of a fake of vendor, reported at the end of
// t.
func NewChecks(t testing.TB, vendor string) *Checks {
	c := &Checks{}
	t.Cleanup(func() {
		for _, v := range c.Take() {
			t.Errorf("%s fake: the request deviates from the documentation: %s", vendor, v)
		}
	})
	return c
}

// Violate records a deviation.
func (c *Checks) Violate(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violations = append(c.violations, fmt.Sprintf(format, args...))
}

// Take returns the deviations so far and forgets them (for a test that
// sends deviating requests on purpose).
func (c *Checks) Take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.violations
	c.violations = nil
	return v
}

// Keys checks that obj has the required keys, with non-empty values, and
// no others than the optional ones.
func (c *Checks) Keys(what string, obj map[string]any, required, optional []string) bool {
	if obj == nil {
		c.Violate("%s: want an object", what)
		return false
	}
	ok := true
	for _, k := range required {
		if v, has := obj[k]; !has || v == "" || v == nil {
			c.Violate("%s: %s missing or empty", what, k)
			ok = false
		}
	}
	for k := range obj {
		if !slices.Contains(required, k) && !slices.Contains(optional, k) {
			c.Violate("%s: unknown key %q", what, k)
			ok = false
		}
	}
	return ok
}

// Raw is a config of spec as a user writes it: its connector.type, a
// topic, and the field, value pairs kv.
func Raw(spec connectors.Spec, kv ...any) map[string]any {
	return connectortest.With(map[string]any{connectors.FieldConnectorType: spec.Name, connectors.FieldTopic: "t"}, kv...)
}

// Refused checks that spec refuses raw, naming field, and that the error
// does not show hidden (a credential in a URL).
func Refused(t *testing.T, spec connectors.Spec, raw map[string]any, field, hidden string) {
	t.Helper()
	_, err := spec.Validate(raw)
	var ve *connectors.ValidationError
	require.True(t, errors.As(err, &ve), "%v should be refused", raw)
	assert.NotEmpty(t, ve.Field(field), "%v: %v", raw, err)
	assert.NotContains(t, err.Error(), hidden, "the webhook is not echoed")
}
