package bridge

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newEvent(t testing.TB) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID("id-1")
	e.SetSource("/orders")
	e.SetType("com.example.created")
	e.SetSubject("x")
	e.SetTime(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC))
	require.NoError(t, e.SetData("application/json", map[string]any{"n": 1}))
	return &e
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(e *event.Event)
		attr   string // "" means valid
	}{
		{"valid", func(e *event.Event) {}, ""},
		{"valid 0.3", func(e *event.Event) { e.SetSpecVersion("0.3") }, ""},
		{"valid with extensions", func(e *event.Event) {
			e.SetExtension("traceparent", "00-abc")
			e.SetExtension("count", 3)
			e.SetExtension("flag", true)
			e.SetExtension("averyveryverylongextensionname", "ok")
		}, ""},
		{"empty data with content type", func(e *event.Event) {
			e.DataEncoded = nil
			e.SetDataContentType("application/json")
		}, ""},
		{"content type with parameters", func(e *event.Event) { e.SetDataContentType("text/plain; charset=utf-8") }, ""},
		{"absolute source", func(e *event.Event) { e.SetSource("https://example.com/a?b=c#d") }, ""},
		{"urn source", func(e *event.Event) { e.SetSource("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66") }, ""},
		{"nil context", func(e *event.Event) { e.Context = nil }, "specversion"},
		{"missing id", func(e *event.Event) { e.SetID("") }, "id"},
		{"blank id", func(e *event.Event) { e.SetID("  ") }, "id"},
		{"missing source", func(e *event.Event) { v1(e).Source = types.URIRef{} }, "source"},
		{"missing type", func(e *event.Event) { e.SetType("") }, "type"},
		{"bad specversion", func(e *event.Event) { e.SetSpecVersion("2.0") }, "specversion"},
		{"source with space", func(e *event.Event) { e.SetSource("/my source") }, "source"},
		{"source unparsable", func(e *event.Event) { e.SetSource("http://[::1") }, "source"},
		{"zero time", func(e *event.Event) { v1(e).Time = &types.Timestamp{} }, "time"},
		{"time year 10000", func(e *event.Event) {
			v1(e).Time = &types.Timestamp{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
		}, "time"},
		{"bad content type", func(e *event.Event) { e.SetDataContentType("not a type") }, "datacontenttype"},
		{"empty subject", func(e *event.Event) { s := ""; v1(e).Subject = &s }, "subject"},
		{"relative dataschema", func(e *event.Event) {
			v1(e).DataSchema = &types.URI{URL: url.URL{Path: "schema"}}
		}, "dataschema"},
		{"upper-case extension", func(e *event.Event) { v1(e).Extensions = map[string]any{"Bad": "x"} }, "Bad"},
		{"extension with dash", func(e *event.Event) { v1(e).Extensions = map[string]any{"my-ext": "x"} }, "my-ext"},
		{"extension shadowing an attribute", func(e *event.Event) { v1(e).Extensions = map[string]any{"type": "x"} }, "type"},
		{"extension of a map", func(e *event.Event) {
			v1(e).Extensions = map[string]any{"obj": map[string]any{"a": 1}}
		}, "obj"},
		{"extension of a slice", func(e *event.Event) { v1(e).Extensions = map[string]any{"list": []string{"a"}} }, "list"},
		{"field error from a setter", func(e *event.Event) { e.SetExtension("Bad-Name", "x") }, "Bad-Name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEvent(t)
			tt.mutate(e)
			err := Validate(e)
			if tt.attr == "" {
				require.NoError(t, err)
				return
			}
			var ie *InvalidEventError
			require.True(t, errors.As(err, &ie), "want *InvalidEventError, got %T %v", err, err)
			assert.Equal(t, tt.attr, ie.Attribute, ie.Error())
			assert.NotEmpty(t, ie.Reason)
		})
	}
}

func TestValidateNil(t *testing.T) {
	var ie *InvalidEventError
	require.ErrorAs(t, Validate(nil), &ie)
}

func TestValidateDoesNotEchoHugeInput(t *testing.T) {
	e := newEvent(t)
	e.SetDataContentType(strings.Repeat("x", 10000) + " y")
	err := Validate(e)
	require.Error(t, err)
	assert.Less(t, len(err.Error()), 300)
}

func TestValidateAllocs(t *testing.T) {
	e := newEvent(t)
	e.SetExtension("traceparent", "00-abc")
	allocs := testing.AllocsPerRun(100, func() {
		if err := Validate(e); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

func BenchmarkValidate(b *testing.B) {
	e := newEvent(b)
	e.SetExtension("traceparent", "00-abc")
	b.ReportAllocs()
	for b.Loop() {
		if err := Validate(e); err != nil {
			b.Fatal(err)
		}
	}
}

func v1(e *event.Event) *event.EventContextV1 { return e.Context.(*event.EventContextV1) }
