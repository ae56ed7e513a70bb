package email

import (
	"context"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/test/infra"
)

const (
	benchMails = 2000
	benchBatch = 100
)

// BenchmarkSinkPut compares email-sink's Put with net/smtp alone, sending
// to one mailpit in the same run:
//
//   - bare: benchMails messages, built beforehand, sent with net/smtp over
//     one connection (MAIL, RCPT, DATA each).
//   - sink: the same events (JSON data with a recipient, a name and a
//     1 KiB text) handed to Task.Put in batches of 100: templates for
//     from, to, subject and body, MIME encoding, then the same commands
//     over one kept connection.
//
// It reports sink_eps and bare_eps (mails per second) and ratio =
// sink_eps/bare_eps. mailpit's storage is in both. Run it with
// -benchtime 1x (make bench does).
func BenchmarkSinkPut(b *testing.B) {
	mp := infra.StartMailpit(b, infra.MailpitOptions{})
	ctx := context.Background()
	host, port, _ := net.SplitHostPort(mp.SMTPAddr)
	cfg := connectortest.Config(b, Spec, FieldHost, host, FieldPort, port, FieldTLSMode, TLSNone,
		FieldFrom, "Bench <bench@meshd.example>", FieldTo, "{{.Data.name}} <{{.Data.email}}>",
		FieldSubject, "Order {{.Data.n}} for {{.Data.name}}", FieldBody, "Hello {{.Data.name}},\n\n{{.Data.text}}\n")
	text := strings.Repeat("Grüße aus Köln, ", 64) // 1 KiB, quoted-printable
	for iter := 0; b.Loop(); iter++ {
		require := func(err error) {
			if err != nil {
				b.Fatal(err)
			}
		}
		require(mp.Clear(ctx))
		evs := make([]event.Event, benchMails)
		for n := range evs {
			e := event.New()
			e.SetID(fmt.Sprintf("bench-%d-%d", iter, n))
			e.SetSource("/bench")
			e.SetType("dev.meshd.bench")
			require(e.SetData(event.ApplicationJSON, map[string]any{"email": fmt.Sprintf("user%d@example.org", n), "name": "Jürgen", "n": n, "text": text}))
			evs[n] = e
		}
		s, errs := parseConfig(cfg)
		if len(errs) > 0 {
			b.Fatal(errs)
		}
		msgs := make([]*message, benchMails)
		for n := range evs {
			m, err := s.build(&evs[n], time.Now())
			require(err)
			msgs[n] = m
		}

		start := time.Now()
		c, err := smtp.Dial(mp.SMTPAddr)
		require(err)
		for _, m := range msgs {
			require(c.Mail(m.from))
			for _, r := range m.rcpts {
				require(c.Rcpt(r))
			}
			w, err := c.Data()
			require(err)
			_, err = w.Write(m.data)
			require(err)
			require(w.Close())
		}
		require(c.Quit())
		bareTime := time.Since(start)

		task := &Task{}
		require(task.Start(ctx, cfg))
		start = time.Now()
		for from := 0; from < benchMails; from += benchBatch {
			require(task.Put(ctx, evs[from:from+benchBatch]))
		}
		require(task.Stop(ctx))
		sinkTime := time.Since(start)

		list, err := mp.Messages(ctx)
		require(err)
		if len(list) != 2*benchMails {
			b.Fatalf("mailpit holds %d messages, want %d", len(list), 2*benchMails)
		}
		sinkEPS, bareEPS := benchMails/sinkTime.Seconds(), benchMails/bareTime.Seconds()
		b.ReportMetric(sinkEPS, "sink_eps")
		b.ReportMetric(bareEPS, "bare_eps")
		b.ReportMetric(sinkEPS/bareEPS, "ratio")
	}
}
