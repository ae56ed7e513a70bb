package bridge

import (
	"errors"
	"testing"
)

func TestPartialErrorTextGroupsReasons(t *testing.T) {
	down := errors.New("connection refused")
	bad := errors.New("not a JSON object")
	failed := map[int]error{}
	for i := 0; i < 29; i++ {
		failed[i] = down
	}
	failed[40], failed[42] = bad, bad
	got := partialErrorText(failed)
	want := "31 event(s) of the batch failed; events 0-28: connection refused; events 40, 42: not a JSON object"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}

	many := map[int]error{}
	for i := 0; i < 5; i++ {
		many[i] = errors.New(string(rune('a' + i)))
	}
	got = partialErrorText(many)
	want = "5 event(s) of the batch failed; event 0: a; event 1: b; event 2: c; 2 other reason(s)"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}

	spread := map[int]error{}
	for _, i := range []int{0, 2, 4, 6, 8, 10, 11} {
		spread[i] = down
	}
	got = partialErrorText(spread)
	want = "7 event(s) of the batch failed; events 0, 2, 4, 6, 8, …: connection refused"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}
