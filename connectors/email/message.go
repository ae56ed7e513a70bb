package email

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/connectors/internal/eventtmpl"
)

// Headers meshd adds to every mail, from the event's attributes.
const (
	HeaderID     = "X-Meshd-Id"
	HeaderType   = "X-Meshd-Type"
	HeaderSource = "X-Meshd-Source"
)

// Line lengths of RFC 5322: headers are folded before maxLine, and a
// 7bit body has no line longer than maxHardLine.
const (
	maxLine     = 78
	maxHardLine = 998
)

// message is one mail ready for SMTP.
type message struct {
	from  string   // envelope sender
	rcpts []string // envelope recipients: to, cc and bcc
	data  []byte   // header and body, CRLF line ends
}

// build makes the mail of e. Its errors are the event's fault (a template
// that fails, an address that does not parse, data that is not text):
// retrying cannot help.
func (s *settings) build(e *event.Event, now time.Time) (*message, error) {
	f := eventtmpl.Of(e)
	t := s.tmpl
	fromText, err := eventtmpl.Render(t.from, f)
	if err != nil {
		return nil, err
	}
	from, err := parseAddresses(FieldFrom, fromText)
	if err != nil {
		return nil, err
	}
	if len(from) != 1 {
		return nil, fmt.Errorf("%s: want one address, got %d", FieldFrom, len(from))
	}
	m := &message{from: from[0].Address}
	var lists [3][]*mail.Address
	seen := map[string]bool{}
	for i, field := range []string{FieldTo, FieldCc, FieldBcc} {
		text, err := eventtmpl.Render([]eventtmpl.Template{t.to, t.cc, t.bcc}[i], f)
		if err != nil {
			return nil, err
		}
		if lists[i], err = parseAddresses(field, text); err != nil {
			return nil, err
		}
		for _, a := range lists[i] {
			if k := strings.ToLower(a.Address); !seen[k] {
				seen[k] = true
				m.rcpts = append(m.rcpts, a.Address)
			}
		}
	}
	if len(m.rcpts) == 0 {
		return nil, errNoRecipients
	}
	subject, err := eventtmpl.Render(t.subject, f)
	if err != nil {
		return nil, err
	}
	body, err := t.bodyOf(f)
	if err != nil {
		return nil, err
	}

	date := e.Time()
	if date.IsZero() {
		date = now
	}
	var b bytes.Buffer
	writeField(&b, "Date", date.Format(time.RFC1123Z))
	writeField(&b, "From", formatList(from))
	if len(lists[0]) > 0 {
		writeField(&b, "To", formatList(lists[0]))
	}
	if len(lists[1]) > 0 {
		writeField(&b, "Cc", formatList(lists[1]))
	}
	writeField(&b, "Subject", headerText(subject))
	writeField(&b, "Message-ID", MessageID(e.Source(), e.ID(), from[0].Address))
	writeField(&b, HeaderID, headerText(e.ID()))
	writeField(&b, HeaderType, headerText(e.Type()))
	writeField(&b, HeaderSource, headerText(e.Source()))
	writeField(&b, "MIME-Version", "1.0")
	ct := ContentText
	if s.html {
		ct = ContentHTML
	}
	writeField(&b, "Content-Type", mime.FormatMediaType(ct, map[string]string{"charset": "utf-8"}))
	cte, encoded := encodeBody(body)
	writeField(&b, "Content-Transfer-Encoding", cte)
	b.WriteString("\r\n")
	b.Write(encoded)
	m.data = b.Bytes()
	return m, nil
}

// MessageID is the Message-ID of the mail of the event source/id, sent
// from the address from: the same for every attempt, so a mail sent twice
// (a retry after a lost reply) is recognisable. Its left part is 128 bits
// of SHA-256 over source and id, its right part the sender's domain.
func MessageID(source, id, from string) string {
	sum := sha256.Sum256([]byte(source + "\x00" + id))
	domain := "meshd.invalid"
	if at := strings.LastIndexByte(from, '@'); at >= 0 && at < len(from)-1 {
		domain = strings.ToLower(from[at+1:])
	}
	return "<" + hex.EncodeToString(sum[:16]) + "@" + domain + ">"
}

// parseAddresses parses the address list a template made for field ("" is
// none). Line breaks are refused, not repaired: they are what header
// injection is made of.
func parseAddresses(field, text string) ([]*mail.Address, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	if strings.ContainsAny(text, "\r\n") {
		return nil, fmt.Errorf("%s: %q %w", field, text, errLineBreak)
	}
	list, err := mail.ParseAddressList(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %q: %w", field, text, err)
	}
	for _, a := range list {
		if !isASCII(a.Address) {
			return nil, fmt.Errorf("%s: %q: %w", field, a.Address, errNonASCII)
		}
	}
	return list, nil
}

func formatList(list []*mail.Address) string {
	parts := make([]string, len(list))
	for i, a := range list {
		parts[i] = a.String() // quotes or encodes the name, quotes the local part, as needed
		if a.Name == "" {
			parts[i] = strings.TrimSuffix(strings.TrimPrefix(parts[i], "<"), ">")
		}
	}
	return strings.Join(parts, ", ")
}

// headerText makes s a safe unstructured header value: control
// characters (CR and LF among them) become spaces, and text that is not
// plain ASCII, looks like an encoded-word or has words too long to fold
// becomes RFC 2047 encoded-words.
func headerText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	switch {
	case !isASCII(s):
		return mime.QEncoding.Encode("utf-8", s)
	case strings.Contains(s, "=?") || hasLongWord(s):
		return encodeWords(s)
	}
	return s
}

// encodeWords writes s as base64 encoded-words of at most 75 characters,
// split between runes.
func encodeWords(s string) string {
	const chunk = 45 // bytes: 60 in base64, 72 with the "=?utf-8?b?" and "?=" around
	var words []string
	for len(s) > 0 {
		n := min(chunk, len(s))
		for n < len(s) && !utf8.RuneStart(s[n]) {
			n--
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, " ")
}

// hasLongWord says whether a word of s is too long for a header line even
// when folded (long words below that, such as URLs, stay readable).
func hasLongWord(s string) bool {
	for _, w := range strings.Split(s, " ") {
		if len(w) > maxHardLine-100 {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// writeField writes "name: value" folded before column maxLine where
// value has spaces (a fold only puts CRLF before an existing space, so
// unfolding gives value back). value must hold no CR or LF.
func writeField(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteString(":")
	col := len(name) + 1
	for i, w := range strings.Split(value, " ") {
		if i > 0 && col+1+len(w) > maxLine && col > len(name)+1 {
			b.WriteString("\r\n")
			col = 0
		}
		b.WriteByte(' ')
		b.WriteString(w)
		col += 1 + len(w)
	}
	b.WriteString("\r\n")
}

// encodeBody returns the Content-Transfer-Encoding and the encoded body
// of text (line ends as CRLF): 7bit for short-lined ASCII, base64 for
// text mostly outside ASCII, quoted-printable otherwise.
func encodeBody(text string) (string, []byte) {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	high, long, ctl := 0, false, false
	lineLen := 0
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '\n':
			lineLen = 0
			continue
		case c >= utf8.RuneSelf:
			high++
		case c < 0x20 && c != '\t', c == 0x7f:
			ctl = true
		}
		if lineLen++; lineLen > maxHardLine {
			long = true
		}
	}
	switch {
	case high == 0 && !long && !ctl:
		return "7bit", []byte(strings.ReplaceAll(text, "\n", "\r\n"))
	case high*3 > len(text):
		enc := base64.StdEncoding.EncodeToString([]byte(text))
		var b bytes.Buffer
		for len(enc) > 76 {
			b.WriteString(enc[:76])
			b.WriteString("\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc)
		b.WriteString("\r\n")
		return "base64", b.Bytes()
	}
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write([]byte(text)) // writes into a bytes.Buffer cannot fail
	_ = w.Close()
	return "quoted-printable", b.Bytes()
}
