package injector

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/meshd/meshd/sidecar"
)

// Names of what Inject adds to a pod besides the container.
const (
	VolumeData     = "meshd-data"
	VolumeConfig   = "meshd-config"
	PortNameProbe  = "meshd-probe"
	PathHealthz    = "/healthz"
	PathReadyz     = "/readyz"
	injectedMarker = "true"
)

// Inject is the one mutation shared by the webhook and `meshd inject`. pod
// is a Pod as generic JSON (encoding/json's map[string]any). Inject returns
// a patched copy with the meshd sidecar, or nil when the pod is not to be
// injected: not annotated (unless cfg.InjectByDefault), opted out, or
// already injected. A pod whose meshd.io/* annotations cannot be understood
// gives nil and an error wrapping ErrInvalidAnnotation, naming every bad
// one; a pod whose fields the injector reads have the wrong JSON types, an
// error wrapping ErrBadPod. Warnings name what was injected but looks
// wrong. pod is never modified.
func Inject(pod map[string]any, cfg Config) (patched map[string]any, warnings []string, err error) {
	return inject(pod, nil, cfg)
}

// inject is Inject; a pod template of a workload passes owner, the owner
// its pods will have, and its name is not the pods'.
func inject(pod map[string]any, owner *ownerRef, cfg Config) (map[string]any, []string, error) {
	v, err := readPod(pod)
	if err != nil {
		return nil, nil, err
	}
	if owner != nil {
		v.owners, v.name = []ownerRef{*owner}, ""
	}
	want, err := wantsInjection(v, cfg)
	if err != nil || !want || isInjected(v, cfg) {
		return nil, nil, err
	}
	s, err := readSettings(v, cfg)
	if err != nil {
		return nil, nil, err
	}
	volumes := s.volumes()
	for _, vol := range volumes {
		if slices.Contains(v.volumes, nameOf(vol)) {
			return nil, nil, fmt.Errorf("%w: the pod already has a volume named %q", ErrConflict, nameOf(vol))
		}
	}

	var warnings []string
	out := deepCopy(pod).(map[string]any)
	spec := child(out, "spec")
	spec["volumes"] = append(list(spec["volumes"]), volumes...)

	appEnv := s.appEnv()
	for i, c := range list(spec["containers"]) {
		c := c.(map[string]any)
		env := list(c["env"])
		for _, e := range appEnv {
			if name := nameOf(e); slices.Contains(v.containers[i].env, name) {
				warnings = append(warnings, fmt.Sprintf("container %q already sets %s; left as it was", v.containers[i].name, name))
				continue
			}
			env = append(env, deepCopy(e)) // each container its own
		}
		if len(env) > len(list(c["env"])) {
			c["env"] = env
		}
	}

	sc := s.container()
	if s.native {
		sc["restartPolicy"] = "Always"
		// First, so that init containers after it can use the mesh too.
		spec["initContainers"] = append([]any{sc}, list(spec["initContainers"])...)
	} else {
		spec["containers"] = append(list(spec["containers"]), sc)
		if ownerKind(v) == "Job" {
			warnings = append(warnings, "meshd runs as a plain container: the Job will not complete while it runs; enable native sidecars (Kubernetes >= 1.29)")
		}
	}
	if v.hostNetwork {
		warnings = append(warnings, fmt.Sprintf("hostNetwork pod: meshd's ports %d, %d and %d are taken on the node, and its probe port %d is open on the node's interfaces", cfg.APIPort, cfg.AdminPort, cfg.ProbePort, cfg.ProbePort))
	}
	if s.meshURL == "" {
		warnings = append(warnings, "no mesh URL: this pod's meshd runs an embedded mesh of its own; set "+AnnotationMeshURL+" or the injector's --mesh-url")
	}

	meta := child(out, "metadata")
	child(meta, "labels")[LabelInjected] = injectedMarker
	child(meta, "annotations")[AnnotationInjectedImage] = cfg.Image
	return out, prefixed(warnings), nil
}

// list is a JSON array, nil when absent or null (readPod has checked it).
func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// nameOf is the "name" of a JSON object this package built.
func nameOf(obj any) string {
	name, _ := obj.(map[string]any)["name"].(string)
	return name
}

// wantsInjection reads meshd.io/inject.
func wantsInjection(pod podView, cfg Config) (bool, error) {
	v, ok := pod.annotations[AnnotationInject]
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
func isInjected(pod podView, cfg Config) bool {
	if pod.labels[LabelInjected] == injectedMarker {
		return true
	}
	for _, c := range slices.Concat(pod.containers, pod.initContainers) {
		if c.name == cfg.ContainerName {
			return true
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
	adminSecret string // meshd.io/admin-token-secret: admin.token
	adminKey    string
	sealSecret  string // meshd.io/secrets-key-secret: secrets.key
	sealKey     string
	meshSecret  string // meshd.io/mesh-token-secret: mesh.token
	meshKey     string
	meshURL     string
	logLevel    string
	requests    map[string]quantity // "cpu", "memory"
	limits      map[string]quantity
	native      bool
}

func readSettings(pod podView, cfg Config) (settings, error) {
	s := settings{cfg: cfg, meshURL: cfg.MeshURL, logLevel: cfg.LogLevel, native: cfg.NativeSidecar}
	// Admission warnings travel as HTTP headers: one line, "; " between.
	var errs []string
	bad := func(key string, err error) {
		errs = append(errs, fmt.Sprintf("%s: %v", key, err))
	}
	ann := pod.annotations

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
	secretRef := func(annotation string) (name, key string) {
		v, ok := ann[annotation]
		if !ok {
			return "", ""
		}
		name, key, hasKey := strings.Cut(v, ":")
		if !hasKey {
			key = cfg.TokenSecretKey
		}
		if !isDNSSubdomain(name) || key == "" {
			bad(annotation, fmt.Errorf("%q is not a Secret name or name:key", v))
		}
		return name, key
	}
	s.tokenSecret, s.tokenKey = secretRef(AnnotationAPITokenSecret)
	s.adminSecret, s.adminKey = secretRef(AnnotationAdminTokenSecret)
	s.sealSecret, s.sealKey = secretRef(AnnotationSecretsKeySecret)
	s.meshSecret, s.meshKey = secretRef(AnnotationMeshTokenSecret)
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

	s.requests, s.limits = map[string]quantity{}, map[string]quantity{}
	for _, r := range []struct {
		key, def, name string
		list           map[string]quantity
	}{
		{AnnotationSidecarCPU, cfg.CPURequest, "cpu", s.requests},
		{AnnotationSidecarMemory, cfg.MemoryRequest, "memory", s.requests},
		{AnnotationSidecarCPULimit, cfg.CPULimit, "cpu", s.limits},
		{AnnotationSidecarMemoryLimit, cfg.MemoryLimit, "memory", s.limits},
	} {
		v, ok := ann[r.key]
		if !ok {
			v = r.def
		}
		if v == "" {
			continue
		}
		q, err := parseQuantity(v)
		if err != nil || q.Sign() < 0 {
			bad(r.key, fmt.Errorf("%q is not a quantity", v))
			continue
		}
		if q.Sign() > 0 {
			r.list[r.name] = q
		}
	}
	for _, name := range []string{"cpu", "memory"} {
		req, ok := s.requests[name]
		lim, hasLimit := s.limits[name]
		if !ok || !hasLimit || req.Cmp(lim) <= 0 {
			continue
		}
		// A request above the limit makes the API server reject the pod. A
		// default request gives way to an annotated limit; an annotated
		// request above its limit is an error.
		key := "meshd.io/sidecar-" + name
		if _, annotated := ann[key]; annotated {
			bad(key, fmt.Errorf("request %s is above the limit %s", req.String(), lim.String()))
		} else {
			s.requests[name] = lim
		}
	}

	if len(errs) > 0 {
		return s, fmt.Errorf("%w: %s", ErrInvalidAnnotation, strings.Join(errs, "; "))
	}
	return s, nil
}

// defaultAppID is the pod's owner name, with a ReplicaSet's template hash
// taken off so that a Deployment's pods are named after the Deployment; a
// pod without owner is named after itself.
func defaultAppID(pod podView) string {
	var owner string
	for i, ref := range pod.owners {
		if i == 0 || ref.controller {
			owner = ref.name
			if ref.kind == "ReplicaSet" {
				if h := pod.labels["pod-template-hash"]; h != "" {
					owner = strings.TrimSuffix(owner, "-"+h)
				}
			}
		}
	}
	switch {
	case owner != "":
		return owner
	case pod.name != "":
		return pod.name
	default:
		return strings.TrimSuffix(pod.generateName, "-")
	}
}

func ownerKind(pod podView) string {
	for _, ref := range pod.owners {
		if ref.controller {
			return ref.kind
		}
	}
	return ""
}

// resolvePort takes a port number or the name of a port of an app container.
func resolvePort(pod podView, v string) (int32, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if !validPort(int32(n)) || n > 65535 {
			return 0, fmt.Errorf("%d is not a port", n)
		}
		return int32(n), nil
	}
	for _, c := range pod.containers {
		for _, p := range c.ports {
			if p.name == v {
				return p.port, nil
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

func (s settings) volumes() []any {
	vs := []any{map[string]any{"name": VolumeData, "emptyDir": map[string]any{}}}
	if s.configMap != "" {
		vs = append(vs, map[string]any{
			"name": VolumeConfig,
			"configMap": map[string]any{
				"name":  s.configMap,
				"items": []any{map[string]any{"key": s.cfg.ConfigKey, "path": s.cfg.ConfigKey}},
			},
		})
	}
	return vs
}

// The sidecar's environment is named by its own settings (sidecar.EnvName),
// so a variable set here is one meshd reads.
const (
	settingAppID       = "app.id"
	settingAppPort     = "app.port"
	settingAPIListen   = "api.listen"
	settingAPIToken    = "api.token"
	settingAdminListen = "admin.listen"
	settingAdminToken  = "admin.token"
	settingProbeListen = "admin.probeListen"
	settingDataDir     = "data.dir"
	settingLogLevel    = "log.level"
	settingMeshURL     = "mesh.url"
	settingMeshToken   = "mesh.token"
	settingSecretsKey  = "secrets.key"
)

func envVar(name, value string) map[string]any {
	return map[string]any{"name": name, "value": value}
}

// tokenEnv is MESHD_API_TOKEN from the Secret: the sidecar's api.token, and
// the token the app's clients (and meshd publish) send.
func (s settings) tokenEnv() map[string]any {
	return secretEnv(sidecar.EnvName(settingAPIToken), s.tokenSecret, s.tokenKey)
}

// secretEnv is the variable name read from key of the Secret secret.
func secretEnv(name, secret, key string) map[string]any {
	return map[string]any{
		"name": name,
		"valueFrom": map[string]any{
			"secretKeyRef": map[string]any{"name": secret, "key": key},
		},
	}
}

// appEnv is what the app containers learn about their sidecar.
func (s settings) appEnv() []any {
	env := []any{
		envVar(EnvHTTPPort, strconv.Itoa(int(s.cfg.APIPort))),
		envVar(EnvAdminPort, strconv.Itoa(int(s.cfg.AdminPort))),
	}
	if s.tokenSecret != "" {
		env = append(env, s.tokenEnv())
	}
	return env
}

// container is the sidecar container, in the shape (and with the fields)
// the core/v1 Container type would write.
func (s settings) container() map[string]any {
	args := []any{"run"}
	mounts := []any{map[string]any{"name": VolumeData, "mountPath": s.cfg.DataDir}}
	if s.configMap != "" {
		args = append(args, "--config", s.configFile())
		mounts = append(mounts, map[string]any{"name": VolumeConfig, "mountPath": s.cfg.ConfigDir, "readOnly": true})
	}
	env := []any{
		envVar(sidecar.EnvName(settingAppID), s.appID),
		envVar(sidecar.EnvName(settingAPIListen), fmt.Sprintf("127.0.0.1:%d", s.cfg.APIPort)),
		// The admin API creates connectors: pod-local. Kubelet probes go to
		// the probe listener, which serves nothing else.
		envVar(sidecar.EnvName(settingAdminListen), fmt.Sprintf("127.0.0.1:%d", s.cfg.AdminPort)),
		envVar(sidecar.EnvName(settingProbeListen), fmt.Sprintf("0.0.0.0:%d", s.cfg.ProbePort)),
		envVar(sidecar.EnvName(settingDataDir), s.cfg.DataDir),
		envVar(sidecar.EnvName(settingLogLevel), s.logLevel),
	}
	if s.meshURL != "" {
		env = append(env, envVar(sidecar.EnvName(settingMeshURL), s.meshURL))
	}
	if s.appPort != 0 {
		env = append(env, envVar(sidecar.EnvName(settingAppPort), strconv.Itoa(int(s.appPort))))
	}
	if s.tokenSecret != "" {
		env = append(env, s.tokenEnv())
	}
	if s.adminSecret != "" {
		// The sidecar's only: a container of the app that manages
		// connectors mounts the Secret itself.
		env = append(env, secretEnv(sidecar.EnvName(settingAdminToken), s.adminSecret, s.adminKey))
	}
	if s.sealSecret != "" {
		// One key for every pod of the app: a connector stored by one is
		// run (its secrets opened) by another.
		env = append(env, secretEnv(sidecar.EnvName(settingSecretsKey), s.sealSecret, s.sealKey))
	}
	if s.meshSecret != "" {
		env = append(env, secretEnv(sidecar.EnvName(settingMeshToken), s.meshSecret, s.meshKey))
	}
	probe := func(path string, period, failures int) map[string]any {
		return map[string]any{
			"httpGet":          map[string]any{"path": path, "port": int(s.cfg.ProbePort), "scheme": "HTTP"},
			"periodSeconds":    period,
			"failureThreshold": failures,
			"timeoutSeconds":   2,
		}
	}
	resources := map[string]any{}
	for key, list := range map[string]map[string]quantity{"requests": s.requests, "limits": s.limits} {
		if len(list) > 0 {
			r := map[string]any{}
			for name, q := range list {
				r[name] = q.String()
			}
			resources[key] = r
		}
	}
	uid := 65532 // distroless nonroot
	c := map[string]any{
		"name":  s.cfg.ContainerName,
		"image": s.cfg.Image,
		"args":  args,
		"env":   env,
		"ports": []any{map[string]any{
			"name": PortNameProbe, "containerPort": int(s.cfg.ProbePort), "protocol": "TCP",
		}},
		"resources":    resources,
		"volumeMounts": mounts,
		// The startup probe holds the app back (native sidecar) until meshd's
		// API listens; readiness follows the mesh (/readyz).
		"startupProbe":             probe(PathHealthz, 1, 30),
		"livenessProbe":            probe(PathHealthz, 10, 3),
		"readinessProbe":           probe(PathReadyz, 5, 3),
		"terminationMessagePolicy": "FallbackToLogsOnError",
		"securityContext": map[string]any{
			"runAsNonRoot":             true,
			"runAsUser":                uid,
			"runAsGroup":               uid,
			"readOnlyRootFilesystem":   true,
			"allowPrivilegeEscalation": false,
			"capabilities":             map[string]any{"drop": []any{"ALL"}},
			"seccompProfile":           map[string]any{"type": "RuntimeDefault"},
		},
	}
	if s.cfg.ImagePullPolicy != "" {
		c["imagePullPolicy"] = s.cfg.ImagePullPolicy
	}
	return c
}

func prefixed(ws []string) []string {
	for i, w := range ws {
		ws[i] = "meshd: " + w
	}
	return ws
}
