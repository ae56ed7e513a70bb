package bridge

import (
	"encoding/json"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// filterEvent: type com.example.created, source /orders, subject x,
// extensions region=eu, priority=5 (int32), urgent=true.
func filterEvent(t testing.TB) *event.Event {
	e := newEvent(t)
	e.SetExtension("region", "eu")
	e.SetExtension("priority", 5)
	e.SetExtension("urgent", true)
	return e
}

type filterCase struct {
	name  string
	specs []map[string]any
	match bool
}

func runFilterCases(t *testing.T, tests []filterCase) {
	t.Helper()
	e := filterEvent(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := CompileFilters(tt.specs)
			require.NoError(t, err)
			assert.Equal(t, tt.match, f.Match(e))
		})
	}
}

func TestFilters(t *testing.T) {
	runFilterCases(t, []filterCase{
		{"no filters", nil, true},
		{"empty list", []map[string]any{}, true},

		{"exact type", []map[string]any{{"exact": map[string]any{"type": "com.example.created"}}}, true},
		{"exact type differs", []map[string]any{{"exact": map[string]any{"type": "com.example"}}}, false},
		{"exact all pairs", []map[string]any{{"exact": map[string]any{"type": "com.example.created", "subject": "x"}}}, true},
		{"exact one pair differs", []map[string]any{{"exact": map[string]any{"type": "com.example.created", "subject": "y"}}}, false},
		{"exact extension", []map[string]any{{"exact": map[string]any{"region": "eu"}}}, true},
		{"exact missing attribute", []map[string]any{{"exact": map[string]any{"missing": "eu"}}}, false},
		{"exact missing attribute empty value", []map[string]any{{"exact": map[string]any{"dataschema": ""}}}, false},
		{"exact int value vs int32 extension", []map[string]any{{"exact": map[string]any{"priority": 5}}}, true},
		{"exact float value (JSON) vs int32 extension", []map[string]any{{"exact": map[string]any{"priority": 5.0}}}, true},
		{"exact bool value", []map[string]any{{"exact": map[string]any{"urgent": true}}}, true},
		{"exact bool value differs", []map[string]any{{"exact": map[string]any{"urgent": false}}}, false},
		{"exact id", []map[string]any{{"exact": map[string]any{"id": "id-1"}}}, true},
		{"exact specversion", []map[string]any{{"exact": map[string]any{"specversion": "1.0"}}}, true},
		{"exact time", []map[string]any{{"exact": map[string]any{"time": "2024-05-06T07:08:09Z"}}}, true},
		{"exact datacontenttype", []map[string]any{{"exact": map[string]any{"datacontenttype": "application/json"}}}, true},
		{"exact is case-sensitive", []map[string]any{{"exact": map[string]any{"type": "COM.example.created"}}}, false},

		{"prefix", []map[string]any{{"prefix": map[string]any{"type": "com.example."}}}, true},
		{"prefix differs", []map[string]any{{"prefix": map[string]any{"type": "org."}}}, false},
		{"prefix source", []map[string]any{{"prefix": map[string]any{"source": "/ord"}}}, true},
		{"prefix missing attribute", []map[string]any{{"prefix": map[string]any{"missing": ""}}}, false},

		{"suffix", []map[string]any{{"suffix": map[string]any{"type": ".created"}}}, true},
		{"suffix differs", []map[string]any{{"suffix": map[string]any{"type": ".deleted"}}}, false},

		{"top level is AND", []map[string]any{
			{"prefix": map[string]any{"type": "com."}},
			{"exact": map[string]any{"subject": "x"}},
		}, true},
		{"top level AND fails", []map[string]any{
			{"prefix": map[string]any{"type": "com."}},
			{"exact": map[string]any{"subject": "y"}},
		}, false},

		{"all", []map[string]any{{"all": []any{
			map[string]any{"prefix": map[string]any{"type": "com."}},
			map[string]any{"suffix": map[string]any{"type": "created"}},
		}}}, true},
		{"all one fails", []map[string]any{{"all": []any{
			map[string]any{"prefix": map[string]any{"type": "com."}},
			map[string]any{"suffix": map[string]any{"type": "deleted"}},
		}}}, false},
		{"any", []map[string]any{{"any": []any{
			map[string]any{"exact": map[string]any{"type": "nope"}},
			map[string]any{"exact": map[string]any{"region": "eu"}},
		}}}, true},
		{"any none", []map[string]any{{"any": []any{
			map[string]any{"exact": map[string]any{"type": "nope"}},
			map[string]any{"exact": map[string]any{"region": "us"}},
		}}}, false},
		{"any of Go-typed list", []map[string]any{{"any": []map[string]any{
			{"exact": map[string]any{"region": "eu"}},
		}}}, true},
		{"not", []map[string]any{{"not": map[string]any{"exact": map[string]any{"type": "nope"}}}}, true},
		{"not matching", []map[string]any{{"not": map[string]any{"exact": map[string]any{"region": "eu"}}}}, false},
		{"not of missing attribute", []map[string]any{{"not": map[string]any{"exact": map[string]any{"missing": "x"}}}}, true},

		{"nested any(all, not)", []map[string]any{{"any": []any{
			map[string]any{"all": []any{
				map[string]any{"exact": map[string]any{"region": "us"}},
				map[string]any{"prefix": map[string]any{"type": "com."}},
			}},
			map[string]any{"not": map[string]any{"any": []any{
				map[string]any{"exact": map[string]any{"subject": "y"}},
				map[string]any{"exact": map[string]any{"subject": "z"}},
			}}},
		}}}, true},
		{"nested all(any, not) fails", []map[string]any{{"all": []any{
			map[string]any{"any": []any{
				map[string]any{"exact": map[string]any{"region": "eu"}},
			}},
			map[string]any{"not": map[string]any{"suffix": map[string]any{"type": "created"}}},
		}}}, false},

		{"yaml.v2 shapes", []map[string]any{{"all": []any{
			map[any]any{"exact": map[any]any{"region": "eu"}},
		}}}, true},
	})
}

func TestFiltersFromJSON(t *testing.T) {
	// Subscriptions are persisted as JSON: numbers come back as float64.
	var specs []map[string]any
	require.NoError(t, json.Unmarshal([]byte(`[
		{"exact": {"priority": 5, "urgent": true}},
		{"any": [{"prefix": {"type": "org."}}, {"not": {"exact": {"region": "us"}}}]}
	]`), &specs))
	f, err := CompileFilters(specs)
	require.NoError(t, err)
	assert.True(t, f.Match(filterEvent(t)))
}

func TestFilterMissingContext(t *testing.T) {
	f, err := CompileFilters([]map[string]any{{"exact": map[string]any{"region": "eu"}}})
	require.NoError(t, err)
	assert.False(t, f.Match(&event.Event{}))
}

func TestCompileFiltersErrors(t *testing.T) {
	tests := []struct {
		name  string
		specs []map[string]any
		want  string
	}{
		{"unknown dialect", []map[string]any{{"exactt": map[string]any{"type": "x"}}}, `filters[0]: unknown dialect "exactt"`},
		{"nested unknown dialect", []map[string]any{
			{"exact": map[string]any{"type": "x"}},
			{"any": []any{map[string]any{"exactt": map[string]any{"type": "x"}}}},
		}, `filters[1].any[0]: unknown dialect "exactt"`},
		{"two dialects", []map[string]any{{"exact": map[string]any{"type": "x"}, "prefix": map[string]any{"type": "x"}}}, `filters[0]: want an object with exactly one dialect`},
		{"no dialect", []map[string]any{{}}, `filters[0]: want an object with exactly one dialect`},
		{"exact not an object", []map[string]any{{"exact": "type"}}, `filters[0].exact: want an object`},
		{"exact empty", []map[string]any{{"exact": map[string]any{}}}, `filters[0].exact: want an object`},
		{"exact non-scalar value", []map[string]any{{"exact": map[string]any{"type": []any{"a"}}}}, `filters[0].exact.type: want a scalar value`},
		{"exact null value", []map[string]any{{"exact": map[string]any{"type": nil}}}, `filters[0].exact.type: want a scalar value`},
		{"bad attribute name", []map[string]any{{"prefix": map[string]any{"Type": "x"}}}, `filters[0].prefix: attribute "Type"`},
		{"all empty", []map[string]any{{"all": []any{}}}, `filters[0].all: want a non-empty list`},
		{"any not a list", []map[string]any{{"any": map[string]any{"exact": map[string]any{"type": "x"}}}}, `filters[0].any: want a non-empty list`},
		{"any element not an object", []map[string]any{{"any": []any{"x"}}}, `filters[0].any[0]: want an object`},
		{"not a list", []map[string]any{{"not": []any{}}}, `filters[0].not: want an object`},
		{"deep path", []map[string]any{{"all": []any{
			map[string]any{"not": map[string]any{"any": []any{
				map[string]any{"exact": map[string]any{"type": "x"}},
				map[string]any{"suffix": map[string]any{"type": map[string]any{}}},
			}}},
		}}}, `filters[0].all[0].not.any[1].suffix.type: want a scalar value`},
		{"sql not a string", []map[string]any{{"sql": 5}}, `filters[0].sql: want a CESQL expression string`},
		{"sql empty", []map[string]any{{"sql": " "}}, `filters[0].sql: want a CESQL expression string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := CompileFilters(tt.specs)
			require.Error(t, err)
			assert.Nil(t, f)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func BenchmarkFilterExact(b *testing.B) {
	f, err := CompileFilters([]map[string]any{{"exact": map[string]any{"type": "com.example.created", "region": "eu"}}})
	require.NoError(b, err)
	e := filterEvent(b)
	b.ReportAllocs()
	for b.Loop() {
		if !f.Match(e) {
			b.Fatal("no match")
		}
	}
}
