package dingtalk

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/internal/chatbot"
	"github.com/meshd/meshd/connectors/internal/chatbot/chatbottest"
)

const (
	wait = chatbottest.Wait
	tick = chatbottest.Tick
)

var (
	discard = chatbottest.Discard
	classOf = chatbottest.ClassOf
)

// DingTalk's documented signing, pinned to the vector of issue 14.
func TestSignVector(t *testing.T) {
	s := &settings{Settings: chatbot.Settings{Webhook: "https://oapi.dingtalk.com/robot/send?access_token=abc", Secret: "SECtestsecret0123456789"}}
	assert.Equal(t, "zrLWzK97t62y5CpqN8Ok9UIdPvX+jL1PNoW8nKT5a9k=", Sign("SECtestsecret0123456789", "1700000000000"))
	assert.Equal(t,
		"https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1700000000000&sign=zrLWzK97t62y5CpqN8Ok9UIdPvX%2BjL1PNoW8nKT5a9k%3D",
		s.webhookURL(1700000000000), "the signature goes into the query URL-encoded once")
	s.Secret = ""
	assert.Equal(t, "https://oapi.dingtalk.com/robot/send?access_token=abc", s.webhookURL(1700000000000), "no secret, no signature")
}

// webhookFields are the fields of an instance on f's webhook robot.
func webhookFields(f *fakeDingTalk, kv ...any) map[string]any {
	return connectortest.With(map[string]any{FieldWebhook: f.webhook(), FieldSecret: f.secret, chatbot.FieldRateLimits: "1000/1s"}, kv...)
}

func appFields(f *fakeDingTalk, kv ...any) map[string]any {
	return connectortest.With(map[string]any{
		FieldMode: ModeApp, FieldAppKey: f.appKey, FieldAppSecret: f.appSecret, FieldRobotCode: f.robotCode,
		FieldConversationID: f.convID, FieldAPIURL: f.Srv.URL, chatbot.FieldRateLimits: "1000/1s",
	}, kv...)
}

// newSink opens the sink of fields with clock now (nil: time.Now).
func newSink(t testing.TB, fields map[string]any, now func() time.Time) *chatbot.Sink {
	return chatbottest.Open(t, Spec, vendor.Open, fields, now)
}

func ev(t testing.TB, id string, ext ...string) event.Event {
	return chatbottest.Event(t, id, map[string]any{"id": id, "mobile": "13800000000", "url": "https://example.org/o/" + id}, ext...)
}

func failedOf(t *testing.T, err error) map[int]error { t.Helper(); return chatbottest.FailedOf(t, err) }

func TestSinkSuite(t *testing.T) {
	for _, mode := range []string{ModeWebhook, ModeApp} {
		t.Run(mode, func(t *testing.T) {
			f := newFake(t)
			f.limit = 1 << 30 // the suite tests delivery, not DingTalk's rate
			cfg, received := webhookFields(f, FieldText, "{{.ID}}"), f.uuidsPosted
			if mode == ModeApp {
				cfg, received = appFields(f, FieldText, "{{.ID}}"), f.texts
			}
			connectortest.RunSink(t, connectortest.Sink{
				Spec: Spec, Config: cfg, Received: received,
				SetFailing: func(failing bool) { f.Do(func() { f.failing = failing }) },
			})
		})
	}
}

// Every message type, chosen by config or by the event's extension, goes
// out in the shape DingTalk documents (the fake checks each).
func TestWebhookMessageTypes(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, webhookFields(f,
		FieldTitle, "Order {{.Subject}}", FieldText, "**{{.Data.id}}** shipped", FieldURL, "{{.Data.url}}",
		FieldPicURL, "https://example.org/p.png", FieldButtonTitle, "Track"), nil)
	evs := []event.Event{ev(t, "t1")}
	for _, typ := range []string{MsgMarkdown, MsgLink, MsgActionCard, MsgFeedCard} {
		evs = append(evs, ev(t, typ, MsgTypeExtension, typ))
	}
	require.NoError(t, sink.Put(t.Context(), discard, evs))
	got := f.Messages()
	require.Len(t, got, 5)
	assert.Equal(t, "text", got[0].MsgType)
	assert.Equal(t, map[string]any{"content": "**t1** shipped"}, got[0].Body)
	assert.Equal(t, map[string]any{"title": "Order order-markdown", "text": "**markdown** shipped"}, got[1].Body)
	assert.Equal(t, map[string]any{"title": "Order order-link", "text": "**link** shipped", "messageUrl": "https://example.org/o/link", "picUrl": "https://example.org/p.png"}, got[2].Body)
	assert.Equal(t, map[string]any{"title": "Order order-actionCard", "text": "**actionCard** shipped", "singleTitle": "Track", "singleURL": "https://example.org/o/actionCard"}, got[3].Body)
	assert.Equal(t, map[string]any{"links": []any{map[string]any{"title": "Order order-feedCard", "messageURL": "https://example.org/o/feedCard", "picURL": "https://example.org/p.png"}}}, got[4].Body)
	for i, m := range got {
		assert.Equal(t, evs[i].ID(), m.UUID, "msgUuid is the event id")
	}
}

// A content template gives the whole object: an actionCard with buttons.
func TestWebhookContentTemplate(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, webhookFields(f, FieldMsgType, MsgActionCard,
		FieldContent, `{"title": {{json .Subject}}, "text": "pick", "btnOrientation": "1", "btns": [{"title": "Yes", "actionURL": {{json .Data.url}}}, {"title": "No", "actionURL": "https://example.org/no"}]}`), nil)
	require.NoError(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "c1")}))
	got := f.Messages()
	require.Len(t, got, 1)
	assert.Equal(t, "order-c1", got[0].Body["title"])
	assert.Len(t, got[0].Body["btns"], 2)
}

// at: mobiles and user ids from templates, everyone from config; the text
// names each one, as DingTalk needs to highlight them.
func TestWebhookAt(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, webhookFields(f, FieldText, "Order {{.Data.id}} for @{{.Data.mobile}}",
		FieldAtMobiles, "{{.Data.mobile}}, 13900000000", FieldAtUserIDs, "manager01", FieldAtAll, true), nil)
	require.NoError(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "a1")}))
	got := f.Messages()
	require.Len(t, got, 1)
	assert.Equal(t, "Order a1 for @13800000000 @13900000000 @manager01", got[0].Body["content"])
	assert.Equal(t, map[string]any{"atMobiles": []any{"13800000000", "13900000000"}, "atUserIds": []any{"manager01"}, "isAtAll": true}, got[0].AtInfo)
}

// msgUuid is the event id: the same event sent twice (a retry after a
// lost answer) is posted once.
func TestWebhookIdempotent(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, webhookFields(f), nil)
	e := ev(t, "same-1")
	require.NoError(t, sink.Put(t.Context(), discard, []event.Event{e}))
	require.NoError(t, sink.Put(t.Context(), discard, []event.Event{e}))
	assert.Equal(t, []string{"same-1"}, f.uuidsPosted())
	assert.Equal(t, 2, f.Requests())
}

// A template that fails fails its event alone, for good.
func TestTemplateErrorFailsItsEventOnly(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, webhookFields(f, FieldText, "{{.Data.id}}: {{.Data.note}}"), nil)
	good := chatbottest.Event(t, "g1", map[string]any{"id": "g1", "note": "ok"})
	bad := chatbottest.Event(t, "b1", map[string]any{"id": "b1"})
	failed := failedOf(t, sink.Put(t.Context(), discard, []event.Event{good, bad, good}))
	require.Len(t, failed, 1)
	assert.Equal(t, bridge.Permanent, classOf(failed[1]))
	assert.Contains(t, failed[1].Error(), `map has no entry for key "note"`)
	assert.Equal(t, []string{"g1"}, f.uuidsPosted())
}

// The timestamp must be within an hour of DingTalk's clock; outside, and
// with a wrong secret, DingTalk answers 310000: the event is dead for good.
func TestSignatureWindow(t *testing.T) {
	f := newFake(t)
	for _, skew := range []time.Duration{59 * time.Minute, -59 * time.Minute} {
		sink := newSink(t, webhookFields(f), func() time.Time { return time.Now().Add(skew) })
		require.NoError(t, sink.Put(t.Context(), discard, []event.Event{ev(t, fmt.Sprint("skew", skew))}), "within the hour")
	}
	sink := newSink(t, webhookFields(f), func() time.Time { return time.Now().Add(-61 * time.Minute) })
	err := sink.Put(t.Context(), discard, []event.Event{ev(t, "late")})
	assert.Equal(t, bridge.Permanent, classOf(failedOf(t, err)[0]))
	assert.EqualError(t, failedOf(t, err)[0], "DingTalk answered errcode 310000: invalid timestamp")

	sink = newSink(t, webhookFields(f, FieldSecret, "SECwrong"), nil)
	err = sink.Put(t.Context(), discard, []event.Event{ev(t, "wrong")})
	assert.Contains(t, failedOf(t, err)[0].Error(), "310000: sign not match")
	assert.Len(t, f.Messages(), 2)
}

// A robot without signing sends the webhook as it is.
func TestWebhookUnsigned(t *testing.T) {
	f := newFake(t)
	f.secret = ""
	sink := newSink(t, webhookFields(f), nil)
	require.NoError(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "u1")}))
	assert.Equal(t, []string{"u1"}, f.uuidsPosted())
}

// Through the runtime: 130101 holds the event and the rest of its batch
// for the backoff (no attempt spent: maxAttempts 1 would dead-letter a
// retried one), then sends them in order.
func TestRuntimeBackoff(t *testing.T) {
	f := newFake(t)
	f.answers = []int{130101}
	env := connectortest.NewRuntime(t, Spec)
	dead := env.DeadLetters(t)
	env.Create(t, "dt", webhookFields(f, FieldText, "{{.ID}}", chatbot.FieldBackoff, "400ms", connectors.FieldAttempts, 1))
	start := time.Now()
	env.Publish(t, ev(t, "bo-1"), ev(t, "bo-2"))
	require.Eventually(t, func() bool { return len(f.uuidsPosted()) == 2 }, wait, tick, "both arrive after the backoff")
	assert.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond)
	assert.Equal(t, []string{"bo-1", "bo-2"}, f.uuidsPosted(), "in order")
	dead.None(t, 100*time.Millisecond)
	assert.Contains(t, env.Logs.String(), "send too fast")
}

// Through the runtime: permanent codes dead-letter the event at once with
// DingTalk's errmsg; no secret shows anywhere.
func TestRuntimePermanentCodes(t *testing.T) {
	f := newFake(t)
	f.keyword = "ALERT"
	env := connectortest.NewRuntime(t, Spec)
	dead := env.DeadLetters(t)
	env.Create(t, "dt", webhookFields(f, FieldText, "{{.ID}}"))
	env.Publish(t, ev(t, "kw-1"))
	e, reason := dead.Next(t)
	assert.Equal(t, "kw-1", e.ID())
	assert.Equal(t, "DingTalk answered errcode 310000: keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]", reason)
	assert.Equal(t, "1", fmt.Sprint(e.Extensions()[bridge.ExtDeliveryAttempts]), "a permanent code spends no retries")
	shown := env.Shown(t, "dt") + reason
	require.NoError(t, env.RT.Delete(t.Context(), "dt"))

	wrong := webhookFields(f, FieldText, "ALERT {{.ID}}")
	wrong[FieldWebhook] = f.Srv.URL + "/robot/send?access_token=not-the-robots-" + f.token[:4]
	env.Create(t, "dt2", wrong)
	env.Publish(t, ev(t, "tok-1"))
	e, reason = dead.Next(t)
	assert.Equal(t, "tok-1", e.ID())
	assert.Equal(t, "DingTalk answered errcode 300005: token is not exist", reason)
	shown += env.Shown(t, "dt2") + reason
	connectortest.NoSecret(t, shown, f.token, f.secret, "not-the-robots-"+f.token[:4])
	assert.Contains(t, shown, connectors.Mask)
	assert.Empty(t, f.Messages())
}

// Through the runtime: a webhook that cannot be reached holds the events
// (maxAttempts 1 would dead-letter a retried one); they go once it is
// back. The error shows neither the token nor the URL.
func TestRuntimeUnreachableHeld(t *testing.T) {
	f := newFake(t)
	addr := chatbottest.ClosedAddr(t)
	fields := webhookFields(f, connectors.FieldAttempts, 1)
	fields[FieldWebhook] = "http://" + addr + "/robot/send?access_token=" + f.token
	env := connectortest.NewRuntime(t, Spec)
	dead := env.DeadLetters(t)
	env.Create(t, "dt", fields)
	env.Publish(t, ev(t, "held-1"))
	require.Eventually(t, func() bool { return strings.Contains(env.Logs.String(), "holding events") }, wait, tick)
	dead.None(t, 300*time.Millisecond)
	shown := env.Shown(t, "dt")
	assert.Contains(t, shown, "connection refused")
	connectortest.NoSecret(t, shown, f.token, f.secret, addr+"/robot")

	f.ServeAt(t, addr)
	require.Eventually(t, func() bool { return len(f.uuidsPosted()) == 1 }, wait, tick, "the held event goes once the webhook is back")
}

// A redirect is not followed and its Location (which may carry the
// token) shows nowhere.
func TestRedirectRefused(t *testing.T) {
	f := newFake(t)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, f.Srv.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	fields := webhookFields(f)
	fields[FieldWebhook] = redirect.URL + "/robot/send?access_token=" + f.token
	sink := newSink(t, fields, nil)
	err := sink.Put(t.Context(), discard, []event.Event{ev(t, "r1")})
	assert.Equal(t, bridge.Permanent, classOf(failedOf(t, err)[0]))
	assert.Contains(t, err.Error(), "307")
	connectortest.NoSecret(t, err.Error(), f.token, f.secret)
	assert.Empty(t, f.Messages())
}

// A batch above the robot's rate waits instead of failing: DingTalk (the
// fake, at 3 a second, and a lock for an hour on the first excess) never
// answers 130101, and every message arrives.
func TestLimiterBatchWaits(t *testing.T) {
	f := newFake(t)
	f.limit, f.window, f.lockFor = 3, time.Second, time.Hour
	sink := newSink(t, webhookFields(f, chatbot.FieldRateLimits, "3/1s", chatbot.FieldRateWait, "10s"), nil)
	evs := make([]event.Event, 7)
	for i := range evs {
		evs[i] = ev(t, fmt.Sprint("lim-", i))
	}
	start := time.Now()
	require.NoError(t, sink.Put(t.Context(), discard, evs))
	assert.GreaterOrEqual(t, time.Since(start), 2*time.Second, "7 messages at 3 a second span two windows")
	assert.Len(t, f.uuidsPosted(), 7)

	// Through the runtime, with rate.wait 0: the batch is held, not failed,
	// between windows.
	f2 := newFake(t)
	f2.limit, f2.window, f2.lockFor = 3, time.Second, time.Hour
	env := connectortest.NewRuntime(t, Spec)
	dead := env.DeadLetters(t)
	env.Create(t, "dt", webhookFields(f2, chatbot.FieldRateLimits, "3/1s", chatbot.FieldRateWait, "0s", connectors.FieldAttempts, 1))
	env.Publish(t, evs...)
	require.Eventually(t, func() bool { return len(f2.uuidsPosted()) == 7 }, wait, tick)
	dead.None(t, 100*time.Millisecond)
}

// The app's access token is fetched once, reused, refreshed before it
// expires, and fetched again when DingTalk refuses it; it shows nowhere.
func TestAppTokenRefresh(t *testing.T) {
	f := newFake(t)
	c := chatbottest.NewClock()
	f.Now = c.Now
	f.expireIn = 3600
	sink := newSink(t, appFields(f, FieldText, "{{.ID}}"), c.Now)
	fetches := f.Fetches
	put := func(id string) error { return sink.Put(t.Context(), discard, []event.Event{ev(t, id)}) }

	require.NoError(t, put("k1"))
	require.NoError(t, put("k2"))
	assert.Equal(t, 1, fetches(), "the token is cached")

	c.Add(55*time.Minute + time.Second) // five minutes before it expires
	require.NoError(t, put("k3"))
	assert.Equal(t, 2, fetches(), "refreshed before expireIn")

	f.DropTokens() // DingTalk no longer takes it
	require.NoError(t, put("k4"))
	assert.Equal(t, 3, fetches(), "refreshed on InvalidAuthentication, and the message sent")
	assert.Equal(t, []string{"k1", "k2", "k3", "k4"}, f.texts())

	f.RevokeTokens() // DingTalk refuses every token
	before := fetches()
	err := put("k5")
	assert.Equal(t, bridge.Unavailable, classOf(err), "a new token refused too: held, not dead")
	assert.Contains(t, err.Error(), "InvalidAuthentication")
	assert.Equal(t, before+1, fetches(), "one new token, not a loop")
	all := f.Tokens()
	require.NotEmpty(t, all)
	connectortest.NoSecret(t, err.Error(), append(all, f.appSecret)...)
	assert.Equal(t, "x ********", sink.Redact("x "+all[0]), "the robot masks the tokens it fetched")
}

// Refused app credentials hold the events (until the config is fixed);
// the secret shows nowhere.
func TestAppWrongCredentials(t *testing.T) {
	f := newFake(t)
	env := connectortest.NewRuntime(t, Spec)
	dead := env.DeadLetters(t)
	// maxAttempts stays at its default: a held event handed back when the
	// instance is reconfigured comes back as a new delivery, which counts.
	env.Create(t, "dt", appFields(f, FieldAppSecret, "wrong-app-secret-value"))
	env.Publish(t, ev(t, "cred-1"))
	require.Eventually(t, func() bool {
		return strings.Count(env.Logs.String(), "invalidClientIdOrSecret") >= 1 && f.Requests() >= 3
	}, wait, tick,
		"the token is asked for again and again while the events are held")
	dead.None(t, 200*time.Millisecond)
	connectortest.NoSecret(t, env.Shown(t, "dt"), "wrong-app-secret-value", f.appSecret)

	info, err := env.RT.Get("dt")
	require.NoError(t, err)
	cfg := info.Config // masked: the put-back keeps nothing but the new secret
	cfg[FieldAppSecret] = f.appSecret
	_, _, err = env.RT.Put(t.Context(), "dt", cfg)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(f.Messages()) == 1 }, wait, tick, "the held event goes with the fixed secret")
	dead.None(t, 100*time.Millisecond)
	connectortest.NoSecret(t, env.Shown(t, "dt"), f.appSecret)
}

// App robots: text, markdown, link and actionCard as msgKey and msgParam.
func TestAppMessageTypes(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, appFields(f, FieldTitle, "T {{.Subject}}", FieldText, "x {{.Data.id}}", FieldURL, "{{.Data.url}}", FieldCoolAppCode, "COOLAPP-1"), nil)
	evs := []event.Event{ev(t, "p1")}
	for _, typ := range []string{MsgMarkdown, MsgLink, MsgActionCard, MsgFeedCard} {
		evs = append(evs, ev(t, typ, MsgTypeExtension, typ))
	}
	failed := failedOf(t, sink.Put(t.Context(), discard, evs))
	require.Len(t, failed, 1)
	assert.Contains(t, failed[4].Error(), `"feedCard" is not one of text, markdown, link, actionCard`)
	got := f.Messages()
	require.Len(t, got, 4)
	assert.Equal(t, []string{"sampleText", "sampleMarkdown", "sampleLink", "sampleActionCard"}, []string{got[0].MsgType, got[1].MsgType, got[2].MsgType, got[3].MsgType})
	assert.Equal(t, map[string]any{"content": "x p1"}, got[0].Body)
	assert.Equal(t, map[string]any{"title": "T order-actionCard", "text": "x actionCard", "singleTitle": "View", "singleURL": "https://example.org/o/actionCard"}, got[3].Body)
}

// A msgParam above DingTalk's 15000 bytes fails for good before it is
// sent.
func TestAppMessageTooLarge(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, appFields(f), nil)
	big := chatbottest.Event(t, "big", strings.Repeat("x", 16000))
	err := sink.Put(t.Context(), discard, []event.Event{big})
	assert.Equal(t, bridge.Permanent, classOf(failedOf(t, err)[0]))
	assert.Contains(t, err.Error(), "above the vendor's limit of 15000")
	assert.Zero(t, f.Requests())
}

func TestConfigCheck(t *testing.T) {
	with := func(kv ...any) map[string]any { return chatbottest.Raw(Spec, kv...) }
	const hook = "https://oapi.dingtalk.com/robot/send?access_token=tok-value-123"
	for _, c := range []struct {
		raw   map[string]any
		field string
	}{
		{with(), FieldWebhook},
		{with(FieldWebhook, "https://oapi.dingtalk.com/robot/send"), FieldWebhook},
		{with(FieldWebhook, "ftp://x/robot?access_token=tok-value-123"), FieldWebhook},
		{with(FieldWebhook, hook, FieldAppKey, "k"), FieldAppKey},
		{with(FieldWebhook, hook, FieldMsgType, MsgLink), FieldURL},
		{with(FieldWebhook, hook, FieldText, "{{.Nope"), FieldText},
		{with(FieldWebhook, hook, chatbot.FieldRateLimits, "20 per minute"), chatbot.FieldRateLimits},
		{with(FieldWebhook, hook, chatbot.FieldBackoff, "0s"), chatbot.FieldBackoff},
		{with(FieldMode, ModeApp), FieldAppKey},
		{with(FieldMode, ModeApp, FieldAppKey, "k", FieldAppSecret, "s", FieldRobotCode, "r", FieldConversationID, "c", FieldMsgType, MsgFeedCard), FieldMsgType},
		{with(FieldMode, ModeApp, FieldAppKey, "k", FieldAppSecret, "s", FieldRobotCode, "r", FieldConversationID, "c", FieldAtAll, true), FieldAtAll},
		{with(FieldMode, ModeApp, FieldAppKey, "k", FieldAppSecret, "s", FieldRobotCode, "r", FieldConversationID, "c", FieldWebhook, hook), FieldWebhook},
	} {
		chatbottest.Refused(t, Spec, c.raw, c.field, "tok-value-123")
	}
	_, err := Spec.Validate(with(FieldWebhook, hook))
	assert.NoError(t, err)
	masked := Spec.Masked(with(FieldWebhook, hook, FieldSecret, "SECx", FieldAppSecret, "as"))
	for _, f := range []string{FieldWebhook, FieldSecret, FieldAppSecret} {
		assert.Equal(t, connectors.Mask, masked[f])
	}
}

// Check that the fake enforces the documented shapes: a message that
// deviates is caught (the fake cannot agree with a wrong client).
func TestFakeRefusesDeviations(t *testing.T) {
	f := newFake(t)
	post := func(rawQuery string, body any) map[string]any {
		b, _ := json.Marshal(body)
		resp, err := http.Post(f.Srv.URL+"/robot/send?"+rawQuery, "application/json", strings.NewReader(string(b)))
		require.NoError(t, err)
		defer resp.Body.Close()
		var a map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
		return a
	}
	ts := fmt.Sprint(time.Now().UnixMilli())
	good := "access_token=" + f.token + "&timestamp=" + ts + "&sign=" + strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(Sign(f.secret, ts))
	twice := "access_token=" + f.token + "&timestamp=" + ts + "&sign=" + strings.NewReplacer("+", "%252B", "/", "%252F", "=", "%253D").Replace(Sign(f.secret, ts))
	msg := map[string]any{"msgtype": "text", "text": map[string]any{"content": "hi"}, "msgUuid": "x1"}
	assert.EqualValues(t, 0, post(good, msg)["errcode"])
	assert.EqualValues(t, 310000, post(twice, msg)["errcode"], "a signature encoded twice does not match")
	assert.EqualValues(t, 40035, post(good, map[string]any{"msgtype": "link", "link": map[string]any{"title": "t", "text": "x"}, "msgUuid": "x2"})["errcode"])
	assert.NotEmpty(t, f.Take(), "the link without messageUrl is a violation") // expected here
}

// Over HTTPS, with the vendor's CA from tls.ca.file; without it the
// certificate is refused (and the event retried, not dead).
func TestTLS(t *testing.T) {
	f := newFake(t)
	srv := httptest.NewUnstartedServer(f.Srv.Config.Handler)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	fields := webhookFields(f, chatbot.FieldTLSCAFile, ca)
	fields[FieldWebhook] = srv.URL + "/robot/send?access_token=" + f.token
	sink := newSink(t, fields, nil)
	require.NoError(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "tls-1")}))

	delete(fields, chatbot.FieldTLSCAFile)
	sink = newSink(t, fields, nil)
	failed := failedOf(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "tls-2")}))
	assert.Equal(t, bridge.Retry, classOf(failed[0]))
	assert.Contains(t, failed[0].Error(), "certificate")
	connectortest.NoSecret(t, failed[0].Error(), f.token)
	assert.Equal(t, []string{"tls-1"}, f.uuidsPosted())
}

// A server that goes away in the middle of a request: the event is
// retried (msgUuid keeps a second post from showing twice), not dead, and
// the error shows no token.
func TestServerGoneMidRequest(t *testing.T) {
	f := newFake(t)
	hangup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(hangup.Close)
	fields := webhookFields(f)
	fields[FieldWebhook] = hangup.URL + "/robot/send?access_token=" + f.token
	sink := newSink(t, fields, nil)
	failed := failedOf(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "gone-1"), ev(t, "gone-2")}))
	require.Len(t, failed, 2, "each event is tried and fails on its own")
	for _, err := range failed {
		assert.Equal(t, bridge.Retry, classOf(err))
		connectortest.NoSecret(t, err.Error(), f.token, f.secret)
	}
}

// An answer that echoes the webhook's token shows it nowhere.
func TestEchoedTokenMasked(t *testing.T) {
	f := newFake(t)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 300001, "errmsg": "token " + r.URL.Query().Get("access_token") + " is not exist"})
	}))
	t.Cleanup(echo.Close)
	fields := webhookFields(f)
	fields[FieldWebhook] = echo.URL + "/robot/send?access_token=" + f.token
	sink := newSink(t, fields, nil)
	failed := failedOf(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "e1")}))
	assert.Equal(t, "DingTalk answered errcode 300001: token ******** is not exist", failed[0].Error())
	assert.Equal(t, bridge.Permanent, classOf(failed[0]))
}
