package websocket

import (
	"context"
	"log/slog"
	"testing"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/protocols/protocoltest"
)

// FuzzPublishMessage feeds the WebSocket publish decoder arbitrary
// messages: the replies are one ack per stored event, or exactly one error
// from the problem table with nothing stored; never a panic.
func FuzzPublishMessage(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t"}`))
	f.Add([]byte(`[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","source":"/s","type":"t","data_base64":"AA=="}]`))
	f.Add([]byte(`{"id":5}`))
	f.Add([]byte(` [ `))
	eng := &protocoltest.MemoryEngine{}
	b, err := bridge.New(bridge.Options{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	h := NewHandler(b, eng, Config{MaxMessageBytes: 1 << 16}, slog.New(slog.DiscardHandler))
	known := map[string]bool{}
	for _, c := range problem.Codes() {
		known[c] = true
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		replies := h.publishMessage(context.Background(), "fuzz", msg)
		stored := eng.Events("fuzz")
		if len(replies) == 0 {
			t.Fatal("no reply")
		}
		if replies[0].Error != nil {
			if len(replies) != 1 || len(stored) != 0 || !known[replies[0].Error.Code] {
				t.Fatalf("error reply %+v with %d replies and %d stored events", replies[0].Error, len(replies), len(stored))
			}
			return
		}
		if len(replies) != len(stored) {
			t.Fatalf("%d acks for %d stored events", len(replies), len(stored))
		}
		for i, r := range replies {
			if r.Ack != stored[i].ID() {
				t.Fatalf("ack %d names %q, stored %q", i, r.Ack, stored[i].ID())
			}
		}
	})
}
