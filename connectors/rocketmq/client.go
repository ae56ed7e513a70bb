package rocketmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd/connectors/rocketmq/remoting"
)

// clientVersion is the version the source's requests carry: that of
// rocketmq-client-go v2.1.2.
const clientVersion = 317

// brokerClient speaks the remoting protocol to name servers and brokers:
// one connection per address, opened on first use and again after it
// broke, requests matched to answers by opaque. Cancelling a request's
// context abandons its answer.
//
// Lock order: brokerClient.mu, then remoteConn.mu; remoteConn.wmu alone.
type brokerClient struct {
	dialTimeout          time.Duration
	accessKey, secretKey string

	opaque atomic.Int32
	mu     sync.Mutex
	conns  map[string]*remoteConn
	closed bool
	wg     sync.WaitGroup // read loops
}

type remoteConn struct {
	addr string
	nc   net.Conn
	wmu  sync.Mutex // one frame at a time

	mu      sync.Mutex
	pending map[int32]chan *remoting.Command
	err     error         // why the connection ended
	done    chan struct{} // closed when it ended
}

var errClientClosed = errors.New("RocketMQ client closed")

func newBrokerClient(dialTimeout time.Duration, accessKey, secretKey string) *brokerClient {
	return &brokerClient{dialTimeout: dialTimeout, accessKey: accessKey, secretKey: secretKey, conns: map[string]*remoteConn{}}
}

// conn returns the open connection to addr, dialling one if needed.
func (c *brokerClient) conn(ctx context.Context, addr string) (*remoteConn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errClientClosed
	}
	if rc := c.conns[addr]; rc != nil {
		c.mu.Unlock()
		return rc, nil
	}
	c.mu.Unlock()
	d := net.Dialer{Timeout: c.dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	rc := &remoteConn{addr: addr, nc: nc, pending: map[int32]chan *remoting.Command{}, done: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		nc.Close()
		return nil, errClientClosed
	}
	if other := c.conns[addr]; other != nil {
		nc.Close() // another request dialled first
		return other, nil
	}
	c.conns[addr] = rc
	c.wg.Go(func() { c.readLoop(rc) })
	return rc, nil
}

func (c *brokerClient) readLoop(rc *remoteConn) {
	for {
		cmd, _, err := remoting.Read(rc.nc)
		if err != nil {
			c.drop(rc, fmt.Errorf("connection to %s: %w", rc.addr, err))
			return
		}
		if !cmd.IsResponse() {
			continue // brokers notify consumers they know; this client is none
		}
		rc.mu.Lock()
		ch := rc.pending[cmd.Opaque]
		delete(rc.pending, cmd.Opaque)
		rc.mu.Unlock()
		if ch != nil {
			ch <- cmd // buffered: never blocks
		}
	}
}

// drop ends rc: its pending requests fail with err.
func (c *brokerClient) drop(rc *remoteConn, err error) {
	c.mu.Lock()
	if c.conns[rc.addr] == rc {
		delete(c.conns, rc.addr)
	}
	c.mu.Unlock()
	rc.mu.Lock()
	if rc.err == nil {
		rc.err = err
		close(rc.done)
	}
	rc.mu.Unlock()
	rc.nc.Close()
}

// invoke sends req to addr and waits for its answer, or for ctx.
func (c *brokerClient) invoke(ctx context.Context, addr string, req *remoting.Command) (*remoting.Command, error) {
	rc, ch, err := c.write(ctx, addr, req, false)
	if err != nil {
		return nil, err
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-rc.done:
		return nil, rc.err
	case <-ctx.Done():
		rc.mu.Lock()
		delete(rc.pending, req.Opaque)
		rc.mu.Unlock()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// A peer that stopped answering may be gone without a word
			// (no FIN): the next request dials again.
			c.drop(rc, fmt.Errorf("no answer from %s in time", addr))
		}
		return nil, fmt.Errorf("waiting for %s: %w", addr, ctx.Err())
	}
}

// oneway sends req to addr without waiting for an answer.
func (c *brokerClient) oneway(ctx context.Context, addr string, req *remoting.Command) error {
	_, _, err := c.write(ctx, addr, req, true)
	return err
}

func (c *brokerClient) write(ctx context.Context, addr string, req *remoting.Command, oneway bool) (*remoteConn, chan *remoting.Command, error) {
	rc, err := c.conn(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	req.Opaque = c.opaque.Add(1)
	req.Language, req.Version = "GO", clientVersion
	if oneway {
		req.Flag |= remoting.FlagOneway
	}
	if c.accessKey != "" {
		remoting.Sign(req, c.accessKey, c.secretKey)
	}
	frame, err := remoting.Encode(req, remoting.SerializeJSON)
	if err != nil {
		return nil, nil, err
	}
	var ch chan *remoting.Command
	if !oneway {
		ch = make(chan *remoting.Command, 1)
		rc.mu.Lock()
		if rc.err != nil {
			rc.mu.Unlock()
			return nil, nil, rc.err
		}
		rc.pending[req.Opaque] = ch
		rc.mu.Unlock()
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(c.dialTimeout)
	}
	rc.wmu.Lock()
	_ = rc.nc.SetWriteDeadline(deadline)
	_, err = rc.nc.Write(frame)
	rc.wmu.Unlock()
	if err != nil {
		c.drop(rc, fmt.Errorf("writing to %s: %w", addr, err))
		return nil, nil, rc.err
	}
	return rc, ch, nil
}

// close ends every connection and waits for their read loops.
func (c *brokerClient) close() {
	c.mu.Lock()
	c.closed = true
	conns := make([]*remoteConn, 0, len(c.conns))
	for _, rc := range c.conns {
		conns = append(conns, rc)
	}
	c.mu.Unlock()
	for _, rc := range conns {
		c.drop(rc, errClientClosed)
	}
	c.wg.Wait()
}

// errTopicNotExist is a route lookup of a topic no name server knows.
var errTopicNotExist = errors.New("topic does not exist")

// route asks the name servers, in turn, for a topic's route.
func (c *brokerClient) route(ctx context.Context, nameservers []string, topic string) (remoting.RouteData, error) {
	var last error
	for _, ns := range nameservers {
		resp, err := c.invoke(ctx, ns, &remoting.Command{Code: remoting.GetRouteInfoByTopic, ExtFields: map[string]string{"topic": topic}})
		if err != nil {
			last = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		switch resp.Code {
		case remoting.Success:
			return remoting.DecodeRoute(resp.Body)
		case remoting.TopicNotExist:
			return remoting.RouteData{}, fmt.Errorf("route of %q: %w", topic, errTopicNotExist)
		}
		last = fmt.Errorf("route of %q: name server %s answered %d: %s", topic, ns, resp.Code, resp.Remark)
	}
	return remoting.RouteData{}, fmt.Errorf("asking the name servers for the route of %q: %w", topic, last)
}

// offsetCall sends an offset request (QUERY_CONSUMER_OFFSET, GET_MAX_OFFSET,
// ...) and returns the offset answered; found is false for QUERY_NOT_FOUND.
func (c *brokerClient) offsetCall(ctx context.Context, addr string, code int16, ext map[string]string) (offset int64, found bool, err error) {
	resp, err := c.invoke(ctx, addr, &remoting.Command{Code: code, ExtFields: ext})
	if err != nil {
		return 0, false, err
	}
	switch resp.Code {
	case remoting.Success:
		off, err := strconv.ParseInt(resp.ExtFields["offset"], 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("broker %s answered request %d with offset %q", addr, code, resp.ExtFields["offset"])
		}
		return off, true, nil
	case remoting.QueryNotFound:
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("broker %s answered request %d with %d: %s", addr, code, resp.Code, resp.Remark)
}
