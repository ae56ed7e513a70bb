package s3

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// seqDigits is the width of a mesh sequence in keys: zero-padded to the
// digits of the largest uint64, so keys sort as their sequences do.
const seqDigits = 20

func padSeq(n uint64) string { return fmt.Sprintf("%020d", n) }

// placeholders of key.template and the pattern of their values.
var placeholders = map[string]string{
	"topic": `[A-Za-z0-9._-]+`,
	"yyyy":  `[0-9]{4}`,
	"MM":    `[0-9]{2}`,
	"dd":    `[0-9]{2}`,
	"HH":    `[0-9]{2}`,
	"mm":    `[0-9]{2}`,
	"first": `[0-9]{20}`,
	"last":  `[0-9]{20}`,
	"ext":   `[a-z.]*`,
}

// altPattern matches the ~set of a key written beside its template key.
const altPattern = `(~[0-9a-f]{32})?`

// keyTemplate is a parsed key.template: literal text and placeholders.
type keyTemplate struct {
	text   string
	parts  []keyPart
	finest string // the finest time placeholder ("" if none)
}

type keyPart struct {
	lit  string
	name string // placeholder name; "" for a literal
}

func parseTemplate(s string) (*keyTemplate, error) {
	if s == "" {
		return nil, fmt.Errorf("required")
	}
	if strings.HasPrefix(s, "/") {
		return nil, fmt.Errorf("must not start with /")
	}
	t := &keyTemplate{text: s}
	rest := s
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if closeAt := strings.IndexByte(rest, '}'); closeAt >= 0 && (open < 0 || closeAt < open) {
			return nil, fmt.Errorf("a } without its {")
		}
		if open < 0 {
			t.parts = append(t.parts, keyPart{lit: rest})
			break
		}
		if open > 0 {
			t.parts = append(t.parts, keyPart{lit: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("a { without its }")
		}
		name := rest[open+1 : open+end]
		if _, ok := placeholders[name]; !ok {
			return nil, fmt.Errorf("unknown placeholder {%s}; known: %s", name, strings.Join(slices.Sorted(maps.Keys(placeholders)), ", "))
		}
		t.parts = append(t.parts, keyPart{name: name})
		rest = rest[open+end+1:]
	}
	for _, unit := range []string{"yyyy", "MM", "dd", "HH", "mm"} {
		if slices.ContainsFunc(t.parts, func(p keyPart) bool { return p.name == unit }) {
			t.finest = unit
		}
	}
	if !slices.ContainsFunc(t.parts, func(p keyPart) bool { return p.name == "first" }) {
		return nil, fmt.Errorf("must hold {first}: it makes each object's key unique and the same when a batch is written again")
	}
	return t, nil
}

// staticPrefix is the literal text before the first placeholder.
func (t *keyTemplate) staticPrefix() string {
	if len(t.parts) > 0 && t.parts[0].name == "" {
		return t.parts[0].lit
	}
	return ""
}

// keyValues are the values of a key's placeholders.
type keyValues struct {
	topic       string
	time        time.Time // UTC
	first, last uint64
	ext         string
	// alt, when set, goes before a final {ext} (or at the end) after a ~:
	// the key of an object whose template key holds another.
	alt string
}

func (t *keyTemplate) expand(v keyValues) string {
	var b strings.Builder
	for i, p := range t.parts {
		if v.alt != "" && i == t.altAt() {
			b.WriteString("~" + v.alt)
		}
		switch p.name {
		case "":
			b.WriteString(p.lit)
		case "topic":
			b.WriteString(v.topic)
		case "yyyy":
			fmt.Fprintf(&b, "%04d", v.time.Year())
		case "MM":
			fmt.Fprintf(&b, "%02d", int(v.time.Month()))
		case "dd":
			fmt.Fprintf(&b, "%02d", v.time.Day())
		case "HH":
			fmt.Fprintf(&b, "%02d", v.time.Hour())
		case "mm":
			fmt.Fprintf(&b, "%02d", v.time.Minute())
		case "first":
			b.WriteString(padSeq(v.first))
		case "last":
			b.WriteString(padSeq(v.last))
		case "ext":
			b.WriteString(v.ext)
		}
	}
	if v.alt != "" && t.altAt() == len(t.parts) {
		b.WriteString("~" + v.alt)
	}
	return b.String()
}

// altAt is the part before which keyValues.alt goes: a final {ext}, or
// the end.
func (t *keyTemplate) altAt() int {
	if n := len(t.parts); n > 0 && t.parts[n-1].name == "ext" {
		return n - 1
	}
	return len(t.parts)
}

// group names the objects an event may go into: its topic and its time
// cut to the template's finest time placeholder. Events of a group make
// the same key but for the sequences.
func (t *keyTemplate) group(topic string, tm time.Time) string {
	var unit int64
	switch t.finest {
	case "mm":
		unit = tm.Unix() / 60
	case "HH":
		unit = tm.Unix() / 3600
	case "dd":
		unit = int64(tm.Year()*10000 + int(tm.Month())*100 + tm.Day())
	case "MM":
		unit = int64(tm.Year()*100 + int(tm.Month()))
	case "yyyy":
		unit = int64(tm.Year())
	}
	return topic + "\x00" + strconv.FormatInt(unit, 10)
}

// pattern matches the keys the template makes.
func (t *keyTemplate) pattern() *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i, p := range t.parts {
		if i == t.altAt() {
			b.WriteString(altPattern)
		}
		if p.name == "" {
			b.WriteString(regexp.QuoteMeta(p.lit))
		} else {
			b.WriteString(placeholders[p.name])
		}
	}
	if t.altAt() == len(t.parts) {
		b.WriteString(altPattern)
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// extension returns the {ext} of a format and compression.
func extension(format, compression string) string {
	ext := map[string]string{FormatJSONL: ".jsonl", FormatData: ".txt", FormatJSON: ".json"}[format]
	if compression == CompressionGzip {
		ext += ".gz"
	}
	return ext
}

// manifestName is the name of an object's manifest under the index
// prefix: its last and first sequence, so a listing that starts after a
// sequence finds every object that may hold it or a later one, and the
// hash of its set of sequences.
func manifestName(first, last uint64, set string) string {
	return padSeq(last) + "-" + padSeq(first) + "-" + set
}

// parseManifestName reads a manifest's name (the key without the index
// prefix).
func parseManifestName(name string) (first, last uint64, set string, ok bool) {
	if len(name) < 2*seqDigits+3 || name[seqDigits] != '-' || name[2*seqDigits+1] != '-' {
		return 0, 0, "", false
	}
	last, err1 := strconv.ParseUint(name[:seqDigits], 10, 64)
	first, err2 := strconv.ParseUint(name[seqDigits+1:2*seqDigits+1], 10, 64)
	if err1 != nil || err2 != nil || first > last {
		return 0, 0, "", false
	}
	return first, last, name[2*seqDigits+2:], true
}
