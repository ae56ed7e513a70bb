package clickhouse

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/meshd/meshd/bridge/jsonscan"
)

// convert turns one decoded JSON value (nil, bool, string, json.Number,
// []any, map[string]any) into the Go value the driver appends to a column,
// or says why it does not fit. It must refuse what the driver would refuse
// or wrap: one bad value fails a whole block.
type convert func(v any) (any, error)

var (
	timeType    = reflect.TypeFor[time.Time]()
	decimalType = reflect.TypeFor[decimal.Decimal]()
	uuidType    = reflect.TypeFor[uuid.UUID]()
	int64Type   = reflect.TypeFor[int64]()
	uint64Type  = reflect.TypeFor[uint64]()
	float64Type = reflect.TypeFor[float64]()
)

// converter returns the conversion for a column of ClickHouse type typ
// that the driver reads into Go type scan, or an error if meshd does not
// write that type.
func converter(typ string, scan reflect.Type) (convert, error) {
	if inner, ok := unwrap(typ, "LowCardinality"); ok {
		return converter(inner, scan)
	}
	if inner, ok := unwrap(typ, "Nullable"); ok {
		return nullable(inner, scan)
	}
	if inner, ok := unwrap(typ, "Array"); ok && scan.Kind() == reflect.Slice {
		return array(inner, scan)
	}
	if inner, ok := unwrap(typ, "Map"); ok && scan.Kind() == reflect.Map && scan.Key().Kind() == reflect.String {
		parts := splitTop(inner)
		if len(parts) == 2 {
			return mapOf(parts[1], scan)
		}
	}
	switch scan {
	case timeType:
		return dateTime(typ)
	case decimalType:
		return decimalOf(typ)
	case uuidType:
		return func(v any) (any, error) {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("want a UUID string, got %s", jsonscan.Kind(v))
			}
			return uuid.Parse(s)
		}, nil
	}
	switch scan.Kind() {
	case reflect.String:
		return stringOf(typ)
	case reflect.Bool:
		return func(v any) (any, error) {
			b, ok := v.(bool)
			if !ok {
				return nil, fmt.Errorf("want true or false, got %s", jsonscan.Kind(v))
			}
			return b, nil
		}, nil
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return signed(scan), nil
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return unsigned(scan), nil
	case reflect.Float32, reflect.Float64:
		return float(scan), nil
	}
	return nil, fmt.Errorf("clickhouse-sink does not write columns of type %s", typ)
}

// unwrap returns X of a type name Wrapper(X).
func unwrap(typ, wrapper string) (string, bool) {
	if strings.HasPrefix(typ, wrapper+"(") && strings.HasSuffix(typ, ")") {
		return typ[len(wrapper)+1 : len(typ)-1], true
	}
	return "", false
}

// splitTop splits type arguments at the commas outside parentheses and
// quotes: "String, Array(UInt8)" → ["String", "Array(UInt8)"].
func splitTop(args string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(args); i++ {
		switch c := args[i]; {
		case quoted && c == '\\':
			i++
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(args[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(args[start:]))
}

func nullable(inner string, scan reflect.Type) (convert, error) {
	if scan.Kind() != reflect.Pointer {
		return nil, fmt.Errorf("clickhouse-sink does not write columns of type Nullable(%s)", inner)
	}
	conv, err := converter(inner, scan.Elem())
	if err != nil {
		return nil, err
	}
	null := reflect.Zero(scan).Interface()
	return func(v any) (any, error) {
		if v == nil {
			return null, nil
		}
		x, err := conv(v)
		if err != nil {
			return nil, err
		}
		p := reflect.New(scan.Elem())
		p.Elem().Set(reflect.ValueOf(x))
		return p.Interface(), nil
	}, nil
}

func array(inner string, scan reflect.Type) (convert, error) {
	conv, err := converter(inner, scan.Elem())
	if err != nil {
		return nil, err
	}
	return func(v any) (any, error) {
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("want an array, got %s", jsonscan.Kind(v))
		}
		out := reflect.MakeSlice(scan, len(list), len(list))
		for i, x := range list {
			cx, err := conv(x)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out.Index(i).Set(reflect.ValueOf(cx))
		}
		return out.Interface(), nil
	}, nil
}

func mapOf(valueType string, scan reflect.Type) (convert, error) {
	conv, err := converter(valueType, scan.Elem())
	if err != nil {
		return nil, err
	}
	return func(v any) (any, error) {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("want an object, got %s", jsonscan.Kind(v))
		}
		out := reflect.MakeMapWithSize(scan, len(obj))
		for k, x := range obj {
			cx, err := conv(x)
			if err != nil {
				return nil, fmt.Errorf("[%q]: %w", k, err)
			}
			out.SetMapIndex(reflect.ValueOf(k).Convert(scan.Key()), reflect.ValueOf(cx))
		}
		return out.Interface(), nil
	}, nil
}

var enumItemRe = regexp.MustCompile(`'((?:[^'\\]|\\.)*)'\s*=\s*(-?\d+)`)

// stringOf converts to String, FixedString(N) and Enum columns. Other JSON
// values than strings become their JSON text in a String column.
func stringOf(typ string) (convert, error) {
	if n, ok := unwrap(typ, "FixedString"); ok {
		size, err := strconv.Atoi(n)
		if err != nil {
			return nil, fmt.Errorf("reading the size of %s: %v", typ, err)
		}
		return func(v any) (any, error) {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("want a string, got %s", jsonscan.Kind(v))
			}
			if len(s) > size {
				return nil, fmt.Errorf("%d bytes do not fit %s", len(s), typ)
			}
			return s, nil
		}, nil
	}
	if strings.HasPrefix(typ, "Enum") {
		names := map[string]bool{}
		byValue := map[string]string{}
		for _, m := range enumItemRe.FindAllStringSubmatch(typ, -1) {
			name := strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(m[1])
			names[name] = true
			byValue[m[2]] = name
		}
		return func(v any) (any, error) {
			switch x := v.(type) {
			case string:
				if names[x] {
					return x, nil
				}
			case json.Number:
				if name, ok := byValue[x.String()]; ok {
					return name, nil
				}
			}
			return nil, fmt.Errorf("%v is not a value of %s", v, typ)
		}, nil
	}
	return func(v any) (any, error) {
		switch v.(type) {
		case string:
			return v, nil // as it came: a string put in an interface again would be copied
		case nil:
			return nil, fmt.Errorf("null in a column that is not Nullable")
		}
		b, err := json.Marshal(v)
		return string(b), err
	}, nil
}

func signed(scan reflect.Type) convert {
	return func(v any) (any, error) {
		n, err := strconv.ParseInt(numberText(v), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want an integer, got %s", jsonscan.Kind(v))
		}
		if scan == int64Type {
			return n, nil // the common case (also below), without reflect's two allocations
		}
		out := reflect.New(scan).Elem()
		if out.OverflowInt(n) {
			return nil, fmt.Errorf("%d does not fit %s", n, scan)
		}
		out.SetInt(n)
		return out.Interface(), nil
	}
}

func unsigned(scan reflect.Type) convert {
	return func(v any) (any, error) {
		text := numberText(v)
		if b, ok := v.(bool); ok && scan.Kind() == reflect.Uint8 { // UInt8 is ClickHouse's old boolean
			text = "0"
			if b {
				text = "1"
			}
		}
		n, err := strconv.ParseUint(text, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want an unsigned integer, got %s", jsonscan.Kind(v))
		}
		if scan == uint64Type {
			return n, nil
		}
		out := reflect.New(scan).Elem()
		if out.OverflowUint(n) {
			return nil, fmt.Errorf("%d does not fit %s", n, scan)
		}
		out.SetUint(n)
		return out.Interface(), nil
	}
}

func float(scan reflect.Type) convert {
	return func(v any) (any, error) {
		f, err := strconv.ParseFloat(numberText(v), 64)
		if err != nil {
			return nil, fmt.Errorf("want a number, got %s", jsonscan.Kind(v))
		}
		if scan == float64Type {
			return f, nil
		}
		out := reflect.New(scan).Elem()
		if !math.IsInf(f, 0) && out.OverflowFloat(f) {
			return nil, fmt.Errorf("%v does not fit %s", f, scan)
		}
		out.SetFloat(f)
		return out.Interface(), nil
	}
}

// numberText is the text of a JSON number, or of a string (producers
// often send 64-bit integers as strings); "" for anything else.
func numberText(v any) string {
	switch x := v.(type) {
	case json.Number:
		return x.String()
	case string:
		return strings.TrimSpace(x)
	}
	return ""
}

var decimalArgsRe = regexp.MustCompile(`^Decimal(32|64|128|256)?\((\d+)(?:,\s*(\d+))?\)$`)

// decimalOf converts to Decimal(P, S) and DecimalN(S) from a JSON number
// or a numeric string, rounded to the scale; a value beyond the precision
// fails (the driver would wrap it).
func decimalOf(typ string) (convert, error) {
	m := decimalArgsRe.FindStringSubmatch(typ)
	if m == nil {
		return nil, fmt.Errorf("clickhouse-sink does not write columns of type %s", typ)
	}
	precision, _ := strconv.Atoi(m[2])
	scale := 0
	switch {
	case m[1] != "": // DecimalN(S)
		scale = precision
		precision = map[string]int{"32": 9, "64": 18, "128": 38, "256": 76}[m[1]]
	case m[3] != "":
		scale, _ = strconv.Atoi(m[3])
	}
	limit := decimal.New(1, int32(precision-scale))
	return func(v any) (any, error) {
		d, err := decimal.NewFromString(numberText(v))
		if err != nil {
			return nil, fmt.Errorf("want a decimal number, got %s", jsonscan.Kind(v))
		}
		d = d.Round(int32(scale))
		if d.Abs().GreaterThanOrEqual(limit) {
			return nil, fmt.Errorf("%s does not fit %s", d, typ)
		}
		return d, nil
	}, nil
}

// Ranges of the date and time types (as of ClickHouse 22; older servers
// have no Date32 and DateTime64).
var (
	minDate   = time.Unix(0, 0).UTC()
	maxDate   = time.Date(2149, 6, 6, 0, 0, 0, 0, time.UTC)
	maxDT     = time.Unix(math.MaxUint32, 0).UTC()
	minDate32 = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDate32 = time.Date(2299, 12, 31, 23, 59, 59, 999_999_999, time.UTC)
)

// dateTime converts to Date, Date32, DateTime and DateTime64 from RFC 3339
// text (a time without a zone is UTC), "2006-01-02 15:04:05", "2006-01-02"
// or a number of Unix seconds; a time out of the type's range fails (the
// driver would wrap it).
func dateTime(typ string) (convert, error) {
	lo, hi := minDate, maxDT
	switch {
	case strings.HasPrefix(typ, "DateTime64"), strings.HasPrefix(typ, "Date32"):
		lo, hi = minDate32, maxDate32
	case strings.HasPrefix(typ, "DateTime"):
	case typ == "Date":
		hi = maxDate
	default:
		return nil, fmt.Errorf("clickhouse-sink does not write columns of type %s", typ)
	}
	return func(v any) (any, error) {
		ts, err := parseTime(v)
		if err != nil {
			return nil, err
		}
		if ts.Before(lo) || ts.After(hi) {
			return nil, fmt.Errorf("%s is out of the range of %s", ts.Format(time.RFC3339Nano), typ)
		}
		return ts, nil
	}, nil
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02"}

func parseTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case string:
		for _, layout := range timeLayouts {
			if ts, err := time.Parse(layout, x); err == nil {
				return ts.UTC(), nil
			}
		}
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time or date", x)
	case json.Number:
		d, err := decimal.NewFromString(x.String())
		if err != nil {
			return time.Time{}, err
		}
		sec := d.Floor()
		return time.Unix(sec.IntPart(), d.Sub(sec).Shift(9).IntPart()).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("want a time, got %s", jsonscan.Kind(v))
}

// jsonValue maps a value read from a column to its JSON form: NULL null,
// times RFC 3339 in UTC, decimals and non-finite floats as strings, UUIDs
// as text; the rest as encoding/json writes it.
func jsonValue(v any) any {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
	}
	if !rv.IsValid() {
		return nil
	}
	switch x := rv.Interface().(type) {
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case decimal.Decimal:
		if x.Exponent() < 0 { // the column's scale: 12.5000 of a Decimal(18, 4) keeps its zeros
			return x.StringFixed(-x.Exponent())
		}
		return x.String()
	case uuid.UUID:
		return x.String()
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return strconv.FormatFloat(float64(x), 'g', -1, 32)
		}
		return json.Number(strconv.FormatFloat(float64(x), 'g', -1, 32)) // 1.1, not 1.100000023841858
	}
	return rv.Interface()
}
