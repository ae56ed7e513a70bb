package injector_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshd/meshd/deploy/injector"
	"github.com/meshd/meshd/sidecar"
)

const meshURL = "nats://nats.nats.svc:4222"

func testConfig() injector.Config {
	cfg := injector.DefaultConfig()
	cfg.Image = "example.test/meshd:1.2.3"
	cfg.MeshURL = meshURL
	return cfg
}

// newPod is what the API server sends for a Deployment's pod: owned by a
// ReplicaSet, named by generateName, one app container with a named port.
func newPod(ann map[string]string, mods ...func(*corev1.Pod)) *corev1.Pod {
	yes := true
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-5d8f7c9b4-",
			Namespace:    "shop",
			Labels:       map[string]string{"app": "web", "pod-template-hash": "5d8f7c9b4"},
			Annotations:  ann,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f7c9b4", UID: "rs-uid", Controller: &yes,
			}},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "example.test/web:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				Env:   []corev1.EnvVar{{Name: "GREETING", Value: "hi"}},
			}},
		},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func inject(ann map[string]string) map[string]string {
	out := map[string]string{injector.AnnotationInject: "true"}
	for k, v := range ann {
		out[k] = v
	}
	return out
}

type reviewResult struct {
	resp    *admissionv1.AdmissionResponse
	patched *corev1.Pod // nil when no patch came back
	ops     []map[string]any
}

// review sends pod through the webhook over HTTP as the API server would,
// applies the returned JSON patch with an independent RFC 6902
// implementation and decodes the result strictly into the official Pod
// type, so a malformed patch fails the test.
func review(t *testing.T, cfg injector.Config, pod *corev1.Pod, mods ...func(*admissionv1.AdmissionRequest)) reviewResult {
	t.Helper()
	wh, err := injector.NewWebhook(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(injector.NewMux(wh))
	t.Cleanup(srv.Close)

	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	req := &admissionv1.AdmissionRequest{
		UID:       types.UID("req-1"),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: pod.Namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
	for _, m := range mods {
		m(req)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Post(srv.URL+"/mutate", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	var out admissionv1.AdmissionReview
	dec := json.NewDecoder(res.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decoding the AdmissionReview: %v", err)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
		t.Fatalf("review type %s %s", out.APIVersion, out.Kind)
	}
	if out.Response == nil || out.Response.UID != req.UID {
		t.Fatalf("response %+v does not answer request %s", out.Response, req.UID)
	}
	r := reviewResult{resp: out.Response}
	if len(out.Response.Patch) == 0 {
		if out.Response.PatchType != nil {
			t.Fatalf("patch type without patch")
		}
		return r
	}
	if out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v", out.Response.PatchType)
	}
	if err := json.Unmarshal(out.Response.Patch, &r.ops); err != nil {
		t.Fatalf("patch is not a JSON array of operations: %v", err)
	}
	p, err := jsonpatch.DecodePatch(out.Response.Patch)
	if err != nil {
		t.Fatalf("decoding the patch: %v", err)
	}
	patchedJSON, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("applying the patch %s: %v", out.Response.Patch, err)
	}
	r.patched = decodePodStrict(t, patchedJSON)
	return r
}

func decodePodStrict(t *testing.T, b []byte) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pod); err != nil {
		t.Fatalf("patched pod does not decode as a corev1.Pod: %v\n%s", err, b)
	}
	return &pod
}

func findContainer(list []corev1.Container, name string) *corev1.Container {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func env(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func envValue(t *testing.T, c *corev1.Container, name string) string {
	t.Helper()
	e := env(c, name)
	if e == nil {
		t.Fatalf("container %q has no %s (env %v)", c.Name, name, c.Env)
	}
	return e.Value
}

func hasWarning(ws []string, sub string) bool {
	return slices.ContainsFunc(ws, func(w string) bool { return strings.Contains(w, sub) })
}

func TestWebhookInjectsAnnotatedPod(t *testing.T) {
	pod := newPod(inject(map[string]string{
		injector.AnnotationAppPort:          "http",
		injector.AnnotationConfig:           "web-meshd",
		injector.AnnotationAPITokenSecret:   "meshd-token",
		injector.AnnotationAdminTokenSecret: "meshd-admin:admin-token",
		injector.AnnotationSidecarCPU:       "100m",
		injector.AnnotationSidecarMemory:    "128Mi",
		injector.AnnotationLogLevel:         "debug",
	}))
	r := review(t, testConfig(), pod)
	if !r.resp.Allowed || r.patched == nil {
		t.Fatalf("allowed=%v patched=%v warnings=%v", r.resp.Allowed, r.patched != nil, r.resp.Warnings)
	}
	if len(r.resp.Warnings) != 0 {
		t.Errorf("warnings %v", r.resp.Warnings)
	}
	p := r.patched

	// Native sidecar: the first init container, restartPolicy Always.
	if len(p.Spec.InitContainers) != 1 || p.Spec.InitContainers[0].Name != "meshd" {
		t.Fatalf("init containers %v", p.Spec.InitContainers)
	}
	sc := &p.Spec.InitContainers[0]
	if sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("restartPolicy %v", sc.RestartPolicy)
	}
	if findContainer(p.Spec.Containers, "meshd") != nil || len(p.Spec.Containers) != 1 {
		t.Errorf("sidecar also in containers: %v", p.Spec.Containers)
	}
	if sc.Image != "example.test/meshd:1.2.3" {
		t.Errorf("image %q", sc.Image)
	}
	if want := []string{"run", "--config", "/etc/meshd/meshd.yaml"}; !slices.Equal(sc.Args, want) {
		t.Errorf("args %v, want %v", sc.Args, want)
	}
	for name, want := range map[string]string{
		"MESHD_APP_ID":             "web", // owner ReplicaSet without its template hash
		"MESHD_APP_PORT":           "8080",
		"MESHD_API_LISTEN":         "127.0.0.1:10105",
		"MESHD_ADMIN_LISTEN":       "127.0.0.1:10106", // the connectors API stays in the pod
		"MESHD_ADMIN_PROBE_LISTEN": "0.0.0.0:10108",
		"MESHD_MESH_URL":           meshURL,
		"MESHD_LOG_LEVEL":          "debug",
		"MESHD_DATA_DIR":           "/var/lib/meshd",
	} {
		if got := envValue(t, sc, name); got != want {
			t.Errorf("sidecar %s = %q, want %q", name, got, want)
		}
	}
	tok := env(sc, "MESHD_API_TOKEN")
	if tok == nil || tok.ValueFrom == nil || tok.ValueFrom.SecretKeyRef == nil ||
		tok.ValueFrom.SecretKeyRef.Name != "meshd-token" || tok.ValueFrom.SecretKeyRef.Key != "token" {
		t.Errorf("sidecar token env %+v", tok)
	}
	adm := env(sc, "MESHD_ADMIN_TOKEN")
	if adm == nil || adm.ValueFrom == nil || adm.ValueFrom.SecretKeyRef == nil ||
		adm.ValueFrom.SecretKeyRef.Name != "meshd-admin" || adm.ValueFrom.SecretKeyRef.Key != "admin-token" {
		t.Errorf("sidecar admin token env %+v", adm)
	}
	if len(sc.Ports) != 1 || sc.Ports[0].Name != injector.PortNameProbe || sc.Ports[0].ContainerPort != 10108 {
		t.Errorf("sidecar ports %+v: want only the probe port", sc.Ports)
	}
	for _, pr := range []struct {
		probe *corev1.Probe
		path  string
	}{{sc.LivenessProbe, "/healthz"}, {sc.ReadinessProbe, "/readyz"}, {sc.StartupProbe, "/healthz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil || pr.probe.HTTPGet.Path != pr.path || pr.probe.HTTPGet.Port.IntValue() != 10108 {
			t.Errorf("probe %+v, want GET %s on the probe port 10108", pr.probe, pr.path)
		}
	}
	if q := sc.Resources.Requests[corev1.ResourceCPU]; q.Cmp(resource.MustParse("100m")) != 0 {
		t.Errorf("cpu request %s", q.String())
	}
	if q := sc.Resources.Requests[corev1.ResourceMemory]; q.Cmp(resource.MustParse("128Mi")) != 0 {
		t.Errorf("memory request %s", q.String())
	}
	if q := sc.Resources.Limits[corev1.ResourceMemory]; q.Cmp(resource.MustParse(injector.DefaultMemoryLimit)) != 0 {
		t.Errorf("memory limit %s", q.String())
	}
	if _, ok := sc.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Errorf("cpu limit set by default")
	}
	if sc.SecurityContext == nil || sc.SecurityContext.RunAsNonRoot == nil || !*sc.SecurityContext.RunAsNonRoot ||
		sc.SecurityContext.ReadOnlyRootFilesystem == nil || !*sc.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("security context %+v", sc.SecurityContext)
	}

	// The app learns where its sidecar is, and keeps its own env first.
	app := findContainer(p.Spec.Containers, "app")
	if app.Env[0].Name != "GREETING" {
		t.Errorf("app env reordered: %v", app.Env)
	}
	if envValue(t, app, "MESHD_HTTP_PORT") != "10105" || envValue(t, app, "MESHD_ADMIN_PORT") != "10106" {
		t.Errorf("app env %v", app.Env)
	}
	if e := env(app, "MESHD_API_TOKEN"); e == nil || e.ValueFrom.SecretKeyRef.Name != "meshd-token" {
		t.Errorf("app token env %+v", e)
	}
	if e := env(app, "MESHD_ADMIN_TOKEN"); e != nil {
		t.Errorf("the admin token is given to the app: %+v", e)
	}

	// Volumes, label, annotation.
	var names []string
	for _, v := range p.Spec.Volumes {
		names = append(names, v.Name)
		if v.Name == "meshd-config" && (v.ConfigMap == nil || v.ConfigMap.Name != "web-meshd") {
			t.Errorf("config volume %+v", v)
		}
	}
	if !slices.Equal(names, []string{"meshd-data", "meshd-config"}) {
		t.Errorf("volumes %v", names)
	}
	if p.Labels[injector.LabelInjected] != "true" || p.Labels["app"] != "web" {
		t.Errorf("labels %v", p.Labels)
	}
	if p.Annotations[injector.AnnotationInjectedImage] != "example.test/meshd:1.2.3" {
		t.Errorf("annotations %v", p.Annotations)
	}

	// Keys with "/" are escaped, and existing arrays are added to, not replaced.
	var paths []string
	for _, op := range r.ops {
		paths = append(paths, op["op"].(string)+" "+op["path"].(string))
	}
	for _, want := range []string{
		"add /metadata/labels/meshd.io~1injected",
		"add /metadata/annotations/meshd.io~1injected-image",
		"add /spec/initContainers",
		"add /spec/containers/0/env/1",
		"add /spec/volumes",
	} {
		if !slices.Contains(paths, want) {
			t.Errorf("patch lacks %q: %v", want, paths)
		}
	}

	// Idempotent: the injected pod goes through unchanged.
	again := review(t, testConfig(), p)
	if again.patched != nil || len(again.resp.Warnings) != 0 {
		t.Errorf("re-injection patched=%v warnings=%v", again.patched != nil, again.resp.Warnings)
	}
}

// TestSidecarEnvIsTheSidecarsSettings: every variable the injector gives the
// sidecar is one of meshd's settings, and meshd reads each as meant.
func TestSidecarEnvIsTheSidecarsSettings(t *testing.T) {
	pod := newPod(inject(map[string]string{
		injector.AnnotationAppPort:          "http",
		injector.AnnotationAPITokenSecret:   "meshd-token",
		injector.AnnotationAdminTokenSecret: "meshd-admin",
		injector.AnnotationSecretsKeySecret: "meshd-seal:key",
		injector.AnnotationMeshTokenSecret:  "meshd-mesh",
		injector.AnnotationConfig:           "web-meshd",
	}))
	r := review(t, testConfig(), pod)
	if r.patched == nil {
		t.Fatalf("not injected: %v", r.resp.Warnings)
	}
	given := map[string]string{}
	for _, e := range r.patched.Spec.InitContainers[0].Env {
		given[e.Name] = e.Value
		if e.ValueFrom != nil {
			given[e.Name] = "from secret " + e.ValueFrom.SecretKeyRef.Name
		}
		if e.Name == sidecar.EnvName("secrets.key") {
			// The Secret holds a key, which meshd checks: a stand-in
			// that names the Secret and its key.
			ref := e.ValueFrom.SecretKeyRef
			given[e.Name] = standInKey(ref.Name + "/" + ref.Key)
		}
	}
	sealKey := standInKey("meshd-seal/key")
	cfg := sidecar.Defaults()
	read := map[string]bool{}
	err := cfg.ApplyEnv(func(name string) (string, bool) {
		read[name] = true
		v, ok := given[name]
		return v, ok
	})
	if err != nil {
		t.Fatalf("meshd rejects the injected env: %v", err)
	}
	for name := range given {
		if !read[name] {
			t.Errorf("the injector sets %s, which is not a meshd setting", name)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("meshd's config from the injected env: %v", err)
	}
	for setting, got := range map[string]any{
		"app.id": cfg.App.ID, "app.port": cfg.App.Port, "api.listen": cfg.API.Listen,
		"admin.listen": cfg.Admin.Listen, "mesh.url": cfg.Mesh.URL, "log.level": cfg.Log.Level,
		"data.dir": cfg.Data.Dir, "api.token": cfg.API.Token,
		"admin.probeListen": cfg.Admin.ProbeListen, "admin.token": cfg.Admin.Token,
		"secrets.key": cfg.Secrets.Key, "mesh.token": cfg.Mesh.Token,
	} {
		want := map[string]any{
			"app.id": "web", "app.port": 8080, "api.listen": "127.0.0.1:10105",
			"admin.listen": "127.0.0.1:10106", "mesh.url": meshURL, "log.level": "info",
			"data.dir": "/var/lib/meshd", "api.token": "from secret meshd-token",
			"admin.probeListen": "0.0.0.0:10108", "admin.token": "from secret meshd-admin",
			"secrets.key": sealKey, "mesh.token": "from secret meshd-mesh",
		}[setting]
		if got != want {
			t.Errorf("%s (%s) = %v, want %v", setting, sidecar.EnvName(setting), got, want)
		}
	}
	// The app's clients (meshd publish too) read the token from api.token's variable.
	if e := env(&r.patched.Spec.Containers[0], sidecar.EnvName("api.token")); e == nil || e.ValueFrom == nil {
		t.Errorf("app env %v lacks %s", r.patched.Spec.Containers[0].Env, sidecar.EnvName("api.token"))
	}
}

func TestWebhookCases(t *testing.T) {
	withInit := func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "example.test/migrate:1"}}
	}
	bare := func(p *corev1.Pod) { p.Labels = nil; p.Spec.Volumes = nil }
	noOwner := func(p *corev1.Pod) { p.OwnerReferences = nil; p.GenerateName = ""; p.Name = "debug-pod" }
	nameless := func(p *corev1.Pod) { p.OwnerReferences = nil; p.GenerateName = ""; p.Name = "" }
	jobOwned := func(p *corev1.Pod) { p.OwnerReferences[0].Kind = "Job"; p.OwnerReferences[0].Name = "nightly" }
	setsPort := func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: "MESHD_HTTP_PORT", Value: "1"})
	}
	hasVolume := func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "meshd-data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	}
	alreadyContainer := func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "meshd", Image: "x"})
	}
	alreadyLabel := func(p *corev1.Pod) { p.Labels[injector.LabelInjected] = "true" }
	defaultCfg := testConfig()
	byDefault := testConfig()
	byDefault.InjectByDefault = true
	strict := testConfig()
	strict.RejectInvalid = true
	legacy := testConfig()
	legacy.NativeSidecar = false
	noMesh := testConfig()
	noMesh.MeshURL = ""

	tests := []struct {
		name    string
		cfg     injector.Config
		pod     *corev1.Pod
		req     func(*admissionv1.AdmissionRequest)
		inject  bool
		allowed bool
		warn    string // a substring of one warning; "" for none
		check   func(t *testing.T, p *corev1.Pod)
	}{
		{name: "not annotated", cfg: defaultCfg, pod: newPod(nil), allowed: true},
		{name: "opted out", cfg: byDefault, pod: newPod(map[string]string{injector.AnnotationInject: "false"}), allowed: true},
		{name: "injected by default", cfg: byDefault, pod: newPod(nil, bare), inject: true, allowed: true,
			check: func(t *testing.T, p *corev1.Pod) {
				if p.Labels[injector.LabelInjected] != "true" {
					t.Errorf("labels %v", p.Labels)
				}
			}},
		{name: "already injected by label", cfg: defaultCfg, pod: newPod(inject(nil), alreadyLabel), allowed: true},
		{name: "already has a meshd container", cfg: defaultCfg, pod: newPod(inject(nil), alreadyContainer), allowed: true},
		{name: "sidecar goes before other init containers", cfg: defaultCfg, pod: newPod(inject(nil), withInit), inject: true, allowed: true,
			check: func(t *testing.T, p *corev1.Pod) {
				if len(p.Spec.InitContainers) != 2 || p.Spec.InitContainers[0].Name != "meshd" || p.Spec.InitContainers[1].Name != "migrate" {
					t.Errorf("init containers %v", p.Spec.InitContainers)
				}
			}},
		{name: "legacy sidecar by setting", cfg: legacy, pod: newPod(inject(nil)), inject: true, allowed: true,
			check: func(t *testing.T, p *corev1.Pod) {
				c := findContainer(p.Spec.Containers, "meshd")
				if c == nil || c.RestartPolicy != nil || len(p.Spec.InitContainers) != 0 {
					t.Errorf("containers %v init %v", p.Spec.Containers, p.Spec.InitContainers)
				}
			}},
		{name: "legacy sidecar by annotation", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationNativeSidecar: "false"})), inject: true, allowed: true,
			check: func(t *testing.T, p *corev1.Pod) {
				if findContainer(p.Spec.Containers, "meshd") == nil {
					t.Errorf("containers %v", p.Spec.Containers)
				}
			}},
		{name: "legacy sidecar in a Job warns", cfg: legacy, pod: newPod(inject(nil), jobOwned), inject: true, allowed: true, warn: "Job will not complete"},
		{name: "app id annotation", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationAppID: "orders"})), inject: true, allowed: true,
			check: func(t *testing.T, p *corev1.Pod) {
				if v := envValue(t, &p.Spec.InitContainers[0], "MESHD_APP_ID"); v != "orders" {
					t.Errorf("app id %q", v)
				}
			}},
		{name: "app id of an unowned pod is its name", cfg: defaultCfg, pod: newPod(inject(nil), noOwner), inject: true, allowed: true,
			check: func(t *testing.T, p *corev1.Pod) {
				if v := envValue(t, &p.Spec.InitContainers[0], "MESHD_APP_ID"); v != "debug-pod" {
					t.Errorf("app id %q", v)
				}
			}},
		{name: "numeric app port and secret key", cfg: defaultCfg, pod: newPod(inject(map[string]string{
			injector.AnnotationAppPort: "9000", injector.AnnotationAPITokenSecret: "creds:api-token",
		})), inject: true, allowed: true,
			check: func(t *testing.T, p *corev1.Pod) {
				sc := &p.Spec.InitContainers[0]
				if v := envValue(t, sc, "MESHD_APP_PORT"); v != "9000" {
					t.Errorf("app port %q", v)
				}
				if ref := env(sc, "MESHD_API_TOKEN").ValueFrom.SecretKeyRef; ref.Name != "creds" || ref.Key != "api-token" {
					t.Errorf("secret ref %+v", ref)
				}
			}},
		{name: "mesh url annotation", cfg: noMesh, pod: newPod(inject(map[string]string{injector.AnnotationMeshURL: "nats://a:4222,nats://b:4222"})), inject: true, allowed: true,
			check: func(t *testing.T, p *corev1.Pod) {
				if v := envValue(t, &p.Spec.InitContainers[0], "MESHD_MESH_URL"); v != "nats://a:4222,nats://b:4222" {
					t.Errorf("mesh url %q", v)
				}
			}},
		{name: "no mesh url warns", cfg: noMesh, pod: newPod(inject(nil)), inject: true, allowed: true, warn: "embedded mesh"},
		{name: "app env already set warns", cfg: defaultCfg, pod: newPod(inject(nil), setsPort), inject: true, allowed: true, warn: "already sets MESHD_HTTP_PORT",
			check: func(t *testing.T, p *corev1.Pod) {
				if v := envValue(t, &p.Spec.Containers[0], "MESHD_HTTP_PORT"); v != "1" {
					t.Errorf("app's own value replaced: %q", v)
				}
			}},
		{name: "default request gives way to a lower limit", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationSidecarMemoryLimit: "32Mi"})), inject: true, allowed: true,
			check: func(t *testing.T, p *corev1.Pod) {
				r := p.Spec.InitContainers[0].Resources
				if q := r.Requests[corev1.ResourceMemory]; q.Cmp(resource.MustParse("32Mi")) != 0 {
					t.Errorf("memory request %s", q.String())
				}
			}},
		{name: "cpu limit annotation", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationSidecarCPULimit: "500m"})), inject: true, allowed: true,
			check: func(t *testing.T, p *corev1.Pod) {
				if q := p.Spec.InitContainers[0].Resources.Limits[corev1.ResourceCPU]; q.Cmp(resource.MustParse("500m")) != 0 {
					t.Errorf("cpu limit %s", q.String())
				}
			}},

		// Bad values: a warning and a pod without the sidecar.
		{name: "bad inject value", cfg: defaultCfg, pod: newPod(map[string]string{injector.AnnotationInject: "yes please"}), allowed: true, warn: "meshd.io/inject"},
		{name: "bad app port number", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationAppPort: "70000"})), allowed: true, warn: "meshd.io/app-port"},
		{name: "unknown app port name", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationAppPort: "grpc"})), allowed: true, warn: "meshd.io/app-port"},
		{name: "bad cpu", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationSidecarCPU: "lots"})), allowed: true, warn: "meshd.io/sidecar-cpu"},
		{name: "negative memory", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationSidecarMemory: "-1Mi"})), allowed: true, warn: "meshd.io/sidecar-memory"},
		{name: "request above limit", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationSidecarMemory: "1Gi", injector.AnnotationSidecarMemoryLimit: "32Mi"})), allowed: true, warn: "above the limit"},
		{name: "bad log level", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationLogLevel: "loud"})), allowed: true, warn: "meshd.io/log-level"},
		{name: "bad mesh url", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationMeshURL: "http://nats:4222"})), allowed: true, warn: "meshd.io/mesh-url"},
		{name: "bad config name", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationConfig: "Not_A_Name"})), allowed: true, warn: "meshd.io/config"},
		{name: "bad secret", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationAPITokenSecret: "creds:"})), allowed: true, warn: "meshd.io/api-token-secret"},
		{name: "bad admin secret", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationAdminTokenSecret: "Creds"})), allowed: true, warn: "meshd.io/admin-token-secret"},
		{name: "bad app id", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationAppID: "a b"})), allowed: true, warn: "meshd.io/app-id"},
		{name: "bad native flag", cfg: defaultCfg, pod: newPod(inject(map[string]string{injector.AnnotationNativeSidecar: "sometimes"})), allowed: true, warn: "meshd.io/native-sidecar"},
		{name: "no app id at all", cfg: defaultCfg, pod: newPod(inject(nil), nameless), allowed: true, warn: "meshd.io/app-id"},
		{name: "volume name taken", cfg: defaultCfg, pod: newPod(inject(nil), hasVolume), allowed: true, warn: "meshd-data"},
		{name: "bad value denied when strict", cfg: strict, pod: newPod(inject(map[string]string{injector.AnnotationAppPort: "0"})), allowed: false},

		// Requests the webhook is not for.
		{name: "update", cfg: defaultCfg, pod: newPod(inject(nil)), allowed: true,
			req: func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update }},
		{name: "not a pod", cfg: defaultCfg, pod: newPod(inject(nil)), allowed: true,
			req: func(r *admissionv1.AdmissionRequest) {
				r.Kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
			}},
		{name: "subresource", cfg: defaultCfg, pod: newPod(inject(nil)), allowed: true,
			req: func(r *admissionv1.AdmissionRequest) { r.SubResource = "ephemeralcontainers" }},
		{name: "undecodable pod", cfg: defaultCfg, pod: newPod(inject(nil)), allowed: true, warn: "cannot decode",
			req: func(r *admissionv1.AdmissionRequest) { r.Object.Raw = []byte(`{"spec":{"containers":"nope"}}`) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mods []func(*admissionv1.AdmissionRequest)
			if tt.req != nil {
				mods = append(mods, tt.req)
			}
			r := review(t, tt.cfg, tt.pod, mods...)
			if r.resp.Allowed != tt.allowed {
				t.Fatalf("allowed=%v, want %v (result %+v)", r.resp.Allowed, tt.allowed, r.resp.Result)
			}
			if !tt.allowed && (r.resp.Result == nil || r.resp.Result.Code != http.StatusBadRequest) {
				t.Errorf("denial without a 400 status: %+v", r.resp.Result)
			}
			if (r.patched != nil) != tt.inject {
				t.Fatalf("patched=%v, want %v (warnings %v)", r.patched != nil, tt.inject, r.resp.Warnings)
			}
			switch {
			case tt.warn == "" && len(r.resp.Warnings) > 0:
				t.Errorf("unexpected warnings %v", r.resp.Warnings)
			case tt.warn != "" && !hasWarning(r.resp.Warnings, tt.warn):
				t.Errorf("warnings %v lack %q", r.resp.Warnings, tt.warn)
			}
			for _, w := range r.resp.Warnings {
				if !strings.HasPrefix(w, "meshd: ") {
					t.Errorf("warning %q does not say it is meshd's", w)
				}
			}
			if tt.check != nil && r.patched != nil {
				tt.check(t, r.patched)
			}
		})
	}
}

func TestWebhookRejectsWhatIsNotAReview(t *testing.T) {
	wh, err := injector.NewWebhook(testConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(injector.NewMux(wh))
	defer srv.Close()
	for _, tc := range []struct {
		ct, body string
		want     int
	}{
		{"application/json", `{`, http.StatusBadRequest},
		{"application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, http.StatusBadRequest},
		{"text/plain", `{}`, http.StatusUnsupportedMediaType},
	} {
		res, err := http.Post(srv.URL+"/mutate", tc.ct, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("%s %q: status %d, want %d", tc.ct, tc.body, res.StatusCode, tc.want)
		}
	}
	res, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("healthz %d", res.StatusCode)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := injector.DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for name, mod := range map[string]func(*injector.Config){
		"image":       func(c *injector.Config) { c.Image = "" },
		"mesh url":    func(c *injector.Config) { c.MeshURL = "redis://x" },
		"log level":   func(c *injector.Config) { c.LogLevel = "trace" },
		"ports":       func(c *injector.Config) { c.AdminPort = c.APIPort },
		"probe port":  func(c *injector.Config) { c.ProbePort = c.AdminPort },
		"quantity":    func(c *injector.Config) { c.CPULimit = "fast" },
		"pull policy": func(c *injector.Config) { c.ImagePullPolicy = "Sometimes" },
		"container":   func(c *injector.Config) { c.ContainerName = "Mesh_D" },
	} {
		c := injector.DefaultConfig()
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// standInKey is a valid secrets.key derived from name.
func standInKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return base64.StdEncoding.EncodeToString(sum[:])
}
