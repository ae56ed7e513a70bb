package rocketmq

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// store is the broker's storage: one append-only commit log of messages
// in the commit log format, consume queues (per topic and queue id, the
// position, size and tag hash of each message) rebuilt from the commit log
// when the store opens, and JSON config files for topics, consumer offsets,
// the progress of delayed messages and deleted queue heads.
//
// A torn write at the end of the commit log (a crash in the middle of an
// append) is cut off when the store opens; everything before it is kept.
//
// Lock order: store.mu only; it is never held while calling out.
type store struct {
	dir  string
	sync bool

	mu       sync.Mutex
	log      *os.File
	logSize  int64
	queues   map[queueKey]*consumeQueue
	topics   map[string]*topicConfig
	offsets  map[string]map[int]int64 // "topic@group" → queue → offset
	delays   map[int]int64            // delay level → next schedule queue offset
	minOffs  map[string]int64         // "topic/queue" → first offset not deleted
	watchers map[queueKey]chan struct{}
	closed   bool
}

type queueKey struct {
	topic string
	id    int
}

func (k queueKey) String() string { return k.topic + "/" + strconv.Itoa(k.id) }

// consumeQueue indexes one queue's messages by queue offset.
type consumeQueue struct {
	entries []cqEntry
	min     int64 // first offset not deleted
}

type cqEntry struct {
	pos       int64
	size      int32
	tagsCode  int64
	storeTime int64
}

// topicConfig is a topic as TopicConfig.java describes it.
type topicConfig struct {
	Name           string `json:"topicName"`
	ReadQueueNums  int    `json:"readQueueNums"`
	WriteQueueNums int    `json:"writeQueueNums"`
	Perm           int    `json:"perm"`
	TopicSysFlag   int    `json:"topicSysFlag"`
}

const (
	commitLogFile   = "commitlog"
	topicsFile      = "config/topics.json"
	offsetsFile     = "config/consumerOffset.json"
	delaysFile      = "config/delayOffset.json"
	minOffsetsFile  = "config/minOffsets.json"
	recordHeaderLen = 8
)

func openStore(dir string, syncWrites bool) (*store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "config"), 0o755); err != nil {
		return nil, fmt.Errorf("creating the store directory: %w", err)
	}
	s := &store{
		dir: dir, sync: syncWrites,
		queues:   map[queueKey]*consumeQueue{},
		topics:   map[string]*topicConfig{},
		offsets:  map[string]map[int]int64{},
		delays:   map[int]int64{},
		minOffs:  map[string]int64{},
		watchers: map[queueKey]chan struct{}{},
	}
	for file, v := range map[string]any{topicsFile: &s.topics, offsetsFile: &s.offsets, delaysFile: &s.delays, minOffsetsFile: &s.minOffs} {
		if err := readJSON(filepath.Join(dir, file), v); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, commitLogFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the commit log: %w", err)
	}
	s.log = f
	if err := s.recover(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// recover reads the commit log, rebuilds the consume queues and cuts off a
// torn tail.
func (s *store) recover() error {
	data, err := io.ReadAll(s.log)
	if err != nil {
		return fmt.Errorf("reading the commit log: %w", err)
	}
	pos := 0
	for pos < len(data) {
		m, n, err := decodeMessage(data[pos:])
		if err != nil || m.CommitLogPos != int64(pos) {
			break
		}
		cq := s.queue(queueKey{m.Topic, m.QueueID})
		if m.QueueOffset != int64(len(cq.entries)) {
			break
		}
		cq.entries = append(cq.entries, cqEntry{pos: int64(pos), size: int32(n), tagsCode: tagsCode(m.Properties[propTags]), storeTime: m.StoreTimestamp})
		pos += n
	}
	if pos < len(data) {
		if err := s.log.Truncate(int64(pos)); err != nil {
			return fmt.Errorf("cutting the torn end of the commit log: %w", err)
		}
	}
	if _, err := s.log.Seek(int64(pos), io.SeekStart); err != nil {
		return err
	}
	s.logSize = int64(pos)
	for k, cq := range s.queues {
		cq.min = min(s.minOffs[k.String()], int64(len(cq.entries)))
	}
	return nil
}

func (s *store) queue(k queueKey) *consumeQueue {
	cq := s.queues[k]
	if cq == nil {
		cq = &consumeQueue{}
		s.queues[k] = cq
	}
	return cq
}

// append stores msgs (filled in: positions and queue offsets) with one
// write, and wakes the pulls waiting on their queues.
func (s *store) append(msgs []*Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	var buf []byte
	type added struct {
		k queueKey
		e cqEntry
	}
	adds := make([]added, 0, len(msgs))
	next := map[queueKey]int64{}
	for _, m := range msgs {
		k := queueKey{m.Topic, m.QueueID}
		off, ok := next[k]
		if !ok {
			off = int64(len(s.queue(k).entries))
		}
		next[k] = off + 1
		m.QueueOffset = off
		m.CommitLogPos = s.logSize + int64(len(buf))
		rec := encodeMessage(m)
		adds = append(adds, added{k, cqEntry{pos: m.CommitLogPos, size: int32(len(rec)), tagsCode: tagsCode(m.Properties[propTags]), storeTime: m.StoreTimestamp}})
		buf = append(buf, rec...)
	}
	if _, err := s.log.Write(buf); err != nil {
		// Cut what was written; the queues do not hold it.
		_ = s.log.Truncate(s.logSize)
		_, _ = s.log.Seek(s.logSize, io.SeekStart)
		return fmt.Errorf("writing the commit log: %w", err)
	}
	if s.sync {
		if err := s.log.Sync(); err != nil {
			return fmt.Errorf("syncing the commit log: %w", err)
		}
	}
	s.logSize += int64(len(buf))
	for _, a := range adds {
		cq := s.queue(a.k)
		cq.entries = append(cq.entries, a.e)
		if w := s.watchers[a.k]; w != nil {
			close(w)
			delete(s.watchers, a.k)
		}
	}
	return nil
}

var errClosed = errors.New("store closed")

// watch returns a channel closed when a message is added to k.
func (s *store) watch(k queueKey) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.watchers[k]
	if w == nil {
		w = make(chan struct{})
		s.watchers[k] = w
	}
	return w
}

// offsets of a queue: first not deleted, next to be written.
func (s *store) minMax(k queueKey) (int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cq := s.queues[k]
	if cq == nil {
		return 0, 0
	}
	return cq.min, int64(len(cq.entries))
}

// read returns the messages of k from offset on: at most maxCount, and at
// most maxBytes unless the first message is larger, skipping those whose
// tag hash match rejects. It returns the raw records, the offset after the
// last one looked at, and whether any was skipped.
func (s *store) read(k queueKey, offset int64, maxCount, maxBytes int, match func(tagsCode int64) bool) ([][]byte, int64, error) {
	s.mu.Lock()
	cq := s.queues[k]
	var picked []cqEntry
	next := offset
	if cq != nil {
		total := 0
		// Like the broker, look at no more than 16000 entries per pull.
		for i := offset; i < int64(len(cq.entries)) && i < offset+16000; i++ {
			e := cq.entries[i]
			if len(picked) >= maxCount || (len(picked) > 0 && total+int(e.size) > maxBytes) {
				break
			}
			next = i + 1
			if match != nil && !match(e.tagsCode) {
				continue
			}
			picked = append(picked, e)
			total += int(e.size)
		}
	}
	s.mu.Unlock()
	out := make([][]byte, len(picked))
	for i, e := range picked {
		b := make([]byte, e.size)
		if _, err := s.log.ReadAt(b, e.pos); err != nil {
			return nil, offset, fmt.Errorf("reading the commit log at %d: %w", e.pos, err)
		}
		out[i] = b
	}
	return out, next, nil
}

// at returns the message stored at commit log position pos.
func (s *store) at(pos int64) (Message, error) {
	s.mu.Lock()
	size := s.logSize
	s.mu.Unlock()
	if pos < 0 || pos+recordHeaderLen > size {
		return Message{}, fmt.Errorf("no message at commit log position %d", pos)
	}
	var head [4]byte
	if _, err := s.log.ReadAt(head[:], pos); err != nil {
		return Message{}, err
	}
	n := int64(uint32(head[0])<<24 | uint32(head[1])<<16 | uint32(head[2])<<8 | uint32(head[3]))
	if n <= 0 || pos+n > size {
		return Message{}, fmt.Errorf("no message at commit log position %d", pos)
	}
	b := make([]byte, n)
	if _, err := s.log.ReadAt(b, pos); err != nil {
		return Message{}, err
	}
	m, _, err := decodeMessage(b)
	return m, err
}

// messages returns every message of topic not deleted, by queue then
// offset.
func (s *store) messages(topic string) ([]Message, error) {
	s.mu.Lock()
	var entries []cqEntry
	var ids []int
	for k := range s.queues {
		if k.topic == topic {
			ids = append(ids, k.id)
		}
	}
	sort.Ints(ids)
	for _, id := range ids {
		cq := s.queues[queueKey{topic, id}]
		entries = append(entries, cq.entries[cq.min:]...)
	}
	s.mu.Unlock()
	out := make([]Message, 0, len(entries))
	for _, e := range entries {
		m, err := s.at(e.pos)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// searchTime returns the offset of the first message of k stored at or
// after ts (ms), or the queue's max offset.
func (s *store) searchTime(k queueKey, ts int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	cq := s.queues[k]
	if cq == nil {
		return 0
	}
	rest := cq.entries[cq.min:]
	i := sort.Search(len(rest), func(i int) bool { return rest[i].storeTime >= ts })
	return cq.min + int64(i)
}

// entry returns the consume queue entry of k at offset.
func (s *store) entry(k queueKey, offset int64) (cqEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cq := s.queues[k]
	if cq == nil || offset < cq.min || offset >= int64(len(cq.entries)) {
		return cqEntry{}, false
	}
	return cq.entries[offset], true
}

// deleteBefore makes the messages of k before offset unreadable, as
// retention does.
func (s *store) deleteBefore(k queueKey, offset int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cq := s.queue(k)
	cq.min = max(cq.min, min(offset, int64(len(cq.entries))))
	s.minOffs[k.String()] = cq.min
	return writeJSON(filepath.Join(s.dir, minOffsetsFile), s.minOffs)
}

func (s *store) topic(name string) (topicConfig, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.topics[name]
	if !ok {
		return topicConfig{}, false
	}
	return *t, true
}

func (s *store) topicNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.topics))
	for n := range s.topics {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// putTopic creates or replaces a topic config and persists the table.
func (s *store) putTopic(t topicConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.topics[t.Name] = &t
	return writeJSON(filepath.Join(s.dir, topicsFile), s.topics)
}

// ensureTopic creates topic with queues and perm unless it exists, and
// returns its config.
func (s *store) ensureTopic(name string, queues, perm int) (topicConfig, error) {
	if t, ok := s.topic(name); ok {
		return t, nil
	}
	t := topicConfig{Name: name, ReadQueueNums: queues, WriteQueueNums: queues, Perm: perm}
	return t, s.putTopic(t)
}

func offsetKey(group, topic string) string { return topic + "@" + group }

func (s *store) consumerOffset(group, topic string, queue int) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	off, ok := s.offsets[offsetKey(group, topic)][queue]
	return off, ok
}

func (s *store) setConsumerOffset(group, topic string, queue int, offset int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := offsetKey(group, topic)
	if s.offsets[k] == nil {
		s.offsets[k] = map[int]int64{}
	}
	s.offsets[k][queue] = offset
	return writeJSON(filepath.Join(s.dir, offsetsFile), s.offsets)
}

func (s *store) delayOffset(level int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delays[level]
}

func (s *store) setDelayOffset(level int, offset int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays[level] = offset
	return writeJSON(filepath.Join(s.dir, delaysFile), s.delays)
}

func (s *store) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for k, w := range s.watchers {
		close(w)
		delete(s.watchers, k)
	}
	return s.log.Close()
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

// writeJSON replaces path atomically (write a temp file, rename).
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func nowMillis() int64 { return time.Now().UnixMilli() }

// isRetryTopic and friends name the broker's own topics.
func isRetryTopic(t string) bool { return strings.HasPrefix(t, retryPrefix) }

const (
	retryPrefix    = "%RETRY%"
	dlqPrefix      = "%DLQ%"
	defaultTopic   = "TBW102"
	scheduleTopic  = "SCHEDULE_TOPIC_XXXX"
	permReadWrite  = 6
	permInheritAll = 7
)
