package injector_test

import (
	"encoding/json"
	"reflect"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"

	"github.com/meshd/meshd/deploy/injector"
)

// TestCreatePatchRoundTrip applies each generated patch with an
// independent RFC 6902 implementation and expects the target back.
func TestCreatePatchRoundTrip(t *testing.T) {
	tests := []struct{ name, from, to, wantFirst string }{
		{"add key with slash and tilde", `{"m":{"a":1}}`, `{"m":{"a":1,"x/y~z":2}}`, "/m/x~1y~0z"},
		{"add missing object", `{"spec":{}}`, `{"spec":{"labels":{"k":"v"}}}`, "/spec/labels"},
		{"remove key", `{"a":1,"b":2}`, `{"a":1}`, "/b"},
		{"replace scalar", `{"a":1}`, `{"a":"1"}`, "/a"},
		{"append", `{"l":[1,2]}`, `{"l":[1,2,3,4]}`, "/l/2"},
		{"prepend", `{"l":[{"n":"app"}]}`, `{"l":[{"n":"meshd"},{"n":"app"}]}`, "/l/0"},
		{"insert in the middle", `{"l":[1,4]}`, `{"l":[1,2,3,4]}`, "/l/1"},
		{"add missing array", `{}`, `{"l":[1]}`, "/l"},
		{"element changed", `{"l":[{"a":1},{"a":2}]}`, `{"l":[{"a":1},{"a":3,"b":[]}]}`, "/l/1/a"},
		{"shrunk array replaced", `{"l":[1,2,3]}`, `{"l":[1,3]}`, "/l"},
		{"reordered array replaced", `{"l":[1,2]}`, `{"l":[2,1,3]}`, "/l"},
		{"type change", `{"a":{"b":1}}`, `{"a":[1]}`, "/a"},
		{"add null", `{}`, `{"a":null}`, "/a"},
		{"big numbers kept", `{"n":9007199254740993}`, `{"n":9007199254740993,"m":1}`, "/m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var from, to any
			if err := json.Unmarshal([]byte(tt.from), &from); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.to), &to); err != nil {
				t.Fatal(err)
			}
			ops, err := injector.CreatePatch(json.RawMessage(tt.from), json.RawMessage(tt.to))
			if err != nil {
				t.Fatal(err)
			}
			if len(ops) == 0 || ops[0].Path != tt.wantFirst {
				t.Errorf("ops %+v, want first path %s", ops, tt.wantFirst)
			}
			raw, _ := json.Marshal(ops)
			p, err := jsonpatch.DecodePatch(raw)
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.Apply([]byte(tt.from))
			if err != nil {
				t.Fatalf("applying %s: %v", raw, err)
			}
			var got any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, to) {
				t.Errorf("got %s, want %s (patch %s)", out, tt.to, raw)
			}
		})
	}
	if ops, _ := injector.CreatePatch(json.RawMessage(`{"a":[1]}`), json.RawMessage(`{"a":[1]}`)); len(ops) != 0 {
		t.Errorf("equal documents gave %v", ops)
	}
}
