package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge/jsonscan/jsonscantest"
)

type member struct{ name, raw string }

func walk(t *testing.T, in string) ([]member, int, error) {
	t.Helper()
	var got []member
	end, err := Object([]byte(in), func(name, raw []byte) error {
		got = append(got, member{string(name), string(raw)})
		return nil
	})
	return got, end, err
}

func TestObjectMembers(t *testing.T) {
	in := ` { "a" : 1 , "b":"x\"y}\\" ,"c":{"d":[1,{"e":"]}"}]},"f":[],"g":null,"a":true}  rest`
	got, end, err := walk(t, in)
	require.NoError(t, err)
	assert.Equal(t, []member{
		{"a", "1"}, {"b", `"x\"y}\\"`}, {"c", `{"d":[1,{"e":"]}"}]}`}, {"f", "[]"}, {"g", "null"}, {"a", "true"},
	}, got, "members in order, duplicates each time, values as written")
	assert.Equal(t, "  rest", in[end:], "end is after the object; what follows is the caller's")

	got, end, err = walk(t, "{}")
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.Equal(t, 2, end)
}

func TestObjectDeclines(t *testing.T) {
	for _, in := range []string{
		``, `  `, `[]`, `"a"`, `null`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{a:1}`, `{"a" 1}`, `{"a":1 "b":2}`,
		`{"a":1`, `{"a":"x}`, `{"a":{"b":1}`, `{"a":1]`, `{"a\"b":1}`, `{"a\u0062":1}`,
	} {
		_, _, err := walk(t, in)
		assert.ErrorIs(t, err, ErrDeclined, "%q", in)
	}
}

func TestObjectLeavesInsidesUnchecked(t *testing.T) {
	// The contract: values end where a value can; their insides are
	// Valid's business.
	got, _, err := walk(t, `{"n":1x,"s":"\q","o":{"a" "b"},"l":tru}`)
	require.NoError(t, err)
	assert.Equal(t, []member{{"n", "1x"}, {"s", `"\q"`}, {"o", `{"a" "b"}`}, {"l", "tru"}}, got)
}

func TestObjectStopsAtFnError(t *testing.T) {
	stop := errors.New("stop")
	var names []string
	_, err := Object([]byte(`{"a":1,"b":2,"c":3}`), func(name, _ []byte) error {
		names = append(names, string(name))
		if string(name) == "b" {
			return stop
		}
		return nil
	})
	assert.Same(t, stop, err)
	assert.Equal(t, []string{"a", "b"}, names)
}

func TestArray(t *testing.T) {
	elems := func(in string) ([]string, int, error) {
		var out []string
		end, err := Array([]byte(in), func(raw []byte) error {
			out = append(out, string(raw))
			return nil
		})
		return out, end, err
	}
	got, end, err := elems(` [ {"a":"]"} , [1,[2]],"x\"" ,3 ] x`)
	require.NoError(t, err)
	assert.Equal(t, []string{`{"a":"]"}`, `[1,[2]]`, `"x\""`, "3"}, got)
	assert.Equal(t, " x", ` [ {"a":"]"} , [1,[2]],"x\"" ,3 ] x`[end:])

	got, end, err = elems("[ ]")
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.Equal(t, 3, end)

	for _, in := range []string{``, `{}`, `[`, `[1,]`, `[1 2]`, `[,1]`, `["a]`, `[1}`} {
		_, _, err := elems(in)
		assert.ErrorIs(t, err, ErrDeclined, "%q", in)
	}
}

// viaEncodingJSON is what Members promises to equal: json.Unmarshal into
// a map, keys sorted.
func viaEncodingJSON(data []byte) ([]member, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	var out []member
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, member{k, string(m[k])})
	}
	return out, nil
}

func members(data []byte) ([]member, error) {
	ms, err := Members(nil, data)
	if err != nil {
		return nil, err
	}
	var out []member
	for _, m := range ms {
		out = append(out, member{string(m.Name), string(m.Value)})
	}
	return out, nil
}

var objectCases = []string{
	`{}`, ` {"b":1, "a":"x"} `, `{"a":1,"a":2}`, `{"z":1,"a":2,"z":3,"a":[4]}`, `{"a\u0062":1,"ab":2}`, `{"ab":1,"a\u0062":2}`,
	`{"a\"b":{"c":"\n"}}`, `{"é":1,"e":2}`, "{\"\xff\":1}", "{\"a\tb\":1}", `{"s":"x\"y\\z","n":-1.5e3,"t":true,"f":false,"0":null}`,
	`{"a":1}x`, `{"a":1} {"b":2}`, `{"a":1x}`, `{"a":"\q"}`, `{"a":{"b" "c"}}`, `{"a":tru}`, "{\"a\":\"\x01\"}", `{"a":01}`,
	`[1]`, `"s"`, `1`, `null`, ``, `{`, `{"a":1,}`, `{"":""}`, `{"a":[1,{"b":"]"}],"b":{}}`,
}

func TestMembersAgreesWithEncodingJSON(t *testing.T) {
	for _, c := range objectCases {
		got, err := members([]byte(c))
		want, wantErr := viaEncodingJSON([]byte(c))
		if wantErr != nil {
			assert.Equal(t, wantErr.Error(), errText(err), "%q: encoding/json's error", c)
			continue
		}
		require.NoError(t, err, "%q", c)
		assert.Equal(t, want, got, "%q", c)
	}
	// Mutations of the cases.
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		doc := jsonscantest.Mutate(r, []byte(objectCases[r.IntN(len(objectCases))]), `{}[]":,\ -+.eE0123456789tfnulrsab`+"\t\n\x01\xff")
		got, err := members(doc)
		want, wantErr := viaEncodingJSON(doc)
		if errText(err) != errText(wantErr) || !reflect.DeepEqual(got, want) {
			t.Fatalf("Members(%q) = %q, %v; encoding/json gives %q, %v", doc, got, err, want, wantErr)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestMembersInPlace(t *testing.T) {
	data := []byte(`{"b":"x","a":{"c":1},"b":"y"}`)
	buf := make([]Member, 0, 8)
	ms, err := Members(buf, data)
	require.NoError(t, err)
	require.Len(t, ms, 2)
	assert.Equal(t, "a", string(ms[0].Name))
	assert.Equal(t, `"y"`, string(ms[1].Value), "a name given twice: its last value")
	for _, m := range ms {
		assert.True(t, inside(data, m.Name) && inside(data, m.Value), "slices of data, not copies")
	}
	assert.Same(t, &buf[:1][0], &ms[0], "appended to dst")

	pre := []Member{{Name: []byte("keep")}}
	ms, err = Members(pre, []byte(`{"a":1}`))
	require.NoError(t, err)
	assert.Equal(t, []string{"keep", "a"}, []string{string(ms[0].Name), string(ms[1].Name)}, "appended after what dst held")
	ms, err = Members(pre, []byte(`{"a\u0062":1, "a":2}`))
	require.NoError(t, err)
	assert.Equal(t, []string{"keep", "a", "ab"}, []string{string(ms[0].Name), string(ms[1].Name), string(ms[2].Name)}, "the encoding/json way appends too")

	allocs := testing.AllocsPerRun(100, func() { _, _ = Members(buf[:0], data) })
	assert.Zero(t, allocs, "the common case allocates nothing but dst")
}

func inside(data, s []byte) bool {
	d, p := uintptrOf(data), uintptrOf(s)
	return p >= d && p+uintptr(len(s)) <= d+uintptr(len(data))
}

func uintptrOf(b []byte) uintptr { return reflect.ValueOf(b).Pointer() }

func FuzzMembers(f *testing.F) {
	for _, c := range objectCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := members(b)
		want, wantErr := viaEncodingJSON(b)
		if errText(err) != errText(wantErr) || !reflect.DeepEqual(got, want) {
			t.Fatalf("Members(%q) = %q, %v; encoding/json gives %q, %v", b, got, err, want, wantErr)
		}
	})
}

var valueCases = []string{
	`null`, `true`, `false`, `0`, `-1.50`, `1e400`, `""`, `"abc"`, `"é"`, "\"\xff\xfe\"", `"a\"b"`, `"\u00e9\n"`, `[1,"a",{"b":null}]`,
	`{"a":[true]}`, ` 1 `, `nul`, `truex`, `1x`, `01`, `-`, `"abc`, "\"a\tb\"", `"\q"`, `[1,]`, `{"a":1}}`, `[1] 2`, `1 2`, ``,
}

// decodeViaEncodingJSON is what Decode promises to equal.
func decodeViaEncodingJSON(raw []byte) (any, bool) {
	if !json.Valid(raw) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	return v, dec.Decode(&v) == nil
}

func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	for _, c := range valueCases {
		got, err := Decode([]byte(c))
		want, ok := decodeViaEncodingJSON([]byte(c))
		if !ok {
			assert.Error(t, err, "%q is not one JSON value", c)
			continue
		}
		require.NoError(t, err, "%q", c)
		assert.Equal(t, want, got, "%q", c)
	}
	v, err := Decode([]byte("\"\xff\""))
	require.NoError(t, err)
	assert.Equal(t, "\ufffd", v, "invalid UTF-8 replaced, as encoding/json does")
	v, err = Decode([]byte(`-0.10`))
	require.NoError(t, err)
	assert.Equal(t, json.Number("-0.10"), v, "a number's text as written")
}

func FuzzDecode(f *testing.F) {
	for _, c := range valueCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Decode(b)
		want, ok := decodeViaEncodingJSON(b)
		if ok != (err == nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode(%q) = %#v, %v; encoding/json gives %#v, %v", b, got, err, want, ok)
		}
	})
}

func TestKind(t *testing.T) {
	for in, want := range map[string]string{
		`null`: "null", `true`: "a boolean", `"s"`: "a string", `1`: "a number", `[]`: "an array", `{}`: "an object",
	} {
		v, err := Decode([]byte(in))
		require.NoError(t, err)
		assert.Equal(t, want, Kind(v), in)
	}
	assert.Equal(t, "int", Kind(1))
}

func BenchmarkMembers(b *testing.B) {
	data := []byte(`{"id":"e-12345","n":12345,"s":"` + string(bytes.Repeat([]byte("x"), 100)) + `","at":"2026-11-23T10:00:00Z"}`)
	b.Run("jsonscan", func(b *testing.B) {
		var buf []Member
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = Members(buf[:0], data)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]json.RawMessage
			_ = json.Unmarshal(data, &m)
			_ = slices.Sorted(maps.Keys(m))
		}
	})
}
