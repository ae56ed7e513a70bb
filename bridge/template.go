package bridge

import (
	"fmt"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// Template is text with {attribute} references to an event's context
// attributes and extensions ("devices/{subject}/cmd"), the one template
// syntax of outbound names: MQTT topics, RocketMQ topics, tags and keys.
type Template struct {
	// parts alternates literal text and attribute names: parts[0] literal,
	// parts[1] attribute, ...
	parts []string
}

// ParseTemplate reads text with {attribute} references; attribute names are
// lower-case letters and digits.
func ParseTemplate(s string) (Template, error) {
	var t Template
	rest := s
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			if strings.ContainsRune(rest, '}') {
				return Template{}, fmt.Errorf("template %q: unbalanced }", s)
			}
			t.parts = append(t.parts, rest)
			return t, nil
		}
		if strings.ContainsRune(rest[:i], '}') {
			return Template{}, fmt.Errorf("template %q: unbalanced }", s)
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return Template{}, fmt.Errorf("template %q: unclosed {", s)
		}
		name := rest[i+1 : i+j]
		if name == "" || strings.IndexFunc(name, func(r rune) bool { return (r < 'a' || r > 'z') && (r < '0' || r > '9') }) >= 0 {
			return Template{}, fmt.Errorf("template %q: {%s}: attribute names are lower-case letters and digits", s, name)
		}
		t.parts = append(t.parts, rest[:i], name)
		rest = rest[i+j+1:]
	}
}

// Literal says whether t references no attribute.
func (t Template) Literal() bool { return len(t.parts) <= 1 }

// Literals returns the literal text between the references.
func (t Template) Literals() []string {
	var out []string
	for i := 0; i < len(t.parts); i += 2 {
		out = append(out, t.parts[i])
	}
	return out
}

// Render fills t from e. missing lists the attributes e lacks or has empty
// (their places stay empty).
func (t Template) Render(e *event.Event) (text string, missing []string) {
	var b strings.Builder
	for i, p := range t.parts {
		if i%2 == 0 {
			b.WriteString(p)
			continue
		}
		v, ok := Attribute(e, p)
		if !ok {
			missing = append(missing, p)
		}
		b.WriteString(v)
	}
	return b.String(), missing
}

// Attribute is the canonical string form of a context attribute or an
// extension of e; false when e has none or it is empty.
func Attribute(e *event.Event, name string) (string, bool) {
	var v string
	switch name {
	case "id":
		v = e.ID()
	case "source":
		v = e.Source()
	case "specversion":
		v = e.SpecVersion()
	case "type":
		v = e.Type()
	case "subject":
		v = e.Subject()
	case "datacontenttype":
		v = e.DataContentType()
	case "dataschema":
		v = e.DataSchema()
	case "time":
		if !e.Time().IsZero() {
			v = types.FormatTime(e.Time())
		}
	default:
		x, ok := e.Extensions()[name]
		if !ok {
			return "", false
		}
		s, err := types.Format(x)
		if err != nil {
			return "", false
		}
		v = s
	}
	return v, v != ""
}
