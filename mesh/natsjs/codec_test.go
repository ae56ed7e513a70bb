package natsjs

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEncodeHeaders(t *testing.T) {
	e := event.New()
	e.SetID("id-1")
	e.SetSource("/src")
	e.SetType("t")
	e.SetSubject("sub")
	e.SetTime(time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)))
	e.SetDataSchema("https://s/schema")
	e.SetExtension("num", 7)
	u, _ := url.Parse("https://x/y")
	e.SetExtension("link", types.URI{URL: *u})
	require.NoError(t, e.SetData("application/octet-stream", []byte{1, 2, 3}))

	m, err := encode("meshd.t.orders", "orders", &e, "")
	require.NoError(t, err)
	require.Equal(t, "meshd.t.orders", m.Subject)
	require.Equal(t, []byte{1, 2, 3}, m.Data)
	want := map[string]string{
		"ce-specversion": "1.0",
		"ce-id":          "id-1",
		"ce-source":      "/src",
		"ce-type":        "t",
		"ce-subject":     "sub",
		"ce-time":        "2025-01-02T02:04:05.000000006Z",
		"ce-dataschema":  "https://s/schema",
		"content-type":   "application/octet-stream",
		"ce-num":         "7",
		"ce-link":        "https://x/y",
		// A golden value: another digest of the same event would be
		// stored again by a sidecar upgraded inside the duplicate window.
		"Nats-Msg-Id": "08OimToIdJUQHVjVVI67dA",
	}
	require.Len(t, m.Header, len(want))
	for k, v := range want {
		require.Equal(t, v, m.Header.Get(k), k)
	}

	got, err := decode(m.Header, m.Data)
	require.NoError(t, err)
	require.Equal(t, "7", got.Extensions()["num"])
	require.True(t, got.DataBase64, "binary data is base64 in JSON")
	require.True(t, e.Time().Equal(got.Time()))
}

func TestEncodeRejectsLineBreaks(t *testing.T) {
	e := event.New()
	e.SetID("id")
	e.SetSource("/src")
	e.SetType("t")
	e.SetExtension("bad", "a\r\nb: c")
	_, err := encode("s", "t", &e, "")
	require.ErrorIs(t, err, errBadHeader)
}

func TestDecodeForeignHeaderCase(t *testing.T) {
	h := nats.Header{
		"Ce-Specversion": {"1.0"},
		"CE-ID":          {"x"},
		"ce-source":      {"/s"},
		"ce-type":        {"t"},
		"Content-Type":   {"text/plain"},
		"Ce-Myext":       {"v"},
		"Nats-Msg-Id":    {"ignored"},
	}
	e, err := decode(h, []byte("hi"))
	require.NoError(t, err)
	require.Equal(t, "x", e.ID())
	require.Equal(t, "text/plain", e.DataContentType())
	require.Equal(t, map[string]any{"myext": "v"}, e.Extensions())
	require.False(t, e.DataBase64)
}

func TestDecodeErrors(t *testing.T) {
	for name, h := range map[string]nats.Header{
		"no specversion": {"ce-id": {"x"}},
		"bad version":    {"ce-specversion": {"2.0"}, "ce-id": {"x"}},
		"missing id":     {"ce-specversion": {"1.0"}, "ce-source": {"/s"}, "ce-type": {"t"}},
		"bad time":       {"ce-specversion": {"1.0"}, "ce-id": {"x"}, "ce-source": {"/s"}, "ce-type": {"t"}, "ce-time": {"yesterday"}},
	} {
		_, err := decode(h, nil)
		require.Error(t, err, name)
	}
}

func TestDurableName(t *testing.T) {
	seen := map[string]string{}
	for _, p := range [][3]string{
		{"", "a.b", "t"}, {"", "a_b", "t"}, {"", "a b", "t"}, {"", "a", "b__t"}, {"", "a__b", "t"},
		{"", strings.Repeat("g", 300), "t"}, {"", strings.Repeat("g", 301), "t"}, {"", "g", "x.y"}, {"", "g", "x_y"},
		{"app", "g", "t"}, {"app2", "g", "t"}, {"app", "g2", "t"}, {"app__g", "", "t"}, {"a.b", "g", "t"}, {"a_b", "g", "t"},
	} {
		n := durableName(p[0], p[1], p[2])
		require.LessOrEqual(t, len(n), 64)
		require.False(t, strings.ContainsAny(n, ". *>/\\"), n)
		require.NotContains(t, seen, n, "collision for %q", p)
		seen[n] = p[0] + "|" + p[1] + "|" + p[2]
		require.Equal(t, n, durableName(p[0], p[1], p[2]), "stable")
	}
	// The names of groups made before scopes stay what they were.
	assert.Equal(t, "orders__orders_2a28a411d79c", durableName("", "orders", "orders"))
}

func TestDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	require.Equal(t, "MESHD", c.Stream)
	require.Equal(t, "meshd", c.SubjectPrefix)
	require.Equal(t, 72*time.Hour, c.MaxAge)
	require.Equal(t, int64(-1), c.MaxBytes)
	require.Equal(t, 2*time.Minute, c.DuplicateWindow)
	require.Equal(t, 5*time.Second, c.PublishTimeout)
}

// The message id tells apart what the text "<topic> <source> <id>" could
// not, and what a header would trim; a dedup key changes it.
func TestMsgIDSeparatesItsParts(t *testing.T) {
	ids := map[string][4]string{}
	for _, p := range [][4]string{
		{"t", "a b", "c", ""}, {"t", "a", "b c", ""}, {"t", "/s", "x", ""}, {"t", "/s", " x", ""}, {"t", "/s", "x ", ""},
		{"u", "/s", "x", ""}, {"t", "/s", "x", "sub-a"}, {"t", "/s", "x", "sub-b"}, {"t", "/s", "x\x00sub-a", ""},
	} {
		id := msgID(p[0], p[1], p[2], p[3])
		require.Len(t, id, 22)
		require.NotContains(t, id, " ")
		if prev, ok := ids[id]; ok {
			t.Fatalf("%q and %q have one message id", prev, p)
		}
		ids[id] = p
	}
	// Long ids cost the server no more than short ones.
	long := msgID("orders.created", "https://orders.example.com/api/v1/orders", "5f0c6a8e-3b7d-4f5e-9a1c-2d3e4f5a6b7c", "")
	require.Len(t, long, 22)
}
