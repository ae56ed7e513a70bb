package injector

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// The injector reads and patches pods as generic JSON (what encoding/json
// decodes into any), not as Kubernetes API types: the meshd binary then
// links no Kubernetes packages, and a field this version does not know is
// kept as it is. The fields it reads are checked for the types the API
// gives them; the rest is left to the API server.

// podView is what Inject reads of a pod.
type podView struct {
	name, generateName  string
	labels, annotations map[string]string
	owners              []ownerRef
	containers          []container
	initContainers      []container
	volumes             []string // names
	hostNetwork         bool
}

type ownerRef struct {
	kind, name string
	controller bool
}

type container struct {
	name  string
	env   []string // names
	ports []containerPort
}

type containerPort struct {
	name string
	port int32
}

// readPod reads pod, or returns an error wrapping ErrBadPod naming the
// field of the wrong type.
func readPod(pod map[string]any) (podView, error) {
	var v podView
	r := reader{}
	meta := r.object(pod, "metadata", "metadata")
	v.name = r.str(meta, "name", "metadata.name")
	v.generateName = r.str(meta, "generateName", "metadata.generateName")
	v.labels = r.strMap(meta, "labels", "metadata.labels")
	v.annotations = r.strMap(meta, "annotations", "metadata.annotations")
	for i, o := range r.objects(meta, "ownerReferences", "metadata.ownerReferences") {
		path := fmt.Sprintf("metadata.ownerReferences[%d]", i)
		v.owners = append(v.owners, ownerRef{
			kind:       r.str(o, "kind", path+".kind"),
			name:       r.str(o, "name", path+".name"),
			controller: r.boolean(o, "controller", path+".controller"),
		})
	}
	spec := r.object(pod, "spec", "spec")
	v.containers = r.containers(spec, "containers")
	v.initContainers = r.containers(spec, "initContainers")
	for i, vol := range r.objects(spec, "volumes", "spec.volumes") {
		v.volumes = append(v.volumes, r.str(vol, "name", fmt.Sprintf("spec.volumes[%d].name", i)))
	}
	v.hostNetwork = r.boolean(spec, "hostNetwork", "spec.hostNetwork")
	if r.err != nil {
		return podView{}, r.err
	}
	return v, nil
}

// reader reads typed fields out of generic JSON and keeps the first type
// error. An absent field and null read as the zero value, as they decode
// into the API types.
type reader struct{ err error }

func (r *reader) wrongType(path, want string, v any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s is %s, not %s", ErrBadPod, path, jsonType(v), want)
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case nil:
		return "null"
	}
	return fmt.Sprintf("a %T", v)
}

func (r *reader) object(m map[string]any, key, path string) map[string]any {
	v, ok := m[key].(map[string]any)
	if !ok && m[key] != nil {
		r.wrongType(path, "an object", m[key])
	}
	return v
}

func (r *reader) str(m map[string]any, key, path string) string {
	v, ok := m[key].(string)
	if !ok && m[key] != nil {
		r.wrongType(path, "a string", m[key])
	}
	return v
}

func (r *reader) boolean(m map[string]any, key, path string) bool {
	v, ok := m[key].(bool)
	if !ok && m[key] != nil {
		r.wrongType(path, "a boolean", m[key])
	}
	return v
}

func (r *reader) strMap(m map[string]any, key, path string) map[string]string {
	obj := r.object(m, key, path)
	if obj == nil {
		return nil
	}
	out := make(map[string]string, len(obj))
	for k := range obj {
		out[k] = r.str(obj, k, path+"."+k)
	}
	return out
}

// objects reads an array of objects; a null element is an error, since
// nothing could be added to it.
func (r *reader) objects(m map[string]any, key, path string) []map[string]any {
	list, ok := m[key].([]any)
	if !ok {
		if m[key] != nil {
			r.wrongType(path, "an array", m[key])
		}
		return nil
	}
	out := make([]map[string]any, len(list))
	for i, e := range list {
		if out[i], ok = e.(map[string]any); !ok {
			r.wrongType(fmt.Sprintf("%s[%d]", path, i), "an object", e)
		}
	}
	return out
}

func (r *reader) containers(spec map[string]any, key string) []container {
	var out []container
	for i, c := range r.objects(spec, key, "spec."+key) {
		path := fmt.Sprintf("spec.%s[%d]", key, i)
		ct := container{name: r.str(c, "name", path+".name")}
		for j, e := range r.objects(c, "env", path+".env") {
			ct.env = append(ct.env, r.str(e, "name", fmt.Sprintf("%s.env[%d].name", path, j)))
		}
		for j, p := range r.objects(c, "ports", path+".ports") {
			pp := fmt.Sprintf("%s.ports[%d]", path, j)
			ct.ports = append(ct.ports, containerPort{
				name: r.str(p, "name", pp+".name"),
				port: r.int32(p, "containerPort", pp+".containerPort"),
			})
		}
		out = append(out, ct)
	}
	return out
}

func (r *reader) int32(m map[string]any, key, path string) int32 {
	var n int64
	var err error
	switch v := m[key].(type) {
	case nil:
		return 0
	case json.Number:
		n, err = strconv.ParseInt(string(v), 10, 32)
	case float64:
		n = int64(v)
		if float64(n) != v {
			err = strconv.ErrSyntax
		}
	case int:
		n = int64(v)
	default:
		r.wrongType(path, "an integer", v)
		return 0
	}
	if err != nil || n < math.MinInt32 || n > math.MaxInt32 {
		if r.err == nil {
			r.err = fmt.Errorf("%w: %s: %v is not a 32-bit integer", ErrBadPod, path, m[key])
		}
		return 0
	}
	return int32(n)
}

// deepCopy copies generic JSON.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, x := range v {
			l[i] = deepCopy(x)
		}
		return l
	}
	return v
}

// child returns m[key] as an object, putting an empty one there when it is
// absent or null. readPod has checked that it is not something else.
func child(m map[string]any, key string) map[string]any {
	c, ok := m[key].(map[string]any)
	if !ok {
		c = map[string]any{}
		m[key] = c
	}
	return c
}
