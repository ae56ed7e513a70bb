package deploy_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite kubernetes/meshd-injector.yaml from the chart")

const chartDir = "helm/meshd-injector"

// release is what Helm puts beside .Values.
type release struct {
	Name, Namespace, Service string
	IsInstall, IsUpgrade     bool
}

type chartMeta struct {
	Name, Version, AppVersion string
}

// renderChart renders the chart the way `helm template` does, for the
// subset of Helm the chart keeps to: text/template with missingkey=zero,
// the named templates of _*.tpl, and the Sprig/Helm functions listed in
// values.yaml. It returns the manifests by template file name.
func renderChart(name, namespace string, overrides map[string]any) (map[string]string, error) {
	return renderRelease(release{Name: name, Namespace: namespace, Service: "Helm", IsInstall: true}, overrides)
}

func renderRelease(rel release, overrides map[string]any) (map[string]string, error) {
	var meta struct {
		Name       string `json:"name"`
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	if err := readYAML(filepath.Join(chartDir, "Chart.yaml"), &meta); err != nil {
		return nil, err
	}
	var values map[string]any
	if err := readYAML(filepath.Join(chartDir, "values.yaml"), &values); err != nil {
		return nil, err
	}
	mergeValues(values, overrides)

	root := template.New("chart").Option("missingkey=zero")
	root.Funcs(template.FuncMap{
		"include": func(name string, data any) (string, error) {
			var b bytes.Buffer
			err := root.ExecuteTemplate(&b, name, data)
			return b.String(), err
		},
		"toYaml": func(v any) (string, error) {
			b, err := yaml.Marshal(v)
			return strings.TrimSuffix(string(b), "\n"), err
		},
		"nindent": func(n int, s string) string { return "\n" + indent(n, s) },
		"indent":  indent,
		"quote":   func(v any) string { return fmt.Sprintf("%q", fmt.Sprint(v)) },
		"default": func(d any, v ...any) any {
			if len(v) == 0 || empty(v[0]) {
				return d
			}
			return v[0]
		},
		"required": func(msg string, v any) (any, error) {
			if empty(v) {
				return nil, errors.New(msg)
			}
			return v, nil
		},
		"trunc": func(n int, s string) string {
			if len(s) > n {
				return s[:n]
			}
			return s
		},
		"trimSuffix": func(suf, s string) string { return strings.TrimSuffix(s, suf) },
		"contains":   func(sub, s string) bool { return strings.Contains(s, sub) },
	})
	files, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if _, err := root.New(filepath.Base(f)).Parse(string(b)); err != nil {
			return nil, err
		}
	}
	data := map[string]any{
		"Values":  values,
		"Release": rel,
		"Chart":   chartMeta{Name: meta.Name, Version: meta.Version, AppVersion: meta.AppVersion},
	}
	out := map[string]string{}
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "_") || !strings.HasSuffix(base, ".yaml") {
			continue
		}
		var b bytes.Buffer
		if err := root.ExecuteTemplate(&b, base, data); err != nil {
			return nil, err
		}
		// Helm prints a missing value as nothing, not "<no value>".
		out[base] = strings.ReplaceAll(b.String(), "<no value>", "")
	}
	return out, nil
}

func readYAML(path string, into any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return yaml.Unmarshal(b, into)
}

func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

// empty is Sprig's notion of empty.
func empty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return rv.Len() == 0
	case reflect.Bool:
		return !rv.Bool()
	case reflect.Int, reflect.Int64, reflect.Float64:
		return rv.IsZero()
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

func mergeValues(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeValues(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// installOrder is the order Helm installs kinds in (the part of it this
// chart uses); the plain manifest keeps it so kubectl apply creates what a
// Deployment refers to first and the webhook last.
var installOrder = []string{"Namespace", "ServiceAccount", "Service", "Issuer", "Certificate", "Deployment", "PodDisruptionBudget", "MutatingWebhookConfiguration"}

func kindRank(doc string) int {
	var tm struct{ Kind string }
	_ = yaml.Unmarshal([]byte(doc), &tm)
	for i, k := range installOrder {
		if k == tm.Kind {
			return i
		}
	}
	return len(installOrder)
}

// documents splits rendered templates into their non-empty YAML documents,
// in Helm's install order.
func documents(rendered map[string]string) []string {
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	var docs []string
	for _, n := range names {
		for _, d := range strings.Split(rendered[n], "\n---\n") {
			if strings.TrimSpace(stripComments(d)) != "" {
				docs = append(docs, strings.TrimSpace(d)+"\n")
			}
		}
	}
	sort.SliceStable(docs, func(i, j int) bool { return kindRank(docs[i]) < kindRank(docs[j]) })
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func writeManifest(w io.Writer, header string, docs []string) error {
	if _, err := io.WriteString(w, header); err != nil {
		return err
	}
	for _, d := range docs {
		if _, err := io.WriteString(w, "---\n"+d); err != nil {
			return err
		}
	}
	return nil
}
