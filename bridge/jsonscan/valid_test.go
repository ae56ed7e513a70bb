package jsonscan

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
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
		doc := mutate(r, jsonCases[r.IntN(12)], `{}[]":,\ -+.eE0123456789tfnulrsa`+"\t\n\x01")
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

// mutate drops, doubles or replaces (with a byte of alphabet) one byte of
// doc.
func mutate(r *rand.Rand, doc, alphabet string) []byte {
	b := []byte(doc)
	if len(b) == 0 {
		return b
	}
	i := r.IntN(len(b))
	switch r.IntN(3) {
	case 0:
		return append(b[:i:i], b[i+1:]...)
	case 1:
		return append(b[:i+1:i+1], b[i:]...)
	}
	b[i] = alphabet[r.IntN(len(alphabet))]
	return b
}
