package connectors

import (
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/meshd/meshd/bridge"
)

// Record is one event polled by a source task with its position in the
// outside system.
type Record struct {
	Event event.Event
	// Partition names the stream of the outside system the record comes
	// from (a file, a table, a shard). Records without a partition have no
	// offset to commit.
	Partition string
	// Offset is the record's position in its partition, opaque to the
	// runtime. After a restart the task gets the offset of the last record
	// of each partition the mesh stored (TaskContext.Offsets).
	Offset string
}

// PartialError is returned by SinkTask.Put when only some events of a
// batch failed: Failed maps the index of each failed event in the batch to
// its error. It is the delivery loop's own (bridge.PartialError).
type PartialError = bridge.PartialError
