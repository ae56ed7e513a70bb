package clickhouse

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rowTask is a sink of a table (id String, n Int64, s String, at
// DateTime) that has not started: enough for toRow.
func rowTask(t testing.TB) *SinkTask {
	task := &SinkTask{table: "t", cols: map[string]*sinkColumn{}}
	for i, c := range []column{
		{"id", "String", reflect.TypeFor[string]()},
		{"n", "Int64", reflect.TypeFor[int64]()},
		{"s", "String", reflect.TypeFor[string]()},
		{"at", "DateTime", reflect.TypeFor[time.Time]()},
	} {
		sc := &sinkColumn{column: c, index: i}
		sc.conv, sc.convErr = converter(c.typ, c.scan)
		require.NoError(t, sc.convErr)
		task.cols[c.name] = sc
	}
	return task
}

// dataEvent is an event of data: all the conversion reads.
func dataEvent(data string) *event.Event {
	e := event.New()
	e.DataEncoded = []byte(data)
	return &e
}

func TestToRowReadsData(t *testing.T) {
	for _, c := range []struct {
		data string
		cols []string
		vals []any
	}{
		{`{"s":"x","n":2,"id":"a"}`, []string{"id", "n", "s"}, []any{"a", int64(2), "x"}}, // in table order
		{` {"n":1,"id":"a","n":3} `, []string{"id", "n"}, []any{"a", int64(3)}},           // a field given twice: its last value
		{`{"i\u0064":"a","n":1}`, []string{"id", "n"}, []any{"a", int64(1)}},              // a name with an escape
		{`{"id":"a\"b\u00e9","at":"2026-11-23T10:00:00Z"}`, []string{"id", "at"}, []any{"a\"bé", time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}},
	} {
		r, err := rowTask(t).toRow(dataEvent(c.data))
		require.NoError(t, err, c.data)
		var names []string
		for _, sc := range r.cols {
			names = append(names, sc.name)
		}
		assert.Equal(t, c.cols, names, c.data)
		assert.Equal(t, c.vals, r.vals, c.data)
	}
}

func TestToRowRefusesBadData(t *testing.T) {
	for data, want := range map[string]string{
		`[1]`:                 "data is not a JSON object: json: cannot unmarshal array into Go value of type map[string]json.RawMessage",
		`{"id":"a","n":1x}`:   "data is not a JSON object: invalid character 'x' after object key:value pair",
		`{"id":"a"} {"n":1}`:  "data is not a JSON object: invalid character '{' after top-level value", // not the first object alone
		`{"id":"a"`:           "data is not a JSON object: unexpected end of JSON input",
		`{"n":"x","s":tru}`:   "data is not a JSON object: invalid character '}' in literal true (expecting 'e')", // the JSON before n's type
		`{"id":"a","n":"x"}`:  `field "n" → column "n" (Int64): want an integer, got a string`,
		`{"n":"x","at":"no"}`: `field "at" → column "at" (DateTime): "no" is not an RFC 3339 time or date`, // the first bad field by name
		`{"q":1}`:             `field "q": no column of that name in "t" (set skip.unknown.fields to ignore such fields)`,
		`{}`:                  "no field of the data maps to a column",
	} {
		_, err := rowTask(t).toRow(dataEvent(data))
		require.Error(t, err, data)
		assert.Equal(t, want, err.Error(), data)
	}
}

// BenchmarkToRow is the conversion of one event like BenchmarkSinkPut's
// into a row.
func BenchmarkToRow(b *testing.B) {
	task := rowTask(b)
	e := dataEvent(fmt.Sprintf(`{"id":"e-12345","n":12345,"s":%q,"at":"2026-11-23T10:00:00Z"}`, strings.Repeat("x", 100)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := task.toRow(e); err != nil {
			b.Fatal(err)
		}
	}
}

func TestGroupByColumnsKeepsOrderOfFirstAppearance(t *testing.T) {
	task := rowTask(t)
	var rows []row
	for i, data := range []string{`{"id":"a","n":1}`, `{"id":"b"}`, `{"id":"c"}`, `{"n":4,"id":"d"}`, `{"id":"e"}`} {
		r, err := task.toRow(dataEvent(data))
		require.NoError(t, err)
		r.event = i
		rows = append(rows, r)
	}
	var got [][]int
	for _, block := range groupByColumns(rows) {
		var events []int
		for _, r := range block {
			events = append(events, r.event)
		}
		got = append(got, events)
	}
	assert.Equal(t, [][]int{{0, 3}, {1, 2, 4}}, got)
}
