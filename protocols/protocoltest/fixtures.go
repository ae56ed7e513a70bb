package protocoltest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/stretchr/testify/require"
)

// Fixture is an event the round-trip cases send, and its structured form.
type Fixture struct {
	Name  string
	Event *event.Event
}

// Structured is the fixture in structured-mode JSON.
func (f Fixture) Structured(t *testing.T) []byte {
	t.Helper()
	b, err := json.Marshal(f.Event)
	require.NoError(t, err)
	return b
}

// Fixtures covers spec versions 1.0 and 0.3, every optional attribute,
// extensions of each type and JSON, text and binary data.
func Fixtures(t *testing.T) []Fixture {
	t.Helper()
	at := time.Date(2026, 11, 23, 10, 30, 0, 123456000, time.UTC)

	v1 := event.New(event.CloudEventsVersionV1)
	v1.SetID("rt-v1-json")
	v1.SetSource("https://example.com/orders")
	v1.SetType("com.example.order.created")
	v1.SetSubject("order/42")
	v1.SetTime(at)
	v1.SetDataSchema("https://example.com/schemas/order.json")
	v1.SetExtension("tenant", "acme")
	v1.SetExtension("priority", int32(7))
	v1.SetExtension("urgent", true)
	v1.SetExtension("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	require.NoError(t, v1.SetData("application/json", map[string]any{"amount": 12.5, "items": []string{"a", "b"}, "note": "ünïcödé"}))

	v03 := event.New(event.CloudEventsVersionV03)
	v03.SetID("rt-v03-text")
	v03.SetSource("/legacy/app")
	v03.SetType("legacy.happened")
	v03.SetTime(at)
	v03.SetExtension("region", "eu-west")
	require.NoError(t, v03.SetData("text/plain", "plain text, with \"quotes\" and a newline\n"))

	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(i)
	}
	vb := event.New(event.CloudEventsVersionV1)
	vb.SetID("rt-v1-binary")
	vb.SetSource("urn:example:camera")
	vb.SetType("image.captured")
	vb.SetExtension("seq", int32(3))
	require.NoError(t, vb.SetData("application/octet-stream", bin))
	vb.DataBase64 = true

	vnone := event.New(event.CloudEventsVersionV1)
	vnone.SetID("rt-v1-nodata")
	vnone.SetSource("/empty")
	vnone.SetType("ping")

	return []Fixture{{"v1.0 JSON data and extensions", &v1}, {"v0.3 text data", &v03}, {"v1.0 binary data", &vb}, {"v1.0 no data", &vnone}}
}

// RequireSameEvent checks that got carries want's attributes, extensions
// (compared in their canonical string form, as binary modes carry them) and
// data (JSON compared as JSON, everything else byte for byte).
func RequireSameEvent(t *testing.T, want, got *event.Event) {
	t.Helper()
	require.Equal(t, want.SpecVersion(), got.SpecVersion(), "specversion")
	require.Equal(t, want.ID(), got.ID(), "id")
	require.Equal(t, want.Source(), got.Source(), "source")
	require.Equal(t, want.Type(), got.Type(), "type")
	require.Equal(t, want.Subject(), got.Subject(), "subject")
	require.Equal(t, want.DataSchema(), got.DataSchema(), "dataschema")
	require.True(t, want.Time().Equal(got.Time()), "time: want %s, got %s", want.Time(), got.Time())
	require.Equal(t, want.DataContentType(), got.DataContentType(), "datacontenttype")
	require.Equal(t, formatExtensions(t, want), formatExtensions(t, got), "extensions")
	if isJSON(want.DataContentType()) && len(want.Data()) > 0 {
		require.JSONEq(t, string(want.Data()), string(got.Data()), "data")
	} else {
		require.Equal(t, want.Data(), got.Data(), "data")
	}
}

func formatExtensions(t *testing.T, e *event.Event) map[string]string {
	out := map[string]string{}
	for k, v := range e.Extensions() {
		s, err := types.Format(v)
		require.NoError(t, err, k)
		out[k] = s
	}
	return out
}

func isJSON(ct string) bool {
	return ct == "application/json" || ct == "text/json" || len(ct) > 5 && ct[len(ct)-5:] == "+json"
}
