package injector_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshd/meshd/deploy/injector"
)

func splitYAML(s string) []string {
	var out []string
	for _, d := range strings.Split(s, "\n---\n") {
		if strings.TrimSpace(d) != "" {
			out = append(out, d)
		}
	}
	return out
}

// strict decodes one document into an official type, refusing unknown
// fields (so a malformed patch fails).
func strict(t *testing.T, doc string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatalf("decoding as %T: %v\n%s", into, err, doc)
	}
}

func checkInjected(t *testing.T, what string, tmpl corev1.PodTemplateSpec, appID string) {
	t.Helper()
	if tmpl.Labels[injector.LabelInjected] != "true" {
		t.Errorf("%s: labels %v", what, tmpl.Labels)
	}
	if len(tmpl.Spec.InitContainers) == 0 || tmpl.Spec.InitContainers[0].Name != "meshd" {
		t.Fatalf("%s: init containers %v", what, tmpl.Spec.InitContainers)
	}
	sc := &tmpl.Spec.InitContainers[0]
	if got := envValue(t, sc, "MESHD_APP_ID"); got != appID {
		t.Errorf("%s: app id %q, want %q", what, got, appID)
	}
	for i := range tmpl.Spec.Containers {
		if env(&tmpl.Spec.Containers[i], "MESHD_HTTP_PORT") == nil {
			t.Errorf("%s: container %s lacks MESHD_HTTP_PORT", what, tmpl.Spec.Containers[i].Name)
		}
	}
}

func TestInjectManifestsEveryKind(t *testing.T) {
	in, err := os.ReadFile("testdata/workloads.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.InjectByDefault = true // as meshd inject sets it
	var out bytes.Buffer
	rep, err := injector.InjectManifests(bytes.NewReader(in), &out, cfg)
	if err != nil {
		t.Fatal(err)
	}
	docs := splitYAML(out.String())
	if len(docs) != 12 {
		t.Fatalf("%d documents out, want 12 (the empty one dropped):\n%s", len(docs), out.String())
	}

	var pod corev1.Pod
	strict(t, docs[0], &pod)
	checkInjected(t, "pod", corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}, "debug")

	// The Deployment keeps a field the API types do not know; decode it
	// leniently once to check that, then strictly without it.
	if !strings.Contains(docs[1], "futureField: kept") {
		t.Errorf("unknown field lost:\n%s", docs[1])
	}
	var dep appsv1.Deployment
	strict(t, strings.Replace(docs[1], "futureField: kept", "", 1), &dep)
	checkInjected(t, "deployment", dep.Spec.Template, "web")
	if *dep.Spec.Replicas != 2 || dep.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort != 8080 {
		t.Errorf("deployment fields changed: %+v", dep.Spec)
	}
	sc := &dep.Spec.Template.Spec.InitContainers[0]
	if envValue(t, sc, "MESHD_APP_PORT") != "8080" {
		t.Errorf("app port not resolved from the named port")
	}
	if e := env(&dep.Spec.Template.Spec.Containers[0], "MESHD_API_TOKEN"); e == nil || e.ValueFrom.SecretKeyRef.Name != "web-token" {
		t.Errorf("app token env %+v", e)
	}

	var sts appsv1.StatefulSet
	strict(t, docs[2], &sts)
	checkInjected(t, "statefulset", sts.Spec.Template, "db")
	if ic := sts.Spec.Template.Spec.InitContainers; len(ic) != 2 || ic[1].Name != "init" {
		t.Errorf("statefulset init containers %v", ic)
	}
	var ds appsv1.DaemonSet
	strict(t, docs[3], &ds)
	checkInjected(t, "daemonset", ds.Spec.Template, "agent")
	var rs appsv1.ReplicaSet
	strict(t, docs[4], &rs)
	checkInjected(t, "replicaset", rs.Spec.Template, "rs")
	var job batchv1.Job
	strict(t, docs[5], &job)
	checkInjected(t, "job", job.Spec.Template, "once")
	var cj batchv1.CronJob
	strict(t, docs[6], &cj)
	checkInjected(t, "cronjob", cj.Spec.JobTemplate.Spec.Template, "nightly")

	// Untouched: opted out, bad annotation, a Service, a CRD named Deployment.
	for i, name := range map[int]string{7: "opted-out", 8: "bad-port", 9: "web", 10: "not-apps"} {
		if strings.Contains(docs[i], "meshd.io/injected") || !strings.Contains(docs[i], name) {
			t.Errorf("document %d (%s) changed:\n%s", i, name, docs[i])
		}
	}
	if !strings.Contains(string(in), strings.TrimSpace(docs[9])) {
		t.Errorf("the Service was not passed through byte for byte:\n%s", docs[9])
	}
	var list corev1.List
	strict(t, docs[11], &list)
	var listed appsv1.Deployment
	strict(t, string(list.Items[0].Raw), &listed)
	checkInjected(t, "listed deployment", listed.Spec.Template, "listed")

	want := []string{"pod/debug", "deployment/web", "statefulset/db", "daemonset/agent", "replicaset/rs", "job/once", "cronjob/nightly", "deployment/listed"}
	if strings.Join(rep.Injected, ",") != strings.Join(want, ",") {
		t.Errorf("injected %v, want %v", rep.Injected, want)
	}
	if len(rep.Invalid) != 1 || !strings.Contains(rep.Invalid[0], "deployment/bad-port") || !strings.Contains(rep.Invalid[0], "meshd.io/app-port") {
		t.Errorf("invalid %v", rep.Invalid)
	}

	// Idempotent: injecting the output again changes nothing.
	var again bytes.Buffer
	rep2, err := injector.InjectManifests(strings.NewReader(out.String()), &again, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep2.Injected) != 0 || again.String() != out.String() {
		t.Errorf("second pass injected %v", rep2.Injected)
	}
}

func TestInjectManifestsErrors(t *testing.T) {
	for name, in := range map[string]string{
		"not yaml":          "a: [",
		"no template":       "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {}\n",
		"bad container set": "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: 3}\n",
	} {
		if _, err := injector.InjectManifests(strings.NewReader(in), &bytes.Buffer{}, testConfig()); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestRunInject(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(f, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: i, futureField: 9007199254740993}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := injector.RunInject(context.Background(), []string{"-f", f, "--image", "example.test/meshd:9", "--mesh-url", meshURL, "--native-sidecar=false"},
		strings.NewReader(""), &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	// A plain sidecar rewrites the containers array: the app container
	// keeps what the API types do not know, numbers as written, and gains
	// nothing but its env.
	if !strings.Contains(stdout.String(), "futureField: 9007199254740993") || strings.Count(stdout.String(), "resources:") != 1 {
		t.Errorf("app container changed:\n%s", stdout.String())
	}
	var pod corev1.Pod
	strict(t, strings.Replace(stdout.String(), "futureField: 9007199254740993", "", 1), &pod)
	c := findContainer(pod.Spec.Containers, "meshd")
	if c == nil || c.Image != "example.test/meshd:9" || len(pod.Spec.InitContainers) != 0 {
		t.Errorf("pod %+v", pod.Spec)
	}
	if !strings.Contains(stderr.String(), "pod/p injected") {
		t.Errorf("stderr %q", stderr.String())
	}

	// stdin, and --reject-invalid turning a bad annotation into an error.
	stdout.Reset()
	stderr.Reset()
	bad := "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {meshd.io/log-level: loud}}\nspec: {containers: [{name: a, image: i}]}\n"
	if err := injector.RunInject(context.Background(), []string{"--reject-invalid"}, strings.NewReader(bad), &stdout, &stderr); err == nil {
		t.Errorf("no error with --reject-invalid; stderr %q", stderr.String())
	}
	if err := injector.RunInject(context.Background(), nil, strings.NewReader(bad), &stdout, &stderr); err != nil {
		t.Errorf("error without --reject-invalid: %v", err)
	}
	if !strings.Contains(stderr.String(), "meshd.io/log-level") {
		t.Errorf("stderr %q", stderr.String())
	}
	if err := injector.RunInject(context.Background(), []string{"--mesh-url", "bogus"}, strings.NewReader(""), &stdout, &stderr); err == nil {
		t.Errorf("bad --mesh-url accepted")
	}
}
