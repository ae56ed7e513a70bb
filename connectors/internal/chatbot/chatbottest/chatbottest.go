// Package chatbottest holds what the tests of the chat sinks
// (dingtalk-sink, feishu-sink) share: their events, a sink opened on a fake
// vendor with a fake clock, the base of the fake vendors (a loopback
// server that checks each request against the vendor's documentation and
// issues access tokens), and the reading of a Put's failures. Through the
// runtime they use connectortest.Runtime.
package chatbottest

import (
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"
)

// Wait bounds every condition the tests wait for; Tick is the polling
// interval.
const (
	Wait = 30 * time.Second
	Tick = 10 * time.Millisecond
)

// Event is an event with JSON data and the given extensions (name, value
// pairs).
func Event(t testing.TB, id string, data any, ext ...string) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource("/chatbottest")
	e.SetType("dev.meshd.chat")
	e.SetSubject("order-" + id)
	for i := 0; i+1 < len(ext); i += 2 {
		e.SetExtension(ext[i], ext[i+1])
	}
	if data != nil {
		require.NoError(t, e.SetData(event.ApplicationJSON, data))
	}
	return e
}
