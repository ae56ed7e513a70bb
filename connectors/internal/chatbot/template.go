package chatbot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/connectors"
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

// errNotText is the failure of an event whose data cannot be a message.
var errNotText = errors.New("the event data is not UTF-8 text; give a text template")

// funcs are the functions templates may call besides text/template's own.
var funcs = template.FuncMap{
	// json writes a value as JSON: {{json .Data}}, or a JSON string in a
	// content template: {"title": {{json .Subject}}}.
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// Template is a parsed message template; the nil *Template renders "".
type Template struct{ t *template.Template }

// ParseTemplate parses the template of a config field (none if empty).
func ParseTemplate(field, src string) (*Template, *connectors.FieldError) {
	if src == "" {
		return nil, nil
	}
	t, err := template.New(field).Option("missingkey=error").Funcs(funcs).Parse(src)
	if err != nil {
		return nil, &connectors.FieldError{Field: field, Reason: err.Error()}
	}
	return &Template{t}, nil
}

// Templates parses the templates of the named fields of cfg; absent ones
// are nil in the map.
func Templates(cfg connectors.Config, fields ...string) (map[string]*Template, []connectors.FieldError) {
	out := make(map[string]*Template, len(fields))
	var errs []connectors.FieldError
	for _, f := range fields {
		t, ferr := ParseTemplate(f, cfg.String(f))
		if ferr != nil {
			errs = append(errs, *ferr)
		}
		out[f] = t
	}
	return out, errs
}

// Render executes t for one event. Errors name the template's field.
func (t *Template) Render(f *Fields) (string, error) {
	if t == nil {
		return "", nil
	}
	var b strings.Builder
	if err := t.t.Execute(&b, f); err != nil {
		return "", err
	}
	return b.String(), nil
}

// List renders t and splits the result at commas, dropping empty items
// (for lists of user ids or mobiles).
func (t *Template) List(f *Fields) ([]string, error) {
	s, err := t.Render(f)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// Object renders t, which must give a JSON object (a content template).
func (t *Template) Object(f *Fields) (json.RawMessage, error) {
	s, err := t.Render(f)
	if err != nil {
		return nil, err
	}
	s = strings.TrimSpace(s)
	var probe map[string]any
	if err := json.Unmarshal([]byte(s), &probe); err != nil {
		return nil, fmt.Errorf("template %s does not give a JSON object: %v", t.t.Name(), err)
	}
	return json.RawMessage(s), nil
}

// TextOr renders t, or without t gives the event data as text (a JSON
// string unquoted).
func (t *Template) TextOr(f *Fields) (string, error) {
	if t != nil {
		return t.Render(f)
	}
	if s, ok := f.Data.(string); ok && isJSON(f.DataContentType, f.raw) {
		return s, nil
	}
	if !utf8.Valid(f.raw) {
		return "", errNotText
	}
	return string(f.raw), nil
}

// FieldsOf gives a template the event e.
func FieldsOf(e *event.Event) *Fields {
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

// isJSON says whether data of content type ct is JSON: application/json,
// any +json type, or no type and data that parses as JSON.
func isJSON(ct string, data []byte) bool {
	if ct == "" {
		return len(data) > 0 && json.Valid(data)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// MsgType is the message type of e: the value of its extension ext if set
// (it must be one of allowed), else def.
func MsgType(e *event.Event, ext, def string, allowed []string) (string, error) {
	v, ok := e.Extensions()[ext]
	if !ok {
		return def, nil
	}
	s := fmt.Sprint(v)
	for _, a := range allowed {
		if s == a {
			return s, nil
		}
	}
	return "", fmt.Errorf("extension %s: %q is not one of %s", ext, s, strings.Join(allowed, ", "))
}

// Renderer renders the templates of one event by field name, keeping the
// first error (the event's failure) and giving "" after it.
type Renderer struct {
	F   *Fields
	T   map[string]*Template
	Err error
}

// NewRenderer renders templates t over e.
func NewRenderer(e *event.Event, t map[string]*Template) *Renderer {
	return &Renderer{F: FieldsOf(e), T: t}
}

func (r *Renderer) keep(s string, err error) string {
	if r.Err != nil {
		return ""
	}
	r.Err = err
	return s
}

// Render renders the template of field ("" when it has none).
func (r *Renderer) Render(field string) string {
	if r.Err != nil {
		return ""
	}
	return r.keep(r.T[field].Render(r.F))
}

// TextOr renders the template of field, or gives the event data as text;
// the text must not be empty.
func (r *Renderer) TextOr(field string) string {
	if r.Err != nil {
		return ""
	}
	s := r.keep(r.T[field].TextOr(r.F))
	if strings.TrimSpace(s) == "" && r.Err == nil {
		r.Err = fmt.Errorf("the message text is empty (template %s, or the event data without one)", field)
	}
	return s
}

// Required renders the template of field, which must give a value.
func (r *Renderer) Required(field string) string {
	s := strings.TrimSpace(r.Render(field))
	if s == "" && r.Err == nil {
		r.Err = fmt.Errorf("template %s gave an empty value", field)
	}
	return s
}

// List renders the template of field as a comma-separated list.
func (r *Renderer) List(field string) []string {
	if r.Err != nil {
		return nil
	}
	l, err := r.T[field].List(r.F)
	r.keep("", err)
	return l
}

// Object renders the template of field, which must give a JSON object.
func (r *Renderer) Object(field string) json.RawMessage {
	if r.Err != nil {
		return nil
	}
	o, err := r.T[field].Object(r.F)
	r.keep("", err)
	return o
}
