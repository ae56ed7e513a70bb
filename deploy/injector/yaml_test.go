package injector

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	sigsyaml "sigs.k8s.io/yaml"
)

// tricky is YAML that tests what a YAML-to-JSON conversion can get wrong.
const tricky = `
1: int key
true: bool key
1.5: float key
~: null value
anchors: &a {x: 1}
alias: *a
strings: [yes, "no", on, 0x10, 1e3, "1e3", 012, .inf, -.nan, 2024-01-02, "", ' ']
numbers: [1, -1, 1.0, 2.50, 9007199254740993, 1e21, 0.000001]
nested: {list: [[], {}, null, [1, [2]]], empty: {}}
multiline: |
  line one
  line two
`

// TestYAMLAsKubectl: documents convert to JSON and back exactly as with
// sigs.k8s.io/yaml, which meshd inject used before and kubectl uses.
func TestYAMLAsKubectl(t *testing.T) {
	var docs [][]byte
	files, _ := filepath.Glob("../kubernetes/*.yaml")
	for _, f := range append(files, "testdata/workloads.yaml") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d, err := splitDocuments(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d...)
	}
	docs = append(docs, []byte(tricky), []byte(""), []byte("# only a comment\n"), []byte("- a\n- b\n"), []byte("a: ["))
	if len(docs) < 20 {
		t.Fatalf("only %d documents", len(docs))
	}
	for _, doc := range docs {
		got, err := yamlToJSON(doc)
		want, wantErr := sigsyaml.YAMLToJSON(doc)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("YAML to JSON:\n%s\ngot  %s (%v)\nwant %s (%v)", doc, got, err, want, wantErr)
		}
		if err != nil {
			continue
		}
		back, err := jsonToYAML(got)
		wantBack, wantErr := sigsyaml.JSONToYAML(got)
		if err != nil || wantErr != nil || !bytes.Equal(back, wantBack) {
			t.Fatalf("JSON to YAML:\n%s\ngot  %s (%v)\nwant %s (%v)", got, back, err, wantBack, wantErr)
		}

		// The way meshd inject re-encodes a document, against the way it
		// did (numbers as float64 then, as written now).
		v, err := decodeJSON(got)
		if err != nil {
			t.Fatal(err)
		}
		j, _ := json.Marshal(v)
		out, err := jsonToYAML(j)
		var old any
		if err := sigsyaml.Unmarshal(doc, &old); err != nil {
			t.Fatal(err)
		}
		oldOut, _ := sigsyaml.Marshal(old)
		if err != nil || !bytes.Equal(out, oldOut) && !bytes.Contains(doc, []byte("9007199254740993")) {
			t.Fatalf("re-encoded:\n%s\nwas\n%s", out, oldOut)
		}
	}
}

func TestDecodeJSON(t *testing.T) {
	v, err := decodeJSON([]byte(`{"n": 9007199254740993}`))
	if err != nil || v.(map[string]any)["n"] != json.Number("9007199254740993") {
		t.Errorf("%v, %v", v, err)
	}
	for _, bad := range []string{``, `{`, `{} {}`, `{}x`} {
		if _, err := decodeJSON([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
