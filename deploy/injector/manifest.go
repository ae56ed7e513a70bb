package injector

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Report tells what InjectManifests did, one line per object.
type Report struct {
	Injected []string // "deployment/web"
	Skipped  []string // "service/web: not a workload", "deployment/db: not annotated"
	Invalid  []string // "deployment/web: meshd: not injected: invalid annotation: ..."
	Warnings []string // "deployment/web: meshd: ..." (injected, but look)
}

// templatePaths says where each workload kind keeps its pod template.
var templatePaths = map[string][]string{
	"Pod":                   nil,
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
}

// InjectManifests is `meshd inject`: it reads Kubernetes YAML (any number of
// documents, and v1 Lists) from r and writes it to w with the pod of every
// Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController,
// Job and CronJob injected exactly as the webhook would inject it: Inject
// builds the pod, CreatePatch the JSON patch, and the patch is applied to
// the document's own pod template, so fields this version of the API types
// does not know survive. Other kinds pass through untouched. Injected
// documents are re-emitted with sorted keys and no comments.
func InjectManifests(r io.Reader, w io.Writer, cfg Config) (Report, error) {
	var rep Report
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	docs, err := splitDocuments(r)
	if err != nil {
		return rep, err
	}
	first := true
	for i, doc := range docs {
		out, err := injectDocument(doc, cfg, &rep)
		if err != nil {
			return rep, fmt.Errorf("document %d: %w", i+1, err)
		}
		if out == nil {
			continue
		}
		if !first {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return rep, err
			}
		}
		first = false
		if _, err := w.Write(out); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// splitDocuments cuts a YAML stream at its "---" lines.
func splitDocuments(r io.Reader) ([][]byte, error) {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "---" || strings.HasPrefix(line, "--- ") || strings.HasPrefix(line, "---\t") {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading manifests: %w", err)
	}
	return append(docs, cur.Bytes()), nil
}

// injectDocument returns the document to print: itself when it holds no
// pod template, nil when it is empty.
func injectDocument(doc []byte, cfg Config, rep *Report) ([]byte, error) {
	var obj any
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	if obj == nil {
		return nil, nil // only comments or blank
	}
	m, ok := obj.(map[string]any)
	if !ok {
		return doc, nil
	}
	changed, err := injectObject(m, cfg, rep)
	if err != nil || !changed {
		return doc, err
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding the injected object: %w", err)
	}
	return out, nil
}

// injectObject injects m in place and reports whether it changed.
func injectObject(m map[string]any, cfg Config, rep *Report) (bool, error) {
	kind, _ := m["kind"].(string)
	meta, _ := m["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	id := strings.ToLower(kind) + "/" + name

	if kind == "List" {
		items, _ := m["items"].([]any)
		changed := false
		for _, it := range items {
			if im, ok := it.(map[string]any); ok {
				c, err := injectObject(im, cfg, rep)
				if err != nil {
					return false, err
				}
				changed = changed || c
			}
		}
		return changed, nil
	}
	tpath, ok := templatePaths[kind]
	if !ok || !isCoreOrWorkloadGroup(m["apiVersion"]) {
		rep.Skipped = append(rep.Skipped, id+": not a workload")
		return false, nil
	}

	// The template, as a map inside m that we replace after patching.
	parent, key, tmpl := m, "", m
	for _, k := range tpath {
		next, ok := tmpl[k].(map[string]any)
		if !ok {
			return false, fmt.Errorf("%w: %s has no %s", ErrBadManifest, id, strings.Join(tpath, "."))
		}
		parent, key, tmpl = tmpl, k, next
	}
	for _, k := range []string{"metadata", "spec"} {
		if _, ok := tmpl[k].(map[string]any); !ok {
			tmpl[k] = map[string]any{}
		}
	}
	raw, err := json.Marshal(tmpl)
	if err != nil {
		return false, fmt.Errorf("encoding %s: %w", id, err)
	}

	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrBadManifest, id, err)
	}
	if kind != "Pod" {
		// What the pod will look like to the webhook: owned by the workload
		// (a CronJob's pods by a Job), named after it by default.
		ownerKind := kind
		if kind == "CronJob" {
			ownerKind = "Job"
		}
		yes := true
		pod.OwnerReferences = []metav1.OwnerReference{{Kind: ownerKind, Name: name, Controller: &yes}}
		pod.Name = ""
	}
	patched, warnings, err := Inject(&pod, cfg)
	for _, w := range warnings {
		rep.Warnings = append(rep.Warnings, id+": "+w)
	}
	switch {
	case err != nil:
		rep.Invalid = append(rep.Invalid, id+": meshd: not injected: "+err.Error())
		return false, nil
	case patched == nil:
		rep.Skipped = append(rep.Skipped, id+": not annotated, opted out or already injected")
		return false, nil
	}
	ops, err := CreatePatch(&pod, patched)
	if err != nil {
		return false, err
	}
	opsJSON, err := json.Marshal(ops)
	if err != nil {
		return false, fmt.Errorf("encoding the patch: %w", err)
	}
	p, err := jsonpatch.DecodePatch(opsJSON)
	if err != nil {
		return false, fmt.Errorf("decoding the patch: %w", err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		return false, fmt.Errorf("patching %s: %w", id, err)
	}
	var newTmpl map[string]any
	if err := json.Unmarshal(out, &newTmpl); err != nil {
		return false, fmt.Errorf("decoding the patched %s: %w", id, err)
	}
	if key == "" {
		clear(m)
		for k, v := range newTmpl {
			m[k] = v
		}
	} else {
		parent[key] = newTmpl
	}
	rep.Injected = append(rep.Injected, id)
	return true, nil
}

// isCoreOrWorkloadGroup keeps a CRD that happens to be called Deployment
// from being treated as one.
func isCoreOrWorkloadGroup(v any) bool {
	s, _ := v.(string)
	switch s {
	case "v1", "apps/v1", "batch/v1":
		return true
	}
	return false
}
