package rocketmq

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
)

// Message property names (MessageConst.java) the server reads or writes.
const (
	propTags         = "TAGS"
	propKeys         = "KEYS"
	propDelay        = "DELAY"
	propRetryTopic   = "RETRY_TOPIC"
	propRealTopic    = "REAL_TOPIC"
	propRealQueueID  = "REAL_QID"
	propUniqKey      = "UNIQ_KEY"
	propOriginMsgID  = "ORIGIN_MESSAGE_ID"
	propCluster      = "CLUSTER"
	propMaxReconsume = "MAX_RECONSUME_TIMES"
)

// Separators of a properties string: name \x01 value \x02.
const (
	nameValueSep = '\x01'
	propertySep  = '\x02'
)

// Magic codes of a stored message (MessageDecoder.MESSAGE_MAGIC_CODE).
const messageMagic = 0xDAA320A7

// Message system flags (MessageSysFlag.java).
const (
	sysFlagCompressed  = 0x1
	sysFlagBornHostV6  = 0x1 << 4
	sysFlagStoreHostV6 = 0x1 << 5
)

// Limits of the broker (MessageStoreConfig defaults).
const (
	defaultMaxMessageSize = 4 << 20
	maxPropertiesLength   = 32767
)

// Message is a stored message as a consumer sees it.
type Message struct {
	Topic          string
	QueueID        int
	QueueOffset    int64
	CommitLogPos   int64
	SysFlag        int32
	Flag           int32
	BornTimestamp  int64
	StoreTimestamp int64
	BornHost       string
	StoreHost      string
	ReconsumeTimes int32
	Body           []byte // as stored: compressed when SysFlag says so
	Properties     map[string]string
	// PropertiesRaw is the properties string as stored.
	PropertiesRaw string
}

// MsgID is the client's message id: UNIQ_KEY, else the offset message id.
func (m Message) MsgID() string {
	if id := m.Properties[propUniqKey]; id != "" {
		return id
	}
	return m.OffsetMsgID()
}

// OffsetMsgID is the broker's message id: store host and commit log
// position, in upper-case hex.
func (m Message) OffsetMsgID() string {
	return offsetMsgID(m.StoreHost, m.CommitLogPos)
}

func offsetMsgID(storeHost string, pos int64) string {
	ip, port := hostBytes(storeHost)
	b := make([]byte, 0, 16)
	b = append(b, ip...)
	b = binary.BigEndian.AppendUint32(b, uint32(port))
	b = binary.BigEndian.AppendUint64(b, uint64(pos))
	return strings.ToUpper(hex.EncodeToString(b))
}

// hostBytes returns the 4-byte IPv4 (or 16-byte IPv6) address and port of
// addr; unparsable addresses give 127.0.0.1.
func hostBytes(addr string) ([]byte, int) {
	host, p, err := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	ip := net.ParseIP(host)
	if err != nil || ip == nil {
		return []byte{127, 0, 0, 1}, port
	}
	if v4 := ip.To4(); v4 != nil {
		return v4, port
	}
	return ip.To16(), port
}

// parseProperties reads name\x01value\x02 pairs, as
// MessageDecoder.string2messageProperties does.
func parseProperties(s string) map[string]string {
	out := map[string]string{}
	for _, item := range strings.Split(s, string(propertySep)) {
		k, v, ok := strings.Cut(item, string(nameValueSep))
		if ok && k != "" {
			out[k] = v
		}
	}
	return out
}

// formatProperties writes properties in name order.
func formatProperties(p map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(p)) {
		b.WriteString(k)
		b.WriteByte(nameValueSep)
		b.WriteString(p[k])
		b.WriteByte(propertySep)
	}
	return b.String()
}

// tagsCode is the consume queue's tag hash: Java's String.hashCode of the
// tag (over UTF-16 code units); 0 without a tag.
func tagsCode(tag string) int64 {
	if tag == "" {
		return 0
	}
	var h int32
	for _, u := range utf16.Encode([]rune(tag)) {
		h = 31*h + int32(u)
	}
	return int64(h)
}

// encodeMessage writes m in the commit log format (CommitLog.java), the
// same bytes a pull answer carries.
func encodeMessage(m *Message) []byte {
	born, bornPort := hostBytes(m.BornHost)
	store, storePort := hostBytes(m.StoreHost)
	sysFlag := m.SysFlag &^ (sysFlagBornHostV6 | sysFlagStoreHostV6)
	if len(born) == 16 {
		sysFlag |= sysFlagBornHostV6
	}
	if len(store) == 16 {
		sysFlag |= sysFlagStoreHostV6
	}
	m.SysFlag = sysFlag
	props := []byte(m.PropertiesRaw)
	size := 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + len(born) + 4 + 8 + len(store) + 4 + 4 + 8 + 4 + len(m.Body) + 1 + len(m.Topic) + 2 + len(props)
	b := make([]byte, 0, size)
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	b = binary.BigEndian.AppendUint32(b, messageMagic)
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(m.Body)&0x7FFFFFFF)
	b = binary.BigEndian.AppendUint32(b, uint32(m.QueueID))
	b = binary.BigEndian.AppendUint32(b, uint32(m.Flag))
	b = binary.BigEndian.AppendUint64(b, uint64(m.QueueOffset))
	b = binary.BigEndian.AppendUint64(b, uint64(m.CommitLogPos))
	b = binary.BigEndian.AppendUint32(b, uint32(sysFlag))
	b = binary.BigEndian.AppendUint64(b, uint64(m.BornTimestamp))
	b = append(b, born...)
	b = binary.BigEndian.AppendUint32(b, uint32(bornPort))
	b = binary.BigEndian.AppendUint64(b, uint64(m.StoreTimestamp))
	b = append(b, store...)
	b = binary.BigEndian.AppendUint32(b, uint32(storePort))
	b = binary.BigEndian.AppendUint32(b, uint32(m.ReconsumeTimes))
	b = binary.BigEndian.AppendUint64(b, 0) // prepared transaction offset
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Body)))
	b = append(b, m.Body...)
	b = append(b, byte(len(m.Topic)))
	b = append(b, m.Topic...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(props)))
	return append(b, props...)
}

var errCorrupt = errors.New("corrupt stored message")

// decodeMessage reads one stored message at the start of b and returns it
// with its size.
func decodeMessage(b []byte) (Message, int, error) {
	var m Message
	if len(b) < 8 {
		return m, 0, errCorrupt
	}
	size := int(binary.BigEndian.Uint32(b))
	if size < 8 || size > len(b) || binary.BigEndian.Uint32(b[4:]) != messageMagic {
		return m, 0, errCorrupt
	}
	r := reader{b: b[:size], off: 8}
	bodyCRC := r.u32()
	m.QueueID = int(r.u32())
	m.Flag = int32(r.u32())
	m.QueueOffset = int64(r.u64())
	m.CommitLogPos = int64(r.u64())
	m.SysFlag = int32(r.u32())
	m.BornTimestamp = int64(r.u64())
	m.BornHost = r.host(m.SysFlag&sysFlagBornHostV6 != 0)
	m.StoreTimestamp = int64(r.u64())
	m.StoreHost = r.host(m.SysFlag&sysFlagStoreHostV6 != 0)
	m.ReconsumeTimes = int32(r.u32())
	r.u64()
	m.Body = r.bytes(int(r.u32()))
	m.Topic = string(r.bytes(int(r.u8())))
	m.PropertiesRaw = string(r.bytes(int(r.u16())))
	if r.bad || r.off != size || crc32.ChecksumIEEE(m.Body)&0x7FFFFFFF != bodyCRC {
		return m, 0, errCorrupt
	}
	m.Properties = parseProperties(m.PropertiesRaw)
	return m, size, nil
}

// batchItem is one message of a batch body.
type batchItem struct {
	flag       int32
	body       []byte
	properties string
}

// decodeBatch reads a batch body: per message TOTALSIZE(4) MAGICCODE(4)
// BODYCRC(4) FLAG(4) BODYSIZE(4) BODY PROPERTIESSIZE(2) PROPERTIES
// (MessageDecoder.encodeMessage, the client's Message.Marshal).
func decodeBatch(b []byte) ([]batchItem, error) {
	var out []batchItem
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("batch message %d: truncated", len(out))
		}
		size := int(binary.BigEndian.Uint32(b))
		if size < 22 || size > len(b) {
			return nil, fmt.Errorf("batch message %d: size %d of %d bytes left", len(out), size, len(b))
		}
		r := reader{b: b[:size], off: 12}
		it := batchItem{flag: int32(r.u32())}
		it.body = r.bytes(int(r.u32()))
		it.properties = string(r.bytes(int(r.u16())))
		if r.bad || r.off != size {
			return nil, fmt.Errorf("batch message %d: sizes do not add up", len(out))
		}
		out = append(out, it)
		b = b[size:]
	}
	if len(out) == 0 {
		return nil, errors.New("empty batch")
	}
	return out, nil
}

// reader reads big-endian fields, remembering an overrun.
type reader struct {
	b   []byte
	off int
	bad bool
}

func (r *reader) take(n int) []byte {
	if n < 0 || r.off+n > len(r.b) {
		r.bad = true
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (r *reader) bytes(n int) []byte { return slices.Clone(r.take(n)) }

func (r *reader) host(v6 bool) string {
	n := 4
	if v6 {
		n = 16
	}
	ip := net.IP(r.take(n))
	port := r.u32()
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
}
