// Package jsonscantest helps test code that reads JSON: it mutates
// documents for tests that compare a reader with a reference.
package jsonscantest

import (
	"math/rand/v2"
	"strings"
)

// Mutate drops, doubles or replaces one byte of doc; a replacement is one
// character of alphabet (a UTF-8 sequence, or a single byte that is not
// one). doc is not changed.
func Mutate(r *rand.Rand, doc []byte, alphabet string) []byte {
	if len(doc) == 0 {
		return doc
	}
	i := r.IntN(len(doc))
	switch r.IntN(3) {
	case 0:
		return append(doc[:i:i], doc[i+1:]...)
	case 1:
		return append(doc[:i+1:i+1], doc[i:]...)
	}
	chars := strings.Split(alphabet, "")
	return append(append(doc[:i:i], chars[r.IntN(len(chars))]...), doc[i+1:]...)
}
