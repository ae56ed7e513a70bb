// Package remoting is the wire format of RocketMQ's remoting protocol (the
// protocol of RocketMQ 4.x name servers and brokers, and of
// github.com/apache/rocketmq-client-go/v2): RemotingCommand frames, the
// request and response codes meshd uses, ACL signatures and topic route
// data. The rocketmq-source reads brokers with it; the protocol-level test
// server in test/infra/rocketmq serves it.
//
// A frame is an int32 length (big endian) of what follows, an int32 whose
// high byte is the serialize type (0 JSON, 1 RocketMQ binary) and whose low
// three bytes are the header length, the header, and the body:
//
//	| length | type<<24 | header length | header | body |
//
// The JSON header is {code, language, version, opaque, flag, remark,
// extFields}; flag bit 0 marks a response, bit 1 a one-way request.
package remoting

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
)

// Request codes (RequestCode.java).
const (
	SendMessage              int16 = 10
	PullMessage              int16 = 11
	QueryConsumerOffset      int16 = 14
	UpdateConsumerOffset     int16 = 15
	CreateTopic              int16 = 17
	SearchOffsetByTimestamp  int16 = 29
	GetMaxOffset             int16 = 30
	GetMinOffset             int16 = 31
	HeartBeat                int16 = 34
	UnregisterClient         int16 = 35
	ConsumerSendMsgBack      int16 = 36
	GetConsumerListByGroup   int16 = 38
	NotifyConsumerIdsChanged int16 = 40
	LockBatchMQ              int16 = 41
	UnlockBatchMQ            int16 = 42
	GetRouteInfoByTopic      int16 = 105
	GetBrokerClusterInfo     int16 = 106
	GetAllTopicListFromNS    int16 = 206
	SendMessageV2            int16 = 310
	SendBatchMessage         int16 = 320
)

// Response codes (ResponseCode.java).
const (
	Success                 int16 = 0
	SystemError             int16 = 1
	SystemBusy              int16 = 2
	RequestCodeNotSupported int16 = 3
	FlushDiskTimeout        int16 = 10
	SlaveNotAvailable       int16 = 11
	FlushSlaveTimeout       int16 = 12
	MessageIllegal          int16 = 13
	ServiceNotAvailable     int16 = 14
	VersionNotSupported     int16 = 15
	NoPermission            int16 = 16
	TopicNotExist           int16 = 17
	PullNotFound            int16 = 19
	PullRetryImmediately    int16 = 20
	PullOffsetMoved         int16 = 21
	QueryNotFound           int16 = 22
	SubscriptionParseFailed int16 = 23
	SubscriptionNotExist    int16 = 24
	SubscriptionNotLatest   int16 = 25
	SubscriptionGroupAbsent int16 = 26
)

// Serialize types of a header (the high byte of the header length).
const (
	SerializeJSON     byte = 0
	SerializeRocketMQ byte = 1
)

// Flag bits.
const (
	FlagResponse int32 = 1 << 0
	FlagOneway   int32 = 1 << 1
)

// MaxFrame is the largest frame read (Java's default
// com.rocketmq.remoting.frameMaxLength).
const MaxFrame = 16 << 20

// Command is one RemotingCommand: a request or a response.
type Command struct {
	Code     int16
	Language string // "JAVA", "GO", ...
	Version  int16
	Opaque   int32
	Flag     int32
	Remark   string
	// ExtFields is the custom header: every value is a string.
	ExtFields map[string]string
	Body      []byte
}

// IsResponse reports whether c answers a request.
func (c *Command) IsResponse() bool { return c.Flag&FlagResponse != 0 }

// IsOneway reports whether c is a request that wants no answer.
func (c *Command) IsOneway() bool { return c.Flag&FlagOneway != 0 }

// Response returns the response to c with code and remark.
func (c *Command) Response(code int16, remark string) *Command {
	return &Command{Code: code, Opaque: c.Opaque, Flag: FlagResponse, Remark: remark, ExtFields: map[string]string{}}
}

// ErrFrame is wrapped by every error about a malformed frame.
var ErrFrame = errors.New("malformed RocketMQ remoting frame")

// jsonHeader is the JSON header as Java's fastjson writes it.
type jsonHeader struct {
	Code      int16             `json:"code"`
	Language  string            `json:"language"`
	Version   int16             `json:"version"`
	Opaque    int32             `json:"opaque"`
	Flag      int32             `json:"flag"`
	Remark    string            `json:"remark,omitempty"`
	ExtFields map[string]string `json:"extFields,omitempty"`
	// SerializeTypeCurrentRPC is written by Java; others ignore it.
	SerializeType string `json:"serializeTypeCurrentRPC,omitempty"`
}

// Encode returns c as one frame with a header of serialize type st.
func Encode(c *Command, st byte) ([]byte, error) {
	var header []byte
	switch st {
	case SerializeJSON:
		h := jsonHeader{Code: c.Code, Language: c.Language, Version: c.Version, Opaque: c.Opaque,
			Flag: c.Flag, Remark: c.Remark, ExtFields: c.ExtFields, SerializeType: "JSON"}
		if h.Language == "" {
			h.Language = "GO"
		}
		var err error
		if header, err = json.Marshal(h); err != nil {
			return nil, fmt.Errorf("encoding a remoting header: %w", err)
		}
	case SerializeRocketMQ:
		header = encodeBinaryHeader(c)
	default:
		return nil, fmt.Errorf("%w: serialize type %d", ErrFrame, st)
	}
	if len(header) > 0xFFFFFF || 4+len(header)+len(c.Body) > MaxFrame {
		return nil, fmt.Errorf("%w: a frame of %d bytes is larger than %d", ErrFrame, 8+len(header)+len(c.Body), MaxFrame)
	}
	out := make([]byte, 8, 8+len(header)+len(c.Body))
	binary.BigEndian.PutUint32(out[0:], uint32(4+len(header)+len(c.Body)))
	binary.BigEndian.PutUint32(out[4:], uint32(st)<<24|uint32(len(header)))
	out = append(out, header...)
	return append(out, c.Body...), nil
}

// Read reads one frame from r and returns its command and the serialize
// type of its header (answer in the same).
func Read(r io.Reader) (*Command, byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, 0, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size < 4 || size > MaxFrame {
		return nil, 0, fmt.Errorf("%w: frame length %d", ErrFrame, size)
	}
	frame := make([]byte, size)
	if _, err := io.ReadFull(r, frame); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrFrame, err)
	}
	c, st, err := Decode(frame)
	return c, st, err
}

// Decode parses a frame without its leading length.
func Decode(frame []byte) (*Command, byte, error) {
	if len(frame) < 4 {
		return nil, 0, fmt.Errorf("%w: %d bytes", ErrFrame, len(frame))
	}
	mark := binary.BigEndian.Uint32(frame)
	st, hlen := byte(mark>>24), int(mark&0xFFFFFF)
	if hlen > len(frame)-4 {
		return nil, 0, fmt.Errorf("%w: header length %d in a frame of %d bytes", ErrFrame, hlen, len(frame))
	}
	header, body := frame[4:4+hlen], frame[4+hlen:]
	var c *Command
	switch st {
	case SerializeJSON:
		var h jsonHeader
		if err := json.Unmarshal(header, &h); err != nil {
			return nil, st, fmt.Errorf("%w: JSON header: %w", ErrFrame, err)
		}
		c = &Command{Code: h.Code, Language: h.Language, Version: h.Version, Opaque: h.Opaque,
			Flag: h.Flag, Remark: h.Remark, ExtFields: h.ExtFields}
	case SerializeRocketMQ:
		var err error
		if c, err = decodeBinaryHeader(header); err != nil {
			return nil, st, err
		}
	default:
		return nil, st, fmt.Errorf("%w: serialize type %d", ErrFrame, st)
	}
	if c.ExtFields == nil {
		c.ExtFields = map[string]string{}
	}
	if len(body) > 0 {
		c.Body = bytes.Clone(body)
	}
	return c, st, nil
}

// Language codes of the binary header (LanguageCode.java).
var languages = []string{"JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP", "OMS"}

func languageCode(name string) byte {
	if i := slices.Index(languages, name); i >= 0 {
		return byte(i)
	}
	return 9 // GO
}

// encodeBinaryHeader writes RocketMQSerializable's header: code(2)
// language(1) version(2) opaque(4) flag(4) remark(4+n) extFields(4+n),
// each ext field as key(2+n) value(4+n).
func encodeBinaryHeader(c *Command) []byte {
	var ext []byte
	for _, k := range slices.Sorted(maps.Keys(c.ExtFields)) {
		v := c.ExtFields[k]
		ext = binary.BigEndian.AppendUint16(ext, uint16(len(k)))
		ext = append(ext, k...)
		ext = binary.BigEndian.AppendUint32(ext, uint32(len(v)))
		ext = append(ext, v...)
	}
	b := make([]byte, 0, 21+len(c.Remark)+len(ext))
	b = binary.BigEndian.AppendUint16(b, uint16(c.Code))
	b = append(b, languageCode(c.Language))
	b = binary.BigEndian.AppendUint16(b, uint16(c.Version))
	b = binary.BigEndian.AppendUint32(b, uint32(c.Opaque))
	b = binary.BigEndian.AppendUint32(b, uint32(c.Flag))
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Remark)))
	b = append(b, c.Remark...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ext)))
	return append(b, ext...)
}

func decodeBinaryHeader(h []byte) (*Command, error) {
	bad := func(what string) (*Command, error) {
		return nil, fmt.Errorf("%w: binary header: %s", ErrFrame, what)
	}
	if len(h) < 17 {
		return bad("too short")
	}
	c := &Command{
		Code:    int16(binary.BigEndian.Uint16(h)),
		Version: int16(binary.BigEndian.Uint16(h[3:])),
		Opaque:  int32(binary.BigEndian.Uint32(h[5:])),
		Flag:    int32(binary.BigEndian.Uint32(h[9:])),
	}
	if int(h[2]) < len(languages) {
		c.Language = languages[h[2]]
	}
	rest := h[13:]
	take := func(n int) ([]byte, bool) {
		if n < 0 || n > len(rest) {
			return nil, false
		}
		b := rest[:n]
		rest = rest[n:]
		return b, true
	}
	n, ok := take(4)
	if !ok {
		return bad("remark length")
	}
	remark, ok := take(int(int32(binary.BigEndian.Uint32(n))))
	if !ok {
		return bad("remark")
	}
	c.Remark = string(remark)
	if n, ok = take(4); !ok {
		return bad("ext fields length")
	}
	ext, ok := take(int(int32(binary.BigEndian.Uint32(n))))
	if !ok {
		return bad("ext fields")
	}
	c.ExtFields = map[string]string{}
	for len(ext) > 0 {
		if len(ext) < 2 {
			return bad("ext field key length")
		}
		kl := int(binary.BigEndian.Uint16(ext))
		if len(ext) < 2+kl+4 {
			return bad("ext field key")
		}
		k := string(ext[2 : 2+kl])
		ext = ext[2+kl:]
		vl := int(int32(binary.BigEndian.Uint32(ext)))
		if vl < 0 || len(ext) < 4+vl {
			return bad("ext field value")
		}
		c.ExtFields[k] = string(ext[4 : 4+vl])
		ext = ext[4+vl:]
	}
	return c, nil
}
