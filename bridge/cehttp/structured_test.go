package cehttp

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/jsonscan/jsonscantest"
)

// quickSeeds are structured events of the usual shape and of every shape
// the quick path must decline or pass to the SDK unchanged.
var quickSeeds = []string{
	`{"specversion":"1.0","id":"b-1","source":"/bench","type":"com.example.bench","datacontenttype":"application/json","data":{"pad":"xx"}}`,
	`{"specversion":"1.0","id":"1","source":"https://example.com/a?b=c#d","type":"t","subject":"s","time":"2024-05-06T07:08:09.123Z","myext":"v","data":[1,2,3]}`,
	`{"id":"1","source":"/s","type":"t","specversion":"1.0","data":"text","subject":"","datacontenttype":""}`,
	`{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":"hello"}`,
	`{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/json; charset=utf-8","data":{"a":1}}`,
	`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":null}`,
	`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":12.5}`,
	`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":tru}}`,
	`{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"aGVsbG8="}`,
	`{"specversion":"1.0","id":"1","source":"/s","type":"t","dataschema":"https://example.com/s"}`,
	`{"specversion":"1.0","id":"a\"b","source":"/s","type":"t"}`,
	`{"specversion":"1.0","id":"é ü","source":"/s","type":"t","n":5,"b":true,"x":"é"}`,
	`{"specversion":"0.3","id":"1","source":"/s","type":"t","schemaurl":"/x"}`,
	`{"specversion":"1.0","id":"1","source":"::","type":"t"}`,
	`{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"yesterday"}`,
	`{"specversion":"1.0","id":"1","source":"/s","type":"t","time":""}`,
	`{"specversion":1,"id":"1","source":"/s","type":"t"}`,
	`{"specversion":"1.0","id":2,"source":"/s","type":"t"}`,
	`{"specversion":"1.0","source":"/s","type":"t"}`,
	`{"specversion":"1.0","id":"1","source":"/s","type":"t" "data":1}`,
	`{"id":"1","source":"/s","type":"t"}`,
	`{"specversion":"2.0","id":"1","source":"/s","type":"t"}`,
	` {"specversion" : "1.0" , "id":"1","source":"/s","type":"t","data" : { "a" : [ 1 , 2 ] } } `,
}

// checkQuickIsTheSDKs fails if the quick path builds an event for body
// that the SDK's decoder would not build the same. Where the body is not
// valid JSON (only the data can be malformed then), validation must
// refuse the quick event, as it refuses the SDK's.
func checkQuickIsTheSDKs(t *testing.T, body []byte) {
	if !utf8.Valid(body) {
		return
	}
	var q quickEvent
	if checkStructured(body, 0, true, &q) != nil {
		return
	}
	quick, ok := q.event()
	if !ok {
		return
	}
	if !json.Valid(body) {
		require.Error(t, bridge.Validate(quick), "the quick path accepted malformed %q", body)
		return
	}
	sdk := event.New()
	require.NoError(t, sdk.UnmarshalJSON(body), "the quick path accepted %q", body)
	sdk.DataEncoded = bytes.TrimLeft(sdk.DataEncoded, " \t\r\n") // the SDK keeps the space before the data
	require.Equal(t, sdk, *quick, "decoding %q", body)
}

func TestQuickEventIsTheSDKs(t *testing.T) {
	built := 0
	for _, s := range quickSeeds {
		checkQuickIsTheSDKs(t, []byte(s))
		var q quickEvent
		if checkStructured([]byte(s), 0, false, &q) == nil {
			if _, ok := q.event(); ok {
				built++
			}
		}
	}
	require.GreaterOrEqual(t, built, 6, "the quick path builds the usual shapes")
	r := rand.New(rand.NewPCG(3, 4))
	for range 30000 {
		s := quickSeeds[r.IntN(len(quickSeeds))]
		b := []byte(s)
		for range 1 + r.IntN(3) {
			b = jsonscantest.Mutate(r, b, `{}[]":,\ 0123456789.-eEtrufalsn/abcxyé`+"\t\x01")
		}
		checkQuickIsTheSDKs(t, b)
	}
}

func FuzzQuickEventIsTheSDKs(f *testing.F) {
	for _, s := range quickSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkQuickIsTheSDKs)
}
