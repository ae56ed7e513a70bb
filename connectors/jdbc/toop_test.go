package jdbc

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// opTask is a sink of table t (id text, n bigint, s text, j jsonb) that
// has not started: enough for toOp.
func opTask() *SinkTask {
	return &SinkTask{d: dialectPostgres, table: "t", cols: map[string]*sinkColumn{
		"id": {name: "id", typ: "text", fam: famText},
		"n":  {name: "n", typ: "bigint", fam: famInt},
		"s":  {name: "s", typ: "text", fam: famText},
		"j":  {name: "j", typ: "jsonb", fam: famJSON},
	}}
}

// dataEvent is an event of data: all the conversion reads.
func dataEvent(data string) *event.Event {
	e := event.New()
	e.DataEncoded = []byte(data)
	return &e
}

func TestToOpReadsData(t *testing.T) {
	for _, c := range []struct {
		data string
		cols []string
		vals []any
	}{
		{`{"s":"x","n":2,"id":"a"}`, []string{"id", "n", "s"}, []any{"a", int64(2), "x"}},
		{` {"n":1,"id":"a","n":3} `, []string{"id", "n"}, []any{"a", int64(3)}},            // a field given twice: its last value
		{`{"i\u0064":"a","n":1}`, []string{"id", "n"}, []any{"a", int64(1)}},               // a name with an escape
		{`{"id":"a\"b\u00e9","s":null}`, []string{"id", "s"}, []any{"a\"bé", nil}},         // a value with escapes
		{"{\"id\":\"a\xffb\"}", []string{"id"}, []any{"a\ufffdb"}},                         // invalid UTF-8: as encoding/json decodes it
		{`{"id":"a","j":{"k":[1,"]"]}}`, []string{"id", "j"}, []any{"a", `{"k":[1,"]"]}`}}, // JSON as written
	} {
		o, err := opTask().toOp(dataEvent(c.data))
		require.NoError(t, err, c.data)
		assert.Equal(t, c.cols, o.cols, "%s: columns sorted by field name", c.data)
		assert.Equal(t, c.vals, o.vals, c.data)
	}
}

func TestToOpRefusesBadData(t *testing.T) {
	for data, want := range map[string]string{
		`[1]`:                        "data is not a JSON object: json: cannot unmarshal array into Go value of type map[string]json.RawMessage",
		`"s"`:                        "data is not a JSON object: json: cannot unmarshal string into Go value of type map[string]json.RawMessage",
		`{"id":"a","n":1x}`:          "data is not a JSON object: invalid character 'x' after object key:value pair",
		`{"id":"a"} {"n":1}`:         "data is not a JSON object: invalid character '{' after top-level value",
		`{"id":"a","n":1,}`:          "data is not a JSON object: invalid character '}' looking for beginning of object key string",
		`{"n":"x","s":tru}`:          "data is not a JSON object: invalid character '}' in literal true (expecting 'e')", // not n's type: the JSON first
		`{"id":"a","s":"\q"}`:        "data is not a JSON object: invalid character 'q' in string escape code",
		`{"id":"a","j":{"k" 1}}`:     "data is not a JSON object: invalid character '1' after object key",
		`{"id":"a","n":"x"}`:         `field "n" → column "n" (bigint): x is not an integer (not rounded)`,
		`{"id":"a","n":1,"zz":true}`: `fields [zz]: no such column in "t"`,
		`{"q":1}`:                    `fields [q]: no such column in "t"`,
		`{}`:                         "no field of the data maps to a column",
	} {
		_, err := opTask().toOp(dataEvent(data))
		require.Error(t, err, data)
		assert.Equal(t, want, err.Error(), data)
	}
}

func TestToOpMapping(t *testing.T) {
	task := opTask()
	task.mapping = map[string]string{"key": "id", "count": "n", "id": "s"}
	o, err := task.toOp(dataEvent(`{"count":5,"key":"k","id":"i","other":1}`))
	require.NoError(t, err)
	assert.Equal(t, []string{"n", "s", "id"}, o.cols, "in the order of the fields' names: count, id, key")
	assert.Equal(t, []any{int64(5), "i", "k"}, o.vals)
}

// BenchmarkToOp is the conversion of one event like BenchmarkSinkPostgres's
// into a row.
func BenchmarkToOp(b *testing.B) {
	task := opTask()
	e := dataEvent(fmt.Sprintf(`{"id":"e-12345","n":12345,"s":%q}`, strings.Repeat("x", 100)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := task.toOp(e); err != nil {
			b.Fatal(err)
		}
	}
}
