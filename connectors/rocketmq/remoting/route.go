package remoting

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Permission bits of a queue (PermName.java).
const (
	PermInherit  = 1
	PermWrite    = 2
	PermRead     = 4
	PermPriority = 8
)

// MasterID is the broker id of a master in BrokerData.BrokerAddrs.
const MasterID = 0

// RouteData is the body of a GET_ROUTEINFO_BY_TOPIC answer
// (TopicRouteData.java).
type RouteData struct {
	OrderTopicConf string       `json:"orderTopicConf,omitempty"`
	QueueDatas     []QueueData  `json:"queueDatas"`
	BrokerDatas    []BrokerData `json:"brokerDatas"`
}

// QueueData is a topic's queues on one broker. topicSynFlag is spelled as
// RocketMQ 4.x spells it.
type QueueData struct {
	BrokerName     string `json:"brokerName"`
	ReadQueueNums  int    `json:"readQueueNums"`
	WriteQueueNums int    `json:"writeQueueNums"`
	Perm           int    `json:"perm"`
	TopicSynFlag   int    `json:"topicSynFlag"`
}

// BrokerData is one broker (a master and its slaves) by id.
type BrokerData struct {
	Cluster     string           `json:"cluster"`
	BrokerName  string           `json:"brokerName"`
	BrokerAddrs map[int64]string `json:"brokerAddrs"`
}

// Encode writes r as a RocketMQ 4.x name server does (fastjson): the keys
// of brokerAddrs are bare numbers, {0:"127.0.0.1:10911"}, which is not
// strict JSON; rocketmq-client-go and DecodeRoute read it.
func (r RouteData) Encode() []byte {
	var b strings.Builder
	b.WriteString(`{"brokerDatas":[`)
	for i, bd := range r.BrokerDatas {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"brokerAddrs":{`)
		for j, id := range slices.Sorted(maps.Keys(bd.BrokerAddrs)) {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%d:%s", id, quote(bd.BrokerAddrs[id]))
		}
		fmt.Fprintf(&b, `},"brokerName":%s,"cluster":%s}`, quote(bd.BrokerName), quote(bd.Cluster))
	}
	b.WriteString(`],"filterServerTable":{}`)
	if r.OrderTopicConf != "" {
		fmt.Fprintf(&b, `,"orderTopicConf":%s`, quote(r.OrderTopicConf))
	}
	queues, _ := json.Marshal(r.QueueDatas)
	if r.QueueDatas == nil {
		queues = []byte("[]")
	}
	b.WriteString(`,"queueDatas":`)
	b.Write(queues)
	b.WriteByte('}')
	return []byte(b.String())
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// DecodeRoute parses route data, with brokerAddrs keys quoted or bare.
func DecodeRoute(body []byte) (RouteData, error) {
	var raw struct {
		OrderTopicConf string      `json:"orderTopicConf"`
		QueueDatas     []QueueData `json:"queueDatas"`
		BrokerDatas    []struct {
			Cluster     string            `json:"cluster"`
			BrokerName  string            `json:"brokerName"`
			BrokerAddrs map[string]string `json:"brokerAddrs"`
		} `json:"brokerDatas"`
	}
	if err := json.Unmarshal(quoteNumericKeys(body), &raw); err != nil {
		return RouteData{}, fmt.Errorf("decoding topic route data: %w", err)
	}
	r := RouteData{OrderTopicConf: raw.OrderTopicConf, QueueDatas: raw.QueueDatas}
	for _, bd := range raw.BrokerDatas {
		addrs := make(map[int64]string, len(bd.BrokerAddrs))
		for k, v := range bd.BrokerAddrs {
			id, err := strconv.ParseInt(k, 10, 64)
			if err != nil {
				return RouteData{}, fmt.Errorf("decoding topic route data: broker id %q", k)
			}
			addrs[id] = v
		}
		r.BrokerDatas = append(r.BrokerDatas, BrokerData{Cluster: bd.Cluster, BrokerName: bd.BrokerName, BrokerAddrs: addrs})
	}
	return r, nil
}

// quoteNumericKeys puts quotes around object keys that are bare numbers
// (fastjson's map keys), leaving strings alone.
func quoteNumericKeys(in []byte) []byte {
	out := make([]byte, 0, len(in)+16)
	inString, escaped, keyPos := false, false, false
	var open []byte // the containers around i: '{' or '['
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString, keyPos = true, false
		case c == '{' || c == '[':
			open = append(open, c)
			keyPos = c == '{'
		case c == '}' || c == ']':
			if len(open) > 0 {
				open = open[:len(open)-1]
			}
			keyPos = false
		case c == ',':
			keyPos = len(open) > 0 && open[len(open)-1] == '{'
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		case keyPos && (c == '-' || c >= '0' && c <= '9'):
			j := i + 1
			for j < len(in) && in[j] >= '0' && in[j] <= '9' {
				j++
			}
			out = append(out, '"')
			out = append(out, in[i:j]...)
			out = append(out, '"')
			i, keyPos = j-1, false
			continue
		default:
			keyPos = false
		}
		out = append(out, c)
	}
	return out
}

// Readable reports whether perm lets consumers read.
func Readable(perm int) bool { return perm&PermRead != 0 }

// Writable reports whether perm lets producers write.
func Writable(perm int) bool { return perm&PermWrite != 0 }
