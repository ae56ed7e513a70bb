package bridge

import (
	"fmt"
	"sort"
	"strings"
)

// partialErrorText says how many events of a batch failed and why, one
// reason per distinct error with the events it hit: a database that went away
// fails every event of the batch with the same error, which is worth reading
// once, not once per event.
func partialErrorText(failed map[int]error) string {
	idx := make([]int, 0, len(failed))
	for i := range failed {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	type reason struct {
		text   string
		events []int
	}
	var reasons []*reason
	byText := map[string]*reason{}
	for _, i := range idx {
		text := fmt.Sprint(failed[i])
		r := byText[text]
		if r == nil {
			r = &reason{text: text}
			byText[text] = r
			reasons = append(reasons, r)
		}
		r.events = append(r.events, i)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d event(s) of the batch failed", len(idx))
	for n, r := range reasons {
		if n == 3 {
			fmt.Fprintf(&b, "; %d other reason(s)", len(reasons)-n)
			break
		}
		word := "event"
		if len(r.events) > 1 {
			word = "events"
		}
		fmt.Fprintf(&b, "; %s %s: %s", word, eventRanges(r.events), r.text)
	}
	return b.String()
}

// eventRanges writes sorted indexes as ranges ("0-3, 7, 9-12"), at most five
// of them.
func eventRanges(idx []int) string {
	var b strings.Builder
	ranges := 0
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if ranges == 5 {
			b.WriteString(", …")
			break
		}
		if ranges > 0 {
			b.WriteString(", ")
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", idx[i], idx[j])
		} else {
			fmt.Fprintf(&b, "%d", idx[i])
		}
		ranges++
		i = j + 1
	}
	return b.String()
}
