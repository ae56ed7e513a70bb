package email

import (
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/internal/eventtmpl"
)

// templates are the parsed templates of one config; a nil one is absent.
// The body is an html/template when the mail is HTML.
type templates struct {
	from, to, cc, bcc, subject eventtmpl.Template
	body                       eventtmpl.Template
}

func parseTemplates(cfg connectors.Config, html bool) (templates, []connectors.FieldError) {
	var t templates
	var errs []connectors.FieldError
	parse := func(field string) eventtmpl.Template {
		x, err := eventtmpl.Parse(field, cfg.String(field), html && field == FieldBody)
		if err != nil {
			errs = append(errs, connectors.FieldError{Field: field, Reason: err.Error()})
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
	t.body = parse(FieldBody)
	return t, errs
}

// bodyOf returns the body of the mail: the body template's output, or the
// event's data as text (a JSON string unquoted).
func (t templates) bodyOf(f *eventtmpl.Fields) (string, error) {
	if t.body != nil {
		return eventtmpl.Render(t.body, f)
	}
	return f.DataText(FieldBody)
}
