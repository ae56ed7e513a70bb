// Package connectors is meshd's connector SDK: the OpenMessaging Connect
// model in Go. A connector type registers a Spec (its name, kind and config
// fields); an instance of it is a Connector that splits its work into task
// configs, and each task config runs as one Task. Source tasks Poll records
// from an outside system and the runtime (connectors/worker) publishes them
// to the mesh and commits their offsets; sink tasks get batches of events
// from a durable consumer group through Put.
//
// Small core interfaces, optional extras as separate interfaces checked with
// a type assertion: Initializer (the task's context: offsets, logger,
// webhook listener), Committer (ack upstream once the mesh stored records),
// Flusher (make Put's writes durable) and EverySidecar (run on every sidecar
// of the app, not on one).
package connectors

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge/cehttp"
)

// Kind says which way a connector moves events.
type Kind string

// Connector kinds.
const (
	// KindSource turns outside data into events published to a topic.
	KindSource Kind = "source"
	// KindSink turns events of one or more topics into outside effects.
	KindSink Kind = "sink"
)

// Connector is one instance of a connector type. The runtime calls Start,
// then TaskConfigs, then runs one Task per config; Stop when the instance
// stops (pause, reconfiguration, delete, shutdown). Stop must be safe after
// a failed Start.
type Connector interface {
	// Start receives the instance's validated config.
	Start(ctx context.Context, cfg Config) error
	// Stop releases what Start acquired.
	Stop(ctx context.Context) error
	// NewTask returns a new, unstarted task of this connector type (the
	// seed's taskClass()).
	NewTask() Task
	// TaskConfigs splits the work into at most maxTasks task configs (at
	// least one). Each becomes one running Task.
	TaskConfigs(maxTasks int) ([]Config, error)
}

// Task does the work of one task config. The runtime calls Start, then
// Poll or Put repeatedly from one goroutine, then Stop; a task that fails is
// discarded and a new one (from Connector.NewTask) is started after a
// backoff. Stop must be safe after a failed Start.
type Task interface {
	Start(ctx context.Context, cfg Config) error
	Stop(ctx context.Context) error
}

// SourceTask reads an outside system.
type SourceTask interface {
	Task
	// Poll returns the next records. It should block until records are
	// available or a short while (about a second) has passed, and return
	// promptly with ctx.Err() when ctx is done. Poll is not called again
	// before the records of the previous call are stored by the mesh (or the
	// task stops).
	Poll(ctx context.Context) ([]Record, error)
}

// Committer is implemented by source tasks that must ack upstream. Commit is
// called with exactly the records of one Poll, in order, after the mesh
// stored them and their offsets were committed, and before the next Poll.
type Committer interface {
	Commit(ctx context.Context, records []Record) error
}

// SinkTask writes events to an outside system.
type SinkTask interface {
	Task
	// Put writes a batch. A nil error acks every event of it; a
	// *PartialError names the events that failed (the rest are acked); any
	// other error fails the whole batch. Errors are classified by
	// bridge.Classify: one wrapping bridge.ErrPermanent dead-letters its
	// event at once; one wrapping bridge.ErrUnavailable (the outside system
	// is down) holds the batch and retries it without spending attempts;
	// others are retried with backoff and dead-lettered after maxAttempts.
	Put(ctx context.Context, events []event.Event) error
}

// Position is where a delivered event sits in the mesh.
type Position struct {
	// Topic is the topic the event was consumed from.
	Topic string
	// Sequence is the event's mesh sequence (mesh.Message.Seq):
	// unique per stored event, growing in publish order and the same when
	// the event is delivered again.
	Sequence uint64
}

// PositionedSink is implemented by sink tasks that need to know where
// each event sits in the mesh, e.g. to derive idempotent object names from
// sequences (s3-sink). The runtime then calls PutPositions instead of Put;
// pos[i] is the position of events[i]. Errors are Put's.
type PositionedSink interface {
	SinkTask
	PutPositions(ctx context.Context, events []event.Event, pos []Position) error
}

// EverySidecar is implemented by tasks that run on every sidecar of an app
// instead of on one member of its worker group: webhook sources, each of
// which takes the requests that reach its own sidecar. Other tasks are
// spread over the sidecars, each running on exactly one at a time.
type EverySidecar interface {
	Task
	EverySidecar()
}

// Flusher is implemented by sink tasks whose Put may buffer. Flush is
// called after every successful Put, before the batch is acked, and before
// Stop.
type Flusher interface {
	Flush(ctx context.Context) error
}

// Initializer is implemented by tasks that need their context. Init is
// called once, before Start.
type Initializer interface {
	Init(tc TaskContext)
}

// TaskContext is what the runtime tells a task about itself.
type TaskContext interface {
	// Connector is the name of the instance the task belongs to.
	Connector() string
	// TaskID is the task's index among its instance's tasks, from 0.
	TaskID() int
	// Logger is tagged with the connector and task.
	Logger() *slog.Logger
	// Offsets are the last committed offsets of the instance, by source
	// partition, as of the task's start (sources; empty for sinks).
	Offsets() map[string]string
	// Webhooks is meshd's public webhook listener, for sources that receive
	// HTTP requests.
	Webhooks() Webhooks
	// MaxEventBytes is the largest event the mesh stores (attributes and
	// data): a source that answers a client refuses a larger one at the
	// door instead of failing its task.
	MaxEventBytes() int64
	// Guard decides which addresses the task's HTTP clients may dial:
	// give it to cehttp.ClientConfig.Guard. It refuses meshd's own listeners, link-local and
	// cloud metadata addresses, and what delivery.allowedTargets does not
	// list. nil (outside the runtime) refuses only the link-local and
	// metadata addresses.
	Guard() *cehttp.Guard
}

// Webhooks routes requests of the public webhook listener by exact path.
type Webhooks interface {
	// Handle serves path with h until remove is called. It fails if path is
	// taken or the listener cannot be opened.
	Handle(path string, h http.Handler) (remove func(), err error)
}
