package connectors

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
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

// PartialError is returned by SinkTask.Put when only some events of a batch
// failed. Failed maps the index of each failed event in the batch to its
// error.
type PartialError struct {
	Failed map[int]error
}

func (e *PartialError) Error() string {
	idx := make([]int, 0, len(e.Failed))
	for i := range e.Failed {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var b strings.Builder
	fmt.Fprintf(&b, "%d event(s) of the batch failed", len(idx))
	for n, i := range idx {
		if n == 3 {
			b.WriteString("; …")
			break
		}
		fmt.Fprintf(&b, "; event %d: %v", i, e.Failed[i])
	}
	return b.String()
}
