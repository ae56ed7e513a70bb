package feishu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
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

// FeiShu's documented signing (the key is timestamp+"\n"+secret, the
// message empty), pinned to the vector of issue 14.
func TestSignVector(t *testing.T) {
	assert.Equal(t, "e3MJ8Q5llVxGJ8pVkGPBhexDAgjvYqpjPP1GkY9XceI=", Sign("feishu-test-secret", "1700000000"))
}

func ans(code int, msg string) answer { return answer{Code: &code, Msg: msg} }

func webhookFields(f *fakeFeiShu, kv ...any) map[string]any {
	return connectortest.With(map[string]any{FieldWebhook: f.webhook(), FieldSecret: f.secret, chatbot.FieldRateLimits: "1000/1s"}, kv...)
}

func appFields(f *fakeFeiShu, kv ...any) map[string]any {
	return connectortest.With(map[string]any{
		FieldMode: ModeApp, FieldAppID: f.appID, FieldAppSecret: f.appSecret, FieldReceiveID: f.chatID,
		FieldAPIURL: f.Srv.URL, chatbot.FieldRateLimits: "1000/1s",
	}, kv...)
}

func newSink(t testing.TB, fields map[string]any, now func() time.Time) *chatbot.Sink {
	return chatbottest.Open(t, Spec, vendor.Open, fields, now)
}

func ev(t testing.TB, id string, ext ...string) event.Event {
	return chatbottest.Event(t, id, map[string]any{"id": id, "user": "ou_7d8a6e6df7621556ce0d21922b676706ccs"}, ext...)
}

func failedOf(t *testing.T, err error) map[int]error { t.Helper(); return chatbottest.FailedOf(t, err) }

func TestSinkSuite(t *testing.T) {
	for _, mode := range []string{ModeWebhook, ModeApp} {
		t.Run(mode, func(t *testing.T) {
			f := newFake(t)
			f.perSec, f.perMin = 1<<30, 1<<30 // the suite tests delivery, not FeiShu's rate
			cfg := webhookFields(f, FieldText, "{{.ID}}")
			if mode == ModeApp {
				cfg = appFields(f, FieldText, "{{.ID}}")
			}
			connectortest.RunSink(t, connectortest.Sink{
				Spec: Spec, Config: cfg, Received: f.texts,
				SetFailing: func(failing bool) { f.Do(func() { f.failing = failing }) },
			})
		})
	}
}

// Every message type, for both modes, in the shape FeiShu documents (the
// fake checks each); @ in text, post and card.
func TestMessageTypes(t *testing.T) {
	for _, mode := range []string{ModeWebhook, ModeApp} {
		t.Run(mode, func(t *testing.T) {
			f := newFake(t)
			fields := webhookFields
			if mode == ModeApp {
				fields = appFields
			}
			sink := newSink(t, fields(f, FieldTitle, "Order {{.Subject}}", FieldText, "**{{.Data.id}}** shipped",
				FieldAtUserIDs, "{{.Data.user}}", FieldAtAll, true, FieldChatID, "oc_shared", FieldImageKey, "img_v2_041b"), nil)
			evs := []event.Event{ev(t, "t1")}
			for _, typ := range []string{MsgPost, MsgInteractive, MsgShareChat, MsgImage} {
				evs = append(evs, ev(t, typ, MsgTypeExtension, typ))
			}
			require.NoError(t, sink.Put(t.Context(), discard, evs))
			got := f.Messages()
			require.Len(t, got, 5)
			const user = "ou_7d8a6e6df7621556ce0d21922b676706ccs"
			assert.Equal(t, map[string]any{"text": `<at user_id="` + user + `"></at> <at user_id="all"></at> **t1** shipped`}, got[0].Content)
			post := map[string]any{"zh_cn": map[string]any{"title": "Order order-post", "content": []any{[]any{
				map[string]any{"tag": "text", "text": "**post** shipped"},
				map[string]any{"tag": "at", "user_id": user},
				map[string]any{"tag": "at", "user_id": "all"},
			}}}}
			if mode == ModeWebhook {
				post = map[string]any{"post": post}
			}
			assert.Equal(t, post, got[1].Content)
			assert.Equal(t, map[string]any{
				"header":   map[string]any{"title": map[string]any{"tag": "plain_text", "content": "Order order-interactive"}},
				"elements": []any{map[string]any{"tag": "markdown", "content": "<at id=" + user + "></at> <at id=all></at> **interactive** shipped"}},
			}, got[2].Content)
			share := map[string]any{"chat_id": "oc_shared"}
			if mode == ModeWebhook {
				share = map[string]any{"share_chat_id": "oc_shared"}
			}
			assert.Equal(t, share, got[3].Content)
			assert.Equal(t, map[string]any{"image_key": "img_v2_041b"}, got[4].Content)
			if mode == ModeApp {
				for i, m := range got {
					assert.Equal(t, evs[i].ID(), m.UUID, "uuid is the event id")
				}
			}
		})
	}
}

// A content template is used as it is.
func TestContentTemplate(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, webhookFields(f, FieldMsgType, MsgInteractive,
		FieldContent, `{"schema": "2.0", "body": {"elements": [{"tag": "markdown", "content": {{json .Subject}}}]}}`), nil)
	require.NoError(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "c1")}))
	got := f.Messages()
	require.Len(t, got, 1)
	assert.Equal(t, "2.0", got[0].Content["schema"])
}

// uuid is the event id: the same event sent twice is posted once; an id
// longer than FeiShu's 50 characters gets a name-based UUID of it.
func TestAppIdempotent(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, appFields(f), nil)
	long := strings.Repeat("x", 80)
	for range 2 {
		require.NoError(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "same-1"), ev(t, long)}))
	}
	got := f.Messages()
	require.Len(t, got, 2)
	assert.Equal(t, "same-1", got[0].UUID)
	assert.Len(t, got[1].UUID, 36)
	assert.Equal(t, messageUUID(long), got[1].UUID, "stable across retries")
	assert.NotEqual(t, messageUUID(long), messageUUID(long+"y"))
}

// A webhook body above 20 KB, and an app content above its limit, fail
// for good before they are sent.
func TestTooLarge(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, webhookFields(f), nil)
	big := chatbottest.Event(t, "big", strings.Repeat("x", 20*1024))
	err := sink.Put(t.Context(), discard, []event.Event{big, ev(t, "small")})
	failed := failedOf(t, err)
	require.Len(t, failed, 1)
	assert.Equal(t, bridge.Permanent, classOf(failed[0]))
	assert.Contains(t, failed[0].Error(), "above the vendor's limit of 20480")
	assert.Len(t, f.Messages(), 1)

	app := newSink(t, appFields(f, FieldMsgType, MsgPost), nil)
	big = chatbottest.Event(t, "big2", strings.Repeat("x", 31*1024))
	err = app.Put(t.Context(), discard, []event.Event{big})
	assert.Contains(t, failedOf(t, err)[0].Error(), "above the vendor's limit of 30720")
	assert.Equal(t, 1, f.Requests(), "nothing was sent for the large ones")
}

// A template that fails fails its event alone, for good.
func TestTemplateErrorFailsItsEventOnly(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, webhookFields(f, FieldText, "{{.Data.id}} {{.Data.note}}"), nil)
	good := chatbottest.Event(t, "g1", map[string]any{"id": "g1", "note": "ok"})
	bad := chatbottest.Event(t, "b1", map[string]any{"id": "b1"})
	failed := failedOf(t, sink.Put(t.Context(), discard, []event.Event{bad, good}))
	require.Len(t, failed, 1)
	assert.Equal(t, bridge.Permanent, classOf(failed[0]))
	assert.Equal(t, []string{"g1 ok"}, f.texts())
}

// The timestamp (seconds) must be within an hour; outside, and with a
// wrong secret, FeiShu answers 19021: dead for good.
func TestSignatureWindow(t *testing.T) {
	f := newFake(t)
	for _, skew := range []time.Duration{59 * time.Minute, -59 * time.Minute} {
		sink := newSink(t, webhookFields(f), func() time.Time { return time.Now().Add(skew) })
		require.NoError(t, sink.Put(t.Context(), discard, []event.Event{ev(t, fmt.Sprint(skew))}))
	}
	sink := newSink(t, webhookFields(f), func() time.Time { return time.Now().Add(61 * time.Minute) })
	failed := failedOf(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "late")}))
	assert.Equal(t, bridge.Permanent, classOf(failed[0]))
	assert.EqualError(t, failed[0], "FeiShu answered code 19021: sign match fail or timestamp is not within one hour from current time")
	sink = newSink(t, webhookFields(f, FieldSecret, "wrong"), nil)
	failed = failedOf(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "wrong")}))
	assert.Contains(t, failed[0].Error(), "19021")

	f.Do(func() { f.secret = "" })
	sink = newSink(t, webhookFields(f), nil)
	require.NoError(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "unsigned")}), "a bot without verification gets no timestamp or sign")
	assert.Len(t, f.Messages(), 3)
}

// Through the runtime: 11232, and 9499 "too many request", hold the event
// and the rest of its batch for the backoff (no attempt spent), then send
// them in order.
func TestRuntimeBackoff(t *testing.T) {
	f := newFake(t)
	f.answers = []answer{ans(11232, "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]"), ans(9499, "too many request")}
	env := connectortest.NewRuntime(t, Spec)
	dead := env.DeadLetters(t)
	env.Create(t, "fs", webhookFields(f, FieldText, "{{.ID}}", chatbot.FieldBackoff, "300ms", connectors.FieldAttempts, 1))
	start := time.Now()
	env.Publish(t, ev(t, "bo-1"), ev(t, "bo-2"))
	require.Eventually(t, func() bool { return len(f.Messages()) == 2 }, wait, tick)
	assert.GreaterOrEqual(t, time.Since(start), 600*time.Millisecond, "two backoffs")
	assert.Equal(t, []string{"bo-1", "bo-2"}, f.texts())
	dead.None(t, 100*time.Millisecond)
}

// Through the runtime: 19024, 19001 and 9499 dead-letter the event at once
// with FeiShu's msg; no secret shows anywhere.
func TestRuntimePermanentCodes(t *testing.T) {
	f := newFake(t)
	f.keyword = "ALERT"
	f.answers = []answer{ans(9499, "Bad Request")}
	env := connectortest.NewRuntime(t, Spec)
	dead := env.DeadLetters(t)
	env.Create(t, "fs", webhookFields(f, FieldText, "{{.ID}}"))
	env.Publish(t, ev(t, "bad-1"), ev(t, "kw-1"))
	e, reason := dead.Next(t)
	assert.Equal(t, "bad-1", e.ID())
	assert.Equal(t, "FeiShu answered code 9499: Bad Request", reason)
	e, reason = dead.Next(t)
	assert.Equal(t, "kw-1", e.ID())
	assert.Equal(t, "FeiShu answered code 19024: Key Words Not Found", reason)
	assert.Equal(t, "1", fmt.Sprint(e.Extensions()[bridge.ExtDeliveryAttempts]))
	shown := env.Shown(t, "fs")
	require.NoError(t, env.RT.Delete(t.Context(), "fs"))

	wrong := webhookFields(f, FieldText, "ALERT {{.ID}}")
	wrong[FieldWebhook] = f.Srv.URL + "/open-apis/bot/v2/hook/not-the-bots-" + f.hook[:6]
	env.Create(t, "fs2", wrong)
	env.Publish(t, ev(t, "hook-1"))
	_, reason = dead.Next(t)
	assert.Equal(t, "FeiShu answered code 19001: param invalid: incoming webhook access token invalid", reason)
	shown += env.Shown(t, "fs2")
	connectortest.NoSecret(t, shown, f.hook, f.secret, "not-the-bots-"+f.hook[:6])
	assert.Contains(t, shown, connectors.Mask)
	assert.Empty(t, f.Messages())
}

// Through the runtime: a webhook that cannot be reached holds the events
// (maxAttempts 1 would dead-letter a retried one); they go once it is
// back.
func TestRuntimeUnreachableHeld(t *testing.T) {
	f := newFake(t)
	addr := chatbottest.ClosedAddr(t)
	fields := webhookFields(f, FieldText, "{{.ID}}", connectors.FieldAttempts, 1)
	fields[FieldWebhook] = "http://" + addr + "/open-apis/bot/v2/hook/" + f.hook
	env := connectortest.NewRuntime(t, Spec)
	dead := env.DeadLetters(t)
	env.Create(t, "fs", fields)
	env.Publish(t, ev(t, "held-1"))
	require.Eventually(t, func() bool { return strings.Contains(env.Logs.String(), "holding events") }, wait, tick)
	dead.None(t, 300*time.Millisecond)
	connectortest.NoSecret(t, env.Shown(t, "fs"), f.hook, f.secret)

	f.ServeAt(t, addr)
	require.Eventually(t, func() bool { return len(f.Messages()) == 1 }, wait, tick)
}

// A batch above 5 a second waits instead of failing: FeiShu (the fake,
// at its documented 5/s and 100/min) never answers 11232.
func TestLimiterBatchWaits(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, webhookFields(f, FieldText, "{{.ID}}", chatbot.FieldRateLimits, "5/1s,100/1m"), nil)
	evs := make([]event.Event, 12)
	for i := range evs {
		evs[i] = ev(t, fmt.Sprint("lim-", i))
	}
	start := time.Now()
	require.NoError(t, sink.Put(t.Context(), discard, evs), "no 11232")
	assert.GreaterOrEqual(t, time.Since(start), 2*time.Second, "12 messages at 5 a second span three windows")
	assert.Len(t, f.Messages(), 12)
}

// The tenant access token is fetched once, reused, refreshed before it
// expires and when FeiShu refuses it (99991663); it shows nowhere.
func TestAppTokenRefresh(t *testing.T) {
	f := newFake(t)
	c := chatbottest.NewClock()
	f.Now = c.Now
	sink := newSink(t, appFields(f, FieldText, "{{.ID}}"), c.Now)
	fetches := f.Fetches
	put := func(id string) error { return sink.Put(t.Context(), discard, []event.Event{ev(t, id)}) }

	require.NoError(t, put("k1"))
	require.NoError(t, put("k2"))
	assert.Equal(t, 1, fetches())
	c.Add(2*time.Hour - 5*time.Minute)
	require.NoError(t, put("k3"))
	assert.Equal(t, 2, fetches(), "refreshed five minutes before expire")
	f.DropTokens()
	require.NoError(t, put("k4"))
	assert.Equal(t, 3, fetches(), "refreshed on 99991663, and the message sent")
	assert.Equal(t, []string{"k1", "k2", "k3", "k4"}, f.texts())

	f.RevokeTokens()
	err := put("k5")
	assert.Equal(t, bridge.Unavailable, classOf(err), "a new token refused too: held")
	assert.Contains(t, err.Error(), "99991663")
	assert.Equal(t, 4, fetches(), "one new token, not a loop")
	all := f.Tokens()
	connectortest.NoSecret(t, err.Error(), append(all, f.appSecret)...)
	assert.Equal(t, "x ********", sink.Redact("x "+all[0]))
}

// Refused app credentials (code 10014 in a 200, 10003 in a 400) hold the
// events; the secret shows nowhere; the fixed config sends them.
func TestAppWrongCredentials(t *testing.T) {
	f := newFake(t)
	for _, fields := range []map[string]any{appFields(f, FieldAppSecret, "wrong-app-secret-value"), appFields(f, FieldAppID, "cli_wrong")} {
		sink := newSink(t, fields, nil)
		err := sink.Put(t.Context(), discard, []event.Event{ev(t, "cred")})
		assert.Equal(t, bridge.Unavailable, classOf(err))
		assert.Contains(t, err.Error(), "FeiShu refused the app's credentials")
		connectortest.NoSecret(t, err.Error(), "wrong-app-secret-value", f.appSecret)
	}

	env := connectortest.NewRuntime(t, Spec)
	env.Create(t, "fs", appFields(f, FieldAppSecret, "wrong-app-secret-value"))
	env.Publish(t, ev(t, "cred-1"))
	require.Eventually(t, func() bool { return strings.Contains(env.Logs.String(), "app secret invalid") }, wait, tick)
	connectortest.NoSecret(t, env.Shown(t, "fs"), "wrong-app-secret-value", f.appSecret)
	info, err := env.RT.Get("fs")
	require.NoError(t, err)
	cfg := info.Config
	cfg[FieldAppSecret] = f.appSecret
	_, _, err = env.RT.Put(t.Context(), "fs", cfg)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(f.Messages()) == 1 }, wait, tick)
	connectortest.NoSecret(t, env.Shown(t, "fs"), f.appSecret)
}

// A 5xx is retried; a 4xx code other than the token's is permanent.
func TestAppAnswers(t *testing.T) {
	f := newFake(t)
	sink := newSink(t, appFields(f, FieldReceiveID, "oc_elsewhere"), nil)
	failed := failedOf(t, sink.Put(t.Context(), discard, []event.Event{ev(t, "a1")}))
	assert.Equal(t, bridge.Permanent, classOf(failed[0]))
	assert.Equal(t, "FeiShu answered code 230001: Your request contains an invalid request parameter. ext=invalid receive_id", failed[0].Error())

	ok := newSink(t, appFields(f), nil)
	require.NoError(t, ok.Put(t.Context(), discard, []event.Event{ev(t, "warm")}), "a token first")
	f.Do(func() { f.failing = true })
	failed = failedOf(t, ok.Put(t.Context(), discard, []event.Event{ev(t, "a2")}))
	assert.Equal(t, bridge.Retry, classOf(failed[0]))
}

func TestConfigCheck(t *testing.T) {
	with := func(kv ...any) map[string]any { return chatbottest.Raw(Spec, kv...) }
	const hook = "https://open.feishu.cn/open-apis/bot/v2/hook/hook-token-value"
	app := []any{FieldMode, ModeApp, FieldAppID, "cli_x", FieldAppSecret, "s", FieldReceiveID, "oc_x"}
	for _, c := range []struct {
		raw   map[string]any
		field string
	}{
		{with(), FieldWebhook},
		{with(FieldWebhook, "open.feishu.cn/hook-token-value"), FieldWebhook},
		{with(FieldWebhook, hook, FieldAppID, "cli_x"), FieldAppID},
		{with(FieldWebhook, hook, FieldMsgType, MsgShareChat), FieldChatID},
		{with(FieldWebhook, hook, FieldMsgType, MsgImage), FieldImageKey},
		{with(FieldWebhook, hook, FieldTitle, "{{"), FieldTitle},
		{with(FieldWebhook, hook, chatbot.FieldRateLimits, "5/s"), chatbot.FieldRateLimits},
		{with(FieldMode, ModeApp), FieldReceiveID},
		{with(append(app, FieldSecret, "x")...), FieldSecret},
		{with(append(app, FieldAPIURL, "nope")...), FieldAPIURL},
		{with(append(app, FieldReceiveIDType, "phone")...), FieldReceiveIDType},
	} {
		chatbottest.Refused(t, Spec, c.raw, c.field, "hook-token-value")
	}
	_, err := Spec.Validate(with(FieldWebhook, hook))
	assert.NoError(t, err)
	_, err = Spec.Validate(with(app...))
	assert.NoError(t, err)
}

// The fake cannot agree with a wrong client: the signature computed the
// way FeiShu's prose reads (the secret as key, the string as message) is
// refused, and so is content as a JSON string in a webhook message.
func TestFakeRefusesDeviations(t *testing.T) {
	f := newFake(t)
	post := func(body map[string]any) map[string]any {
		b, _ := json.Marshal(body)
		resp, err := http.Post(f.webhook(), "application/json", bytes.NewReader(b))
		require.NoError(t, err)
		defer resp.Body.Close()
		var a map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
		return a
	}
	ts := fmt.Sprint(time.Now().Unix())
	msg := func(sign string, content any) map[string]any {
		return map[string]any{"timestamp": ts, "sign": sign, "msg_type": "text", "content": content}
	}
	assert.EqualValues(t, 0, post(msg(Sign(f.secret, ts), map[string]any{"text": "hi"}))["code"])
	assert.EqualValues(t, 19021, post(msg(chatbot.HMACBase64(f.secret, ts+"\n"+f.secret), map[string]any{"text": "hi"}))["code"])
	assert.EqualValues(t, 9499, post(msg(Sign(f.secret, ts), `{"text":"hi"}`))["code"])
	assert.NotEmpty(t, f.Take(), "content as a string is a violation in a webhook message") // expected here
}
