package sidecar

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestRateKeeper(t *testing.T) {
	var k rateKeeper
	t0 := time.Unix(1000, 0)
	assert.Zero(t, k.rate(t0, "a", 5), "no sample yet")
	k.observe(t0, map[string]float64{"a": 0})
	k.observe(t0.Add(500*time.Millisecond), map[string]float64{"a": 100}) // too soon: ignored
	assert.Len(t, k.samples, 1)
	assert.Zero(t, k.rate(t0.Add(500*time.Millisecond), "a", 50), "under a second")
	assert.InDelta(t, 10, k.rate(t0.Add(10*time.Second), "a", 100), 0.001)
	for i := 1; i <= 30; i++ {
		at := t0.Add(time.Duration(i) * rateEvery)
		k.observe(at, map[string]float64{"a": float64(i * 50)}) // 10/s
	}
	now := t0.Add(30 * rateEvery)
	assert.InDelta(t, 10, k.rate(now, "a", 1500), 0.5)
	assert.LessOrEqual(t, len(k.samples), int(rateWindow/rateEvery)+2, "old samples are dropped")
	assert.Zero(t, k.rate(now, "b", 0), "unknown key")
	assert.Zero(t, k.rate(now, "a", 0), "a counter that went back (restart) is no negative rate")
}

func TestRedactSink(t *testing.T) {
	assert.Equal(t, "http://h:1/p?…", redactSink("http://user:secret@h:1/p?key=secret#x"))
	assert.Equal(t, "/events", redactSink("/events"))
	assert.NotContains(t, redactSink("http://a b@h/"), "a b")
}

func TestIsUIAsset(t *testing.T) {
	for p, want := range map[string]bool{"/ui": true, "/ui/": true, "/ui/app.js": true, "/uix": false, "/v1/overview": false, "/ui/../v1/overview": false} {
		assert.Equal(t, want, IsUIAsset(p), p)
	}
}

func TestPrintable(t *testing.T) {
	assert.Equal(t, "a?[2Jb?c", printable("a\x1b[2Jb\u009bc"))
	assert.Equal(t, "ünïcode <b>", printable("ünïcode <b>"))
}
