package chatbot

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/internal/eventtmpl"
)

// Template is a parsed message template; the nil *Template renders "".
type Template struct {
	t     eventtmpl.Template
	field string
}

// ParseTemplate parses the template of a config field (none if empty).
func ParseTemplate(field, src string) (*Template, *connectors.FieldError) {
	t, err := eventtmpl.Parse(field, src, false)
	if err != nil {
		return nil, &connectors.FieldError{Field: field, Reason: err.Error()}
	}
	if t == nil {
		return nil, nil
	}
	return &Template{t: t, field: field}, nil
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
func (t *Template) Render(f *eventtmpl.Fields) (string, error) {
	if t == nil {
		return "", nil
	}
	return eventtmpl.Render(t.t, f)
}

// List renders t and splits the result at commas, dropping empty items
// (for lists of user ids or mobiles).
func (t *Template) List(f *eventtmpl.Fields) ([]string, error) {
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
func (t *Template) Object(f *eventtmpl.Fields) (json.RawMessage, error) {
	s, err := t.Render(f)
	if err != nil {
		return nil, err
	}
	s = strings.TrimSpace(s)
	var probe map[string]any
	if err := json.Unmarshal([]byte(s), &probe); err != nil {
		return nil, fmt.Errorf("template %s does not give a JSON object: %v", t.field, err)
	}
	return json.RawMessage(s), nil
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
	F   *eventtmpl.Fields
	T   map[string]*Template
	Err error
}

// NewRenderer renders templates t over e.
func NewRenderer(e *event.Event, t map[string]*Template) *Renderer {
	return &Renderer{F: eventtmpl.Of(e), T: t}
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
	var s string
	if t := r.T[field]; t != nil {
		s = r.keep(t.Render(r.F))
	} else {
		s = r.keep(r.F.DataText(field))
	}
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
