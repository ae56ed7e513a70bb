package injector

import (
	"encoding/json"
	"reflect"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
)

// FuzzInject: whatever JSON comes as a pod, Inject does not panic, and the
// webhook's patch turns the pod into exactly what Inject built.
func FuzzInject(f *testing.F) {
	for _, seed := range []string{
		`{"metadata":{"name":"p","annotations":{"meshd.io/app-port":"http"}},"spec":{"containers":[{"name":"a","ports":[{"name":"http","containerPort":8080}],"env":[{"name":"X","value":"1"}]}]}}`,
		`{"metadata":{"generateName":"w-","labels":null,"ownerReferences":[{"kind":"ReplicaSet","name":"w-1","controller":true}]},"spec":{"initContainers":[{"name":"i"}],"containers":[{"name":"a","env":null}],"volumes":[{"name":"v"}]}}`,
		`{"metadata":{"name":"p","annotations":{"meshd.io/native-sidecar":"false","meshd.io/config":"c","meshd.io/api-token-secret":"s:k"}},"spec":{"containers":[{"name":"a","env":[{"name":"MESHD_HTTP_PORT"}]},{"name":"b"}]}}`,
		`{"metadata":{"name":"p","annotations":{"meshd.io/sidecar-memory-limit":"32Mi","meshd.io/sidecar-cpu":"0.5"}},"spec":{"hostNetwork":true}}`,
		`{}`, `null`, `[]`, `{"spec":{"containers":[null]}}`,
	} {
		f.Add(seed)
	}
	cfg := DefaultConfig()
	cfg.InjectByDefault = true
	f.Fuzz(func(t *testing.T, raw string) {
		pod, err := decodePod([]byte(raw))
		if err != nil {
			return
		}
		before, _ := json.Marshal(pod)
		patched, _, err := Inject(pod, cfg)
		if after, _ := json.Marshal(pod); string(after) != string(before) {
			t.Fatalf("Inject changed its input:\n%s\n%s", before, after)
		}
		if err != nil || patched == nil {
			return
		}
		ops, err := CreatePatch(pod, patched)
		if err != nil {
			t.Fatal(err)
		}
		opsJSON, _ := json.Marshal(ops)
		p, err := jsonpatch.DecodePatch(opsJSON)
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.Apply(before)
		if err != nil {
			t.Fatalf("applying %s to %s: %v", opsJSON, before, err)
		}
		want, _ := json.Marshal(patched)
		var got, wantV any
		_ = json.Unmarshal(out, &got)
		_ = json.Unmarshal(want, &wantV)
		if !reflect.DeepEqual(got, wantV) {
			t.Fatalf("patched by the patch:\n%s\nInject built:\n%s", out, want)
		}
	})
}
