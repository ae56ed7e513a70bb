package chatbot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/internal/eventtmpl"
)

// clock is a fake clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1700000000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestParseRates(t *testing.T) {
	r, err := ParseRates([]string{"20/1m", " 5 / 1s "})
	require.NoError(t, err)
	assert.Equal(t, []Rate{{20, time.Minute}, {5, time.Second}}, r)
	for _, bad := range [][]string{nil, {"20"}, {"0/1m"}, {"x/1m"}, {"5/0s"}, {"5/-1s"}, {"5/soon"}} {
		_, err := ParseRates(bad)
		assert.Error(t, err, "%q", bad)
	}
}

// The limiter keeps every window of Per (widened by its margin, here 2s)
// to N messages, booking slots in order, and reports a slot beyond maxWait
// without booking it.
func TestLimiterSlidingWindow(t *testing.T) {
	c := newClock()
	l := NewLimiter([]Rate{{3, time.Minute}}, c.Now)
	for range 3 {
		w, ok := l.Reserve(0)
		require.True(t, ok)
		assert.Zero(t, w)
	}
	w, ok := l.Reserve(time.Second)
	assert.False(t, ok, "the fourth message of the minute is a minute away")
	assert.Equal(t, 62*time.Second, w)
	c.Add(20 * time.Second)
	w, ok = l.Reserve(time.Minute)
	require.True(t, ok)
	assert.Equal(t, 42*time.Second, w, "the slot opens a minute (and the margin) after the first message")
	w, ok = l.Reserve(time.Minute)
	require.True(t, ok)
	assert.Equal(t, 42*time.Second, w, "so does the next: the first three went at the same time")
	w, _ = l.Reserve(0)
	assert.Equal(t, 42*time.Second, w)
	c.Add(42 * time.Second)
	w, ok = l.Reserve(time.Minute)
	require.True(t, ok)
	assert.Equal(t, 0*time.Second, w)
	w, ok = l.Reserve(2 * time.Minute)
	require.True(t, ok)
	assert.Equal(t, 62*time.Second, w, "three went at +62s: the next goes at +124s")
}

// Two rates hold together (FeiShu: 5/s and 100/min).
func TestLimiterTwoRates(t *testing.T) {
	c := newClock()
	l := NewLimiter([]Rate{{5, time.Second}, {100, time.Minute}}, c.Now)
	var at []time.Duration // send times from the start
	var elapsed time.Duration
	for range 105 {
		w, ok := l.Reserve(time.Hour)
		require.True(t, ok)
		c.Add(w)
		elapsed += w
		at = append(at, elapsed)
	}
	for i := 5; i < len(at); i++ {
		assert.GreaterOrEqual(t, at[i]-at[i-5], time.Second, "message %d: at most 5 a second", i)
	}
	for i := 100; i < len(at); i++ {
		assert.GreaterOrEqual(t, at[i]-at[i-100], time.Minute, "message %d: at most 100 a minute", i)
	}
	assert.Equal(t, 62*time.Second, at[100], "the 101st waits for the minute and its margin")
}

func TestLimiterBlock(t *testing.T) {
	c := newClock()
	l := NewLimiter([]Rate{{20, time.Minute}}, c.Now)
	l.Block(10 * time.Minute)
	w, ok := l.Reserve(time.Second)
	assert.False(t, ok)
	assert.Equal(t, 10*time.Minute, w)
	l.Block(time.Minute) // never shortens
	w, _ = l.Reserve(0)
	assert.Equal(t, 10*time.Minute, w)
	c.Add(10 * time.Minute)
	w, ok = l.Reserve(0)
	assert.True(t, ok)
	assert.Zero(t, w)
}

// A token is reused until a quarter of its life (at most five minutes)
// before it expires, fetched again after Invalidate, and one fetch runs at
// a time.
func TestTokenSource(t *testing.T) {
	c := newClock()
	var mu sync.Mutex
	fetches := 0
	ts := NewTokenSource(func(context.Context) (string, time.Duration, error) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		return fmt.Sprintf("tok-%d", fetches), 2 * time.Hour, nil
	}, c.Now)
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			tok, err := ts.Token(ctx)
			assert.NoError(t, err)
			assert.Equal(t, "tok-1", tok)
		})
	}
	wg.Wait()
	c.Add(2*time.Hour - 5*time.Minute - time.Second)
	tok, _ := ts.Token(ctx)
	assert.Equal(t, "tok-1", tok, "still within its life less five minutes")
	c.Add(time.Second)
	tok, _ = ts.Token(ctx)
	assert.Equal(t, "tok-2", tok, "refreshed five minutes before it expires")
	ts.Invalidate("tok-1") // an old one: no effect
	tok, _ = ts.Token(ctx)
	assert.Equal(t, "tok-2", tok)
	ts.Invalidate("tok-2")
	tok, _ = ts.Token(ctx)
	assert.Equal(t, "tok-3", tok)
	assert.Equal(t, "a ******** b ********", ts.Redact("a tok-1 b tok-3"))

	short := NewTokenSource(func(context.Context) (string, time.Duration, error) { return "s", 60 * time.Second, nil }, c.Now)
	_, _ = short.Token(ctx)
	assert.Equal(t, c.Now().Add(45*time.Second), short.refresh, "a short-lived token is replaced a quarter of its life early")

	failing := NewTokenSource(func(context.Context) (string, time.Duration, error) { return "", 0, errors.New("no") }, c.Now)
	_, err := failing.Token(ctx)
	assert.Error(t, err)
}

func TestField(t *testing.T) {
	body := `{"code":"InvalidAuthentication","requestid":"01A0","message":"不合法的access_token"}`
	v, ok := Field(body, "code")
	assert.True(t, ok)
	assert.Equal(t, "InvalidAuthentication", v)
	v, _ = Field(body, "message")
	assert.Equal(t, "不合法的access_token", v)
	v, ok = Field(`{"code":99991663,"msg":"Invalid access token for authorization. Please make a req`, "code")
	assert.True(t, ok, "a body cut short still gives its first fields")
	assert.Equal(t, "99991663", v)
	_, ok = Field(`{"code":99991663,"msg":"Invalid acc`, "msg")
	assert.False(t, ok)
	v, _ = Field(`{"msg":"say \"hi\"","code":-1}`, "msg")
	assert.Equal(t, `say "hi"`, v)
}

func newEvent(t testing.TB, id string, data any) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource("/test")
	e.SetType("dev.meshd.test")
	e.SetSubject("order-1")
	e.SetExtension("region", "eu")
	if data != nil {
		require.NoError(t, e.SetData(event.ApplicationJSON, data))
	}
	return e
}

func TestTemplates(t *testing.T) {
	cfg := connectors.Config{"a": "{{.Type}} {{.Subject}} {{.Extensions.region}} {{.Data.n}} {{json .Data.tags}}", "b": "x, ,y ,z", "bad": "{{.Nope"}
	tm, errs := Templates(cfg, "a", "b", "c")
	require.Empty(t, errs)
	assert.Nil(t, tm["c"])
	e := newEvent(t, "1", nil)
	require.NoError(t, e.SetData(event.ApplicationJSON, []byte(`{"n": 12345678901234567890, "tags": ["x"]}`)))
	f := eventtmpl.Of(&e)
	s, err := tm["a"].Render(f)
	require.NoError(t, err)
	assert.Equal(t, `dev.meshd.test order-1 eu 12345678901234567890 ["x"]`, s, "numbers keep their digits")
	l, err := tm["b"].List(f)
	require.NoError(t, err)
	assert.Equal(t, []string{"x", "y", "z"}, l)
	s, err = tm["c"].Render(f)
	assert.NoError(t, err)
	assert.Empty(t, s)

	_, errs = Templates(cfg, "bad")
	require.Len(t, errs, 1)
	assert.Equal(t, "bad", errs[0].Field)

	missing, _ := ParseTemplate("m", "{{.Data.nothere}}")
	_, err = missing.Render(f)
	assert.Error(t, err, "a missing key fails the event")

	obj, _ := ParseTemplate("o", `{"title": {{json .Subject}}}`)
	raw, err := obj.Object(f)
	require.NoError(t, err)
	assert.JSONEq(t, `{"title":"order-1"}`, string(raw))
	notObj, _ := ParseTemplate("o", `[1]`)
	_, err = notObj.Object(f)
	assert.ErrorContains(t, err, "JSON object")
}

func TestTextOr(t *testing.T) {
	text := func(e event.Event) (string, error) {
		r := NewRenderer(&e, nil)
		s := r.TextOr("text")
		return s, r.Err
	}
	s, err := text(newEvent(t, "1", "plain words"))
	require.NoError(t, err)
	assert.Equal(t, "plain words", s, "a JSON string is unquoted")
	s, _ = text(newEvent(t, "1", map[string]int{"a": 1}))
	assert.Equal(t, `{"a":1}`, s)
	bin := newEvent(t, "1", nil)
	require.NoError(t, bin.SetData("application/octet-stream", []byte{0xff, 0xfe}))
	_, err = text(bin)
	assert.ErrorIs(t, err, eventtmpl.ErrNotText)
	assert.EqualError(t, err, "the event data is not UTF-8 text; give a text template")
}

func TestMsgType(t *testing.T) {
	e := newEvent(t, "1", nil)
	typ, err := MsgType(&e, "chatmsgtype", "text", []string{"text", "markdown"})
	require.NoError(t, err)
	assert.Equal(t, "text", typ)
	e.SetExtension("chatmsgtype", "markdown")
	typ, _ = MsgType(&e, "chatmsgtype", "text", []string{"text", "markdown"})
	assert.Equal(t, "markdown", typ)
	e.SetExtension("chatmsgtype", "video")
	_, err = MsgType(&e, "chatmsgtype", "text", []string{"text", "markdown"})
	assert.ErrorContains(t, err, `"video" is not one of text, markdown`)
}

// fakeRobot answers each send with the next error of answers (nil: ok).
type fakeRobot struct {
	mu      sync.Mutex
	answers []error
	sent    []string
}

func (r *fakeRobot) Prepare(e *event.Event) (func(context.Context) error, error) {
	if e.Type() == "bad" {
		return nil, errors.New("template failed with tok-secret")
	}
	id := e.ID()
	return func(context.Context) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.sent = append(r.sent, id)
		if len(r.answers) == 0 {
			return nil
		}
		err := r.answers[0]
		r.answers = r.answers[1:]
		return err
	}, nil
}

func (r *fakeRobot) Redact(s string) string { return strings.ReplaceAll(s, "tok-secret", "********") }

func events(t testing.TB, n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		out[i] = newEvent(t, fmt.Sprint("e", i), map[string]int{"n": i})
	}
	return out
}

func classOf(err error) bridge.Class { c, _ := bridge.Classify(err); return c }

var discard = slog.New(slog.DiscardHandler)

// A batch above the rate waits (real time, short windows) and sends all.
func TestPutWaitsForTheLimit(t *testing.T) {
	r := &fakeRobot{}
	s := NewSink(r, Settings{Rates: []Rate{{2, 150 * time.Millisecond}}, Wait: 5 * time.Second, Backoff: time.Second}, nil, nil)
	start := time.Now()
	require.NoError(t, s.Put(t.Context(), discard, events(t, 5)))
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "5 messages at 2 per 150ms take two windows")
	assert.Len(t, r.sent, 5)
}

// Beyond rate.wait the rest of the batch is held, not failed.
func TestPutHoldsBeyondTheWait(t *testing.T) {
	r := &fakeRobot{}
	s := NewSink(r, Settings{Rates: []Rate{{2, time.Hour}}, Wait: 0, Backoff: time.Second}, nil, nil)
	err := s.Put(t.Context(), discard, events(t, 4))
	var p *connectors.PartialError
	require.ErrorAs(t, err, &p)
	assert.Len(t, p.Failed, 2)
	for _, i := range []int{2, 3} {
		class, after := bridge.Classify(p.Failed[i])
		assert.Equal(t, bridge.Unavailable, class)
		assert.Equal(t, bridge.MaxRetryAfter, after, "an hour away, capped by the runtime; the limiter holds them again after")
	}
	err = s.Put(t.Context(), discard, events(t, 1))
	assert.Equal(t, bridge.Unavailable, classOf(err), "a batch that cannot start is held whole")
}

// A cancelled context ends the wait at once.
func TestPutHonoursContext(t *testing.T) {
	r := &fakeRobot{}
	s := NewSink(r, Settings{Rates: []Rate{{1, time.Hour}}, Wait: 2 * time.Hour, Backoff: time.Second}, nil, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Put(ctx, discard, events(t, 2))
	assert.Less(t, time.Since(start), 5*time.Second)
	var p *connectors.PartialError
	require.ErrorAs(t, err, &p)
	assert.ErrorIs(t, p.Failed[1], context.DeadlineExceeded)
	assert.NotContains(t, p.Failed, 0)
}

// The vendor's "too fast" holds that event and the rest of its batch for
// the backoff and blocks the robot; a failing template fails its event
// alone, redacted; unavailable holds the rest.
func TestPutClassifies(t *testing.T) {
	r := &fakeRobot{answers: []error{nil, Backoff(errors.New("too fast tok-secret"), 0)}}
	s := NewSink(r, Settings{Rates: []Rate{{100, time.Second}}, Wait: time.Second, Backoff: 3 * time.Minute}, nil, nil)
	evs := events(t, 4)
	err := s.Put(t.Context(), discard, evs)
	var p *connectors.PartialError
	require.ErrorAs(t, err, &p)
	require.Len(t, p.Failed, 3)
	for _, i := range []int{1, 2, 3} {
		class, after := bridge.Classify(p.Failed[i])
		assert.Equal(t, bridge.Unavailable, class)
		assert.Equal(t, 3*time.Minute, after)
		assert.NotContains(t, p.Failed[i].Error(), "tok-secret")
	}
	assert.Equal(t, []string{"e0", "e1"}, r.sent)
	err = s.Put(t.Context(), discard, events(t, 1))
	assert.Equal(t, bridge.Unavailable, classOf(err), "the robot sends nothing while it backs off")

	r2 := &fakeRobot{answers: []error{bridge.PermanentError(errors.New("no tok-secret")), nil, bridge.UnavailableError(errors.New("down"), 0)}}
	s2 := NewSink(r2, Settings{Rates: []Rate{{100, time.Second}}, Wait: time.Second, Backoff: time.Second}, nil, nil)
	evs = events(t, 5)
	evs[1].SetType("bad")
	err = s2.Put(t.Context(), discard, evs)
	require.ErrorAs(t, err, &p)
	assert.Equal(t, bridge.Permanent, classOf(p.Failed[0]))
	assert.Equal(t, "no ********", p.Failed[0].Error())
	assert.Equal(t, bridge.Permanent, classOf(p.Failed[1]))
	assert.Equal(t, "event e1: template failed with ********", p.Failed[1].Error())
	assert.NotContains(t, p.Failed, 2)
	assert.Equal(t, bridge.Unavailable, classOf(p.Failed[3]))
	assert.Equal(t, bridge.Unavailable, classOf(p.Failed[4]))
	assert.Equal(t, []string{"e0", "e2", "e3"}, r2.sent)
}

func TestClientRedact(t *testing.T) {
	c := Client{Hide: []string{"hook-token", "", "ab"}}
	assert.Equal(t, "a ******** ab", c.Redact("a hook-token ab"), "short values are not masked (they would mask everything)")
	c.Tokens = NewTokenSource(func(context.Context) (string, time.Duration, error) { return "t-123", time.Hour, nil }, nil)
	_, _ = c.Tokens.Token(context.Background())
	assert.Equal(t, "******** ********", c.Redact("hook-token t-123"))
}

func TestRendererEmptyText(t *testing.T) {
	none := newEvent(t, "1", nil)
	r := NewRenderer(&none, map[string]*Template{})
	assert.Empty(t, r.TextOr("text"))
	assert.ErrorContains(t, r.Err, "the message text is empty")
	assert.Empty(t, r.Render("title"), "nothing renders after the first error")

	e := newEvent(t, "1", map[string]string{"a": ""})
	tm, _ := Templates(connectors.Config{"u": "{{.Data.a}}", "l": "x,y"}, "u", "l")
	r = NewRenderer(&e, tm)
	assert.Equal(t, []string{"x", "y"}, r.List("l"))
	assert.Empty(t, r.Required("u"))
	assert.EqualError(t, r.Err, "template u gave an empty value")
}

// ParseSettings checks the fields of each robot mode as the vendor's Modes
// say: what a mode requires, and what it does not use.
func TestParseSettingsModes(t *testing.T) {
	m := Modes{
		App: []string{"app.key", FieldAppSecret}, AppOptional: []string{"app.extra"},
		WebhookOnly: []string{"at.ids"}, WebhookNote: "(no @ here)",
		CheckWebhook: func(u *url.URL) string {
			if u.Query().Get("token") == "" {
				return "want its token"
			}
			return ""
		},
		Templates: []string{"title", "text"},
	}
	cfg := func(kv ...any) connectors.Config {
		c := connectors.Config{FieldRateLimits: []string{"20/1m"}, FieldBackoff: time.Minute, FieldTimeout: time.Second}
		for i := 0; i+1 < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	reasons := func(errs []connectors.FieldError) map[string]string {
		out := map[string]string{}
		for _, e := range errs {
			out[e.Field] = e.Reason
		}
		return out
	}
	const hook = "https://robot.example/send?token=tok-1"
	for _, c := range []struct {
		cfg  connectors.Config
		want map[string]string
	}{
		{cfg(FieldMode, ModeWebhook), map[string]string{FieldWebhook: "required with mode webhook"}},
		{cfg(FieldMode, ModeWebhook, FieldWebhook, "robot.example/send?token=x"), map[string]string{FieldWebhook: "want an absolute http or https URL with a host"}},
		{cfg(FieldMode, ModeWebhook, FieldWebhook, "https://robot.example/send"), map[string]string{FieldWebhook: "want its token"}},
		{cfg(FieldMode, ModeWebhook, FieldWebhook, hook, "app.key", "k", "app.extra", "x", "title", "{{.Nope"),
			map[string]string{"app.key": "used only with mode app", "app.extra": "used only with mode app", "title": `template: title:1: unclosed action`}},
		{cfg(FieldMode, ModeApp), map[string]string{"app.key": "required with mode app", FieldAppSecret: "required with mode app", FieldAPIURL: "want an absolute http or https URL with a host"}},
		{cfg(FieldMode, ModeApp, "app.key", "k", FieldAppSecret, "s", FieldAPIURL, "https://api.example/", FieldWebhook, hook, FieldSecret, "x", "at.ids", "u1"),
			map[string]string{FieldWebhook: "used only with mode webhook (no @ here)", FieldSecret: "used only with mode webhook (no @ here)", "at.ids": "used only with mode webhook (no @ here)"}},
	} {
		_, errs := ParseSettings(c.cfg, m)
		assert.Equal(t, c.want, reasons(errs), "%v", c.cfg)
	}

	s, errs := ParseSettings(cfg(FieldMode, ModeApp, "app.key", "k", FieldAppSecret, "s", FieldAPIURL, "https://api.example/", FieldMsgType, "markdown", FieldAtAll, true, "text", "{{.ID}}"), m)
	require.Empty(t, errs)
	assert.Equal(t, "https://api.example", s.APIURL, "without its trailing slash")
	assert.Equal(t, "s", s.AppSecret)
	assert.Equal(t, "markdown", s.MsgType)
	assert.True(t, s.AtAll)
	assert.Nil(t, s.Tmpl["title"])
	assert.NotNil(t, s.Tmpl["text"])
}

// SendWithToken sends with the cached token; a refused one is replaced
// once, and a refused new one holds the events.
func TestSendWithToken(t *testing.T) {
	var fetched int
	c := &Client{Tokens: NewTokenSource(func(context.Context) (string, time.Duration, error) {
		fetched++
		return fmt.Sprint("tok-", fetched), time.Hour, nil
	}, nil)}
	valid := map[string]bool{"tok-1": true}
	var used []string
	send := func(_ context.Context, tok string) error {
		used = append(used, tok)
		if !valid[tok] {
			return TokenRefused(errors.New("vendor: bad token"))
		}
		return nil
	}
	require.NoError(t, c.SendWithToken(t.Context(), "access token", send))
	require.NoError(t, c.SendWithToken(t.Context(), "access token", send))
	assert.Equal(t, []string{"tok-1", "tok-1"}, used, "the token is cached")

	valid = map[string]bool{"tok-2": true}
	require.NoError(t, c.SendWithToken(t.Context(), "access token", send))
	assert.Equal(t, []string{"tok-1", "tok-1", "tok-1", "tok-2"}, used, "a refused token is replaced and the message sent again")

	valid = map[string]bool{}
	err := c.SendWithToken(t.Context(), "access token", send)
	assert.Equal(t, bridge.Unavailable, classOf(err))
	assert.EqualError(t, err, "vendor: bad token (with a new access token)")
	assert.Equal(t, 3, fetched, "one new token, not a loop")

	plain := errors.New("other")
	assert.Same(t, plain, c.SendWithToken(t.Context(), "access token", func(context.Context, string) error { return plain }), "other errors pass as they are")
}
