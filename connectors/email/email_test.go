package email_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/email"
	"github.com/meshd/meshd/test/infra"
)

const (
	wait     = 30 * time.Second
	tick     = 20 * time.Millisecond
	fromAddr = "noreply@meshd.example"
	from     = "Meshd Test <" + fromAddr + ">"
)

// smtpFields are the fields that point a task at a server.
func smtpFields(addr, mode string) []any {
	host, port, _ := net.SplitHostPort(addr)
	return []any{email.FieldHost, host, email.FieldPort, port, email.FieldTLSMode, mode}
}

// startTask starts a task against addr (plain SMTP unless the fields say
// otherwise) sending from `from` to the data's "email".
func startTask(t *testing.T, addr string, kv ...any) *email.Task {
	t.Helper()
	fields := append(smtpFields(addr, email.TLSNone), email.FieldFrom, from, email.FieldTo, "{{.Data.email}}")
	cfg := connectortest.Config(t, email.Spec, append(fields, kv...)...)
	task := &email.Task{}
	task.Init(connectortest.TaskContext(nil))
	require.NoError(t, task.Start(t.Context(), cfg))
	t.Cleanup(func() { _ = task.Stop(context.Background()) })
	return task
}

func newEvent(t *testing.T, id string, data map[string]any) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource("/emailtest")
	e.SetType("dev.meshd.emailtest")
	require.NoError(t, e.SetData("application/json", data))
	return e
}

// events makes n events to rcpt with ids prefix-000, prefix-001, ...
func events(t *testing.T, prefix string, n int, rcpt string) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		out[i] = newEvent(t, fmt.Sprintf("%s-%03d", prefix, i), map[string]any{"email": rcpt, "n": i})
	}
	return out
}

// waitMessages waits until mailpit holds n messages and returns them.
func waitMessages(t *testing.T, mp *infra.Mailpit, n int) []infra.MailpitSummary {
	t.Helper()
	var got []infra.MailpitSummary
	var err error
	require.Eventually(t, func() bool {
		got, err = mp.Messages(t.Context())
		return err == nil && len(got) >= n
	}, wait, tick, "mailpit should hold %d messages (has %d, %v)", n, len(got), err)
	return got
}

// failed returns the errors of a Put by event index (nil: none failed);
// an error for the whole batch is given to every index.
func failed(err error, n int) map[int]error {
	if err == nil {
		return nil
	}
	var pe *connectors.PartialError
	if errors.As(err, &pe) {
		return pe.Failed
	}
	out := map[int]error{}
	for i := range n {
		out[i] = err
	}
	return out
}

func class(err error) bridge.Class {
	c, _ := bridge.Classify(err)
	return c
}

func TestEmailSinkSuite(t *testing.T) {
	mp := infra.StartMailpit(t, infra.MailpitOptions{})
	host, port, _ := net.SplitHostPort(mp.SMTPAddr)
	connectortest.RunSink(t, connectortest.Sink{
		Spec: email.Spec,
		Config: map[string]any{
			email.FieldHost: host, email.FieldPort: port, email.FieldTLSMode: email.TLSNone,
			email.FieldUsername: "meshd", email.FieldPassword: "suite-secret",
			email.FieldFrom: from, email.FieldTo: "inbox@meshd.example", email.FieldSubject: "{{.ID}}",
		},
		Received: func() []string {
			msgs, err := mp.Messages(context.Background())
			if err != nil {
				return nil
			}
			ids := make([]string, len(msgs))
			for i, m := range msgs {
				ids[i] = m.Subject
			}
			return ids
		},
		SetFailing: func(failing bool) {
			c := infra.MailpitChaos{}
			if failing {
				c.Recipient = infra.MailpitTrigger{ErrorCode: 451, Probability: 100}
			}
			assert.NoError(t, mp.SetChaos(context.Background(), c))
		},
	})
}

// What arrives is what the templates say, in well-formed MIME.
func TestMailAsReceived(t *testing.T) {
	mp := infra.StartMailpit(t, infra.MailpitOptions{})
	task := startTask(t, mp.SMTPAddr,
		email.FieldUsername, "meshd", email.FieldPassword, "not-checked",
		email.FieldTo, "{{.Data.name}} <{{.Data.email}}>",
		email.FieldCc, "Büro <office@meshd.example>",
		email.FieldBcc, "audit@meshd.example",
		email.FieldSubject, "Bestellung {{.Data.order}} — Übersicht ✓",
		email.FieldBody, "Hallo {{.Data.name}},\n\ndanke für Bestellung {{.Data.order}}.\n{{json .Data.items}}\n",
	)
	ev := newEvent(t, "order-42", map[string]any{
		"name": "Jürgen Groß", "email": "jg@example.org", "order": 12345678901234, "items": []string{"Äpfel", "Birnen"},
	})
	ev.SetTime(time.Date(2026, 11, 30, 9, 15, 0, 0, time.UTC))
	require.NoError(t, task.Put(t.Context(), []event.Event{ev}))

	list := waitMessages(t, mp, 1)
	ctx := t.Context()
	msg, err := mp.Message(ctx, list[0].ID)
	require.NoError(t, err)
	assert.Equal(t, "Bestellung 12345678901234 — Übersicht ✓", msg.Subject)
	assert.Equal(t, []infra.MailpitAddress{{Name: "Jürgen Groß", Address: "jg@example.org"}}, msg.To)
	assert.Equal(t, []infra.MailpitAddress{{Name: "Büro", Address: "office@meshd.example"}}, msg.Cc)
	// (mailpit writes envelope recipients missing from the headers into a
	// Bcc header of its own; the unit tests check none is sent)
	assert.Equal(t, []infra.MailpitAddress{{Address: "audit@meshd.example"}}, msg.Bcc, "the Bcc recipient got it")
	assert.Equal(t, &infra.MailpitAddress{Name: "Meshd Test", Address: fromAddr}, msg.From)
	assert.Equal(t, fromAddr, msg.ReturnPath, "the envelope sender is the From address")
	assert.Equal(t, "meshd", msg.Username, "the task authenticated")
	assert.Equal(t, "Hallo Jürgen Groß,\n\ndanke für Bestellung 12345678901234.\n[\"Äpfel\",\"Birnen\"]\n", strings.ReplaceAll(msg.Text, "\r\n", "\n"))
	assert.True(t, msg.Date.Equal(ev.Time()), "Date is the event time, got %v", msg.Date)

	h, err := mp.Headers(ctx, list[0].ID)
	require.NoError(t, err)
	assert.Equal(t, []string{"order-42"}, h["X-Meshd-Id"])
	assert.Equal(t, []string{"dev.meshd.emailtest"}, h["X-Meshd-Type"])
	assert.Equal(t, []string{"/emailtest"}, h["X-Meshd-Source"])
	assert.Equal(t, []string{email.MessageID("/emailtest", "order-42", fromAddr)}, h["Message-Id"])
	assert.Equal(t, []string{"text/plain; charset=utf-8"}, h["Content-Type"])
	assert.Equal(t, []string{"quoted-printable"}, h["Content-Transfer-Encoding"])

	raw, err := mp.Raw(ctx, list[0].ID)
	require.NoError(t, err)
	for i, b := range raw {
		if b >= 0x80 {
			t.Fatalf("raw byte %d is not 7-bit: the mail must be ASCII on the wire: %q", i, raw[max(0, i-20):min(len(raw), i+20)])
		}
	}
	assert.Contains(t, string(raw), "Subject: =?utf-8?q?Bestellung_12345678901234_=E2=80=94_=C3=9Cbersicht_=E2=9C=93?=", "the subject is an encoded-word")
	assert.Contains(t, string(raw), "Hallo J=C3=BCrgen Gro=C3=9F,", "the body is quoted-printable UTF-8")
}

func TestHTMLMail(t *testing.T) {
	mp := infra.StartMailpit(t, infra.MailpitOptions{})
	ev := newEvent(t, "html-1", nil)
	require.NoError(t, ev.SetData("text/html", []byte("<h1>Hi</h1><p>Grüße</p>")))
	ev.SetExtension("email", "html@example.org")
	fromData := startTask(t, mp.SMTPAddr, email.FieldContentType, email.ContentHTML, email.FieldTo, "{{.Extensions.email}}")
	require.NoError(t, fromData.Put(t.Context(), []event.Event{ev}))

	templated := startTask(t, mp.SMTPAddr, email.FieldContentType, email.ContentHTML, email.FieldBody, "<p>Order for {{.Data.name}}</p>")
	require.NoError(t, templated.Put(t.Context(), []event.Event{
		newEvent(t, "html-2", map[string]any{"email": "x@example.org", "name": "<b>Eve</b> & co"}),
	}))

	list := waitMessages(t, mp, 2)
	byID := map[string]infra.MailpitMessage{}
	for _, s := range list {
		m, err := mp.Message(t.Context(), s.ID)
		require.NoError(t, err)
		byID[m.MessageID] = m
	}
	m := byID[strings.Trim(email.MessageID("/emailtest", "html-1", fromAddr), "<>")]
	assert.Equal(t, "<h1>Hi</h1><p>Grüße</p>", strings.TrimSpace(m.HTML), "the data is the HTML body")
	assert.Equal(t, []infra.MailpitAddress{{Address: "html@example.org"}}, m.To)
	m = byID[strings.Trim(email.MessageID("/emailtest", "html-2", fromAddr), "<>")]
	assert.Equal(t, "<p>Order for &lt;b&gt;Eve&lt;/b&gt; &amp; co</p>", strings.TrimSpace(m.HTML), "data is escaped into the HTML template")
}

// CR and LF from attributes or data never make a header line, and never
// reach the envelope.
func TestNoHeaderInjection(t *testing.T) {
	mp := infra.StartMailpit(t, infra.MailpitOptions{})
	task := startTask(t, mp.SMTPAddr, email.FieldSubject, "{{.Data.subject}}")
	inject := "\r\nBcc: evil@evil.example\r\nX-Injected: yes"
	subjectEv := newEvent(t, "id"+inject, map[string]any{"email": "a@example.org", "subject": "hello" + inject})
	subjectEv.SetType("type" + inject)
	toEv := newEvent(t, "to-1", map[string]any{"email": "b@example.org" + inject, "subject": "s"})
	err := task.Put(t.Context(), []event.Event{subjectEv, toEv})
	f := failed(err, 2)
	require.Len(t, f, 1, "only the event with a line break in an address fails: %v", err)
	require.Contains(t, f, 1)
	assert.Equal(t, bridge.Permanent, class(f[1]), "it is dead-lettered: %v", f[1])

	list := waitMessages(t, mp, 1)
	require.Len(t, list, 1)
	m, err := mp.Message(t.Context(), list[0].ID)
	require.NoError(t, err)
	assert.Equal(t, []infra.MailpitAddress{{Address: "a@example.org"}}, m.To)
	assert.Empty(t, m.Bcc, "no recipient was added (mailpit would list it here)")
	assert.Equal(t, "hello  Bcc: evil@evil.example  X-Injected: yes", m.Subject)
	h, err := mp.Headers(t.Context(), list[0].ID)
	require.NoError(t, err)
	assert.Empty(t, h["X-Injected"])
	assert.Empty(t, h["Bcc"])
	assert.Equal(t, []string{"id  Bcc: evil@evil.example  X-Injected: yes"}, h["X-Meshd-Id"])
	assert.Equal(t, []string{"type  Bcc: evil@evil.example  X-Injected: yes"}, h["X-Meshd-Type"])
}

// A template that fails on one event dead-letters that event alone.
func TestTemplateErrorFailsItsEventOnly(t *testing.T) {
	mp := infra.StartMailpit(t, infra.MailpitOptions{})
	task := startTask(t, mp.SMTPAddr, email.FieldSubject, "Order {{.Data.order}}")
	batch := []event.Event{
		newEvent(t, "ok-1", map[string]any{"email": "a@example.org", "order": 1}),
		newEvent(t, "no-order", map[string]any{"email": "b@example.org"}),
		newEvent(t, "ok-2", map[string]any{"email": "c@example.org", "order": 2}),
	}
	f := failed(task.Put(t.Context(), batch), 3)
	require.Len(t, f, 1)
	assert.Equal(t, bridge.Permanent, class(f[1]))
	assert.Contains(t, f[1].Error(), `map has no entry for key "order"`)
	list := waitMessages(t, mp, 2)
	assert.Len(t, list, 2)
}

// The same event sent twice (a retry after a lost reply) carries the same
// Message-ID.
func TestMessageIDStableAcrossRetry(t *testing.T) {
	mp := infra.StartMailpit(t, infra.MailpitOptions{})
	ev := newEvent(t, "retry-me", map[string]any{"email": "a@example.org"}) // no time: Date is the sending time
	first := startTask(t, mp.SMTPAddr)
	require.NoError(t, first.Put(t.Context(), []event.Event{ev}))
	second := startTask(t, mp.SMTPAddr) // as after a restart
	require.NoError(t, second.Put(t.Context(), []event.Event{ev}))
	list := waitMessages(t, mp, 2)
	want := strings.Trim(email.MessageID("/emailtest", "retry-me", fromAddr), "<>")
	assert.Equal(t, want, list[0].MessageID)
	assert.Equal(t, want, list[1].MessageID)
	other := strings.Trim(email.MessageID("/emailtest", "retry-me-2", fromAddr), "<>")
	assert.NotEqual(t, want, other)
}

// SMTP replies, made by mailpit's chaos triggers: 4xx retries the event,
// 5xx dead-letters it with the reply, a refused AUTH holds the batch.
func TestSMTPReplies(t *testing.T) {
	mp := infra.StartMailpit(t, infra.MailpitOptions{})
	ctx := t.Context()
	task := startTask(t, mp.SMTPAddr, email.FieldUsername, "meshd", email.FieldPassword, "Very-Secret-pw-42")
	chaos := func(c infra.MailpitChaos) { require.NoError(t, mp.SetChaos(ctx, c)) }

	chaos(infra.MailpitChaos{Recipient: infra.MailpitTrigger{ErrorCode: 451, Probability: 100}})
	f := failed(task.Put(ctx, events(t, "tmp", 2, "a@example.org")), 2)
	require.Len(t, f, 2)
	for _, err := range f {
		assert.Equal(t, bridge.Retry, class(err), "4xx is retried: %v", err)
		assert.Contains(t, err.Error(), "451 Chaos recipient error")
	}
	chaos(infra.MailpitChaos{})
	require.NoError(t, task.Put(ctx, events(t, "tmp", 2, "a@example.org")), "the retry succeeds on the same connection")
	waitMessages(t, mp, 2)

	chaos(infra.MailpitChaos{Sender: infra.MailpitTrigger{ErrorCode: 550, Probability: 100}})
	f = failed(task.Put(ctx, events(t, "perm", 1, "a@example.org")), 1)
	require.Len(t, f, 1)
	assert.Equal(t, bridge.Permanent, class(f[0]), "5xx is permanent: %v", f[0])
	assert.Equal(t, "SMTP server answered MAIL FROM:<"+fromAddr+"> with 550 Chaos sender error", f[0].Error())

	chaos(infra.MailpitChaos{Authentication: infra.MailpitTrigger{ErrorCode: 535, Probability: 100}})
	fresh := startTask(t, mp.SMTPAddr, email.FieldUsername, "meshd", email.FieldPassword, "Very-Secret-pw-42")
	err := fresh.Put(ctx, events(t, "auth", 3, "a@example.org"))
	require.Error(t, err)
	assert.Equal(t, bridge.Unavailable, class(err), "refused credentials hold the batch: %v", err)
	assert.Contains(t, err.Error(), "535")
	assert.NotContains(t, err.Error(), "Very-Secret-pw-42")
	chaos(infra.MailpitChaos{})
	list, err := mp.Messages(ctx)
	require.NoError(t, err)
	assert.Len(t, list, 2, "no failed event was sent")
}

// One recipient refused with 4xx retries its event; with 5xx dead-letters
// it; either way the mail goes to no one, and the batch's other events go.
func TestRecipientRefused(t *testing.T) {
	mp := infra.StartMailpit(t, infra.MailpitOptions{Args: []string{
		"--smtp-max-recipients", "2", // the third RCPT gets 452
		"--smtp-allowed-recipients", `@(example\.org|meshd\.example)$`, // others get 550
	}})
	task := startTask(t, mp.SMTPAddr, email.FieldCc, "{{.Data.cc}}")
	batch := []event.Event{
		newEvent(t, "one", map[string]any{"email": "a@example.org", "cc": ""}),
		newEvent(t, "three", map[string]any{"email": "a@example.org", "cc": "b@example.org, c@example.org"}),
		newEvent(t, "two", map[string]any{"email": "a@example.org", "cc": "b@example.org"}),
		newEvent(t, "stranger", map[string]any{"email": "a@example.org", "cc": "x@elsewhere.example"}),
	}
	f := failed(task.Put(t.Context(), batch), len(batch))
	require.Len(t, f, 2, "%v", f)
	assert.Equal(t, bridge.Retry, class(f[1]), "%v", f[1])
	assert.Contains(t, f[1].Error(), "RCPT TO:<c@example.org> with 452")
	assert.Equal(t, bridge.Permanent, class(f[3]), "%v", f[3])
	assert.Contains(t, f[3].Error(), "RCPT TO:<x@elsewhere.example> with 550")
	list := waitMessages(t, mp, 2)
	require.Len(t, list, 2, "a refused recipient stops the whole mail")
	var ids []string
	for _, s := range list {
		h, err := mp.Headers(t.Context(), s.ID)
		require.NoError(t, err)
		ids = append(ids, h["X-Meshd-Id"]...)
	}
	slices.Sort(ids)
	assert.Equal(t, []string{"one", "two"}, ids)
}

// A batch goes over one connection, kept for the next batch; a connection
// the server dropped is replaced without failing an event; a server that
// is gone holds the batch.
func TestConnectionReuse(t *testing.T) {
	mp := infra.StartMailpit(t, infra.MailpitOptions{})
	proxy := infra.StartProxy(t, mp.SMTPAddr)
	task := startTask(t, proxy.Addr)
	ctx := t.Context()

	require.NoError(t, task.Put(ctx, events(t, "a", 20, "a@example.org")))
	require.NoError(t, task.Put(ctx, events(t, "b", 5, "a@example.org")))
	assert.EqualValues(t, 1, proxy.Accepted(), "two batches, one SMTP connection")
	waitMessages(t, mp, 25)

	proxy.SetFailing(true) // cuts the kept connection
	proxy.SetFailing(false)
	require.NoError(t, task.Put(ctx, events(t, "c", 5, "a@example.org")), "a dropped connection is replaced")
	assert.EqualValues(t, 2, proxy.Accepted())
	waitMessages(t, mp, 30)

	proxy.SetFailing(true)
	err := task.Put(ctx, events(t, "d", 3, "a@example.org"))
	require.Error(t, err)
	assert.Equal(t, bridge.Unavailable, class(err), "a server that is gone holds the batch: %v", err)
	proxy.SetFailing(false)
	require.NoError(t, task.Put(ctx, events(t, "d", 3, "a@example.org")))
	waitMessages(t, mp, 33)

	refused := startTask(t, infra.FreeAddr(t))
	err = refused.Put(ctx, events(t, "e", 2, "a@example.org"))
	require.Error(t, err)
	assert.Equal(t, bridge.Unavailable, class(err), "%v", err)
	assert.Contains(t, err.Error(), "connection refused")
}

// A server that accepts the connection and then says nothing does not
// hang the task: the timeout ends the attempt and holds the batch.
func TestSilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	})
	task := startTask(t, ln.Addr().String(), email.FieldTimeout, "300ms")
	start := time.Now()
	err = task.Put(t.Context(), events(t, "x", 1, "a@example.org"))
	require.Error(t, err)
	assert.Equal(t, bridge.Unavailable, class(err), "%v", err)
	assert.Less(t, time.Since(start), 5*time.Second)
}

// A Put whose context ends while the server is silent returns promptly.
func TestPutHonoursContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = c.Read(make([]byte, 1)) // until the client goes
		}
	}()
	task := startTask(t, ln.Addr().String(), email.FieldTimeout, "1m")
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = task.Put(ctx, events(t, "x", 3, "a@example.org"))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
}

// The server goes away in the middle of a batch: every event Put did not
// report failed is in the mailbox, the failed ones hold, and sending them
// again completes the set.
func TestServerGoneMidBatch(t *testing.T) {
	mp := infra.StartMailpit(t, infra.MailpitOptions{})
	proxy := infra.StartProxy(t, mp.SMTPAddr)
	task := startTask(t, proxy.Addr, email.FieldSubject, "{{.ID}}")
	batch := events(t, "mid", 200, "a@example.org")
	cut := make(chan struct{})
	go func() {
		defer close(cut)
		poll := time.NewTicker(5 * time.Millisecond)
		defer poll.Stop()
		deadline := time.Now().Add(wait)
		for range poll.C {
			if list, err := mp.Messages(context.Background()); (err == nil && len(list) >= 50) || time.Now().After(deadline) {
				proxy.SetFailing(true)
				return
			}
		}
	}()
	err := task.Put(t.Context(), batch)
	<-cut
	f := failed(err, len(batch))
	require.NotEmpty(t, f, "the cut reached the batch before its end")
	for i, ferr := range f {
		assert.NotEqual(t, bridge.Permanent, class(ferr), "event %d: %v", i, ferr)
	}
	list, err := mp.Messages(t.Context())
	require.NoError(t, err)
	in := map[string]bool{}
	for _, s := range list {
		in[s.Subject] = true
	}
	var again []event.Event
	for i, e := range batch {
		if f[i] == nil {
			assert.True(t, in[e.ID()], "event %s was reported sent but is not in the mailbox", e.ID())
		} else {
			again = append(again, e)
		}
	}
	proxy.SetFailing(false)
	require.NoError(t, task.Put(t.Context(), again))
	list = waitMessages(t, mp, len(batch))
	for _, s := range list {
		in[s.Subject] = true
	}
	for _, e := range batch {
		assert.True(t, in[e.ID()], "event %s is missing", e.ID())
	}
	assert.LessOrEqual(t, len(list), len(batch)+1, "at most the mail in flight at the cut is sent twice")
}
