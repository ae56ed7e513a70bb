package dingtalk

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/connectors/internal/chatbot/chatbottest"
)

// fakeDingTalk serves DingTalk's custom robot webhook (POST /robot/send)
// and the app robot API (POST /v1.0/oauth2/accessToken, POST
// /v1.0/robot/groupMessages/send) on loopback. It checks each request
// exactly as DingTalk documents it and answers as DingTalk does: the
// webhook 200 with errcode and errmsg (errmsg texts as DingTalk sends
// them), the app API 2xx or 4xx with code and message. A request a correct
// client would never send is a violation; the test fails on any.
//
// Documents checked: "Custom robot access" / "custom-robot-access"
// (webhook, signing: timestamp in ms within one hour, sign =
// urlEncode(base64(HmacSHA256(secret, timestamp+"\n"+secret))), 20
// messages a minute, message types text/link/markdown/actionCard/feedCard
// and at), "Obtain the access token of an internal app"
// (/v1.0/oauth2/accessToken: appKey, appSecret → accessToken, expireIn),
// "The robot sends a group message" (/v1.0/robot/groupMessages/send:
// header x-acs-dingtalk-access-token; msgParam, msgKey,
// openConversationId, robotCode, coolAppCode; msgParam at most 15000
// bytes), and DingTalk's answers seen on the wire (300005 "token is not
// exist", 400 InvalidAuthentication "不合法的access_token", 400
// invalidClientIdOrSecret).
type fakeDingTalk struct {
	*chatbottest.Fake[posted]

	// webhook robot
	token   string // the webhook's access_token
	secret  string // "" : no signing
	keyword string // "" : no keyword check
	limit   int    // messages per window before 130101
	window  time.Duration
	lockFor time.Duration // how long 130101 lasts

	// app robot
	appKey, appSecret, robotCode, convID string
	expireIn                             int64 // seconds

	// guarded by Fake's lock
	uuids      map[string]bool // msgUuid seen
	lockedTill time.Time       // 130101 until then
	answers    []int           // errcodes to answer next, then normal
	failing    bool            // errcode -1 (system busy) / 500
}

// posted is a message DingTalk took.
type posted struct {
	At      time.Time
	MsgType string         // msgtype or msgKey
	Body    map[string]any // the message object (webhook) or msgParam (app)
	AtInfo  map[string]any // webhook "at"
	UUID    string
}

func newFake(t testing.TB) *fakeDingTalk {
	f := &fakeDingTalk{
		token: "dt-robot-token-" + randHex(8), secret: "SEC" + randHex(16),
		limit: 20, window: time.Minute, lockFor: 10 * time.Minute,
		appKey: "dingappkey" + randHex(4), appSecret: "app-secret-" + randHex(12),
		robotCode: "dingrobot" + randHex(4), convID: "cid" + randHex(8) + "==",
		expireIn: 7200,
		uuids:    map[string]bool{},
	}
	f.Fake = chatbottest.NewFake[posted](t, "DingTalk", f.serve)
	return f
}

var randHex = chatbottest.RandHex

// webhook is the robot's webhook as DingTalk shows it.
func (f *fakeDingTalk) webhook() string { return f.Srv.URL + "/robot/send?access_token=" + f.token }

func (f *fakeDingTalk) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	switch r.URL.Path {
	case "/robot/send":
		f.robotSend(w, r, body)
	case pathAccessToken:
		f.accessToken(w, r, body)
	case pathGroupSend:
		f.groupSend(w, r, body)
	default:
		f.Violate("POST %s: no such path", r.URL.Path)
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 404, "errmsg": "请求的URI地址不存在"})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	chatbottest.WriteJSON(w, "application/json;charset=utf-8", status, v)
}

func errcode(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, http.StatusOK, map[string]any{"errcode": code, "errmsg": msg})
}

// robotSend is the custom robot webhook.
func (f *fakeDingTalk) robotSend(w http.ResponseWriter, r *http.Request, body []byte) {
	if !f.JSONType(r, "") {
		errcode(w, 40035, "缺少参数 json")
		return
	}
	// The query, raw: each parameter once; sign URL-encoded exactly once.
	params := map[string]string{}
	for _, kv := range strings.Split(r.URL.RawQuery, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := params[k]; dup {
			f.Violate("query parameter %s twice", k)
		}
		params[k] = v
	}
	want := []string{"access_token"}
	if f.secret != "" {
		want = append(want, "timestamp", "sign")
	}
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range params {
			if !yield(k) {
				return
			}
		}
	})
	slices.Sort(want)
	if !slices.Equal(got, want) {
		f.Violate("query parameters %v, want %v", got, want)
	}
	if params["access_token"] != f.token {
		errcode(w, 300005, "token is not exist")
		return
	}
	if f.secret != "" {
		ts := params["timestamp"]
		ms, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || len(ts) != 13 {
			f.Violate("timestamp %q: want Unix milliseconds", ts)
			errcode(w, 310000, "invalid timestamp")
			return
		}
		if d := f.Now().Sub(time.UnixMilli(ms)); d > time.Hour || d < -time.Hour {
			errcode(w, 310000, "invalid timestamp")
			return
		}
		sign, err := url.QueryUnescape(params["sign"])
		if err != nil {
			f.Violate("sign %q is not URL-encoded", params["sign"])
		}
		if sign != Sign(f.secret, ts) {
			errcode(w, 310000, "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]")
			return
		}
	}
	var msg map[string]json.RawMessage
	if err := json.Unmarshal(body, &msg); err != nil {
		f.Violate("webhook body is not a JSON object: %v", err)
		errcode(w, 40035, "缺少参数 json")
		return
	}
	m, ok := f.checkWebhookMessage(msg)
	if !ok {
		errcode(w, 40035, "缺少参数 json")
		return
	}
	if f.failing {
		errcode(w, -1, "系统繁忙")
		return
	}
	if len(f.answers) > 0 {
		code := f.answers[0]
		f.answers = f.answers[1:]
		errcode(w, code, map[int]string{130101: "send too fast, exceed 20 times per minute", 310000: "keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]", -1: "系统繁忙"}[code])
		return
	}
	now := f.Now()
	if now.Before(f.lockedTill) || f.SentWithin(now, f.window) >= f.limit {
		if !now.Before(f.lockedTill) {
			f.lockedTill = now.Add(f.lockFor)
		}
		errcode(w, 130101, "send too fast, exceed 20 times per minute")
		return
	}
	if f.keyword != "" && !strings.Contains(string(body), f.keyword) {
		errcode(w, 310000, "keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]")
		return
	}
	if !f.uuids[m.UUID] {
		f.uuids[m.UUID] = true
		m.At = now
		f.Posted = append(f.Posted, m)
		f.Sent = append(f.Sent, now)
	}
	errcode(w, 0, "ok")
}

// webhook message shapes: the keys of each type's object, required ones
// first.
var webhookShapes = map[string]struct{ required, optional []string }{
	"text":       {[]string{"content"}, nil},
	"markdown":   {[]string{"title", "text"}, nil},
	"link":       {[]string{"title", "text", "messageUrl"}, []string{"picUrl"}},
	"actionCard": {[]string{"title", "text"}, []string{"singleTitle", "singleURL", "btnOrientation", "btns"}},
	"feedCard":   {[]string{"links"}, nil},
}

func (f *fakeDingTalk) checkWebhookMessage(msg map[string]json.RawMessage) (posted, bool) {
	var typ string
	if json.Unmarshal(msg["msgtype"], &typ) != nil {
		f.Violate("msgtype missing or not a string")
		return posted{}, false
	}
	shape, ok := webhookShapes[typ]
	if !ok {
		f.Violate("msgtype %q is not one of DingTalk's", typ)
		return posted{}, false
	}
	for k := range msg {
		if k != "msgtype" && k != typ && k != "at" && k != "msgUuid" {
			f.Violate("key %q in a %s message", k, typ)
		}
	}
	var obj map[string]any
	if json.Unmarshal(msg[typ], &obj) != nil {
		f.Violate("%s: want the %s object", typ, typ)
		return posted{}, false
	}
	if !f.Keys(typ, obj, shape.required, shape.optional) {
		return posted{}, false
	}
	switch typ {
	case "actionCard":
		_, single := obj["singleURL"]
		_, btns := obj["btns"]
		if single == btns {
			f.Violate("actionCard: want singleTitle and singleURL, or btns")
		}
		if btns {
			for _, b := range obj["btns"].([]any) {
				bm, _ := b.(map[string]any)
				f.Keys("actionCard.btns", bm, []string{"title", "actionURL"}, nil)
			}
		}
	case "feedCard":
		links, _ := obj["links"].([]any)
		if len(links) == 0 {
			f.Violate("feedCard: want links")
		}
		for _, l := range links {
			lm, _ := l.(map[string]any)
			f.Keys("feedCard.links", lm, []string{"title", "messageURL"}, []string{"picURL"})
		}
	}
	m := posted{MsgType: typ, Body: obj}
	if raw, ok := msg["at"]; ok {
		if typ != "text" && typ != "markdown" {
			f.Violate("at in a %s message: DingTalk @s in text and markdown", typ)
		}
		if json.Unmarshal(raw, &m.AtInfo) != nil {
			f.Violate("at: want an object")
		}
		f.Keys("at", m.AtInfo, nil, []string{"atMobiles", "atUserIds", "isAtAll"})
	}
	if json.Unmarshal(msg["msgUuid"], &m.UUID) != nil || m.UUID == "" {
		f.Violate("msgUuid missing: a retry could post twice")
	}
	return m, true
}

// accessToken is POST /v1.0/oauth2/accessToken.
func (f *fakeDingTalk) accessToken(w http.ResponseWriter, r *http.Request, body []byte) {
	if !f.JSONType(r, "") {
		writeJSON(w, http.StatusBadRequest, map[string]any{"code": "invalidParameter", "message": "参数错误", "requestid": randHex(8)})
		return
	}
	var req map[string]string
	if err := json.Unmarshal(body, &req); err != nil || len(req) != 2 {
		f.Violate("accessToken body %s: want {appKey, appSecret}", body)
	}
	if f.failing {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"code": "unknownError", "message": "未知错误", "requestid": randHex(8)})
		return
	}
	if req["appKey"] != f.appKey || req["appSecret"] != f.appSecret {
		writeJSON(w, http.StatusBadRequest, map[string]any{"requestid": randHex(8), "code": "invalidClientIdOrSecret", "message": "无效的clientId或者clientSecret"})
		return
	}
	tok := randHex(16)
	f.IssueToken(tok, time.Duration(f.expireIn)*time.Second)
	writeJSON(w, http.StatusOK, map[string]any{"accessToken": tok, "expireIn": f.expireIn})
}

// app message shapes: msgParam keys by msgKey.
var appShapes = map[string]struct{ required, optional []string }{
	"sampleText":       {[]string{"content"}, nil},
	"sampleMarkdown":   {[]string{"title", "text"}, nil},
	"sampleLink":       {[]string{"text", "title", "messageUrl"}, []string{"picUrl"}},
	"sampleActionCard": {[]string{"title", "text", "singleTitle", "singleURL"}, nil},
}

// groupSend is POST /v1.0/robot/groupMessages/send.
func (f *fakeDingTalk) groupSend(w http.ResponseWriter, r *http.Request, body []byte) {
	refuse := func(code, msg string) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"code": code, "requestid": randHex(8), "message": msg})
	}
	tok := r.Header.Get(headerToken)
	if tok == "" {
		f.Violate("groupMessages/send without %s", headerToken)
		refuse("AuthenticationFailed.MissingParameter", "缺少参数：x-acs-dingtalk-access-token")
		return
	}
	if !f.TokenValid(tok) {
		refuse("InvalidAuthentication", "不合法的access_token")
		return
	}
	if !f.JSONType(r, "") {
		refuse("invalidParameter.param.invalid", "参数不合法")
		return
	}
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil {
		f.Violate("groupMessages/send body is not JSON: %v", err)
		refuse("invalidParameter.param.invalid", "参数不合法")
		return
	}
	if !f.Keys("groupMessages/send", req, []string{"msgParam", "msgKey", "openConversationId", "robotCode"}, []string{"coolAppCode"}) {
		refuse("invalidParameter.param.invalid", "参数不合法")
		return
	}
	if req["robotCode"] != f.robotCode {
		refuse("invalidParameter.robotCode.notExsit", "机器人不存在")
		return
	}
	if req["openConversationId"] != f.convID {
		refuse("invalid.openConversationId", "无效的openConversationId")
		return
	}
	key, _ := req["msgKey"].(string)
	shape, ok := appShapes[key]
	if !ok {
		f.Violate("msgKey %q", key)
		refuse("invalidParameter.msgKey.invalid", "The msgKey is invalid.")
		return
	}
	param, _ := req["msgParam"].(string)
	if len(param) > 15000 {
		f.Violate("msgParam of %d bytes: DingTalk takes 15000", len(param))
	}
	var obj map[string]any
	if json.Unmarshal([]byte(param), &obj) != nil {
		f.Violate("msgParam is not a JSON object string")
		refuse("invalidParameter.msgParam.invalid", "The msgParam must be in JSON format.")
		return
	}
	if !f.Keys(key, obj, shape.required, shape.optional) {
		refuse("invalidParameter.msgParam.invalid", "The msgParam must be in JSON format.")
		return
	}
	if f.failing {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"code": "unknownError", "message": "未知错误", "requestid": randHex(8)})
		return
	}
	f.Posted = append(f.Posted, posted{At: f.Now(), MsgType: key, Body: obj})
	writeJSON(w, http.StatusOK, map[string]any{"processQueryKey": randHex(16)})
}

// Views for the tests.

// texts are the text of each posted message (content, or text).
func (f *fakeDingTalk) texts() []string {
	var out []string
	for _, m := range f.Messages() {
		s, ok := m.Body["content"].(string)
		if !ok {
			s, _ = m.Body["text"].(string)
		}
		out = append(out, s)
	}
	return out
}

func (f *fakeDingTalk) uuidsPosted() []string {
	var out []string
	for _, m := range f.Messages() {
		out = append(out, m.UUID)
	}
	return out
}
