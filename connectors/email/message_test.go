package email

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/internal/eventtmpl"
)

func testSettings(t *testing.T, kv ...any) *settings {
	t.Helper()
	base := []any{FieldHost, "127.0.0.1", FieldTLSMode, TLSNone, FieldFrom, "Shop <noreply@shop.example>", FieldTo, "{{.Data.email}}"}
	cfg := connectortest.Config(t, Spec, append(base, kv...)...)
	s, errs := parseConfig(cfg)
	require.Empty(t, errs)
	return s
}

func testEvent(t *testing.T, id string, data any) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource("/shop")
	e.SetType("shop.order.created")
	e.SetTime(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	if data != nil {
		require.NoError(t, e.SetData("application/json", data))
	}
	return &e
}

// parse reads a built mail back with net/mail, checking its lines first.
func parse(t *testing.T, m *message) (*mail.Message, string) {
	t.Helper()
	for i, line := range strings.Split(strings.TrimSuffix(string(m.data), "\r\n"), "\r\n") {
		assert.NotContains(t, line, "\r", "line %d holds a bare CR", i)
		assert.NotContains(t, line, "\n", "line %d holds a bare LF", i)
		assert.LessOrEqual(t, len(line), maxHardLine, "line %d is too long", i)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(m.data))
	require.NoError(t, err)
	body, err := io.ReadAll(msg.Body)
	require.NoError(t, err)
	var text []byte
	switch msg.Header.Get("Content-Transfer-Encoding") {
	case "7bit":
		text = body
	case "quoted-printable":
		text, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
	case "base64":
		text, err = io.ReadAll(base64Reader(body))
	default:
		t.Fatalf("unknown Content-Transfer-Encoding %q", msg.Header.Get("Content-Transfer-Encoding"))
	}
	require.NoError(t, err)
	return msg, strings.ReplaceAll(string(text), "\r\n", "\n")
}

func base64Reader(b []byte) io.Reader {
	return base64.NewDecoder(base64.StdEncoding, bytes.NewReader(b))
}

func TestBuildHeaders(t *testing.T) {
	s := testSettings(t,
		FieldTo, `{{.Data.name}} <{{.Data.email}}>`,
		FieldCc, "boss@shop.example",
		FieldBcc, "audit@shop.example, BOSS@shop.example",
		FieldSubject, "Bestellung {{.Data.order}} — Übersicht ✓",
		FieldBody, "Hallo {{.Data.name}},\ndanke für {{.Data.order}}.\n",
	)
	e := testEvent(t, "order-1", map[string]any{"name": "Jürgen Groß", "email": "jg@example.org", "order": 12345678901234})
	m, err := s.build(e, time.Now())
	require.NoError(t, err)
	assert.Equal(t, "noreply@shop.example", m.from)
	assert.Equal(t, []string{"jg@example.org", "boss@shop.example", "audit@shop.example"}, m.rcpts, "to, cc and bcc, each address once")

	msg, text := parse(t, m)
	h := msg.Header
	dec := new(mime.WordDecoder)
	subject, err := dec.DecodeHeader(h.Get("Subject"))
	require.NoError(t, err)
	assert.Equal(t, "Bestellung 12345678901234 — Übersicht ✓", subject, "non-ASCII subject round-trips; a JSON number keeps its digits")
	assert.True(t, isASCII(h.Get("Subject")), "the subject is encoded")
	to, err := h.AddressList("To")
	require.NoError(t, err)
	require.Len(t, to, 1)
	assert.Equal(t, mail.Address{Name: "Jürgen Groß", Address: "jg@example.org"}, *to[0])
	assert.Equal(t, "boss@shop.example", h.Get("Cc"))
	assert.Empty(t, h.Get("Bcc"), "Bcc is never a header")
	assert.Equal(t, "order-1", h.Get(HeaderID))
	assert.Equal(t, "shop.order.created", h.Get(HeaderType))
	assert.Equal(t, "/shop", h.Get(HeaderSource))
	assert.Equal(t, MessageID("/shop", "order-1", "noreply@shop.example"), h.Get("Message-ID"))
	assert.Regexp(t, `^<[0-9a-f]{32}@shop\.example>$`, h.Get("Message-ID"))
	date, err := h.Date()
	require.NoError(t, err)
	assert.True(t, date.Equal(e.Time()), "Date is the event time")
	assert.Equal(t, "1.0", h.Get("MIME-Version"))
	assert.Equal(t, "text/plain; charset=utf-8", h.Get("Content-Type"))
	assert.Equal(t, "quoted-printable", h.Get("Content-Transfer-Encoding"))
	assert.Equal(t, "Hallo Jürgen Groß,\ndanke für 12345678901234.\n", text)

	again, err := s.build(e, time.Now().Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, string(m.data), string(again.data), "a retry builds the very same mail")
}

func TestBuildBodyEncodings(t *testing.T) {
	long := strings.Repeat("word ", 300) // one 1500-byte line
	cases := []struct {
		name, text, cte string
	}{
		{"ascii", "plain text\n.leading dot\n", "7bit"},
		{"long ascii line", long, "quoted-printable"},
		{"some latin", "Grüße aus Köln", "quoted-printable"},
		{"mostly cjk", "日本語のメールです。よろしくお願いします。", "base64"},
		{"control", "bell \a here", "quoted-printable"},
		{"empty", "", "7bit"},
	}
	s := testSettings(t, FieldTo, "a@example.org")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := testEvent(t, "x", nil)
			require.NoError(t, e.SetData("text/plain", []byte(c.text)))
			m, err := s.build(e, time.Now())
			require.NoError(t, err)
			msg, text := parse(t, m)
			assert.Equal(t, c.cte, msg.Header.Get("Content-Transfer-Encoding"))
			want := c.text
			if want != "" && !strings.HasSuffix(want, "\n") {
				want += "\n"
			}
			assert.Equal(t, want, text)
		})
	}
}

func TestBuildBodyFromData(t *testing.T) {
	s := testSettings(t, FieldTo, "a@example.org")
	body := func(e *event.Event) (string, error) {
		m, err := s.build(e, time.Now())
		if err != nil {
			return "", err
		}
		_, text := parse(t, m)
		return text, nil
	}
	e := testEvent(t, "s", "a JSON string\nwith two lines")
	got, err := body(e)
	require.NoError(t, err)
	assert.Equal(t, "a JSON string\nwith two lines\n", got, "a JSON string is unquoted")

	e = testEvent(t, "o", map[string]any{"k": "v"})
	got, err = body(e)
	require.NoError(t, err)
	assert.Equal(t, `{"k":"v"}`+"\n", got, "other JSON is sent as it is")

	require.NoError(t, e.SetData("application/octet-stream", []byte{0xff, 0xfe, 0x00}))
	_, err = body(e)
	assert.ErrorIs(t, err, eventtmpl.ErrNotText)
	assert.EqualError(t, err, "the event data is not UTF-8 text; give a body template")
}

func TestBuildHTML(t *testing.T) {
	s := testSettings(t, FieldContentType, ContentHTML, FieldBody, `<p>Hello {{.Data.name}}</p>`)
	e := testEvent(t, "h", map[string]any{"email": "a@example.org", "name": `<script>alert("x")</script>`})
	m, err := s.build(e, time.Now())
	require.NoError(t, err)
	msg, text := parse(t, m)
	assert.Equal(t, "text/html; charset=utf-8", msg.Header.Get("Content-Type"))
	assert.Equal(t, "<p>Hello &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</p>\n", text, "data inserted into HTML is escaped")
}

// No attribute or data value can add a header line.
func TestBuildRefusesHeaderInjection(t *testing.T) {
	s := testSettings(t, FieldSubject, "{{.Data.subject}}")
	e := testEvent(t, "id-1\r\nBcc: evil@evil.example", map[string]any{
		"email":   "a@example.org",
		"subject": "hi\r\nBcc: evil@evil.example\nX-Injected: 1",
	})
	e.SetType("t\nX-Injected: 2") // (sdk-go refuses a source with line breaks)
	m, err := s.build(e, time.Now())
	require.NoError(t, err)
	assert.Equal(t, []string{"a@example.org"}, m.rcpts)
	msg, _ := parse(t, m)
	assert.Empty(t, msg.Header.Get("Bcc"))
	assert.Empty(t, msg.Header.Get("X-Injected"))
	assert.Equal(t, "hi  Bcc: evil@evil.example X-Injected: 1", msg.Header.Get("Subject"), "line breaks become spaces")
	assert.Equal(t, "id-1  Bcc: evil@evil.example", msg.Header.Get(HeaderID))
	assert.Equal(t, "t X-Injected: 2", msg.Header.Get(HeaderType))

	for _, to := range []string{"a@example.org\r\nBcc: evil@evil.example", "a@example.org\nX-Injected: 1", "\"a\r\nb\" <a@example.org>"} {
		e := testEvent(t, "x", map[string]any{"email": to, "subject": "s"})
		_, err := s.build(e, time.Now())
		assert.ErrorIs(t, err, errLineBreak, "address %q", to)
	}
}

func TestBuildErrorsArePerEvent(t *testing.T) {
	s := testSettings(t, FieldCc, "{{.Data.cc}}")
	cases := map[string]map[string]any{
		"missing key":    {"email": "a@example.org"},
		"bad address":    {"email": "not an address", "cc": ""},
		"non-ASCII addr": {"email": "jürgen@example.org", "cc": ""},
		"no recipient":   {"email": "", "cc": ""},
	}
	for name, data := range cases {
		_, err := s.build(testEvent(t, "x", data), time.Now())
		assert.Error(t, err, name)
	}
	_, err := s.build(testEvent(t, "x", map[string]any{"email": "", "cc": ""}), time.Now())
	assert.True(t, errors.Is(err, errNoRecipients))
	_, err = s.build(testEvent(t, "x", map[string]any{"email": "a@example.org", "cc": "b@example.org"}), time.Now())
	assert.NoError(t, err)
}

func TestHeaderFolding(t *testing.T) {
	var b bytes.Buffer
	value := strings.TrimSpace(strings.Repeat("abcdefghij ", 30))
	writeField(&b, "Subject", value)
	lines := strings.Split(strings.TrimSuffix(b.String(), "\r\n"), "\r\n")
	assert.Greater(t, len(lines), 3)
	for _, l := range lines {
		assert.LessOrEqual(t, len(l), maxLine)
	}
	msg, err := mail.ReadMessage(strings.NewReader(b.String() + "\r\n"))
	require.NoError(t, err)
	assert.Equal(t, value, msg.Header.Get("Subject"), "unfolding gives the value back")

	word := strings.Repeat("x", 2000)
	enc := headerText(word)
	dec, err := new(mime.WordDecoder).DecodeHeader(enc)
	require.NoError(t, err)
	assert.Equal(t, word, dec, "a word too long for a line is encoded, and decodes back")
	b.Reset()
	writeField(&b, "Subject", enc)
	for i, l := range strings.Split(b.String(), "\r\n") {
		if i == 0 { // the first encoded word stays beside the name
			assert.LessOrEqual(t, len(l), len("Subject: ")+75)
		} else {
			assert.LessOrEqual(t, len(l), maxLine)
		}
	}
	assert.NotEqual(t, "=?utf-8?q?x?=", headerText("=?utf-8?q?x?="), "text that looks like an encoded word is encoded")
}

func TestConfigCheck(t *testing.T) {
	bad := map[string][]any{
		FieldHost:      {FieldHost, "smtp://mail.example:25"},
		FieldPort:      {FieldPort, 70000},
		FieldTo:        {FieldTo, ""},
		FieldSubject:   {FieldSubject, "{{.Type"},
		FieldPassword:  {FieldUsername, "", FieldPassword, "pw"},
		FieldTLSMode:   {FieldHost, "mail.example", FieldUsername, "u", FieldPassword, "pw"},
		FieldTLSCAFile: {FieldTLSMode, TLSStartTLS, FieldTLSCAFile, "/nonexistent/ca.pem"},
		FieldBody:      {FieldContentType, ContentHTML, FieldBody, "{{if}}"},
	}
	for field, kv := range bad {
		raw := map[string]any{connectors.FieldConnectorType: Type, connectors.FieldTopic: "t",
			FieldHost: "127.0.0.1", FieldTLSMode: TLSNone, FieldFrom: "a@example.org", FieldTo: "b@example.org"}
		for i := 0; i < len(kv); i += 2 {
			raw[kv[i].(string)] = kv[i+1]
		}
		_, err := Spec.Validate(raw)
		var ve *connectors.ValidationError
		if assert.ErrorAs(t, err, &ve, field) {
			assert.NotEmpty(t, ve.Field(field), "the error names %s: %v", field, err)
			assert.NotContains(t, err.Error(), "pw", "the password is not echoed")
		}
	}
}

func TestScrub(t *testing.T) {
	s := testSettings(t, FieldUsername, "u", FieldPassword, "hunter2-secret")
	got := s.scrub("535 bad credentials AHUAaHVudGVyMi1zZWNyZXQ= for hunter2-secret")
	assert.NotContains(t, got, "hunter2-secret")
	assert.NotContains(t, got, "AHUAaHVudGVyMi1zZWNyZXQ=")
}
