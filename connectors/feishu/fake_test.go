package feishu

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/connectors/internal/chatbot/chatbottest"
)

// fakeFeiShu serves FeiShu's custom bot webhook (POST
// /open-apis/bot/v2/hook/{token}) and the app bot API (POST
// /open-apis/auth/v3/tenant_access_token/internal, POST
// /open-apis/im/v1/messages) on loopback. It checks each request exactly
// as FeiShu documents it and answers as FeiShu does, codes and msg texts
// included. A request a correct client would never send is a violation;
// the test fails on any.
//
// Documents checked: "Custom bot usage guide" (webhook; Content-Type
// application/json; body at most 20 KB; timestamp in seconds as a string
// and sign = base64(HmacSHA256(key timestamp+"\n"+secret, empty message))
// within an hour, else 19021; keyword 19024; IP 19022; malformed 9499; 100
// a minute and 5 a second, else 11232; message types text, post (content
// {"post": {locale: ...}}), image, share_chat (share_chat_id) and
// interactive (a card field instead of content); success answer with
// StatusCode and StatusMessage), "Obtain tenant_access_token (custom app)"
// (app_id, app_secret → code, msg, tenant_access_token, expire), "Send
// message" (im/v1/messages?receive_id_type=...; Authorization: Bearer;
// Content-Type application/json; charset=utf-8; receive_id, msg_type,
// content as a JSON string, uuid of at most 50 characters deduplicated for
// an hour; text content at most 150 KB, post and card 30 KB) and "Send
// message content" (post {locale: ...}, share_chat {chat_id}).
type fakeFeiShu struct {
	*chatbottest.Fake[posted]

	// custom bot
	hook    string // the webhook's token
	secret  string // "": no signature verification
	keyword string
	perSec  int // 5
	perMin  int // 100

	// app bot
	appID, appSecret, chatID string
	expire                   int64 // seconds

	// guarded by Fake's lock
	uuids   map[string]bool
	answers []answer // to answer next (webhook), then normal
	failing bool     // 503 from the gateway
}

// posted is a message FeiShu took.
type posted struct {
	At      time.Time
	MsgType string
	Content map[string]any // content, or the card
	UUID    string
}

func newFake(t *testing.T) *fakeFeiShu {
	f := &fakeFeiShu{
		hook: randHex(16), secret: "fs-secret-" + randHex(8), perSec: 5, perMin: 100,
		appID: "cli_" + randHex(8), appSecret: "app-secret-" + randHex(12), chatID: "oc_" + randHex(16),
		expire: 7200, uuids: map[string]bool{},
	}
	f.Fake = chatbottest.NewFake[posted](t, "FeiShu", f.serve)
	return f
}

var randHex = chatbottest.RandHex

func (f *fakeFeiShu) webhook() string { return f.Srv.URL + "/open-apis/bot/v2/hook/" + f.hook }

func writeJSON(w http.ResponseWriter, status int, v any) {
	chatbottest.WriteJSON(w, contentType, status, v)
}

func (f *fakeFeiShu) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	if f.failing {
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/open-apis/bot/v2/hook/"):
		f.hookSend(w, r, body)
	case r.URL.Path == pathTenantToken:
		f.tenantToken(w, r, body)
	case r.URL.Path == pathMessages:
		f.messagesCreate(w, r, body)
	default:
		f.Violate("POST %s: no such path", r.URL.Path)
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "msg": "404 page not found"})
	}
}

// hookSend is the custom bot webhook.
func (f *fakeFeiShu) hookSend(w http.ResponseWriter, r *http.Request, body []byte) {
	code := func(c int, msg string) {
		writeJSON(w, http.StatusOK, map[string]any{"code": c, "data": map[string]any{}, "msg": msg})
	}
	if strings.TrimPrefix(r.URL.Path, "/open-apis/bot/v2/hook/") != f.hook {
		code(19001, "param invalid: incoming webhook access token invalid")
		return
	}
	if !f.JSONType(r, "") || len(body) > 20*1024 {
		if len(body) > 20*1024 {
			f.Violate("a request body of %d bytes: FeiShu takes 20 KB", len(body))
		}
		code(9499, "Bad Request")
		return
	}
	var msg map[string]json.RawMessage
	if err := json.Unmarshal(body, &msg); err != nil {
		f.Violate("webhook body is not a JSON object: %v", err)
		code(9499, "Bad Request")
		return
	}
	if f.secret != "" {
		var ts, sign string
		if json.Unmarshal(msg["timestamp"], &ts) != nil {
			f.Violate("timestamp missing or not a string: %s", msg["timestamp"])
			code(19021, "sign match fail or timestamp is not within one hour from current time")
			return
		}
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || len(ts) != 10 {
			f.Violate("timestamp %q: want Unix seconds", ts)
		}
		_ = json.Unmarshal(msg["sign"], &sign)
		if d := f.Now().Sub(time.Unix(sec, 0)); d > time.Hour || d < -time.Hour || sign != Sign(f.secret, ts) {
			code(19021, "sign match fail or timestamp is not within one hour from current time")
			return
		}
	} else if msg["timestamp"] != nil || msg["sign"] != nil {
		f.Violate("timestamp and sign sent to a bot without signature verification")
	}
	m, ok := f.checkMessage(msg, true)
	if !ok {
		code(9499, "Bad Request")
		return
	}
	if len(f.answers) > 0 {
		a := f.answers[0]
		f.answers = f.answers[1:]
		code(*a.Code, a.Msg)
		return
	}
	now := f.Now()
	if f.SentWithin(now, time.Second) >= f.perSec || f.SentWithin(now, time.Minute) >= f.perMin {
		code(11232, "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]")
		return
	}
	if f.keyword != "" && !strings.Contains(string(body), f.keyword) {
		code(19024, "Key Words Not Found")
		return
	}
	m.At = now
	f.Posted = append(f.Posted, m)
	f.Sent = append(f.Sent, now)
	writeJSON(w, http.StatusOK, map[string]any{"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": map[string]any{}, "msg": "success"})
}

// checkMessage checks msg_type and its content (webhook: an object, card
// for interactive; app: a JSON string).
func (f *fakeFeiShu) checkMessage(msg map[string]json.RawMessage, webhook bool) (posted, bool) {
	var typ string
	if json.Unmarshal(msg["msg_type"], &typ) != nil {
		f.Violate("msg_type missing or not a string")
		return posted{}, false
	}
	allowed := []string{"msg_type", "content"}
	if webhook {
		allowed = []string{"msg_type", "timestamp", "sign", "content"}
		if typ == "interactive" {
			allowed[3] = "card"
		}
	} else {
		allowed = append(allowed, "receive_id", "uuid")
	}
	for k := range msg {
		if !slices.Contains(allowed, k) {
			f.Violate("key %q in a %s message", k, typ)
		}
	}
	raw := msg["content"]
	if webhook && typ == "interactive" {
		raw = msg["card"]
	}
	if !webhook {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			f.Violate("content of an app message is not a JSON string")
			return posted{}, false
		}
		raw = json.RawMessage(s)
	}
	var content map[string]any
	if json.Unmarshal(raw, &content) != nil {
		f.Violate("%s: content is not a JSON object", typ)
		return posted{}, false
	}
	ok := true
	switch typ {
	case "text":
		ok = f.Keys("text", content, []string{"text"}, nil)
	case "post":
		post := content
		if webhook {
			ok = f.Keys("post", content, []string{"post"}, nil)
			post, _ = content["post"].(map[string]any)
		}
		if len(post) == 0 {
			f.Violate("post: want at least one language")
			return posted{}, false
		}
		for lang, v := range post {
			if !slices.Contains([]string{"zh_cn", "en_us", "ja_jp"}, lang) {
				f.Violate("post: language %q", lang)
			}
			body, _ := v.(map[string]any)
			ok = f.Keys("post."+lang, body, []string{"content"}, []string{"title"}) && ok
			paras, _ := body["content"].([]any)
			for _, p := range paras {
				elems, _ := p.([]any)
				for _, e := range elems {
					em, _ := e.(map[string]any)
					switch em["tag"] {
					case "text":
						ok = f.Keys("post text", em, []string{"tag", "text"}, []string{"un_escape"}) && ok
					case "a":
						ok = f.Keys("post a", em, []string{"tag", "text", "href"}, nil) && ok
					case "at":
						ok = f.Keys("post at", em, []string{"tag", "user_id"}, []string{"user_name"}) && ok
					case "img":
						ok = f.Keys("post img", em, []string{"tag", "image_key"}, nil) && ok
					default:
						f.Violate("post: tag %v", em["tag"])
						ok = false
					}
				}
			}
		}
	case "share_chat":
		key := "chat_id"
		if webhook {
			key = "share_chat_id"
		}
		ok = f.Keys("share_chat", content, []string{key}, nil)
	case "image":
		ok = f.Keys("image", content, []string{"image_key"}, nil)
	case "interactive":
		if _, has := content["elements"]; !has {
			if _, has := content["body"]; !has {
				f.Violate("interactive: a card wants elements (or a 2.0 body)")
				ok = false
			}
		}
	default:
		f.Violate("msg_type %q", typ)
		ok = false
	}
	return posted{MsgType: typ, Content: content}, ok
}

// tenantToken is POST /open-apis/auth/v3/tenant_access_token/internal.
func (f *fakeFeiShu) tenantToken(w http.ResponseWriter, r *http.Request, body []byte) {
	f.JSONType(r, contentType)
	var req map[string]string
	if err := json.Unmarshal(body, &req); err != nil || len(req) != 2 {
		f.Violate("tenant_access_token body %s: want {app_id, app_secret}", body)
	}
	if req["app_id"] != f.appID {
		writeJSON(w, http.StatusBadRequest, map[string]any{"code": 10003, "msg": "invalid param"})
		return
	}
	if req["app_secret"] != f.appSecret {
		writeJSON(w, http.StatusOK, map[string]any{"code": 10014, "msg": "app secret invalid"})
		return
	}
	tok := "t-" + randHex(20)
	f.IssueToken(tok, time.Duration(f.expire)*time.Second)
	writeJSON(w, http.StatusOK, map[string]any{"code": 0, "msg": "ok", "tenant_access_token": tok, "expire": f.expire})
}

// messagesCreate is POST /open-apis/im/v1/messages.
func (f *fakeFeiShu) messagesCreate(w http.ResponseWriter, r *http.Request, body []byte) {
	refuse := func(status, c int, msg string) {
		writeJSON(w, status, map[string]any{"code": c, "msg": msg, "error": map[string]any{"log_id": randHex(12)}})
	}
	auth := r.Header.Get("Authorization")
	tok, bearer := strings.CutPrefix(auth, "Bearer ")
	if !bearer || tok == "" {
		f.Violate("im/v1/messages: Authorization %q, want Bearer and the tenant access token", auth)
		refuse(http.StatusBadRequest, 99991661, "Missing access token for authorization. Please make a request with token attached.")
		return
	}
	if !f.TokenValid(tok) {
		refuse(http.StatusBadRequest, 99991663, "Invalid access token for authorization. Please make a request with token attached.")
		return
	}
	if !f.JSONType(r, contentType) {
		refuse(http.StatusBadRequest, 230001, "Your request contains an invalid request parameter.")
		return
	}
	q := r.URL.Query()
	if len(q) != 1 || !slices.Contains([]string{"open_id", "user_id", "union_id", "email", "chat_id"}, q.Get("receive_id_type")) {
		f.Violate("query %q: want receive_id_type alone", r.URL.RawQuery)
	}
	var msg map[string]json.RawMessage
	if err := json.Unmarshal(body, &msg); err != nil {
		f.Violate("im/v1/messages body is not JSON: %v", err)
		refuse(http.StatusBadRequest, 230001, "Your request contains an invalid request parameter.")
		return
	}
	var to, uuid string
	_ = json.Unmarshal(msg["receive_id"], &to)
	if json.Unmarshal(msg["uuid"], &uuid) != nil || uuid == "" || len(uuid) > 50 {
		f.Violate("uuid %s: want the event's key against a double post, at most 50 characters", msg["uuid"])
	}
	var content string
	_ = json.Unmarshal(msg["content"], &content)
	var typ string
	_ = json.Unmarshal(msg["msg_type"], &typ)
	limit := 30 * 1024
	if typ == "text" {
		limit = 150 * 1024
	}
	if len(content) > limit {
		f.Violate("content of %d bytes: FeiShu takes %d", len(content), limit)
		refuse(http.StatusBadRequest, 230025, "The length of the message content reaches its limit.")
		return
	}
	m, ok := f.checkMessage(msg, false)
	if !ok {
		refuse(http.StatusBadRequest, 230001, "Your request contains an invalid request parameter.")
		return
	}
	if to != f.chatID || q.Get("receive_id_type") != "chat_id" {
		refuse(http.StatusBadRequest, 230001, "Your request contains an invalid request parameter. ext=invalid receive_id")
		return
	}
	if !f.uuids[uuid] {
		f.uuids[uuid] = true
		m.At, m.UUID = f.Now(), uuid
		f.Posted = append(f.Posted, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"code": 0, "msg": "success", "data": map[string]any{
		"message_id": "om_" + randHex(16), "msg_type": typ, "chat_id": f.chatID, "body": map[string]any{"content": content},
	}})
}

// Views for the tests.

// texts are the text of each posted text message.
func (f *fakeFeiShu) texts() []string {
	var out []string
	for _, m := range f.Messages() {
		s, _ := m.Content["text"].(string)
		out = append(out, s)
	}
	return out
}
