package clickhouse

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge/jsonscan"
)

// decodeJSON decodes one JSON value as the sink does.
func decodeJSON(t *testing.T, s string) any {
	t.Helper()
	v, err := jsonscan.Decode([]byte(s))
	require.NoError(t, err, s)
	return v
}

func TestSplitTop(t *testing.T) {
	assert.Equal(t, []string{"String", "Array(Tuple(UInt8, String))"}, splitTop("String, Array(Tuple(UInt8, String))"))
	assert.Equal(t, []string{"'a, (b' = 1", "'c' = 2"}, splitTop(`'a, (b' = 1, 'c' = 2`))
	assert.Equal(t, []string{`'it\'s' = 1`, "'x' = 2"}, splitTop(`'it\'s' = 1, 'x' = 2`))
}

// Each case converts a JSON value for a column type (as the server names
// it and the driver scans it); want is the Go value appended, or wantErr
// a part of the error.
func TestConverter(t *testing.T) {
	ptr := func(n int32) *int32 { return &n }
	str := func(s string) *string { return &s }
	cases := []struct {
		typ     string
		scan    any
		in      string
		want    any
		wantErr string
	}{
		{"UInt64", uint64(0), `18446744073709551615`, uint64(18446744073709551615), ""},
		{"UInt64", uint64(0), `"42"`, uint64(42), ""},
		{"UInt64", uint64(0), `-1`, nil, "want an unsigned integer"},
		{"UInt8", uint8(0), `true`, uint8(1), ""},
		{"UInt8", uint8(0), `256`, nil, "does not fit uint8"},
		{"Int8", int8(0), `-128`, int8(-128), ""},
		{"Int16", int16(0), `40000`, nil, "does not fit int16"},
		{"Int32", int32(0), `1.5`, nil, "want an integer"},
		{"Float64", float64(0), `1.25`, 1.25, ""},
		{"Float32", float32(0), `1e40`, nil, "does not fit float32"},
		{"String", "", `"hé"`, "hé", ""},
		{"String", "", `{"a":[1,2]}`, `{"a":[1,2]}`, ""},
		{"String", "", `null`, nil, "not Nullable"},
		{"FixedString(3)", "", `"abc"`, "abc", ""},
		{"FixedString(3)", "", `"abcd"`, nil, "4 bytes do not fit FixedString(3)"},
		{"Enum8('a' = 1, 'it\\'s' = 2)", "", `"it's"`, "it's", ""},
		{"Enum8('a' = 1, 'b' = 2)", "", `2`, "b", ""},
		{"Enum8('a' = 1, 'b' = 2)", "", `"c"`, nil, "is not a value of Enum8"},
		{"Decimal(18, 4)", decimal.Decimal{}, `"12.34567"`, decimal.RequireFromString("12.3457"), ""},
		{"Decimal(18, 4)", decimal.Decimal{}, `99999999999999.9999`, decimal.RequireFromString("99999999999999.9999"), ""},
		{"Decimal(18, 4)", decimal.Decimal{}, `100000000000000`, nil, "does not fit Decimal(18, 4)"},
		{"Decimal32(2)", decimal.Decimal{}, `10000000`, nil, "does not fit"},
		{"Decimal32(2)", decimal.Decimal{}, `9999999.99`, decimal.RequireFromString("9999999.99"), ""},
		{"DateTime", time.Time{}, `"2026-11-23T10:00:00+01:00"`, time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC), ""},
		{"DateTime('Europe/Berlin')", time.Time{}, `"2026-11-23 10:00:00"`, time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), ""},
		{"DateTime", time.Time{}, `1700000000`, time.Unix(1700000000, 0).UTC(), ""},
		{"DateTime", time.Time{}, `"2300-01-01"`, nil, "out of the range of DateTime"},
		{"DateTime64(3)", time.Time{}, `"2300-01-01"`, time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), "out of the range"},
		{"DateTime64(3)", time.Time{}, `1700000000.25`, time.Unix(1700000000, 250_000_000).UTC(), ""},
		{"Date", time.Time{}, `"2026-11-23"`, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), ""},
		{"Date", time.Time{}, `"yesterday"`, nil, "not an RFC 3339"},
		{"UUID", uuid.UUID{}, `"2b0e7a0a-0000-4000-8000-000000000001"`, uuid.MustParse("2b0e7a0a-0000-4000-8000-000000000001"), ""},
		{"UUID", uuid.UUID{}, `"nope"`, nil, "invalid UUID"},
		{"Nullable(Int32)", (*int32)(nil), `null`, (*int32)(nil), ""},
		{"Nullable(Int32)", (*int32)(nil), `7`, ptr(7), ""},
		{"LowCardinality(Nullable(String))", (*string)(nil), `"x"`, str("x"), ""},
		{"Array(Nullable(String))", []*string{}, `["a", null]`, []*string{str("a"), nil}, ""},
		{"Array(UInt8)", []uint8{}, `[1, 300]`, nil, "[1]: 300 does not fit uint8"},
		{"Array(UInt8)", []uint8{}, `"1"`, nil, "want an array"},
		{"Map(String, UInt64)", map[string]uint64{}, `{"a": 1}`, map[string]uint64{"a": 1}, ""},
		{"Bool", false, `true`, true, ""},
		{"Bool", false, `"true"`, nil, "want true or false"},
	}
	for _, c := range cases {
		conv, err := converter(c.typ, reflect.TypeOf(c.scan))
		require.NoError(t, err, c.typ)
		got, err := conv(decodeJSON(t, c.in))
		if c.wantErr != "" {
			require.Error(t, err, "%s ← %s gave %v", c.typ, c.in, got)
			assert.Contains(t, err.Error(), c.wantErr, "%s ← %s", c.typ, c.in)
			continue
		}
		require.NoError(t, err, "%s ← %s", c.typ, c.in)
		if d, ok := c.want.(decimal.Decimal); ok {
			assert.True(t, d.Equal(got.(decimal.Decimal)), "%s ← %s: %v", c.typ, c.in, got)
			continue
		}
		assert.Equal(t, c.want, got, "%s ← %s", c.typ, c.in)
	}

	_, err := converter("Tuple(UInt8, String)", reflect.TypeFor[[]any]())
	assert.ErrorContains(t, err, "does not write columns of type Tuple(UInt8, String)")
}

func TestJSONValue(t *testing.T) {
	n := int32(5)
	var nilPtr *int32
	assert.Nil(t, jsonValue(&nilPtr))
	assert.Equal(t, int32(5), jsonValue(&n))
	ts := time.Date(2026, 11, 23, 10, 0, 0, 5000, time.FixedZone("X", 3600))
	assert.Equal(t, "2026-11-23T09:00:00.000005Z", jsonValue(&ts))
	d := decimal.RequireFromString("12345678901234567890.1234")
	assert.Equal(t, "12345678901234567890.1234", jsonValue(&d))
	f := float32(1.1)
	assert.Equal(t, json.Number("1.1"), jsonValue(&f))
	u := uuid.MustParse("2b0e7a0a-0000-4000-8000-000000000001")
	assert.Equal(t, "2b0e7a0a-0000-4000-8000-000000000001", jsonValue(&u))
}

func TestParseURL(t *testing.T) {
	o, err := parseURL("clickhouse://u:pw@h/db?dial_timeout=3s")
	require.NoError(t, err)
	assert.Equal(t, []string{"h:9000"}, o.Addr)
	assert.Equal(t, "db", o.Auth.Database)
	assert.Equal(t, 3*time.Second, o.DialTimeout)
	o, err = parseURL("clickhouse://h:19000")
	require.NoError(t, err)
	assert.Equal(t, defaultDialTimeout, o.DialTimeout)
	for _, bad := range []string{"http://u:s3cret@h/db", "clickhouse:///db", "clickhouse://u:s3cret@h/db?dial_timeout=soon", "::"} {
		_, err := parseURL(bad)
		require.Error(t, err, bad)
		assert.NotContains(t, err.Error(), "s3cret", "errors never echo the URL")
	}
}
