package rocketmq

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
)

func sampleEvent(t *testing.T) event.Event {
	t.Helper()
	e := event.New()
	e.SetID("order-42")
	e.SetSource("/shop/orders")
	e.SetType("com.example.order.created")
	e.SetSubject("42")
	e.SetTime(time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC))
	e.SetDataSchema("https://example.com/order.json")
	e.SetExtension("tenant", "acme")
	e.SetExtension("priority", int32(3))
	e.SetExtension("flag", true)
	require.NoError(t, e.SetData("application/octet-stream", []byte{0, 1, 2, 0xff, 0xfe}))
	return e
}

// The CE_ properties of an event read back as the same event (extension
// values as strings).
func TestPropertiesRoundTrip(t *testing.T) {
	e := sampleEvent(t)
	props, err := eventProperties(&e)
	require.NoError(t, err)
	assert.Equal(t, "application/octet-stream", props["CE_contenttype"], "datacontenttype travels as CE_contenttype")
	assert.Equal(t, "2026-11-30T12:00:00.123456789Z", props["CE_time"])
	assert.Equal(t, "3", props["CE_priority"])

	back, err := propertiesEvent(props, e.Data())
	require.NoError(t, err)
	assert.Equal(t, e.ID(), back.ID())
	assert.Equal(t, e.Source(), back.Source())
	assert.Equal(t, e.Type(), back.Type())
	assert.Equal(t, e.Subject(), back.Subject())
	assert.Equal(t, e.DataSchema(), back.DataSchema())
	assert.True(t, e.Time().Equal(back.Time()))
	assert.Equal(t, e.DataContentType(), back.DataContentType())
	assert.Equal(t, e.Data(), back.Data(), "binary data stays binary")
	assert.Equal(t, map[string]any{"tenant": "acme", "priority": "3", "flag": "true"}, back.Extensions())
}

// A message in structured mode (CE_contenttype application/cloudevents+json)
// holds the event in its body.
func TestStructuredMessage(t *testing.T) {
	e := sampleEvent(t)
	require.NoError(t, e.SetData("application/json", map[string]any{"n": 1}))
	body, err := e.MarshalJSON()
	require.NoError(t, err)
	back, err := propertiesEvent(map[string]string{"CE_contenttype": "application/cloudevents+json; charset=UTF-8", "CE_id": "x"}, body)
	require.NoError(t, err)
	assert.Equal(t, "order-42", back.ID())
	assert.JSONEq(t, `{"n":1}`, string(back.Data()))
}

// An event without data travels with an empty body; the Java SDK's body of
// one NUL byte reads as no data too.
func TestEventWithoutData(t *testing.T) {
	for _, body := range [][]byte{nil, {0}} {
		e, err := propertiesEvent(map[string]string{"CE_id": "1", "CE_source": "/s", "CE_type": "t", "CE_specversion": "1.0"}, body)
		require.NoError(t, err)
		assert.Nil(t, e.Data())
	}
}

// Properties that make no valid event are refused, so the source reads the
// message as a plain one.
func TestPropertiesThatMakeNoEvent(t *testing.T) {
	for name, props := range map[string]map[string]string{
		"no source":    {"CE_id": "1", "CE_type": "t", "CE_specversion": "1.0"},
		"bad time":     {"CE_id": "1", "CE_type": "t", "CE_source": "/s", "CE_time": "yesterday"},
		"bad version":  {"CE_id": "1", "CE_type": "t", "CE_source": "/s", "CE_specversion": "9.9"},
		"bad ext name": {"CE_id": "1", "CE_type": "t", "CE_source": "/s", "CE_Bad-Name": "x"},
		"bad json":     {"CE_id": "1", "CE_contenttype": "application/cloudevents+json"},
	} {
		_, err := propertiesEvent(props, []byte("{"))
		assert.Error(t, err, name)
	}
}

// Separators in an attribute and oversized properties cannot travel.
func TestUnrepresentableEvents(t *testing.T) {
	e := sampleEvent(t)
	e.SetExtension("note", "a\x01b")
	_, err := eventProperties(&e)
	assert.ErrorIs(t, err, errUnrepresentable)
	e = sampleEvent(t)
	e.SetExtension("big", strings.Repeat("x", 40000))
	_, err = eventProperties(&e)
	assert.ErrorIs(t, err, errUnrepresentable)
}

func TestTemplates(t *testing.T) {
	e := sampleEvent(t)
	tp, err := bridge.ParseTemplate("orders-{tenant}_{subject}")
	require.NoError(t, err)
	got, missing := tp.Render(&e)
	assert.Equal(t, "orders-acme_42", got)
	assert.Empty(t, missing)
	tp, _ = bridge.ParseTemplate("{nothere}")
	_, missing = tp.Render(&e)
	assert.Equal(t, []string{"nothere"}, missing)
	tp, _ = bridge.ParseTemplate("{time}")
	got, _ = tp.Render(&e)
	assert.Equal(t, types.FormatTime(e.Time()), got)
	for _, bad := range []string{"{", "}", "a{B}", "{}", "x{y"} {
		_, err := bridge.ParseTemplate(bad)
		assert.Error(t, err, bad)
	}
	lit, _ := bridge.ParseTemplate("plain")
	assert.True(t, lit.Literal())
}
