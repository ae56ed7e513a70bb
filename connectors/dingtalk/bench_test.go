package dingtalk

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/connectors/internal/chatbot"
	"github.com/meshd/meshd/connectors/internal/chatbot/chatbottest"
)

const (
	benchMessages = 2000
	benchBatch    = 20
)

// BenchmarkSinkPut compares dingtalk-sink's Put with bare HTTP, both
// posting to the same fake DingTalk (which checks every request) in the
// same run:
//
//   - bare: benchMessages markdown messages, built and signed beforehand,
//     POSTed one after the other with net/http.
//   - sink: the same events (JSON data with an id, a name and a 200-byte
//     note) handed to Put in batches of 20: the markdown title and text
//     templates, at, msgUuid, signing each request, the limiter (set out of
//     the way), the answer's errcode.
//
// It reports sink_mps and bare_mps (messages per second) and ratio =
// sink_mps/bare_mps. DingTalk itself allows 20 messages a minute per
// robot: this measures meshd's own cost, not a real robot's throughput.
// Run it with -benchtime 1x (make bench does).
func BenchmarkSinkPut(b *testing.B) {
	f := newFake(b)
	f.limit = 1 << 30
	note := "Grüße aus Köln, 你好 " + strings.Repeat("x", 170)
	client := &http.Client{Timeout: 10 * time.Second}
	s := &settings{Settings: chatbot.Settings{Webhook: f.webhook(), Secret: f.secret}}
	bare := func(bodies [][]byte) time.Duration {
		start := time.Now()
		for _, body := range bodies {
			resp, err := client.Post(s.webhookURL(time.Now().UnixMilli()), "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		return time.Since(start)
	}
	sink := newSink(b, webhookFields(f, FieldMsgType, MsgMarkdown, FieldTitle, "Order {{.Data.id}}",
		FieldText, "**{{.Data.name}}**: {{.Data.note}}", FieldAtMobiles, "13800000000", chatbot.FieldRateLimits, "1000000/1s"), nil)
	put := func(evs []event.Event) time.Duration {
		start := time.Now()
		for from := 0; from < len(evs); from += benchBatch {
			if err := sink.Put(b.Context(), discard, evs[from:min(from+benchBatch, len(evs))]); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	build := func(prefix string, n int) ([]event.Event, [][]byte) {
		evs := make([]event.Event, n)
		bodies := make([][]byte, n)
		for i := range evs {
			id := fmt.Sprintf("%s-%d", prefix, i)
			evs[i] = chatbottest.Event(b, "s"+id, map[string]any{"id": i, "name": "Jürgen", "note": note})
			bodies[i] = []byte(fmt.Sprintf(`{"msgtype":"markdown","markdown":{"title":"Order %d","text":"**Jürgen**: %s @13800000000"},"at":{"atMobiles":["13800000000"]},"msgUuid":"b%s"}`, i, note, id))
		}
		return evs, bodies
	}
	warmEvs, warmBodies := build("warm", 200)
	bare(warmBodies)
	put(warmEvs)
	for iter := 0; b.Loop(); iter++ {
		evs, bodies := build(fmt.Sprint(iter), benchMessages)
		bareTime := bare(bodies)
		sinkTime := put(evs)
		sinkMPS, bareMPS := benchMessages/sinkTime.Seconds(), benchMessages/bareTime.Seconds()
		b.ReportMetric(sinkMPS, "sink_mps")
		b.ReportMetric(bareMPS, "bare_mps")
		b.ReportMetric(sinkMPS/bareMPS, "ratio")
	}
	if got, want := len(f.Messages()), 400+2*benchMessages*b.N; got != want {
		b.Fatalf("the fake took %d messages, want %d", got, want)
	}
}
