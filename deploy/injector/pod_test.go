package injector

import (
	"errors"
	"strings"
	"testing"
)

// TestReadPodNamesTheBadField: a field the injector reads, of another
// JSON type than the API's, is ErrBadPod naming the field.
func TestReadPodNamesTheBadField(t *testing.T) {
	for want, raw := range map[string]string{
		"metadata is an array":                       `{"metadata":[]}`,
		"metadata.annotations.meshd.io/inject":       `{"metadata":{"annotations":{"meshd.io/inject":true}}}`,
		"metadata.labels is a string":                `{"metadata":{"labels":"app=web"}}`,
		"metadata.ownerReferences[0].controller":     `{"metadata":{"ownerReferences":[{"name":"x","controller":"yes"}]}}`,
		"spec.containers is a string":                `{"spec":{"containers":"nope"}}`,
		"spec.containers[1] is a number":             `{"spec":{"containers":[{"name":"a"},3]}}`,
		"spec.initContainers[0].name":                `{"spec":{"initContainers":[{"name":7}]}}`,
		"spec.containers[0].env[0] is null":          `{"spec":{"containers":[{"name":"a","env":[null]}]}}`,
		"spec.containers[0].ports[0].containerPort":  `{"spec":{"containers":[{"name":"a","ports":[{"containerPort":"80"}]}]}}`,
		"spec.containers[0].ports[0].containerPort:": `{"spec":{"containers":[{"name":"a","ports":[{"containerPort":80.5}]}]}}`,
		"not a 32-bit integer":                       `{"spec":{"containers":[{"name":"a","ports":[{"containerPort":4294967296}]}]}}`,
		"spec.volumes[1].name":                       `{"spec":{"volumes":[{"name":null},{"name":1}]}}`,
		"spec.hostNetwork":                           `{"spec":{"hostNetwork":"true"}}`,
	} {
		pod, err := decodePod([]byte(raw))
		if err == nil {
			_, err = readPod(pod)
		}
		if !errors.Is(err, ErrBadPod) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrBadPod naming %q", raw, err, want)
		}
	}
	// Absent and null read as empty, as they decode into the API types.
	for _, raw := range []string{`{}`, `null`, `{"metadata":null,"spec":{"containers":null,"volumes":[]}}`} {
		pod, err := decodePod([]byte(raw))
		if err == nil {
			_, err = readPod(pod)
		}
		if err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
}
