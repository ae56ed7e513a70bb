package injector

import (
	"math/rand/v2"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

// quantityCorpus is hand-picked quantities and their neighbours, plus
// generated ones: every sign, integer and fraction shape and suffix, and
// strings of the characters a quantity is made of.
func quantityCorpus() []string {
	corpus := []string{
		"0", "", "-0", "+0", "00", ".", "+.", "-.", ".5", "5.", "1.G", "1.Gi", ".5Ki", "1.5Gi", "2048Ki", "1Ki", "1023",
		"50m", "64Mi", "256Mi", "100m", "0.25", "0.5", "2.0", "1e3", "1E3", "1e3m", "+1k", "1000E", "1E", "1Ei", "8Ei", "9Ei",
		"0.0001", "0.1n", "1n", "1e-9", "1e-10", "1.5e-10", "1e-2147483648", "1e4294967296", "1e2147483647", "12345678901234567890",
		"123456789012345678", "1234567890123456789", "99Ti", "100Ti", "1Pi", "1.0001Ki", "0.0001Ki", "1K", "1KiB", "1.5.5",
		"1e", "1e+", "1e+3", "1Ee3", "1Ei5", "1m5", " 1", "1 ", "-1Mi", "lots", "fast", "100M", "3e9", "1.5", "0.000000001",
		"000000000000000000000001", "1000", "1000000", "999999999999999999999Ki", "1.000000000000000000001",
	}
	r := rand.New(rand.NewPCG(1, 2))
	digits := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
		return b.String()
	}
	pick := func(list ...string) string { return list[r.IntN(len(list))] }
	suffixes := []string{"", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
		"e3", "E3", "e-3", "e+2", "e-10", "e-12", "e0", "e21", "e100", "e-100", "K", "Mb", "x", "e", "ki", "mi"}
	for range 20000 {
		s := pick("", "", "+", "-") +
			pick("", "0", "00", "1", "2", "8", "12", "16", "007", "1000", "1024", "999", digits(1+r.IntN(25))) +
			pick("", "", ".", "."+digits(1+r.IntN(3)), "."+digits(1+r.IntN(20)), ".000", ".0001") +
			suffixes[r.IntN(len(suffixes))]
		corpus = append(corpus, s)
	}
	const alphabet = "0123456789.+-eEinumkKMGTP "
	for range 20000 {
		b := make([]byte, 1+r.IntN(8))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		corpus = append(corpus, string(b))
	}
	return corpus
}

// hugeExponent is a quantity apimachinery takes minutes to parse (it writes
// out 10^exponent), so it is not compared.
func hugeExponent(s string) bool {
	_, _, _, _, suffix, ok := scanQuantity(s)
	if !ok {
		return false
	}
	_, e, _, ok := interpretSuffix(suffix)
	return ok && (e > 1000 || e < -1000)
}

// checkQuantity compares parseQuantity with apimachinery on s.
func checkQuantity(t *testing.T, s string) (quantity, resource.Quantity, bool) {
	t.Helper()
	if s == "" || hugeExponent(s) {
		return quantity{}, resource.Quantity{}, false
	}
	want, wantErr := resource.ParseQuantity(s)
	got, err := parseQuantity(s)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: error %v, apimachinery %v", s, err, wantErr)
	}
	if err != nil {
		return got, want, false
	}
	if got.String() != want.String() {
		t.Fatalf("%q: %q, apimachinery %q", s, got.String(), want.String())
	}
	if got.Sign() != want.Sign() {
		t.Fatalf("%q: sign %d, apimachinery %d", s, got.Sign(), want.Sign())
	}
	return got, want, true
}

func TestQuantityAsApimachinery(t *testing.T) {
	type pair struct {
		got  quantity
		want resource.Quantity
		text string
	}
	var parsed []pair
	for _, s := range quantityCorpus() {
		if got, want, ok := checkQuantity(t, s); ok {
			parsed = append(parsed, pair{got, want, s})
		}
	}
	if len(parsed) < 10000 {
		t.Fatalf("only %d of the corpus parse", len(parsed))
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 50000 {
		a, b := parsed[r.IntN(len(parsed))], parsed[r.IntN(len(parsed))]
		if got, want := a.got.Cmp(b.got), a.want.Cmp(b.want); got != want {
			t.Fatalf("%q vs %q: %d, apimachinery %d", a.text, b.text, got, want)
		}
	}
}

// TestQuantityHugeExponent: what would hang apimachinery (and with it the
// webhook, on a hostile annotation) is a quick answer here.
func TestQuantityHugeExponent(t *testing.T) {
	for s, want := range map[string]string{
		"1e-2147483648":  "1e-9",
		"1.5e-999999999": "1e-9",
		"1e2147483647":   "10e2147483646",
		"5e4294967296":   "5e4294967296", // int32 exponent 0, kept as written
	} {
		q, err := parseQuantity(s)
		if err != nil || q.String() != want {
			t.Errorf("%q: %q, %v; want %q", s, q.String(), err, want)
		}
	}
	small, _ := parseQuantity("1n")
	tiny, _ := parseQuantity("1e-2147483648")
	huge, _ := parseQuantity("1e2147483647")
	if small.Cmp(tiny) != 0 || huge.Cmp(small) != 1 || small.Cmp(huge) != -1 {
		t.Errorf("compare: %d %d %d", small.Cmp(tiny), huge.Cmp(small), small.Cmp(huge))
	}
}

func FuzzQuantity(f *testing.F) {
	for _, s := range quantityCorpus()[:200] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkQuantity(t, s)
	})
}

// TestQuantityLongInput: an annotation near the API's 256 KiB limit is
// read in time proportional to its length.
func TestQuantityLongInput(t *testing.T) {
	long := "1" + strings.Repeat("0", 200000) + "m"
	q, err := parseQuantity(long)
	same, _ := parseQuantity("1e199997")
	if err != nil || q.Cmp(same) != 0 {
		t.Fatalf("%v, %s", err, q.String())
	}
	frac := "0." + strings.Repeat("0", 200000) + "1"
	if q, err := parseQuantity(frac); err != nil || q.String() != "1n" {
		t.Fatalf("%q, %v", q.String(), err)
	}
}
