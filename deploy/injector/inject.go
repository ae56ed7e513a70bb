package injector

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Names of what Inject adds to a pod besides the container.
const (
	VolumeData     = "meshd-data"
	VolumeConfig   = "meshd-config"
	PortNameAdmin  = "meshd-admin"
	PathHealthz    = "/healthz"
	PathReadyz     = "/readyz"
	injectedMarker = "true"
)

// Inject is the one mutation shared by the webhook and `meshd inject`. It
// returns a patched copy of pod with the meshd sidecar, or nil when the pod
// is not to be injected: not annotated (unless cfg.InjectByDefault),
// opted out, or already injected. A pod whose meshd.io/* annotations cannot
// be understood gives nil and an error wrapping ErrInvalidAnnotation, naming
// every bad one. Warnings name what was injected but looks wrong. pod is
// never modified.
func Inject(pod *corev1.Pod, cfg Config) (patched *corev1.Pod, warnings []string, err error) {
	want, err := wantsInjection(pod, cfg)
	if err != nil || !want || isInjected(pod, cfg) {
		return nil, nil, err
	}
	s, err := readSettings(pod, cfg)
	if err != nil {
		return nil, nil, err
	}

	out := pod.DeepCopy()
	for _, v := range s.volumes() {
		for _, have := range out.Spec.Volumes {
			if have.Name == v.Name {
				return nil, nil, fmt.Errorf("%w: the pod already has a volume named %q", ErrConflict, v.Name)
			}
		}
		out.Spec.Volumes = append(out.Spec.Volumes, v)
	}

	for i := range out.Spec.Containers {
		c := &out.Spec.Containers[i]
		for _, e := range s.appEnv() {
			if hasEnv(c, e.Name) {
				warnings = append(warnings, fmt.Sprintf("container %q already sets %s; left as it was", c.Name, e.Name))
				continue
			}
			c.Env = append(c.Env, e)
		}
	}

	sidecar := s.container()
	if s.native {
		always := corev1.ContainerRestartPolicyAlways
		sidecar.RestartPolicy = &always
		// First, so that init containers after it can use the mesh too.
		out.Spec.InitContainers = append([]corev1.Container{sidecar}, out.Spec.InitContainers...)
	} else {
		out.Spec.Containers = append(out.Spec.Containers, sidecar)
		if ownerKind(pod) == "Job" {
			warnings = append(warnings, "meshd runs as a plain container: the Job will not complete while it runs; enable native sidecars (Kubernetes >= 1.29)")
		}
	}
	if pod.Spec.HostNetwork {
		warnings = append(warnings, fmt.Sprintf("hostNetwork pod: meshd's ports %d and %d are taken on the node", cfg.APIPort, cfg.AdminPort))
	}
	if s.meshURL == "" {
		warnings = append(warnings, "no mesh URL: this pod's meshd runs an embedded mesh of its own; set "+AnnotationMeshURL+" or the injector's --mesh-url")
	}

	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[LabelInjected] = injectedMarker
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationInjectedImage] = cfg.Image
	return out, prefixed(warnings), nil
}

// wantsInjection reads meshd.io/inject.
func wantsInjection(pod *corev1.Pod, cfg Config) (bool, error) {
	v, ok := pod.Annotations[AnnotationInject]
	if !ok {
		return cfg.InjectByDefault, nil
	}
	b, err := parseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrInvalidAnnotation, AnnotationInject, err)
	}
	return b, nil
}

// isInjected makes Inject idempotent: a pod that has the label or a
// container of the sidecar's name is left alone.
func isInjected(pod *corev1.Pod, cfg Config) bool {
	if pod.Labels[LabelInjected] == injectedMarker {
		return true
	}
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range list {
			if c.Name == cfg.ContainerName {
				return true
			}
		}
	}
	return false
}

// settings are a pod's annotations over the injector's Config, checked.
type settings struct {
	cfg         Config
	appID       string
	appPort     int32 // 0: none
	configMap   string
	tokenSecret string
	tokenKey    string
	meshURL     string
	logLevel    string
	resources   corev1.ResourceRequirements
	native      bool
}

func readSettings(pod *corev1.Pod, cfg Config) (settings, error) {
	s := settings{cfg: cfg, meshURL: cfg.MeshURL, logLevel: cfg.LogLevel, native: cfg.NativeSidecar}
	// Admission warnings travel as HTTP headers: one line, "; " between.
	var errs []string
	bad := func(key string, err error) {
		errs = append(errs, fmt.Sprintf("%s: %v", key, err))
	}
	ann := pod.Annotations

	s.appID = defaultAppID(pod)
	if v, ok := ann[AnnotationAppID]; ok {
		s.appID = v
	}
	if err := checkAppID(s.appID); err != nil {
		if _, ok := ann[AnnotationAppID]; ok || s.appID != "" {
			bad(AnnotationAppID, err)
		} else {
			bad(AnnotationAppID, errors.New("not set and the pod has neither owner nor name"))
		}
	}

	if v, ok := ann[AnnotationAppPort]; ok {
		p, err := resolvePort(pod, v)
		if err != nil {
			bad(AnnotationAppPort, err)
		}
		s.appPort = p
	}
	if v, ok := ann[AnnotationConfig]; ok {
		if !isDNSSubdomain(v) {
			bad(AnnotationConfig, fmt.Errorf("%q is not a ConfigMap name", v))
		}
		s.configMap = v
	}
	if v, ok := ann[AnnotationAPITokenSecret]; ok {
		name, key, hasKey := strings.Cut(v, ":")
		if !hasKey {
			key = cfg.TokenSecretKey
		}
		if !isDNSSubdomain(name) || key == "" {
			bad(AnnotationAPITokenSecret, fmt.Errorf("%q is not a Secret name or name:key", v))
		}
		s.tokenSecret, s.tokenKey = name, key
	}
	if v, ok := ann[AnnotationMeshURL]; ok {
		if err := checkMeshURL(v); err != nil {
			bad(AnnotationMeshURL, err)
		}
		s.meshURL = v
	}
	if v, ok := ann[AnnotationLogLevel]; ok {
		if err := checkLogLevel(v); err != nil {
			bad(AnnotationLogLevel, err)
		}
		s.logLevel = v
	}
	if v, ok := ann[AnnotationNativeSidecar]; ok {
		b, err := parseBool(v)
		if err != nil {
			bad(AnnotationNativeSidecar, err)
		}
		s.native = b
	}

	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	for _, r := range []struct {
		key, def string
		name     corev1.ResourceName
		list     corev1.ResourceList
	}{
		{AnnotationSidecarCPU, cfg.CPURequest, corev1.ResourceCPU, requests},
		{AnnotationSidecarMemory, cfg.MemoryRequest, corev1.ResourceMemory, requests},
		{AnnotationSidecarCPULimit, cfg.CPULimit, corev1.ResourceCPU, limits},
		{AnnotationSidecarMemoryLimit, cfg.MemoryLimit, corev1.ResourceMemory, limits},
	} {
		v, ok := ann[r.key]
		if !ok {
			v = r.def
		}
		if v == "" {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() < 0 {
			bad(r.key, fmt.Errorf("%q is not a quantity", v))
			continue
		}
		if q.Sign() > 0 {
			r.list[r.name] = q
		}
	}
	for name, req := range requests {
		lim, ok := limits[name]
		if !ok || req.Cmp(lim) <= 0 {
			continue
		}
		// A request above the limit makes the API server reject the pod. A
		// default request gives way to an annotated limit; an annotated
		// request above its limit is an error.
		key := "meshd.io/sidecar-" + string(name)
		if _, annotated := ann[key]; annotated {
			bad(key, fmt.Errorf("request %s is above the limit %s", req.String(), lim.String()))
		} else {
			requests[name] = lim
		}
	}
	if len(requests) > 0 {
		s.resources.Requests = requests
	}
	if len(limits) > 0 {
		s.resources.Limits = limits
	}

	if len(errs) > 0 {
		return s, fmt.Errorf("%w: %s", ErrInvalidAnnotation, strings.Join(errs, "; "))
	}
	return s, nil
}

// defaultAppID is the pod's owner name, with a ReplicaSet's template hash
// taken off so that a Deployment's pods are named after the Deployment; a
// pod without owner is named after itself.
func defaultAppID(pod *corev1.Pod) string {
	var owner string
	for i, ref := range pod.OwnerReferences {
		if i == 0 || ref.Controller != nil && *ref.Controller {
			owner = ref.Name
			if ref.Kind == "ReplicaSet" {
				if h := pod.Labels["pod-template-hash"]; h != "" {
					owner = strings.TrimSuffix(owner, "-"+h)
				}
			}
		}
	}
	switch {
	case owner != "":
		return owner
	case pod.Name != "":
		return pod.Name
	default:
		return strings.TrimSuffix(pod.GenerateName, "-")
	}
}

func ownerKind(pod *corev1.Pod) string {
	for _, ref := range pod.OwnerReferences {
		if ref.Controller != nil && *ref.Controller {
			return ref.Kind
		}
	}
	return ""
}

// resolvePort takes a port number or the name of a port of an app container.
func resolvePort(pod *corev1.Pod, v string) (int32, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if !validPort(int32(n)) || n > 65535 {
			return 0, fmt.Errorf("%d is not a port", n)
		}
		return int32(n), nil
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == v {
				return p.ContainerPort, nil
			}
		}
	}
	return 0, fmt.Errorf("%q is neither a port number nor a named port of the app", v)
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "enabled":
		return true, nil
	case "false", "disabled":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", v)
}

func (s settings) configFile() string {
	return path.Join(s.cfg.ConfigDir, s.cfg.ConfigKey)
}

func (s settings) volumes() []corev1.Volume {
	vs := []corev1.Volume{{
		Name:         VolumeData,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
	}}
	if s.configMap != "" {
		vs = append(vs, corev1.Volume{
			Name: VolumeConfig,
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: s.configMap},
				Items:                []corev1.KeyToPath{{Key: s.cfg.ConfigKey, Path: s.cfg.ConfigKey}},
			}},
		})
	}
	return vs
}

func (s settings) tokenEnv() corev1.EnvVar {
	return corev1.EnvVar{Name: EnvAPIToken, ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: s.tokenSecret},
			Key:                  s.tokenKey,
		},
	}}
}

// appEnv is what the app containers learn about their sidecar.
func (s settings) appEnv() []corev1.EnvVar {
	env := []corev1.EnvVar{
		{Name: EnvHTTPPort, Value: strconv.Itoa(int(s.cfg.APIPort))},
		{Name: EnvAdminPort, Value: strconv.Itoa(int(s.cfg.AdminPort))},
	}
	if s.tokenSecret != "" {
		env = append(env, s.tokenEnv())
	}
	return env
}

func (s settings) container() corev1.Container {
	args := []string{"run"}
	mounts := []corev1.VolumeMount{{Name: VolumeData, MountPath: s.cfg.DataDir}}
	if s.configMap != "" {
		args = append(args, "--config", s.configFile())
		mounts = append(mounts, corev1.VolumeMount{Name: VolumeConfig, MountPath: s.cfg.ConfigDir, ReadOnly: true})
	}
	env := []corev1.EnvVar{
		{Name: EnvAppID, Value: s.appID},
		{Name: EnvAPIListen, Value: fmt.Sprintf("127.0.0.1:%d", s.cfg.APIPort)},
		{Name: EnvAdminLsn, Value: fmt.Sprintf("0.0.0.0:%d", s.cfg.AdminPort)},
		{Name: EnvDataDir, Value: s.cfg.DataDir},
		{Name: EnvLogLevel, Value: s.logLevel},
	}
	if s.meshURL != "" {
		env = append(env, corev1.EnvVar{Name: EnvMeshURL, Value: s.meshURL})
	}
	if s.appPort != 0 {
		env = append(env, corev1.EnvVar{Name: EnvAppPort, Value: strconv.Itoa(int(s.appPort))})
	}
	if s.tokenSecret != "" {
		env = append(env, s.tokenEnv())
	}
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromInt32(s.cfg.AdminPort), Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds: period, FailureThreshold: failures, TimeoutSeconds: 2,
		}
	}
	no, yes := false, true
	uid := int64(65532) // distroless nonroot
	return corev1.Container{
		Name:            s.cfg.ContainerName,
		Image:           s.cfg.Image,
		ImagePullPolicy: s.cfg.ImagePullPolicy,
		Args:            args,
		Env:             env,
		Ports: []corev1.ContainerPort{{
			Name: PortNameAdmin, ContainerPort: s.cfg.AdminPort, Protocol: corev1.ProtocolTCP,
		}},
		Resources:    s.resources,
		VolumeMounts: mounts,
		// The startup probe holds the app back (native sidecar) until meshd's
		// API listens; readiness follows the mesh (/readyz).
		StartupProbe:             probe(PathHealthz, 1, 30),
		LivenessProbe:            probe(PathHealthz, 10, 3),
		ReadinessProbe:           probe(PathReadyz, 5, 3),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             &yes,
			RunAsUser:                &uid,
			RunAsGroup:               &uid,
			ReadOnlyRootFilesystem:   &yes,
			AllowPrivilegeEscalation: &no,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

func hasEnv(c *corev1.Container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return true
		}
	}
	return false
}

func prefixed(ws []string) []string {
	for i, w := range ws {
		ws[i] = "meshd: " + w
	}
	return ws
}
