package deploy_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/meshd/meshd/deploy/injector"
)

// cert-manager's types are not in k8s.io/api; these hold the fields the
// chart uses, decoded strictly so a typo fails.
type issuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SelfSigned *struct{} `json:"selfSigned"`
	} `json:"spec"`
}

type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName  string          `json:"secretName"`
		Duration    metav1.Duration `json:"duration"`
		RenewBefore metav1.Duration `json:"renewBefore"`
		CommonName  string          `json:"commonName"`
		DNSNames    []string        `json:"dnsNames"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		Usages    []string `json:"usages"`
		IssuerRef struct {
			Name, Kind, Group string
		} `json:"issuerRef"`
	} `json:"spec"`
}

// objects is a rendered release decoded into official types.
type objects struct {
	namespaces      []corev1.Namespace
	serviceAccounts []corev1.ServiceAccount
	services        []corev1.Service
	deployments     []appsv1.Deployment
	pdbs            []policyv1.PodDisruptionBudget
	webhooks        []admissionregistrationv1.MutatingWebhookConfiguration
	issuers         []issuer
	certificates    []certificate
}

func decodeAll(t *testing.T, docs []string) objects {
	t.Helper()
	var o objects
	for _, d := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(d), &tm); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, d)
		}
		var into any
		gvk := tm.APIVersion + " " + tm.Kind
		switch gvk {
		case "v1 Namespace":
			o.namespaces = append(o.namespaces, corev1.Namespace{})
			into = &o.namespaces[len(o.namespaces)-1]
		case "v1 ServiceAccount":
			o.serviceAccounts = append(o.serviceAccounts, corev1.ServiceAccount{})
			into = &o.serviceAccounts[len(o.serviceAccounts)-1]
		case "v1 Service":
			o.services = append(o.services, corev1.Service{})
			into = &o.services[len(o.services)-1]
		case "apps/v1 Deployment":
			o.deployments = append(o.deployments, appsv1.Deployment{})
			into = &o.deployments[len(o.deployments)-1]
		case "policy/v1 PodDisruptionBudget":
			o.pdbs = append(o.pdbs, policyv1.PodDisruptionBudget{})
			into = &o.pdbs[len(o.pdbs)-1]
		case "admissionregistration.k8s.io/v1 MutatingWebhookConfiguration":
			o.webhooks = append(o.webhooks, admissionregistrationv1.MutatingWebhookConfiguration{})
			into = &o.webhooks[len(o.webhooks)-1]
		case "cert-manager.io/v1 Issuer":
			o.issuers = append(o.issuers, issuer{})
			into = &o.issuers[len(o.issuers)-1]
		case "cert-manager.io/v1 Certificate":
			o.certificates = append(o.certificates, certificate{})
			into = &o.certificates[len(o.certificates)-1]
		default:
			t.Fatalf("unexpected object %q:\n%s", gvk, d)
		}
		if err := yaml.UnmarshalStrict([]byte(d), into); err != nil {
			t.Fatalf("%s does not decode strictly: %v\n%s", gvk, err, d)
		}
		meta := metaOf(into)
		if errs := validation.IsDNS1123Subdomain(meta.Name); len(errs) > 0 {
			t.Errorf("%s name %q: %v", gvk, meta.Name, errs)
		}
		if _, err := labels.ValidatedSelectorFromSet(meta.Labels); err != nil {
			t.Errorf("%s %s labels: %v", gvk, meta.Name, err)
		}
	}
	return o
}

func metaOf(v any) metav1.ObjectMeta {
	switch x := v.(type) {
	case *corev1.Namespace:
		return x.ObjectMeta
	case *corev1.ServiceAccount:
		return x.ObjectMeta
	case *corev1.Service:
		return x.ObjectMeta
	case *appsv1.Deployment:
		return x.ObjectMeta
	case *policyv1.PodDisruptionBudget:
		return x.ObjectMeta
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		return x.ObjectMeta
	case *issuer:
		return x.ObjectMeta
	case *certificate:
		return x.ObjectMeta
	}
	panic(fmt.Sprintf("metaOf %T", v))
}

func selects(t *testing.T, what string, sel *metav1.LabelSelector, l map[string]string) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("%s: selector: %v", what, err)
		return
	}
	if s.Empty() || !s.Matches(labels.Set(l)) {
		t.Errorf("%s: selector %v does not match %v", what, s, l)
	}
}

// checkRelease validates one rendered release as a whole: names that refer
// to each other agree, the injector's args parse with the injector's own
// flags, selectors select.
func checkRelease(t *testing.T, o objects, ns string, certManager bool) injector.ServerConfig {
	t.Helper()
	if len(o.deployments) != 1 || len(o.services) != 1 || len(o.webhooks) != 1 || len(o.serviceAccounts) != 1 {
		t.Fatalf("want one each of Deployment, Service, MutatingWebhookConfiguration, ServiceAccount: %d %d %d %d",
			len(o.deployments), len(o.services), len(o.webhooks), len(o.serviceAccounts))
	}
	dep, svc, mwc, sa := o.deployments[0], o.services[0], o.webhooks[0], o.serviceAccounts[0]
	for _, m := range []metav1.ObjectMeta{dep.ObjectMeta, svc.ObjectMeta, sa.ObjectMeta} {
		if m.Namespace != ns {
			t.Errorf("%s in namespace %q, want %q", m.Name, m.Namespace, ns)
		}
	}

	// Deployment.
	pod := dep.Spec.Template
	selects(t, "deployment", dep.Spec.Selector, pod.Labels)
	if pod.Spec.ServiceAccountName != sa.Name {
		t.Errorf("service account %q, want %q", pod.Spec.ServiceAccountName, sa.Name)
	}
	if pod.Annotations[injector.AnnotationInject] != "false" {
		t.Errorf("the injector's pods may be injected: %v", pod.Annotations)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("containers %v", pod.Spec.Containers)
	}
	c := pod.Spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "injector" {
		t.Fatalf("args %v do not run meshd injector", c.Args)
	}
	sc, err := injector.ParseInjectorArgs(c.Args[1:], io.Discard)
	if err != nil {
		t.Fatalf("the chart's injector args %v: %v", c.Args[1:], err)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "webhook" || !strings.HasSuffix(sc.Listen, fmt.Sprintf(":%d", c.Ports[0].ContainerPort)) {
		t.Errorf("port %v does not match --listen %s", c.Ports, sc.Listen)
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "webhook" || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("probe %+v", p)
		}
	}
	var tlsSecret string
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil {
			tlsSecret = v.Secret.SecretName
		}
	}
	if len(c.VolumeMounts) != 1 || filepath.Dir(sc.CertFile) != c.VolumeMounts[0].MountPath || filepath.Dir(sc.KeyFile) != c.VolumeMounts[0].MountPath {
		t.Errorf("--cert %s / --key %s not under the TLS mount %v", sc.CertFile, sc.KeyFile, c.VolumeMounts)
	}
	if sctx := c.SecurityContext; sctx == nil || sctx.ReadOnlyRootFilesystem == nil || !*sctx.ReadOnlyRootFilesystem {
		t.Errorf("container security context %+v", sctx)
	}
	if psc := pod.Spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("pod security context %+v", psc)
	}

	// Service.
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) || len(svc.Spec.Selector) == 0 {
		t.Errorf("service selector %v does not match pods %v", svc.Spec.Selector, pod.Labels)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "webhook" {
		t.Errorf("service ports %v", svc.Spec.Ports)
	}

	// MutatingWebhookConfiguration.
	if mwc.Namespace != "" {
		t.Errorf("MutatingWebhookConfiguration is cluster scoped, has namespace %q", mwc.Namespace)
	}
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("webhooks %v", mwc.Webhooks)
	}
	wh := mwc.Webhooks[0]
	if strings.Count(wh.Name, ".") < 2 {
		t.Errorf("webhook name %q is not fully qualified", wh.Name)
	}
	ref := wh.ClientConfig.Service
	if ref == nil || ref.Name != svc.Name || ref.Namespace != ns || ref.Path == nil || *ref.Path != "/mutate" ||
		ref.Port == nil || *ref.Port != svc.Spec.Ports[0].Port {
		t.Errorf("client config %+v does not point at service %s/%s:%d/mutate", ref, ns, svc.Name, svc.Spec.Ports[0].Port)
	}
	if !slices.Contains(wh.AdmissionReviewVersions, "v1") {
		t.Errorf("admission review versions %v", wh.AdmissionReviewVersions)
	}
	if wh.SideEffects == nil || *wh.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("side effects %v", wh.SideEffects)
	}
	if wh.FailurePolicy == nil || (*wh.FailurePolicy == admissionregistrationv1.Fail) != sc.Inject.RejectInvalid {
		t.Errorf("failure policy %v but --reject-invalid=%v", wh.FailurePolicy, sc.Inject.RejectInvalid)
	}
	if wh.TimeoutSeconds == nil || *wh.TimeoutSeconds < 1 || *wh.TimeoutSeconds > 30 {
		t.Errorf("timeout %v", wh.TimeoutSeconds)
	}
	if len(wh.Rules) != 1 || !slices.Equal(wh.Rules[0].Resources, []string{"pods"}) ||
		!slices.Equal(wh.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) {
		t.Errorf("rules %+v", wh.Rules)
	}
	nsSel, err := metav1.LabelSelectorAsSelector(wh.NamespaceSelector)
	if err != nil {
		t.Errorf("namespace selector: %v", err)
	} else {
		if nsSel.Matches(labels.Set{"kubernetes.io/metadata.name": ns}) {
			t.Errorf("the webhook sees its own namespace %s", ns)
		}
		if !nsSel.Matches(labels.Set{"kubernetes.io/metadata.name": "shop"}) {
			t.Errorf("the webhook does not see an ordinary namespace")
		}
	}
	objSel, err := metav1.LabelSelectorAsSelector(wh.ObjectSelector)
	if err != nil {
		t.Errorf("object selector: %v", err)
	} else if objSel.Matches(labels.Set{injector.LabelInjected: "true"}) || !objSel.Matches(labels.Set{"app": "web"}) {
		t.Errorf("object selector %v", objSel)
	}

	// Certificate.
	if certManager {
		if len(o.certificates) != 1 || len(o.issuers) != 1 {
			t.Fatalf("certificates %d issuers %d", len(o.certificates), len(o.issuers))
		}
		cert, iss := o.certificates[0], o.issuers[0]
		if cert.Spec.SecretName != tlsSecret {
			t.Errorf("certificate secret %q, deployment mounts %q", cert.Spec.SecretName, tlsSecret)
		}
		if cert.Spec.IssuerRef.Name != iss.Name || cert.Spec.IssuerRef.Kind != "Issuer" || iss.Spec.SelfSigned == nil {
			t.Errorf("issuer ref %+v, issuer %s", cert.Spec.IssuerRef, iss.Name)
		}
		if want := svc.Name + "." + ns + ".svc"; !slices.Contains(cert.Spec.DNSNames, want) {
			t.Errorf("certificate names %v lack %s", cert.Spec.DNSNames, want)
		}
		if got, want := mwc.Annotations["cert-manager.io/inject-ca-from"], ns+"/"+cert.Name; got != want {
			t.Errorf("inject-ca-from %q, want %q", got, want)
		}
		if len(wh.ClientConfig.CABundle) != 0 {
			t.Errorf("caBundle set although cert-manager injects it")
		}
		if cert.Spec.Duration.Duration <= cert.Spec.RenewBefore.Duration {
			t.Errorf("duration %v <= renewBefore %v", cert.Spec.Duration, cert.Spec.RenewBefore)
		}
	} else {
		if len(o.certificates)+len(o.issuers) != 0 {
			t.Errorf("cert-manager objects without cert-manager")
		}
		if len(wh.ClientConfig.CABundle) == 0 {
			t.Errorf("no caBundle")
		}
	}
	for _, pdb := range o.pdbs {
		selects(t, "pdb", pdb.Spec.Selector, pod.Labels)
	}
	return sc
}

func TestChartDefaults(t *testing.T) {
	rendered, err := renderChart("meshd", "meshd-system", nil)
	if err != nil {
		t.Fatal(err)
	}
	o := decodeAll(t, documents(rendered))
	sc := checkRelease(t, o, "meshd-system", true)
	if sc.Inject.MeshURL != "nats://nats.nats.svc.cluster.local:4222" || !sc.Inject.NativeSidecar || sc.Inject.RejectInvalid || sc.Inject.InjectByDefault {
		t.Errorf("injection config %+v", sc.Inject)
	}
	if !strings.HasPrefix(sc.Inject.Image, "ghcr.io/meshd/meshd:") || strings.HasSuffix(sc.Inject.Image, ":") {
		t.Errorf("sidecar image %q", sc.Inject.Image)
	}
	if o.deployments[0].Name != "meshd-meshd-injector" {
		t.Errorf("fullname %q", o.deployments[0].Name)
	}
	if len(o.pdbs) != 1 {
		t.Errorf("pdbs %d", len(o.pdbs))
	}
}

func TestChartOverrides(t *testing.T) {
	caBundle := "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==" // base64 of a PEM header: shape only
	rendered, err := renderChart("meshd-injector", "platform", map[string]any{
		"certManager":         map[string]any{"enabled": false},
		"tls":                 map[string]any{"secretName": "injector-tls", "caBundle": caBundle},
		"webhook":             map[string]any{"failurePolicy": "Fail"},
		"sidecar":             map[string]any{"nativeSidecar": false, "meshURL": "nats://a:4222,nats://b:4222", "image": "registry.test/meshd:9", "cpuLimit": "1", "pullPolicy": "Always"},
		"podDisruptionBudget": map[string]any{"enabled": false},
		"nodeSelector":        map[string]any{"kubernetes.io/os": "linux"},
		"tolerations":         []any{map[string]any{"key": "dedicated", "operator": "Exists"}},
		"podAnnotations":      map[string]any{"example.test/scrape": "true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := decodeAll(t, documents(rendered))
	sc := checkRelease(t, o, "platform", false)
	inj := sc.Inject
	if inj.NativeSidecar || !inj.RejectInvalid || inj.MeshURL != "nats://a:4222,nats://b:4222" || inj.Image != "registry.test/meshd:9" ||
		inj.CPULimit != "1" || inj.ImagePullPolicy != string(corev1.PullAlways) {
		t.Errorf("injection config %+v", inj)
	}
	dep := o.deployments[0]
	if dep.Name != "meshd-injector" || dep.Spec.Template.Spec.NodeSelector["kubernetes.io/os"] != "linux" ||
		len(dep.Spec.Template.Spec.Tolerations) != 1 || dep.Spec.Template.Annotations["example.test/scrape"] != "true" {
		t.Errorf("deployment %+v", dep.Spec.Template)
	}
	if dep.Spec.Template.Spec.Volumes[0].Secret.SecretName != "injector-tls" {
		t.Errorf("tls secret %v", dep.Spec.Template.Spec.Volumes)
	}
	if len(o.pdbs) != 0 {
		t.Errorf("pdb rendered although disabled")
	}

	// Without cert-manager the TLS settings are required.
	if _, err := renderChart("meshd", "x", map[string]any{"certManager": map[string]any{"enabled": false}}); err == nil ||
		!strings.Contains(err.Error(), "tls.") {
		t.Errorf("render without TLS settings: %v", err)
	}
}

const plainManifest = "kubernetes/meshd-injector.yaml"

const plainHeader = `# meshd sidecar injector: the Helm chart deploy/helm/meshd-injector rendered
# with its default values as release "meshd-injector" in namespace
# "meshd-system". Needs cert-manager. Generated; do not edit: run
#   go test ./deploy -run TestPlainManifests -update
`

func TestPlainManifestsMatchChart(t *testing.T) {
	rendered, err := renderRelease(release{Name: "meshd-injector", Namespace: "meshd-system", Service: "kubectl", IsInstall: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	docs := append([]string{"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: meshd-system\n  labels:\n    meshd.io/inject: disabled\n"}, documents(rendered)...)
	var b bytes.Buffer
	if err := writeManifest(&b, plainHeader, docs); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(plainManifest, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(plainManifest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, b.Bytes()) {
		t.Fatalf("%s is not the chart's rendering; run go test ./deploy -run TestPlainManifests -update", plainManifest)
	}
	o := decodeAll(t, docs)
	checkRelease(t, o, "meshd-system", true)
	if len(o.namespaces) != 1 {
		t.Errorf("namespaces %d", len(o.namespaces))
	}
}

// TestExampleApp injects the example manifest as `meshd inject` would and
// checks the result against the official types.
func TestExampleApp(t *testing.T) {
	f, err := os.Open("kubernetes/example-app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := injector.DefaultConfig()
	cfg.MeshURL = "nats://nats.nats.svc.cluster.local:4222"
	var out bytes.Buffer
	rep, err := injector.InjectManifests(f, &out, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Injected) != 1 || len(rep.Invalid) != 0 || len(rep.Warnings) != 0 {
		t.Fatalf("report %+v", rep)
	}
	var dep *appsv1.Deployment
	for _, d := range strings.Split(out.String(), "\n---\n") {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(d), &tm); err != nil {
			t.Fatal(err)
		}
		var into any
		switch tm.Kind {
		case "Deployment":
			dep = &appsv1.Deployment{}
			into = dep
		case "ConfigMap":
			into = &corev1.ConfigMap{}
		case "Secret":
			into = &corev1.Secret{}
		case "Service":
			into = &corev1.Service{}
		default:
			t.Fatalf("unexpected kind %q", tm.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(d), into); err != nil {
			t.Fatalf("%s: %v\n%s", tm.Kind, err, d)
		}
	}
	if dep == nil || len(dep.Spec.Template.Spec.InitContainers) != 1 || dep.Spec.Template.Spec.InitContainers[0].Name != "meshd" {
		t.Fatalf("example not injected:\n%s", out.String())
	}
}
