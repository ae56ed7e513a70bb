// Package protocoltest is the one suite every app-facing endpoint passes
// (HTTP, WebSocket, MQTT): events survive the round trip unchanged in every
// mode the endpoint carries, no success is answered before the mesh stored
// the event, malformed input gets the documented error and publishes
// nothing, and a mesh outage gives a retryable error instead of a hang.
//
// An endpoint plugs in with an Endpoint built by a Factory on the engine the
// suite chooses (the embedded mesh, a gated one, or a NATS server it stops).
package protocoltest

import (
	"context"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge/problem"
	"github.com/meshd/meshd/mesh"
)

// Topics the suite publishes to and consumes from. A Factory may need to
// route them (MQTT maps topic T to the MQTT topic "suite/T" and back).
var Topics = []string{"roundtrip", "malformed", "gated", "outage"}

// OutboundTopic is the mesh topic an endpoint's Receive delivers from.
const OutboundTopic = "outbound"

// Answer is what an endpoint said about one published message.
type Answer struct {
	// Stored is the success answer ("204", an ack message).
	Stored bool
	// Problem is the error answer.
	Problem *problem.Problem
	// Unanswered: the endpoint has no answer channel (MQTT: the ack goes to
	// the broker). The suite then checks the mesh instead.
	Unanswered bool
}

// Endpoint is one endpoint under test, wired to the suite's engine.
type Endpoint struct {
	Name string
	// PublishStructured sends body as one structured-mode message (a
	// batch when it is a JSON array and Batch is true).
	PublishStructured func(ctx context.Context, t *testing.T, topic string, body []byte) Answer
	// PublishBinary sends e in binary mode; nil when the endpoint has none.
	PublishBinary func(ctx context.Context, t *testing.T, topic string, e *event.Event) Answer
	// Batch says whether a JSON array is a batch of events.
	Batch bool
	// MalformedIsWrapped: the endpoint does not refuse malformed input but
	// wraps it as the data of a generated event (MQTT, documented).
	MalformedIsWrapped bool
	// Receive starts delivery from OutboundTopic and returns a function
	// that returns the next delivered message in structured mode (acking
	// it). nil when the endpoint does not deliver.
	Receive func(t *testing.T) func() []byte
	// Restart stops the endpoint abruptly and starts it again on the given
	// engine; used for endpoints without answers. nil otherwise.
	Restart func(t *testing.T, eng mesh.Engine)
}

// Factory builds an Endpoint on eng; everything it starts is stopped by
// t.Cleanup. It may be called several times per test (a restart).
type Factory func(t *testing.T, eng mesh.Engine) *Endpoint

// Run runs every case against the endpoint newEndpoint builds.
func Run(t *testing.T, newEndpoint Factory) {
	t.Run("RoundTripStructured", func(t *testing.T) { testRoundTrip(t, newEndpoint, false) })
	t.Run("RoundTripBinary", func(t *testing.T) { testRoundTrip(t, newEndpoint, true) })
	t.Run("Batch", func(t *testing.T) { testBatch(t, newEndpoint) })
	t.Run("Outbound", func(t *testing.T) { testOutbound(t, newEndpoint) })
	t.Run("NoSuccessBeforeStored", func(t *testing.T) { testNoSuccessBeforeStored(t, newEndpoint) })
	t.Run("Malformed", func(t *testing.T) { testMalformed(t, newEndpoint) })
	t.Run("MeshOutage", func(t *testing.T) { testOutage(t, newEndpoint) })
}
