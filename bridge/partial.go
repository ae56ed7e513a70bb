package bridge

import (
	"fmt"
	"sort"
	"strings"
)

func partialErrorText(failed map[int]error) string {
	idx := make([]int, 0, len(failed))
	for i := range failed {
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
		fmt.Fprintf(&b, "; event %d: %v", i, failed[i])
	}
	return b.String()
}
