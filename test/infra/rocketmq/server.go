// Package rocketmq is a protocol-level RocketMQ 4.x name server and broker
// for tests, in Go: no RocketMQ broker can be had on the machines meshd is
// tested on (brokers come only from Maven and Apache downloads).
//
// It speaks the remoting protocol (connectors/rocketmq/remoting) on two
// loopback listeners, a name server and one master broker, and serves the
// requests github.com/apache/rocketmq-client-go/v2 sends: topic routes,
// sends (single and batch, with compressed bodies and delay levels), pulls
// (with tag filters, long polling and the commit-offset flag), consumer
// offsets, max/min offsets and search by time, heartbeats, consumer lists
// with change notices, send-back with retry and dead-letter topics, and
// queue locks for orderly consumers. Messages are kept in a commit log on
// disk in the broker's format, so a Server restarted on the same
// directory serves what it stored. It is validated with the official Go
// client's producer (server_test.go) and push and pull consumers
// (server_consumers_test.go, without the race detector: the client races
// with itself).
//
// Not implemented: transactions, SQL92 filters, slaves and replication,
// message queries by key or id, and most admin requests (they are answered
// REQUEST_CODE_NOT_SUPPORTED).
package rocketmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/connectors/rocketmq/remoting"
)

// Config configures a Server.
type Config struct {
	// Dir holds the store. Required.
	Dir string
	// NameServerAddr and BrokerAddr are the listen addresses (default
	// 127.0.0.1 on a free port). A restart listens on the same ports.
	NameServerAddr, BrokerAddr string
	// Cluster and BrokerName name the broker in routes (defaults
	// DefaultCluster and broker-a).
	Cluster, BrokerName string
	// Queues is the queue count of topics created by CreateTopic without
	// one and by producers (auto-created topics; default 4).
	Queues int
	// NoAutoCreateTopics refuses sends to unknown topics
	// (autoCreateTopicEnable=false).
	NoAutoCreateTopics bool
	// Accounts turns ACL on: access key → secret key. Every broker request
	// must then be signed (AccessKey and Signature ext fields).
	Accounts map[string]string
	// DelayLevels are the delays of levels 1, 2, ... (default the broker's
	// 1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h).
	DelayLevels []time.Duration
	// MaxMessageSize bounds a message or batch body (default 4 MiB).
	MaxMessageSize int
	// SyncFlush fsyncs every write (flushDiskType=SYNC_FLUSH).
	SyncFlush bool
}

// DefaultDelayLevels is the broker's messageDelayLevel.
var DefaultDelayLevels = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute,
	6 * time.Minute, 7 * time.Minute, 8 * time.Minute, 9 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour,
}

// brokerVersion is the version the broker answers with: at or above
// V4_1_0, which clients check before filtering by tag.
const brokerVersion = 373

// Server is a running name server and broker.
type Server struct {
	cfg Config

	mu      sync.Mutex // guards the fields below and the restart
	store   *store
	ctx     context.Context
	cancel  context.CancelFunc
	lns     []net.Listener
	conns   map[*conn]bool
	wg      sync.WaitGroup
	running bool

	groups    *groups
	locks     *locks
	sendFault faultState
	counts    requestCounts
}

// Start opens a server on cfg and stops it when the test ends. It fails
// the test if the server cannot start.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("starting the RocketMQ test server: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Open starts a server on cfg.
func Open(cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("rocketmq test server: Dir is required")
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "DefaultCluster"
	}
	if cfg.BrokerName == "" {
		cfg.BrokerName = "broker-a"
	}
	if cfg.Queues <= 0 {
		cfg.Queues = 4
	}
	if len(cfg.DelayLevels) == 0 {
		cfg.DelayLevels = DefaultDelayLevels
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = defaultMaxMessageSize
	}
	if cfg.NameServerAddr == "" {
		cfg.NameServerAddr = "127.0.0.1:0"
	}
	if cfg.BrokerAddr == "" {
		cfg.BrokerAddr = "127.0.0.1:0"
	}
	s := &Server{cfg: cfg, groups: newGroups(), locks: newLocks(), counts: requestCounts{n: map[int16]int{}}}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// NameServer is the name server's address, host:port.
func (s *Server) NameServer() string { return s.cfg.NameServerAddr }

// BrokerAddr is the broker's address, host:port.
func (s *Server) BrokerAddr() string { return s.cfg.BrokerAddr }

// BrokerName is the broker's name in routes.
func (s *Server) BrokerName() string { return s.cfg.BrokerName }

// Cluster is the broker's cluster name.
func (s *Server) Cluster() string { return s.cfg.Cluster }

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	st, err := openStore(s.cfg.Dir, s.cfg.SyncFlush)
	if err != nil {
		return err
	}
	if !s.cfg.NoAutoCreateTopics {
		if _, err := st.ensureTopic(defaultTopic, 8, permInheritAll); err != nil {
			st.close()
			return err
		}
	}
	nsLn, err := net.Listen("tcp", s.cfg.NameServerAddr)
	if err != nil {
		st.close()
		return fmt.Errorf("listening for the name server: %w", err)
	}
	brLn, err := net.Listen("tcp", s.cfg.BrokerAddr)
	if err != nil {
		st.close()
		nsLn.Close()
		return fmt.Errorf("listening for the broker: %w", err)
	}
	// Keep the ports: a restart listens on the same ones, as clients and
	// routes know them.
	if a := nsLn.Addr().String(); a != s.cfg.NameServerAddr {
		s.cfg.NameServerAddr = a
	}
	if a := brLn.Addr().String(); a != s.cfg.BrokerAddr {
		s.cfg.BrokerAddr = a
	}
	s.store = st
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.lns = []net.Listener{nsLn, brLn}
	s.conns = map[*conn]bool{}
	s.running = true
	s.wg.Go(func() { s.accept(nsLn, roleNameServer) })
	s.wg.Go(func() { s.accept(brLn, roleBroker) })
	s.wg.Go(func() { s.schedule(s.ctx, st) })
	return nil
}

// Close stops the server: listeners, connections (held pulls are dropped
// unanswered) and the store. The store keeps what was written.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return nil
	}
	s.running = false
	s.cancel()
	for _, ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	st := s.store
	s.mu.Unlock()
	s.wg.Wait()
	s.groups.reset()
	s.locks.reset()
	return st.close()
}

// Restart closes the server and starts it again on the same directory and
// ports.
func (s *Server) Restart() error {
	if err := s.Close(); err != nil {
		return err
	}
	return s.start()
}

// Running reports whether the server is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

func (s *Server) currentStore() (*store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil, errors.New("the RocketMQ test server is stopped")
	}
	return s.store, nil
}

// CreateTopic creates topic with queues read and write queues (0: the
// configured default) on the broker.
func (s *Server) CreateTopic(topic string, queues int) error {
	st, err := s.currentStore()
	if err != nil {
		return err
	}
	if queues <= 0 {
		queues = s.cfg.Queues
	}
	return st.putTopic(topicConfig{Name: topic, ReadQueueNums: queues, WriteQueueNums: queues, Perm: permReadWrite})
}

// Messages returns the messages of topic the broker holds, by queue and
// offset (bodies as stored: compressed when the sys flag says so).
func (s *Server) Messages(topic string) ([]Message, error) {
	st, err := s.currentStore()
	if err != nil {
		return nil, err
	}
	return st.messages(topic)
}

// MaxOffset is the next offset of a queue.
func (s *Server) MaxOffset(topic string, queue int) int64 {
	st, err := s.currentStore()
	if err != nil {
		return -1
	}
	_, hi := st.minMax(queueKey{topic, queue})
	return hi
}

// ConsumerOffset is a group's stored offset of a queue.
func (s *Server) ConsumerOffset(group, topic string, queue int) (int64, bool) {
	st, err := s.currentStore()
	if err != nil {
		return 0, false
	}
	return st.consumerOffset(group, topic, queue)
}

// DeleteBefore drops the messages of a queue before offset, as retention
// does: pulls below it are answered PULL_OFFSET_MOVED.
func (s *Server) DeleteBefore(topic string, queue int, offset int64) error {
	st, err := s.currentStore()
	if err != nil {
		return err
	}
	return st.deleteBefore(queueKey{topic, queue}, offset)
}

// FailSends makes the broker answer every send with code and remark, until
// FailSends(0, "").
func (s *Server) FailSends(code int16, remark string) { s.sendFault.set(code, remark) }

// Requests returns how many requests of each code the server received.
func (s *Server) Requests() map[int16]int { return s.counts.snapshot() }

// StoreDir is the store directory.
func (s *Server) StoreDir() string { return s.cfg.Dir }

type faultState struct {
	mu     sync.Mutex
	code   int16
	remark string
}

func (f *faultState) set(code int16, remark string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.code, f.remark = code, remark
}

func (f *faultState) get() (int16, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.code, f.remark
}

type requestCounts struct {
	mu sync.Mutex
	n  map[int16]int
}

func (r *requestCounts) add(code int16) {
	r.mu.Lock()
	r.n[code]++
	r.mu.Unlock()
}

func (r *requestCounts) snapshot() map[int16]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int16]int, len(r.n))
	for k, v := range r.n {
		out[k] = v
	}
	return out
}

type role int

const (
	roleNameServer role = iota
	roleBroker
)

// conn is one client connection.
type conn struct {
	nc   net.Conn
	role role
	wmu  sync.Mutex
	// clientID is what the client's heartbeats call it (broker role).
	mu       sync.Mutex
	clientID string
}

func (c *conn) send(cmd *remoting.Command, st byte) error {
	frame, err := remoting.Encode(cmd, st)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = c.nc.Write(frame)
	return err
}

func (s *Server) accept(ln net.Listener, r role) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		c := &conn{nc: nc, role: r}
		s.mu.Lock()
		if !s.running {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = true
		st := s.store
		ctx := s.ctx
		s.mu.Unlock()
		s.wg.Go(func() { s.serve(ctx, st, c) })
	}
}

// serve reads requests from c and answers each in its own goroutine (a
// held pull must not block the connection), as the broker's thread pools
// do.
func (s *Server) serve(ctx context.Context, st *store, c *conn) {
	var wg sync.WaitGroup
	defer func() {
		c.nc.Close()
		wg.Wait()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		if c.role == roleBroker {
			s.clientGone(ctx, c)
		}
	}()
	for {
		cmd, ser, err := remoting.Read(c.nc)
		if err != nil {
			return
		}
		if cmd.IsResponse() {
			continue // answers to our notices
		}
		s.counts.add(cmd.Code)
		wg.Go(func() {
			resp := s.handle(ctx, st, c, cmd)
			if resp == nil || cmd.IsOneway() {
				return
			}
			resp.Opaque = cmd.Opaque
			resp.Flag |= remoting.FlagResponse
			resp.Language = "JAVA"
			resp.Version = brokerVersion
			_ = c.send(resp, ser)
		})
	}
}

func (s *Server) handle(ctx context.Context, st *store, c *conn, cmd *remoting.Command) *remoting.Command {
	if c.role == roleNameServer {
		return s.handleNameServer(st, cmd)
	}
	if len(s.cfg.Accounts) > 0 {
		if resp := s.checkACL(cmd); resp != nil {
			return resp
		}
	}
	return s.handleBroker(ctx, st, c, cmd)
}

// checkACL answers as the broker's PlainAccessValidator does when a
// request is not signed by a known account: SYSTEM_ERROR with the
// AclException text.
func (s *Server) checkACL(cmd *remoting.Command) *remoting.Command {
	ak := cmd.ExtFields[remoting.FieldAccessKey]
	if ak == "" {
		return cmd.Response(remoting.SystemError, "org.apache.rocketmq.acl.common.AclException: No accessKey is configured")
	}
	sk, ok := s.cfg.Accounts[ak]
	if !ok {
		return cmd.Response(remoting.SystemError, fmt.Sprintf("org.apache.rocketmq.acl.common.AclException: No acl config for %s", ak))
	}
	if !remoting.Verify(cmd, sk) {
		return cmd.Response(remoting.SystemError, fmt.Sprintf("org.apache.rocketmq.acl.common.AclException: Check signature failed for accessKey=%s", ak))
	}
	return nil
}

func (s *Server) handleNameServer(st *store, cmd *remoting.Command) *remoting.Command {
	switch cmd.Code {
	case remoting.GetRouteInfoByTopic:
		topic := cmd.ExtFields["topic"]
		t, ok := st.topic(topic)
		if !ok {
			return cmd.Response(remoting.TopicNotExist, fmt.Sprintf("No topic route info in name server for the topic: %s\nSee http://rocketmq.apache.org/docs/faq/ for further details.", topic))
		}
		resp := cmd.Response(remoting.Success, "")
		resp.Body = s.route(t).Encode()
		return resp
	case remoting.GetAllTopicListFromNS:
		resp := cmd.Response(remoting.Success, "")
		resp.Body = jsonBody(map[string]any{"topicList": st.topicNames()})
		return resp
	}
	return notSupported(cmd)
}

func (s *Server) route(t topicConfig) remoting.RouteData {
	return remoting.RouteData{
		QueueDatas: []remoting.QueueData{{BrokerName: s.cfg.BrokerName, ReadQueueNums: t.ReadQueueNums, WriteQueueNums: t.WriteQueueNums, Perm: t.Perm, TopicSynFlag: t.TopicSysFlag}},
		BrokerDatas: []remoting.BrokerData{{Cluster: s.cfg.Cluster, BrokerName: s.cfg.BrokerName,
			BrokerAddrs: map[int64]string{remoting.MasterID: s.cfg.BrokerAddr}}},
	}
}

func notSupported(cmd *remoting.Command) *remoting.Command {
	return cmd.Response(remoting.RequestCodeNotSupported, fmt.Sprintf(" request type %d not supported", cmd.Code))
}
