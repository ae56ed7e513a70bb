package infra

import (
	"net/smtp"
	"strings"
	"testing"
)

func TestStartMailpit(t *testing.T) {
	mp := StartMailpit(t, MailpitOptions{})
	ctx := t.Context()
	msg := "From: a@example.org\r\nTo: b@example.org\r\nSubject: hello\r\nX-Test: 1\r\n\r\nbody\r\n"
	if err := smtp.SendMail(mp.SMTPAddr, nil, "a@example.org", []string{"b@example.org"}, []byte(msg)); err != nil {
		t.Fatalf("sending: %v", err)
	}
	list, err := mp.Messages(ctx)
	if err != nil || len(list) != 1 || list[0].Subject != "hello" {
		t.Fatalf("messages: %+v, %v", list, err)
	}
	full, err := mp.Message(ctx, list[0].ID)
	if err != nil || strings.TrimSpace(full.Text) != "body" || full.ReturnPath != "a@example.org" {
		t.Fatalf("message: %+v, %v", full, err)
	}
	h, err := mp.Headers(ctx, list[0].ID)
	if err != nil || len(h["X-Test"]) != 1 || h["X-Test"][0] != "1" {
		t.Fatalf("headers: %v, %v", h, err)
	}
	raw, err := mp.Raw(ctx, list[0].ID)
	if err != nil || !strings.Contains(string(raw), "\r\nX-Test: 1\r\n") {
		t.Fatalf("raw: %q, %v", raw, err)
	}

	if err := mp.SetChaos(ctx, MailpitChaos{Recipient: MailpitTrigger{ErrorCode: 451, Probability: 100}}); err != nil {
		t.Fatal(err)
	}
	err = smtp.SendMail(mp.SMTPAddr, nil, "a@example.org", []string{"b@example.org"}, []byte(msg))
	if err == nil || !strings.HasPrefix(err.Error(), "451") {
		t.Fatalf("with chaos on: %v, want a 451 reply", err)
	}
	if err := mp.SetChaos(ctx, MailpitChaos{}); err != nil {
		t.Fatal(err)
	}
	if err := mp.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if list, err := mp.Messages(ctx); err != nil || len(list) != 0 {
		t.Fatalf("after Clear: %d messages, %v", len(list), err)
	}
}
