// Package eventtmpl is what the templates of the message sinks (email-sink,
// dingtalk-sink, feishu-sink) see and may call: the event as their dot
// (Fields: its attributes, and its data decoded from JSON when it is JSON),
// the json function, and parsing that fails on a missing field or map key.
// Each connector keeps its own set of templates and what it makes of their
// output.
package eventtmpl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"mime"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge/jsonscan"
)

// Fields is what every template sees as its dot: the event's attributes
// and its data. A template naming a field or map key that does not exist
// fails, and so does its event (it is dead-lettered).
type Fields struct {
	ID              string
	Source          string
	Type            string
	Subject         string
	Time            time.Time // zero when the event has no time
	DataContentType string
	DataSchema      string
	// Extensions are the extension attributes, as strings.
	Extensions map[string]string
	// Data is the data decoded from JSON when it is JSON (objects are
	// map[string]any, numbers keep their digits), else the data as text.
	Data any
	// Text is the data as text, not decoded.
	Text string

	raw []byte
}

// Of gives a template the event e.
func Of(e *event.Event) *Fields {
	f := &Fields{
		ID:              e.ID(),
		Source:          e.Source(),
		Type:            e.Type(),
		Subject:         e.Subject(),
		Time:            e.Time(),
		DataContentType: e.DataContentType(),
		DataSchema:      e.DataSchema(),
		Extensions:      make(map[string]string, len(e.Extensions())),
		raw:             e.Data(),
	}
	for k, v := range e.Extensions() {
		f.Extensions[k] = fmt.Sprint(v)
	}
	f.Text = strings.ToValidUTF8(string(f.raw), "\uFFFD")
	f.Data = f.Text
	if isJSON(f.DataContentType, f.raw) {
		d := json.NewDecoder(bytes.NewReader(f.raw))
		d.UseNumber()
		var v any
		if d.Decode(&v) == nil && !d.More() {
			f.Data = v
		}
	}
	return f
}

// ErrNotText is the failure of an event whose data is not UTF-8 text and
// that has no template to make its text.
var ErrNotText = errors.New("the event data is not UTF-8 text")

// DataText is the event data as the text of a message that has no
// template (field names that template): a JSON string unquoted, else the
// data as it is, which must be UTF-8.
func (f *Fields) DataText(field string) (string, error) {
	if s, ok := f.Data.(string); ok && isJSON(f.DataContentType, f.raw) {
		return s, nil
	}
	if !utf8.Valid(f.raw) {
		return "", fmt.Errorf("%w; give a %s template", ErrNotText, field)
	}
	return string(f.raw), nil
}

// isJSON says whether data of content type ct is JSON: application/json,
// any +json type, or no type and data that parses as JSON.
func isJSON(ct string, data []byte) bool {
	if ct == "" {
		return len(data) > 0 && jsonscan.Valid(data)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// funcs are the functions templates may call besides the template
// package's own.
var funcs = map[string]any{
	// json writes a value as JSON: {{json .Data}}, or a JSON string in a
	// template of JSON: {"title": {{json .Subject}}}.
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// Template is a parsed text/template or html/template.
type Template interface {
	Execute(w io.Writer, data any) error
}

// Parse parses src, the template of the config field name, as a
// text/template, or as an html/template (its output escaped for HTML) when
// html is set. An empty src is no template: nil.
func Parse(name, src string, html bool) (Template, error) {
	if src == "" {
		return nil, nil
	}
	if html {
		t, err := htmltemplate.New(name).Option("missingkey=error").Funcs(funcs).Parse(src)
		if err != nil {
			return nil, err
		}
		return t, nil
	}
	t, err := template.New(name).Option("missingkey=error").Funcs(funcs).Parse(src)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Render executes t (nil: "") over f. Its errors name the template.
func Render(t Template, f *Fields) (string, error) {
	if t == nil {
		return "", nil
	}
	var b strings.Builder
	if err := t.Execute(&b, f); err != nil {
		return "", err
	}
	return b.String(), nil
}
