package bridge

import (
	"sync"
	"sync/atomic"
)

// ReadCache keeps values computed once per key and read on a hot path
// (parsed event sources, per-topic metric options): reads take no lock,
// and it stops growing at Max entries (default 1024) — later keys are
// computed on every call. The zero value is ready; set Max before first
// use. Safe for concurrent use.
type ReadCache[K comparable, V any] struct {
	Max int64
	m   sync.Map // K → V
	n   atomic.Int64
}

// Get returns the value of k, computing and keeping it on first use. An
// error from compute is returned and nothing is kept.
func (c *ReadCache[K, V]) Get(k K, compute func(K) (V, error)) (V, error) {
	if v, ok := c.m.Load(k); ok {
		return v.(V), nil
	}
	v, err := compute(k)
	limit := c.Max
	if limit == 0 {
		limit = 1024
	}
	if err != nil || c.n.Load() >= limit {
		return v, err
	}
	if got, loaded := c.m.LoadOrStore(k, v); loaded {
		return got.(V), nil
	}
	c.n.Add(1)
	return v, nil
}
