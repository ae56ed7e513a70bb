package bridge

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFiltersSQL(t *testing.T) {
	runFilterCases(t, []filterCase{
		{"like and equals", []map[string]any{{"sql": "type LIKE 'com.%' AND subject = 'x'"}}, true},
		{"like fails", []map[string]any{{"sql": "type LIKE 'org.%' AND subject = 'x'"}}, false},
		{"extension", []map[string]any{{"sql": "region = 'eu' AND priority > 3"}}, true},
		{"exists", []map[string]any{{"sql": "EXISTS region"}}, true},
		{"missing attribute is no match", []map[string]any{{"sql": "missing = 'x'"}}, false},
		{"not missing attribute", []map[string]any{{"sql": "NOT EXISTS missing"}}, true},
		{"non-boolean result is no match", []map[string]any{{"sql": "'abc'"}}, false},
		{"lower-case keywords", []map[string]any{{"sql": "type like 'com.%' and subject = 'x'"}}, true},
		{"nested in any", []map[string]any{{"any": []any{
			map[string]any{"exact": map[string]any{"type": "nope"}},
			map[string]any{"sql": "subject IN ('x', 'y')"},
		}}}, true},
		{"nested in not", []map[string]any{{"not": map[string]any{"sql": "subject = 'x'"}}}, false},
		{"with other dialects (AND)", []map[string]any{
			{"sql": "subject = 'x'"},
			{"exact": map[string]any{"region": "us"}},
		}, false},
	})
}

func TestFiltersSQLErrors(t *testing.T) {
	for _, expr := range []string{"type LIKE", "subject = = 'x'", "(type = 'a'"} {
		t.Run(expr, func(t *testing.T) {
			_, err := CompileFilters([]map[string]any{
				{"exact": map[string]any{"type": "x"}},
				{"all": []any{map[string]any{"sql": expr}}},
			})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "filters[1].all[0].sql: ")
		})
	}
}
