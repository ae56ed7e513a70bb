package injector

import (
	"errors"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// quantity is a Kubernetes resource quantity ("50m", "64Mi", "1e3") read
// and written as k8s.io/apimachinery's resource.Quantity reads and writes
// it, without linking Kubernetes: the same strings parse, the same values
// compare, and the same text comes out (the canonical form, or the input
// where apimachinery keeps it). quantity_test.go holds it to apimachinery.
type quantity struct {
	neg bool
	// The magnitude is digits × 10^exp, digits without trailing zeros.
	digits *big.Int
	exp    int
	format quantityFormat
	// text is the input when apimachinery keeps it as the quantity's text.
	text string
}

type quantityFormat int

const (
	decimalSI quantityFormat = iota
	binarySI
	decimalExponent
)

var errQuantity = errors.New("not a quantity")

// parseQuantity is resource.ParseQuantity.
func parseQuantity(str string) (quantity, error) {
	if str == "" {
		return quantity{}, errQuantity
	}
	if str == "0" {
		return quantity{digits: new(big.Int), text: str}, nil
	}
	neg, value, num, denom, suffix, ok := scanQuantity(str)
	if !ok {
		return quantity{}, errQuantity
	}
	base, exponent, format, ok := interpretSuffix(suffix)
	if !ok {
		return quantity{}, errQuantity
	}
	text, fast := fastPath(str, num, denom, exponent, format)
	if !fast && !strings.ContainsAny(value, "0123456789") {
		return quantity{}, errQuantity // apimachinery's slow path needs a digit
	}

	q := quantity{neg: neg, digits: new(big.Int), format: format, text: text}
	q.digits.SetString(num+denom, 10)
	// int32 as in apimachinery, which keeps scales in int32.
	if base == 10 {
		q.exp = int(exponent - int32(len(denom)))
	} else {
		q.digits.Lsh(q.digits, uint(exponent))
		q.exp = -len(denom)
	}
	q.normalize()
	if q.digits.Sign() != 0 && q.exp < -9 {
		q.roundUpToNano()
	}
	if format == binarySI && q.cmpAbs(maxInt64Quantity) > 0 {
		q.digits, q.exp = new(big.Int).Set(maxInt64Quantity.digits), 0
	}
	return q, nil
}

var maxInt64Quantity = quantity{digits: big.NewInt(math.MaxInt64)}

// scanQuantity is apimachinery's parseQuantityString: an optional sign,
// digits (leading zeros dropped from num), an optional "." and digits, and
// a suffix of the letters "eEinumkKMGTP", then an optional sign and digits.
// value is the number as written, for its digits.
func scanQuantity(str string) (neg bool, value, num, denom, suffix string, ok bool) {
	pos, end := 0, len(str)
	switch str[0] {
	case '-':
		neg = true
		pos++
	case '+':
		pos++
	}
	for pos < end && str[pos] == '0' {
		pos++
	}
	if pos == end {
		return neg, "0", "0", "", "", true
	}
	start := pos
	for pos < end && isDigit(str[pos]) {
		pos++
	}
	num = str[start:pos]
	if num == "" {
		num = "0"
	}
	if pos < end && str[pos] == '.' {
		pos++
		start := pos
		for pos < end && isDigit(str[pos]) {
			pos++
		}
		denom = str[start:pos]
	}
	value = str[:pos]
	start = pos
	for pos < end && strings.IndexByte("eEinumkKMGTP", str[pos]) >= 0 {
		pos++
	}
	if pos < end && (str[pos] == '-' || str[pos] == '+') {
		pos++
	}
	for pos < end && isDigit(str[pos]) {
		pos++
	}
	return neg, value, num, denom, str[start:], pos == end
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

var (
	decimalSuffixes = map[string]int32{"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
	binarySuffixes  = map[string]int32{"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
)

// interpretSuffix gives the base and exponent a suffix multiplies by.
func interpretSuffix(s string) (base, exponent int32, format quantityFormat, ok bool) {
	if e, ok := decimalSuffixes[s]; ok {
		return 10, e, decimalSI, true
	}
	if e, ok := binarySuffixes[s]; ok {
		return 2, e, binarySI, true
	}
	if len(s) > 1 && (s[0] == 'e' || s[0] == 'E') {
		e, err := strconv.ParseInt(s[1:], 10, 64)
		if err != nil {
			return 0, 0, 0, false
		}
		return 10, int32(e), decimalExponent, true
	}
	return 0, 0, 0, false
}

// fastPath reports whether apimachinery parses str on its int64 fast path,
// and text is str when that path keeps str as the canonical text.
func fastPath(str, num, denom string, exponent int32, format quantityFormat) (text string, fast bool) {
	if format == binarySI {
		precision := 15 - len(num) - int(float32(exponent)*3/10) - 1
		if denom != "" || precision < 0 {
			return "", false
		}
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil || v > math.MaxInt64>>exponent {
			return "", false
		}
		if exponent%10 == 0 && v&7 != 0 {
			return str, true
		}
		return "", true
	}
	scale := exponent - int32(len(denom))
	if 18-len(num)-len(denom) < 0 || scale < -9 {
		return "", false
	}
	shifted := num + denom
	if scale%3 == 0 && !strings.HasSuffix(shifted, "000") && shifted[0] != '0' {
		return str, true
	}
	return "", true
}

// normalize moves the trailing zeros of digits into exp (through the
// decimal text: dividing by ten for each zero is quadratic).
func (q *quantity) normalize() {
	if q.digits.Sign() == 0 {
		q.exp = 0
		return
	}
	s := q.digits.String()
	t := strings.TrimRight(s, "0")
	if len(t) < len(s) {
		q.digits.SetString(t, 10)
		q.exp += len(s) - len(t)
	}
}

// roundUpToNano rounds a magnitude below 10^-9 precision up (away from
// zero) to a whole number of nanos, as apimachinery does.
func (q *quantity) roundUpToNano() {
	k := -9 - q.exp
	if k > len(q.digits.String()) {
		q.digits, q.exp = big.NewInt(1), -9
		return
	}
	d, r := new(big.Int).QuoRem(q.digits, pow10(k), new(big.Int))
	if r.Sign() != 0 {
		d.Add(d, big.NewInt(1))
	}
	q.digits, q.exp = d, -9
	q.normalize()
}

func pow10(n int) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

// Sign is -1, 0 or +1.
func (q quantity) Sign() int {
	if q.neg {
		return -q.digits.Sign()
	}
	return q.digits.Sign()
}

// Cmp compares the values of q and o: -1, 0 or +1.
func (q quantity) Cmp(o quantity) int {
	if qs, os := q.Sign(), o.Sign(); qs != os || qs == 0 {
		return compareInts(qs, os)
	}
	c := q.cmpAbs(o)
	if q.neg {
		return -c
	}
	return c
}

// cmpAbs compares magnitudes without writing out a large power of ten.
func (q quantity) cmpAbs(o quantity) int {
	if q.digits.Sign() == 0 || o.digits.Sign() == 0 {
		return compareInts(q.digits.Sign(), o.digits.Sign())
	}
	// The order of magnitude first: digits × 10^exp is below 10^(len+exp).
	if c := compareInts(len(q.digits.String())+q.exp, len(o.digits.String())+o.exp); c != 0 {
		return c
	}
	a, b := q.digits, o.digits
	if q.exp > o.exp {
		a = new(big.Int).Mul(a, pow10(q.exp-o.exp))
	} else if o.exp > q.exp {
		b = new(big.Int).Mul(b, pow10(o.exp-q.exp))
	}
	return a.Cmp(b)
}

func compareInts(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// String is the quantity as apimachinery writes it: the kept input, or the
// canonical form, an integer and the largest suffix of its format that
// keeps it one ("250m", "1536Mi", "1e3").
func (q quantity) String() string {
	if q.text != "" {
		return q.text
	}
	if q.digits.Sign() == 0 {
		return "0"
	}
	sign := ""
	if q.neg {
		sign = "-"
	}
	if q.format == binarySI && q.exp >= 0 && q.cmpAbs(quantity{digits: big.NewInt(1024)}) >= 0 {
		v := new(big.Int).Mul(q.digits, pow10(q.exp))
		k := big.NewInt(1024)
		n, r := 0, new(big.Int)
		for {
			d, m := new(big.Int).QuoRem(v, k, r)
			if m.Sign() != 0 {
				break
			}
			v = d
			n++
		}
		return sign + v.String() + suffixOf(binarySuffixes, 10*n)
	}
	// Decimal: the exponent down to a multiple of 3.
	d, e := q.digits, q.exp
	switch e % 3 {
	case 1, -2:
		d, e = new(big.Int).Mul(d, big.NewInt(10)), e-1
	case 2, -1:
		d, e = new(big.Int).Mul(d, big.NewInt(100)), e-2
	}
	switch {
	case q.format != decimalExponent:
		return sign + d.String() + suffixOf(decimalSuffixes, e)
	case e != 0:
		return sign + d.String() + "e" + strconv.Itoa(e)
	}
	return sign + d.String()
}

// suffixOf finds the suffix of exponent e, or none, as apimachinery does
// beyond "E".
func suffixOf(suffixes map[string]int32, e int) string {
	for s, x := range suffixes {
		if int(x) == e {
			return s
		}
	}
	return ""
}
