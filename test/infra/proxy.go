package infra

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards TCP connections on a loopback port to a server; while
// failing it cuts every connection and refuses new ones, as a server that
// went away would.
type Proxy struct {
	// Addr is the proxy's host:port, to give clients instead of the
	// server's.
	Addr    string
	target  string
	failing atomic.Bool
	mu      sync.Mutex
	conns   map[net.Conn]struct{}

	accepted atomic.Int64 // connections forwarded
}

// StartProxy forwards to target (host:port) until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); p.closeAll(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.failing.Load() {
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.accepted.Add(1)
			p.track(c, s)
			wg.Go(func() { _, _ = io.Copy(s, c); s.Close(); c.Close() })
			wg.Go(func() { _, _ = io.Copy(c, s); s.Close(); c.Close() })
		}
	})
	return p
}

func (p *Proxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
}

func (p *Proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Accepted returns how many connections the proxy has forwarded.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// SetFailing cuts every connection and refuses new ones (true), or
// forwards again (false).
func (p *Proxy) SetFailing(f bool) {
	p.failing.Store(f)
	if f {
		p.closeAll()
	}
}
