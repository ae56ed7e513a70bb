package eventtmpl

import (
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newEvent(t *testing.T, ct string, data []byte) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID("1")
	e.SetSource("/test")
	e.SetType("dev.meshd.test")
	e.SetSubject("order-1")
	e.SetTime(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC))
	e.SetExtension("region", "eu")
	e.SetExtension("tries", 3)
	if data != nil {
		require.NoError(t, e.SetData(ct, data))
	}
	return &e
}

func render(t *testing.T, src string, html bool, e *event.Event) (string, error) {
	t.Helper()
	x, err := Parse("f", src, html)
	require.NoError(t, err)
	return Render(x, Of(e))
}

// The dot is the event: its attributes, extensions as strings, and the
// data decoded from JSON (numbers keep their digits) or as text.
func TestFields(t *testing.T) {
	e := newEvent(t, "application/json", []byte(`{"n": 12345678901234567890, "tags": ["x"], "who": {"name": "Ann"}}`))
	s, err := render(t, `{{.ID}} {{.Source}} {{.Type}} {{.Subject}} {{.Time.Format "2006-01-02"}} {{.DataContentType}} {{.Extensions.region}} {{.Extensions.tries}} {{.Data.n}} {{.Data.who.name}} {{json .Data.tags}}`, false, e)
	require.NoError(t, err)
	assert.Equal(t, `1 /test dev.meshd.test order-1 2024-05-06 application/json eu 3 12345678901234567890 Ann ["x"]`, s)

	s, err = render(t, `{{.Text}}`, false, e)
	require.NoError(t, err)
	assert.Equal(t, `{"n": 12345678901234567890, "tags": ["x"], "who": {"name": "Ann"}}`, s, "Text is the data undecoded")

	for ct, data := range map[string]string{"": `{"a": 1}`, "application/cloudevents+json": `{"a": 1}`, "text/json; charset=utf-8": `{"a": 1}`} {
		s, err = render(t, `{{.Data.a}}`, false, newEvent(t, ct, []byte(data)))
		require.NoError(t, err, "%q is JSON", ct)
		assert.Equal(t, "1", s)
	}
	s, err = render(t, `{{.Data}}`, false, newEvent(t, "text/plain", []byte(`{"a": 1}`)))
	require.NoError(t, err)
	assert.Equal(t, `{"a": 1}`, s, "data of another type is text")
	s, err = render(t, `{{.Data}}`, false, newEvent(t, "application/json", []byte(`{"a": 1} {"b": 2}`)))
	require.NoError(t, err)
	assert.Equal(t, `{"a": 1} {"b": 2}`, s, "two JSON values are text")
	s, err = render(t, `{{.Data}}|{{.Text}}`, false, newEvent(t, "application/octet-stream", []byte{'a', 0xff}))
	require.NoError(t, err)
	assert.Equal(t, "a\uFFFD|a\uFFFD", s, "bytes that are not UTF-8 are replaced")
}

// A missing field or map key fails; a template that does not parse is an
// error; an empty one is none.
func TestParse(t *testing.T) {
	e := newEvent(t, "application/json", []byte(`{"a": 1}`))
	_, err := render(t, `{{.Data.nothere}}`, false, e)
	assert.ErrorContains(t, err, `map has no entry for key "nothere"`)
	_, err = render(t, `{{.Nope}}`, true, e)
	assert.ErrorContains(t, err, "Nope")
	_, err = Parse("body", "{{.Data", false)
	assert.ErrorContains(t, err, "body")
	x, err := Parse("body", "", true)
	require.NoError(t, err)
	assert.Nil(t, x)
	s, err := Render(nil, Of(e))
	require.NoError(t, err)
	assert.Empty(t, s)
}

// html/template escapes what it inserts; text/template does not.
func TestParseHTML(t *testing.T) {
	e := newEvent(t, "application/json", []byte(`{"name": "<b>&</b>"}`))
	s, err := render(t, `<p>{{.Data.name}} {{json .Data.name}}</p>`, true, e)
	require.NoError(t, err)
	assert.Equal(t, `<p>&lt;b&gt;&amp;&lt;/b&gt; &#34;\u003cb\u003e\u0026\u003c/b\u003e&#34;</p>`, s)
	s, err = render(t, `<p>{{.Data.name}}</p>`, false, e)
	require.NoError(t, err)
	assert.Equal(t, `<p><b>&</b></p>`, s)
}

// Without a template the data is the text: a JSON string unquoted, other
// data as it is if it is UTF-8.
func TestDataText(t *testing.T) {
	for _, c := range []struct{ ct, data, want string }{
		{"application/json", `"plain words"`, "plain words"},
		{"application/json", `{"a":1}`, `{"a":1}`},
		{"text/plain", `"quoted"`, `"quoted"`},
		{"", `"no type"`, "no type"},
	} {
		s, err := Of(newEvent(t, c.ct, []byte(c.data))).DataText("text")
		require.NoError(t, err)
		assert.Equal(t, c.want, s, "%s %s", c.ct, c.data)
	}
	_, err := Of(newEvent(t, "application/octet-stream", []byte{0xff, 0xfe})).DataText("body")
	assert.ErrorIs(t, err, ErrNotText)
	assert.EqualError(t, err, "the event data is not UTF-8 text; give a body template")
}
