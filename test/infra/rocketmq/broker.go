package rocketmq

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd/connectors/rocketmq/remoting"
)

// Pull limits of a broker whose messages are in memory
// (maxTransferCountOnMessageInMemory, maxTransferBytesOnMessageInMemory).
const (
	maxPullCount = 32
	maxPullBytes = 256 << 10
)

const sysFlagPullCommitOffset, sysFlagPullSuspend, sysFlagPullSubscription = 1 << 0, 1 << 1, 1 << 2

var topicRe = regexp.MustCompile(`^[%|a-zA-Z0-9_-]+$`)

const maxTopicLength = 127

func (s *Server) handleBroker(ctx context.Context, st *store, c *conn, cmd *remoting.Command) *remoting.Command {
	switch cmd.Code {
	case remoting.SendMessage, remoting.SendMessageV2:
		return s.send(st, c, cmd, false)
	case remoting.SendBatchMessage:
		return s.send(st, c, cmd, true)
	case remoting.PullMessage:
		return s.pull(ctx, st, cmd)
	case remoting.QueryConsumerOffset:
		h := cmd.ExtFields
		q := atoi(h["queueId"])
		if off, ok := st.consumerOffset(h["consumerGroup"], h["topic"], q); ok {
			return withExt(cmd.Response(remoting.Success, ""), "offset", off)
		}
		// A group the broker has no offset for, on a queue whose first
		// message is still in memory, starts at 0 (ConsumerManageProcessor).
		if lo, _ := st.minMax(queueKey{h["topic"], q}); lo <= 0 {
			return withExt(cmd.Response(remoting.Success, ""), "offset", 0)
		}
		return cmd.Response(remoting.QueryNotFound, "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first")
	case remoting.UpdateConsumerOffset:
		h := cmd.ExtFields
		if err := st.setConsumerOffset(h["consumerGroup"], h["topic"], atoi(h["queueId"]), atoi64(h["commitOffset"])); err != nil {
			return cmd.Response(remoting.SystemError, err.Error())
		}
		return cmd.Response(remoting.Success, "")
	case remoting.GetMaxOffset, remoting.GetMinOffset:
		lo, hi := st.minMax(queueKey{cmd.ExtFields["topic"], atoi(cmd.ExtFields["queueId"])})
		if cmd.Code == remoting.GetMinOffset {
			hi = lo
		}
		return withExt(cmd.Response(remoting.Success, ""), "offset", hi)
	case remoting.SearchOffsetByTimestamp:
		k := queueKey{cmd.ExtFields["topic"], atoi(cmd.ExtFields["queueId"])}
		return withExt(cmd.Response(remoting.Success, ""), "offset", st.searchTime(k, atoi64(cmd.ExtFields["timestamp"])))
	case remoting.HeartBeat:
		return s.heartbeat(st, c, cmd)
	case remoting.UnregisterClient:
		if g := cmd.ExtFields["consumerGroup"]; g != "" {
			s.notify(s.groups.remove(c, cmd.ExtFields["clientID"], g))
		}
		return cmd.Response(remoting.Success, "")
	case remoting.ConsumerSendMsgBack:
		return s.sendBack(st, c, cmd)
	case remoting.GetConsumerListByGroup:
		group := cmd.ExtFields["consumerGroup"]
		ids := s.groups.clientIDs(group)
		if len(ids) == 0 {
			return cmd.Response(remoting.SystemError, "no consumer for this group, "+group)
		}
		resp := cmd.Response(remoting.Success, "")
		resp.Body = jsonBody(map[string]any{"consumerIdList": ids})
		return resp
	case remoting.LockBatchMQ, remoting.UnlockBatchMQ:
		var b lockBody
		if err := json.Unmarshal(cmd.Body, &b); err != nil {
			return cmd.Response(remoting.SystemError, "decoding the lock body: "+err.Error())
		}
		resp := cmd.Response(remoting.Success, "")
		if cmd.Code == remoting.LockBatchMQ {
			resp.Body = jsonBody(map[string]any{"lockOKMQSet": s.locks.lock(b)})
		} else {
			s.locks.unlock(b)
		}
		return resp
	case remoting.CreateTopic:
		h := cmd.ExtFields
		t := topicConfig{Name: h["topic"], ReadQueueNums: atoi(h["readQueueNums"]), WriteQueueNums: atoi(h["writeQueueNums"]), Perm: atoi(h["perm"])}
		if resp := checkTopic(cmd, t.Name); resp != nil {
			return resp
		}
		if err := st.putTopic(t); err != nil {
			return cmd.Response(remoting.SystemError, err.Error())
		}
		return cmd.Response(remoting.Success, "")
	}
	return notSupported(cmd)
}

// sendHeader is SendMessageRequestHeader, or its V2 form with one-letter
// names.
type sendHeader struct {
	group, topic, defaultTopic string
	defaultQueues, queueID     int
	sysFlag                    int32
	bornTimestamp              int64
	flag                       int32
	properties                 string
	reconsumeTimes             int32
	maxReconsumeTimes          int
}

func parseSendHeader(ext map[string]string) sendHeader {
	names := []string{"producerGroup", "topic", "defaultTopic", "defaultTopicQueueNums", "queueId", "sysFlag",
		"bornTimestamp", "flag", "properties", "reconsumeTimes", "maxReconsumeTimes"}
	if _, v2 := ext["b"]; v2 {
		names = []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "l"}
	}
	maxRaw, ok := ext[names[10]]
	h := sendHeader{
		group: ext[names[0]], topic: ext[names[1]], defaultTopic: ext[names[2]],
		defaultQueues: atoi(ext[names[3]]), queueID: atoi(ext[names[4]]), sysFlag: int32(atoi(ext[names[5]])),
		bornTimestamp: atoi64(ext[names[6]]), flag: int32(atoi(ext[names[7]])), properties: ext[names[8]],
		reconsumeTimes: int32(atoi(ext[names[9]])), maxReconsumeTimes: 16,
	}
	if ok && atoi(maxRaw) > 0 {
		h.maxReconsumeTimes = atoi(maxRaw)
	}
	return h
}

func checkTopic(cmd *remoting.Command, topic string) *remoting.Command {
	switch {
	case strings.TrimSpace(topic) == "":
		return cmd.Response(remoting.SystemError, "The specified topic is blank.")
	case !topicRe.MatchString(topic):
		return cmd.Response(remoting.SystemError, fmt.Sprintf("The specified topic[%s] contains illegal characters, allowing only ^[%%|a-zA-Z0-9_-]+$", topic))
	case len(topic) > maxTopicLength:
		return cmd.Response(remoting.SystemError, fmt.Sprintf("The specified topic is longer than topic max length %d.", maxTopicLength))
	}
	return nil
}

func (s *Server) illegal(cmd *remoting.Command) *remoting.Command {
	return cmd.Response(remoting.MessageIllegal, fmt.Sprintf(
		"the message is illegal, maybe msg body or properties length not matched. msg body length limit %dk, msg properties length limit 32k.",
		s.cfg.MaxMessageSize/1024))
}

// send stores a message or a batch (SendMessageProcessor).
func (s *Server) send(st *store, c *conn, cmd *remoting.Command, batch bool) *remoting.Command {
	if code, remark := s.sendFault.get(); code != 0 {
		return cmd.Response(code, remark)
	}
	h := parseSendHeader(cmd.ExtFields)
	if resp := checkTopic(cmd, h.topic); resp != nil {
		return resp
	}
	if h.topic == scheduleTopic {
		return cmd.Response(remoting.NoPermission, fmt.Sprintf("Sending message to topic[%s] is forbidden.", h.topic))
	}
	t, resp := s.sendTopic(st, cmd, h)
	if resp != nil {
		return resp
	}
	if !remoting.Writable(t.Perm) {
		return cmd.Response(remoting.NoPermission, fmt.Sprintf("the topic[%s] sending message is forbidden", h.topic))
	}
	queues := max(t.ReadQueueNums, t.WriteQueueNums)
	if h.queueID < 0 {
		h.queueID = 0
	}
	if h.queueID >= queues {
		return cmd.Response(remoting.SystemError, fmt.Sprintf("request queueId[%d] is illegal, %s Producer: %s", h.queueID, h.topic, c.nc.RemoteAddr()))
	}
	if len(cmd.Body) > s.cfg.MaxMessageSize {
		return s.illegal(cmd)
	}
	base := Message{
		Topic: h.topic, QueueID: h.queueID, SysFlag: h.sysFlag, Flag: h.flag,
		BornTimestamp: h.bornTimestamp, BornHost: c.nc.RemoteAddr().String(), StoreHost: s.cfg.BrokerAddr,
		ReconsumeTimes: h.reconsumeTimes,
	}
	var msgs []*Message
	if batch {
		if isRetryTopic(h.topic) {
			return cmd.Response(remoting.MessageIllegal, "Retry Group is not supported for batching")
		}
		if parseProperties(h.properties)[propDelay] != "" {
			return cmd.Response(remoting.MessageIllegal, "TimeDelayLevel is not supported for batched messages")
		}
		items, err := decodeBatch(cmd.Body)
		if err != nil {
			return cmd.Response(remoting.MessageIllegal, "the batch body is malformed: "+err.Error())
		}
		for _, it := range items {
			m := base
			m.SysFlag &^= sysFlagCompressed
			m.Flag, m.Body = it.flag, it.body
			m.Properties = parseProperties(it.properties)
			msgs = append(msgs, &m)
		}
	} else {
		m := base
		m.Body = cmd.Body
		m.Properties = parseProperties(h.properties)
		if isRetryTopic(h.topic) && int(h.reconsumeTimes) >= h.maxReconsumeTimes {
			dlq, err := st.ensureTopic(dlqPrefix+strings.TrimPrefix(h.topic, retryPrefix), 1, remoting.PermWrite)
			if err != nil {
				return cmd.Response(remoting.SystemError, err.Error())
			}
			m.Topic, m.QueueID = dlq.Name, 0
		}
		msgs = append(msgs, &m)
	}
	for _, m := range msgs {
		m.Properties[propCluster] = s.cfg.Cluster
		if !batch {
			s.delay(m)
		}
		m.PropertiesRaw = formatProperties(m.Properties)
		if len(m.PropertiesRaw) > maxPropertiesLength {
			return s.illegal(cmd)
		}
		m.StoreTimestamp = nowMillis()
	}
	if err := st.append(msgs); err != nil {
		return cmd.Response(remoting.SystemError, err.Error())
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.OffsetMsgID()
	}
	resp = cmd.Response(remoting.Success, "")
	resp.ExtFields["msgId"] = strings.Join(ids, ",")
	resp.ExtFields["queueId"] = strconv.Itoa(msgs[0].QueueID)
	resp.ExtFields["queueOffset"] = strconv.FormatInt(msgs[0].QueueOffset, 10)
	resp.ExtFields["MSG_REGION"] = "DefaultRegion"
	resp.ExtFields["TRACE_ON"] = "true"
	return resp
}

// sendTopic finds the topic of a send, creating it from the default topic
// when auto-creation is on (or for a retry topic).
func (s *Server) sendTopic(st *store, cmd *remoting.Command, h sendHeader) (topicConfig, *remoting.Command) {
	if t, ok := st.topic(h.topic); ok {
		return t, nil
	}
	if isRetryTopic(h.topic) {
		t, err := st.ensureTopic(h.topic, 1, permReadWrite)
		if err != nil {
			return t, cmd.Response(remoting.SystemError, err.Error())
		}
		return t, nil
	}
	if !s.cfg.NoAutoCreateTopics {
		if def, ok := st.topic(h.defaultTopic); ok && def.Perm&remoting.PermInherit != 0 {
			n := min(max(h.defaultQueues, 1), def.WriteQueueNums)
			t, err := st.ensureTopic(h.topic, n, def.Perm&^remoting.PermInherit)
			if err != nil {
				return t, cmd.Response(remoting.SystemError, err.Error())
			}
			return t, nil
		}
	}
	return topicConfig{}, cmd.Response(remoting.TopicNotExist, fmt.Sprintf("topic[%s] not exist, apply first please! http://rocketmq.apache.org/docs/faq/", h.topic))
}

// delay moves a message with a delay level to the schedule topic (queue
// level-1), keeping where it goes in REAL_TOPIC and REAL_QID.
func (s *Server) delay(m *Message) {
	level := atoi(m.Properties[propDelay])
	if level <= 0 {
		return
	}
	level = min(level, len(s.cfg.DelayLevels))
	m.Properties[propRealTopic] = m.Topic
	m.Properties[propRealQueueID] = strconv.Itoa(m.QueueID)
	m.Properties[propDelay] = strconv.Itoa(level)
	m.Topic, m.QueueID = scheduleTopic, level-1
}

// schedule delivers delayed messages once due, level by level, and keeps
// its progress in the store (ScheduleMessageService).
func (s *Server) schedule(ctx context.Context, st *store) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for level := 1; level <= len(s.cfg.DelayLevels); level++ {
			k := queueKey{scheduleTopic, level - 1}
			off := st.delayOffset(level)
			for ctx.Err() == nil {
				e, ok := st.entry(k, off)
				if !ok {
					break
				}
				m, err := st.at(e.pos)
				if err != nil || nowMillis() < m.StoreTimestamp+s.cfg.DelayLevels[level-1].Milliseconds() {
					break
				}
				out := m
				out.Topic, out.QueueID = m.Properties[propRealTopic], atoi(m.Properties[propRealQueueID])
				out.Properties = copyProps(m.Properties)
				delete(out.Properties, propDelay)
				out.PropertiesRaw = formatProperties(out.Properties)
				out.StoreTimestamp = nowMillis()
				if _, err := st.ensureTopic(out.Topic, 1, permReadWrite); err != nil {
					break
				}
				if err := st.append([]*Message{&out}); err != nil {
					break
				}
				off++
				if err := st.setDelayOffset(level, off); err != nil {
					break
				}
			}
		}
	}
}

func copyProps(p map[string]string) map[string]string {
	out := make(map[string]string, len(p))
	for k, v := range p {
		out[k] = v
	}
	return out
}

// pull answers PULL_MESSAGE, holding it while the queue has nothing new
// and the request asks to be suspended (long polling).
func (s *Server) pull(ctx context.Context, st *store, cmd *remoting.Command) *remoting.Command {
	h := cmd.ExtFields
	group, topic := h["consumerGroup"], h["topic"]
	qid, offset := atoi(h["queueId"]), atoi64(h["queueOffset"])
	sysFlag := atoi(h["sysFlag"])
	t, ok := st.topic(topic)
	if !ok {
		return cmd.Response(remoting.TopicNotExist, fmt.Sprintf("topic[%s] not exist, apply first please! http://rocketmq.apache.org/docs/faq/", topic))
	}
	if !remoting.Readable(t.Perm) {
		return cmd.Response(remoting.NoPermission, fmt.Sprintf("the topic[%s] pulling message is forbidden", topic))
	}
	if qid < 0 || qid >= t.ReadQueueNums {
		return cmd.Response(remoting.SystemError, fmt.Sprintf("queueId[%d] is illegal, topic:[%s] topicConfig.readQueueNums:[%d] consumer:[%s]", qid, topic, t.ReadQueueNums, group))
	}
	var sub subscription
	if sysFlag&sysFlagPullSubscription != 0 {
		if et := h["expressionType"]; et != "" && et != "TAG" {
			return cmd.Response(remoting.SystemError, "The broker does not support consumer to filter message by "+et)
		}
		sub = parseSubscription(h["subscription"])
	} else {
		var groupOK, subOK bool
		sub, groupOK, subOK = s.groups.subscription(group, topic)
		switch {
		case !groupOK:
			return cmd.Response(remoting.SubscriptionNotExist, "the consumer's group info not exist")
		case !subOK:
			return cmd.Response(remoting.SubscriptionNotExist, "the consumer's subscription not exist")
		}
	}
	if sysFlag&sysFlagPullCommitOffset != 0 {
		if err := st.setConsumerOffset(group, topic, qid, atoi64(h["commitOffset"])); err != nil {
			return cmd.Response(remoting.SystemError, err.Error())
		}
	}
	k := queueKey{topic, qid}
	maxCount := min(max(atoi(h["maxMsgNums"]), 1), maxPullCount)
	var deadline <-chan time.Time
	if sysFlag&sysFlagPullSuspend != 0 {
		timer := time.NewTimer(time.Duration(atoi64(h["suspendTimeoutMillis"])) * time.Millisecond)
		defer timer.Stop()
		deadline = timer.C
	}
	for {
		arrived := st.watch(k)
		resp := s.getMessage(st, cmd, k, offset, maxCount, sub)
		if resp.Code != remoting.PullNotFound || deadline == nil {
			return resp
		}
		select {
		case <-arrived:
		case <-deadline:
			return s.getMessage(st, cmd, k, offset, maxCount, sub)
		case <-ctx.Done():
			return nil // the server stops: the pull stays unanswered
		}
	}
}

// getMessage reads a queue as DefaultMessageStore.getMessage does and
// answers as PullMessageProcessor does.
func (s *Server) getMessage(st *store, cmd *remoting.Command, k queueKey, offset int64, maxCount int, sub subscription) *remoting.Command {
	lo, hi := st.minMax(k)
	code, next := remoting.PullNotFound, offset
	var body []byte
	switch {
	case hi == 0:
		next = 0
		if offset != 0 {
			code = remoting.PullOffsetMoved
		}
	case offset < lo:
		code, next = remoting.PullOffsetMoved, lo
	case offset == hi:
	case offset > hi:
		code, next = remoting.PullOffsetMoved, hi
		if lo == 0 {
			next = lo
		}
	default:
		recs, n, err := st.read(k, offset, maxCount, maxPullBytes, sub.match)
		if err != nil {
			return cmd.Response(remoting.SystemError, err.Error())
		}
		next = n
		if len(recs) == 0 {
			code = remoting.PullRetryImmediately
			break
		}
		code = remoting.Success
		for _, r := range recs {
			body = append(body, r...)
		}
	}
	resp := cmd.Response(code, "")
	resp.Body = body
	resp.ExtFields["nextBeginOffset"] = strconv.FormatInt(next, 10)
	resp.ExtFields["minOffset"] = strconv.FormatInt(lo, 10)
	resp.ExtFields["maxOffset"] = strconv.FormatInt(hi, 10)
	resp.ExtFields["suggestWhichBrokerId"] = "0"
	return resp
}

func (s *Server) heartbeat(st *store, c *conn, cmd *remoting.Command) *remoting.Command {
	var hb heartbeat
	if err := json.Unmarshal(cmd.Body, &hb); err != nil {
		return cmd.Response(remoting.SystemError, "decoding the heartbeat: "+err.Error())
	}
	c.mu.Lock()
	c.clientID = hb.ClientID
	c.mu.Unlock()
	for _, cd := range hb.Consumers {
		if _, err := st.ensureTopic(retryPrefix+cd.GroupName, 1, permReadWrite); err != nil {
			return cmd.Response(remoting.SystemError, err.Error())
		}
	}
	s.notify(s.groups.register(c, hb))
	return cmd.Response(remoting.Success, "")
}

// sendBack answers CONSUMER_SEND_MSG_BACK: the message at the given commit
// log position goes to the group's retry topic with a delay, or to its
// dead-letter topic once it was consumed maxReconsumeTimes times.
func (s *Server) sendBack(st *store, c *conn, cmd *remoting.Command) *remoting.Command {
	h := cmd.ExtFields
	group := h["group"]
	orig, err := st.at(atoi64(h["offset"]))
	if err != nil {
		return cmd.Response(remoting.SystemError, fmt.Sprintf("look message by offset failed, %s", h["offset"]))
	}
	retry, err := st.ensureTopic(retryPrefix+group, 1, permReadWrite)
	if err != nil {
		return cmd.Response(remoting.SystemError, err.Error())
	}
	m := orig
	m.Properties = copyProps(orig.Properties)
	if m.Properties[propRetryTopic] == "" {
		m.Properties[propRetryTopic] = orig.Topic
	}
	origin := h["originMsgId"]
	if origin == "" {
		origin = orig.MsgID()
	}
	m.Properties[propOriginMsgID] = origin
	maxTimes := 16
	if v := atoi(h["maxReconsumeTimes"]); v > 0 {
		maxTimes = v
	}
	delayLevel := atoi(h["delayLevel"])
	m.Topic, m.QueueID = retry.Name, 0
	if int(orig.ReconsumeTimes) >= maxTimes || delayLevel < 0 {
		dlq, err := st.ensureTopic(dlqPrefix+group, 1, remoting.PermWrite)
		if err != nil {
			return cmd.Response(remoting.SystemError, err.Error())
		}
		m.Topic = dlq.Name
		delete(m.Properties, propDelay)
	} else {
		if delayLevel == 0 {
			delayLevel = 3 + int(orig.ReconsumeTimes)
		}
		m.Properties[propDelay] = strconv.Itoa(delayLevel)
		s.delay(&m)
	}
	m.ReconsumeTimes = orig.ReconsumeTimes + 1
	m.Properties[propMaxReconsume] = strconv.Itoa(maxTimes)
	m.StoreHost = s.cfg.BrokerAddr
	m.PropertiesRaw = formatProperties(m.Properties)
	m.StoreTimestamp = nowMillis()
	if err := st.append([]*Message{&m}); err != nil {
		return cmd.Response(remoting.SystemError, err.Error())
	}
	return cmd.Response(remoting.Success, "")
}

func withExt(resp *remoting.Command, key string, v int64) *remoting.Command {
	resp.ExtFields[key] = strconv.FormatInt(v, 10)
	return resp
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}

func atoi64(s string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n
}
