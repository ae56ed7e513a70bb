package injector

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
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
// patches the document's own pod template, so fields this version does not
// know survive. Other kinds pass through untouched. Injected documents are
// re-emitted with sorted keys and no comments.
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
	j, err := yamlToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	obj, err := decodeJSON(j)
	if err != nil {
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
	j, err = json.Marshal(m)
	if err == nil {
		j, err = jsonToYAML(j)
	}
	if err != nil {
		return nil, fmt.Errorf("encoding the injected object: %w", err)
	}
	return j, nil
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
	var owner *ownerRef
	if kind != "Pod" {
		// What the pod will look like to the webhook: owned by the workload
		// (a CronJob's pods by a Job), named after it by default.
		owner = &ownerRef{kind: kind, name: name, controller: true}
		if kind == "CronJob" {
			owner.kind = "Job"
		}
	}
	patched, warnings, err := inject(tmpl, owner, cfg)
	for _, w := range warnings {
		rep.Warnings = append(rep.Warnings, id+": "+w)
	}
	switch {
	case errors.Is(err, ErrBadPod):
		return false, fmt.Errorf("%w: %s: %v", ErrBadManifest, id, err)
	case err != nil:
		rep.Invalid = append(rep.Invalid, id+": meshd: not injected: "+err.Error())
		return false, nil
	case patched == nil:
		rep.Skipped = append(rep.Skipped, id+": not annotated, opted out or already injected")
		return false, nil
	}
	if key == "" {
		clear(m)
		maps.Copy(m, patched)
	} else {
		parent[key] = patched
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
