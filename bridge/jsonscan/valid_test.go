package jsonscan

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/meshd/meshd/bridge/jsonscan/jsonscantest"
)

var jsonCases = []string{
	`{}`, `[]`, `""`, `0`, `-0`, `1.5e+10`, `-12.5E-3`, `true`, `false`, `null`, ` {"a" : [1, 2, {"b": null}], "c": "x\"y\\z\/\u00e9\n"} `,
	`{"a":1,}`, `[1,]`, `{"a"}`, `{"a":}`, `{a:1}`, `01`, `1.`, `.5`, `-`, `1e`, `1e+`, `+1`, `tru`, `nul`, `"abc`, `"a\x"`, `"\u12"`, `"\u12g4"`,
	"\"tab\there\"", `{"a":1}x`, `{"a":1} {"b":2}`, ``, ` `, `[`, `]`, `{`, `}`, `[1 2]`, `{"a":1 "b":2}`, `"\ud83d\ude00"`, `[[[[[]]]]]`,
	"\"\x7f\"", `{"":""}`, `[true,false,null]`, `1 2`,
}

func TestValidAgreesWithEncodingJSON(t *testing.T) {
	for _, c := range jsonCases {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", c, got, want)
		}
	}
	// Mutations of valid documents.
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		doc := jsonscantest.Mutate(r, []byte(jsonCases[r.IntN(12)]), `{}[]":,\ -+.eE0123456789tfnulrsa`+"\t\n\x01")
		if got, want := Valid(doc), json.Valid(doc); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", doc, got, want)
		}
	}
	for _, n := range []int{maxDepth, maxDepth + 1} {
		for _, doc := range []string{strings.Repeat("[", n) + strings.Repeat("]", n), strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n)} {
			if got, want := Valid([]byte(doc)), json.Valid([]byte(doc)); got != want {
				t.Errorf("nesting %d: Valid = %v, encoding/json says %v", n, got, want)
			}
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, c := range jsonCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

// TestStringBytesAtEveryOffset puts each byte a string scan must notice
// (and some it must not) at every offset of long strings, so that both the
// word-at-a-time and the byte-at-a-time paths of Valid and Object meet it,
// and compares with encoding/json.
func TestStringBytesAtEveryOffset(t *testing.T) {
	for _, c := range []string{`"`, `\`, `\"`, `\\`, `\n`, `\u00e9`, `\x`, "\x00", "\x01", "\x1f", " ", "\x7f", "\x80", "é", "\xff", "!", "#", "[", "\\\\\""} {
		for n := range 24 {
			for _, tail := range []int{0, 1, 7, 8, 9, 17} {
				s := `"` + strings.Repeat("a", n) + c + strings.Repeat("b", tail) + `"`
				doc := []byte(`{"k":` + s + `,"z":1}`)
				if got, want := Valid(doc), json.Valid(doc); got != want {
					t.Fatalf("Valid(%q) = %v, encoding/json says %v", doc, got, want)
				}
				var got []string
				_, err := Object(doc, func(name, raw []byte) error {
					got = append(got, string(name)+"="+string(raw))
					return nil
				})
				var m map[string]json.RawMessage
				if json.Unmarshal(doc, &m) == nil {
					// Valid JSON: Object must cut the string where it ends.
					if err != nil || len(got) != 2 || got[0] != "k="+s || got[1] != "z=1" {
						t.Fatalf("Object(%q) = %q, %v; want the string %q and z=1", doc, got, err, s)
					}
				}
				if n := skipString([]byte(s), 0); json.Valid([]byte(s)) && n != len(s) {
					t.Fatalf("skipString(%q) = %d, want %d", s, n, len(s))
				}
			}
		}
	}
	for _, s := range []string{`"abc`, `"abc\"`, `"` + strings.Repeat(`\"`, 100), `"\`, `"` + strings.Repeat("a", 20) + `\`} {
		if n := skipString([]byte(s), 0); n != -1 {
			t.Errorf("skipString(%q) = %d, want -1 (unterminated)", s, n)
		}
	}
}

// BenchmarkValidLongStrings is event data with long strings, as the bench's
// events carry.
func BenchmarkValidLongStrings(b *testing.B) {
	doc := []byte(`{"pad":"` + strings.Repeat("x", 1000) + `","n":12,"s":"short \"quoted\" text"}`)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if !Valid(doc) {
			b.Fatal("not valid")
		}
	}
}
