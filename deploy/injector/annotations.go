package injector

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// The annotations a pod (or a workload's pod template) sets to ask for and
// shape its sidecar, and the label an injected pod carries.
const (
	AnnotationInject             = "meshd.io/inject"               // "true" or "false"
	AnnotationAppID              = "meshd.io/app-id"               // default: the pod's owner name
	AnnotationAppPort            = "meshd.io/app-port"             // port number or container port name of the app
	AnnotationConfig             = "meshd.io/config"               // ConfigMap holding meshd.yaml
	AnnotationAPITokenSecret     = "meshd.io/api-token-secret"     // Secret name, or "name:key"
	AnnotationAdminTokenSecret   = "meshd.io/admin-token-secret"   // Secret name, or "name:key": admin.token
	AnnotationSecretsKeySecret   = "meshd.io/secrets-key-secret"   // Secret name, or "name:key": secrets.key, one for every pod of the app
	AnnotationMeshTokenSecret    = "meshd.io/mesh-token-secret"    // Secret name, or "name:key": mesh.token for the mesh URL
	AnnotationMeshURL            = "meshd.io/mesh-url"             // overrides the injector's mesh URL
	AnnotationLogLevel           = "meshd.io/log-level"            // debug, info, warn, error
	AnnotationSidecarCPU         = "meshd.io/sidecar-cpu"          // CPU request
	AnnotationSidecarMemory      = "meshd.io/sidecar-memory"       // memory request
	AnnotationSidecarCPULimit    = "meshd.io/sidecar-cpu-limit"    // CPU limit
	AnnotationSidecarMemoryLimit = "meshd.io/sidecar-memory-limit" // memory limit
	AnnotationNativeSidecar      = "meshd.io/native-sidecar"       // "true" or "false"
	// AnnotationInjectedImage records the sidecar image an injected pod got,
	// so an upgrade can find pods still running an older one.
	AnnotationInjectedImage = "meshd.io/injected-image"

	// LabelInjected marks an injected pod: `kubectl get pods -l meshd.io/injected=true`.
	LabelInjected = "meshd.io/injected"
)

// Environment variables exported to the app containers, for the app's own
// use: where its sidecar listens. (The sidecar's own variables are its
// settings, named by sidecar.EnvName.)
const (
	EnvHTTPPort  = "MESHD_HTTP_PORT"
	EnvAdminPort = "MESHD_ADMIN_PORT"
)

// RFC 1123 names, as Kubernetes checks them (k8s.io/apimachinery's
// IsDNS1123Label and IsDNS1123Subdomain).
var (
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

func isDNSLabel(s string) bool     { return len(s) <= 63 && dnsLabel.MatchString(s) }
func isDNSSubdomain(s string) bool { return len(s) <= 253 && dnsSubdomain.MatchString(s) }

func checkLogLevel(s string) error {
	switch s {
	case "debug", "info", "warn", "error":
		return nil
	}
	return fmt.Errorf("%q is not one of debug, info, warn, error", s)
}

// checkMeshURL accepts what mesh.url accepts: comma separated NATS URLs.
func checkMeshURL(s string) error {
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		u, err := url.Parse(part)
		if err != nil {
			return fmt.Errorf("%q: %v", part, err)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%q: scheme must be nats, tls, ws or wss", part)
		}
		if u.Hostname() == "" {
			return fmt.Errorf("%q: no host", part)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("%q: bad port", part)
			}
		}
	}
	return nil
}

// checkAppID keeps app ids to what is safe as a CloudEvents source, a NATS
// subject token and a label value.
func checkAppID(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("%q must have 1 to 253 characters", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%q may only hold letters, digits, '-', '_' and '.'", s)
		}
	}
	return nil
}
