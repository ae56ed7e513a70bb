package remoting

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFrameRoundTrip(t *testing.T) {
	c := &Command{Code: PullMessage, Language: "JAVA", Version: 395, Opaque: 7, Flag: FlagOneway, Remark: "r",
		ExtFields: map[string]string{"topic": "t", "queueId": "3", "empty": ""}, Body: []byte{0, 1, 2}}
	for _, st := range []byte{SerializeJSON, SerializeRocketMQ} {
		frame, err := Encode(c, st)
		require.NoError(t, err)
		got, gotST, err := Read(bytes.NewReader(frame))
		require.NoError(t, err)
		assert.Equal(t, st, gotST)
		assert.Equal(t, c, got, "serialize type %d", st)
	}
}

// The JSON header as the Go client writes it (language as a string,
// every ext field a string) decodes.
func TestClientHeader(t *testing.T) {
	header := []byte(`{"code":105,"language":"GO","version":317,"opaque":1,"flag":0,"remark":"","extFields":{"topic":"orders"}}`)
	frame := binary.BigEndian.AppendUint32(nil, uint32(4+len(header)))
	frame = binary.BigEndian.AppendUint32(frame, uint32(len(header)))
	frame = append(frame, header...)
	c, st, err := Read(bytes.NewReader(frame))
	require.NoError(t, err)
	assert.Equal(t, SerializeJSON, st)
	assert.Equal(t, GetRouteInfoByTopic, c.Code)
	assert.Equal(t, "orders", c.ExtFields["topic"])
	assert.False(t, c.IsResponse())
}

func TestMalformedFrames(t *testing.T) {
	for name, frame := range map[string][]byte{
		"short":         {0, 0, 0, 2, 0, 0},
		"huge":          {0x7f, 0, 0, 0},
		"header longer": {0, 0, 0, 8, 0, 0, 0, 9, '{', '}', 0, 0},
		"bad json":      {0, 0, 0, 6, 0, 0, 0, 2, '{', '{'},
		"bad type":      {0, 0, 0, 6, 9, 0, 0, 2, '{', '}'},
		"binary short":  {0, 0, 0, 7, 1, 0, 0, 3, 0, 1, 2},
	} {
		_, _, err := Read(bytes.NewReader(frame))
		assert.Error(t, err, name)
	}
}

func FuzzDecode(f *testing.F) {
	for _, st := range []byte{SerializeJSON, SerializeRocketMQ} {
		frame, _ := Encode(&Command{Code: 10, ExtFields: map[string]string{"a": "b"}, Body: []byte("x")}, st)
		f.Add(frame[4:])
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		c, st, err := Decode(frame)
		if err != nil {
			return
		}
		again, err := Encode(c, st)
		if err != nil {
			return // a header too large to write back
		}
		if _, _, err := Decode(again[4:]); err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
	})
}

// Route data as a RocketMQ 4.x name server writes it (fastjson: bare
// numbers as map keys) and as strict JSON both decode.
func TestRouteData(t *testing.T) {
	fastjson := []byte(`{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"c1"}],` +
		`"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":8,"topicSynFlag":0,"writeQueueNums":8}]}`)
	r, err := DecodeRoute(fastjson)
	require.NoError(t, err)
	assert.Equal(t, map[int64]string{0: "10.0.0.1:10911", 1: "10.0.0.2:10911"}, r.BrokerDatas[0].BrokerAddrs)
	assert.Equal(t, 8, r.QueueDatas[0].ReadQueueNums)
	back, err := DecodeRoute(r.Encode())
	require.NoError(t, err)
	assert.Equal(t, r, back)
	assert.Contains(t, string(r.Encode()), `{0:"10.0.0.1:10911",1:"10.0.0.2:10911"}`)

	strict, err := DecodeRoute([]byte(`{"brokerDatas":[{"brokerAddrs":{"0":"a:1"},"brokerName":"b","cluster":"c"}],"queueDatas":[]}`))
	require.NoError(t, err)
	assert.Equal(t, "a:1", strict.BrokerDatas[0].BrokerAddrs[0])
}

func TestQuoteNumericKeys(t *testing.T) {
	in := `{1:"x,2:y",  "arr":[1,2,{3:4}], "s":"{5:6}"}`
	assert.Equal(t, `{"1":"x,2:y",  "arr":[1,2,{"3":4}], "s":"{5:6}"}`, string(quoteNumericKeys([]byte(in))))
}

func TestSignature(t *testing.T) {
	c := &Command{Code: SendMessage, ExtFields: map[string]string{"topic": "t", "b": "2"}, Body: []byte("body")}
	Sign(c, "ak", "sk")
	assert.Equal(t, "ak", c.ExtFields[FieldAccessKey])
	assert.True(t, Verify(c, "sk"))
	assert.False(t, Verify(c, "other"))
	c.ExtFields["topic"] = "u"
	assert.False(t, Verify(c, "sk"), "a changed field breaks the signature")
}
