package email

import (
	"bytes"
	"encoding/json"
	"fmt"
	htmltemplate "html/template"
	"io"
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
// fails, and so does the event (it is dead-lettered).
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
}

// funcs are the functions templates may call besides text/template's own.
var funcs = template.FuncMap{
	// json writes a value as JSON: {{json .Data}}.
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// executor is a parsed text/template or html/template.
type executor interface {
	Execute(w io.Writer, data any) error
}

// templates are the parsed templates of one config; a nil one is absent.
type templates struct {
	from, to, cc, bcc, subject executor
	body                       executor
}

func parseTemplates(cfg connectors.Config, html bool) (templates, []connectors.FieldError) {
	var t templates
	var errs []connectors.FieldError
	parse := func(field string) executor {
		src := cfg.String(field)
		if src == "" {
			return nil
		}
		x, err := template.New(field).Option("missingkey=error").Funcs(funcs).Parse(src)
		if err != nil {
			errs = append(errs, connectors.FieldError{Field: field, Reason: err.Error()})
			return nil
		}
		return x
	}
	t.from, t.to, t.cc, t.bcc, t.subject = parse(FieldFrom), parse(FieldTo), parse(FieldCc), parse(FieldBcc), parse(FieldSubject)
	if cfg.String(FieldFrom) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldFrom, Reason: "must not be empty"})
	}
	if cfg.String(FieldTo) == "" && cfg.String(FieldCc) == "" && cfg.String(FieldBcc) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldTo, Reason: "required (or cc or bcc)"})
	}
	if src := cfg.String(FieldBody); src != "" {
		if html {
			x, err := htmltemplate.New(FieldBody).Option("missingkey=error").Funcs(htmltemplate.FuncMap(funcs)).Parse(src)
			if err != nil {
				errs = append(errs, connectors.FieldError{Field: FieldBody, Reason: err.Error()})
			} else {
				t.body = x
			}
		} else {
			t.body = parse(FieldBody)
		}
	}
	return t, errs
}

// render executes x (nil: "") for one event. Its errors name the
// template (it is named after its field).
func render(x executor, f *Fields) (string, error) {
	if x == nil {
		return "", nil
	}
	var b strings.Builder
	if err := x.Execute(&b, f); err != nil {
		return "", err
	}
	return b.String(), nil
}

// fieldsOf gives a template the event e.
func fieldsOf(e *event.Event) *Fields {
	f := &Fields{
		ID:              e.ID(),
		Source:          e.Source(),
		Type:            e.Type(),
		Subject:         e.Subject(),
		Time:            e.Time(),
		DataContentType: e.DataContentType(),
		DataSchema:      e.DataSchema(),
		Extensions:      make(map[string]string, len(e.Extensions())),
	}
	for k, v := range e.Extensions() {
		f.Extensions[k] = fmt.Sprint(v)
	}
	data := e.Data()
	f.Text = strings.ToValidUTF8(string(data), "\uFFFD")
	f.Data = f.Text
	if isJSON(f.DataContentType, data) {
		d := json.NewDecoder(bytes.NewReader(data))
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

// bodyOf returns the body of the mail for e: the body template's output,
// or the event's data as text (a JSON string unquoted).
func (t templates) bodyOf(f *Fields, data []byte) (string, error) {
	if t.body != nil {
		return render(t.body, f)
	}
	if s, ok := f.Data.(string); ok && isJSON(f.DataContentType, data) {
		return s, nil
	}
	if !utf8.Valid(data) {
		return "", errNotText
	}
	return string(data), nil
}
