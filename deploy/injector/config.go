package injector

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// Defaults of Config. The ports are meshd's own defaults (DESIGN.md): the
// app API on 10105, the admin server on 10106; the probe listener of an
// injected pod is on 10108 (10107 is the webhook listener's).
const (
	DefaultImage          = "ghcr.io/meshd/meshd:latest"
	DefaultContainerName  = "meshd"
	DefaultAPIPort        = 10105
	DefaultAdminPort      = 10106
	DefaultProbePort      = 10108
	DefaultLogLevel       = "info"
	DefaultCPURequest     = "50m"
	DefaultMemoryRequest  = "64Mi"
	DefaultMemoryLimit    = "256Mi"
	DefaultTokenSecretKey = "token"
	DefaultConfigKey      = "meshd.yaml"
	DefaultConfigDir      = "/etc/meshd"
	DefaultDataDir        = "/var/lib/meshd"
)

// Config is what the injector puts into a pod when a pod's annotations do
// not say otherwise. One Config serves the webhook (meshd injector) and the
// offline CLI (meshd inject), so both produce the same pod.
type Config struct {
	// Image of the meshd sidecar container.
	Image string
	// ImagePullPolicy of the sidecar: Always, IfNotPresent, Never; empty
	// leaves the cluster default.
	ImagePullPolicy string
	// ContainerName of the sidecar; also how an injected pod is recognised.
	ContainerName string
	// MeshURL is the NATS JetStream cluster every sidecar joins (mesh.url,
	// comma separated nats:// URLs). Empty: each pod runs an embedded mesh,
	// which is rarely what a cluster wants, so Inject warns.
	MeshURL string
	// LogLevel of the sidecar: debug, info, warn, error.
	LogLevel string
	// NativeSidecar injects meshd as an init container with restartPolicy
	// Always (Kubernetes ≥ 1.29), so it starts before and stops after the
	// app. Off: a plain second container. The cluster version is not in an
	// AdmissionReview, so this is a setting, overridable per pod with the
	// meshd.io/native-sidecar annotation.
	NativeSidecar bool
	// InjectByDefault injects pods without a meshd.io/inject annotation too
	// (meshd.io/inject: "false" still opts out). The CLI sets it: a manifest
	// given to meshd inject is meant to be injected.
	InjectByDefault bool
	// RejectInvalid denies pods whose meshd annotations cannot be understood
	// instead of admitting them without a sidecar and a warning. Pair it with
	// failurePolicy: Fail on the MutatingWebhookConfiguration.
	RejectInvalid bool
	// Resources of the sidecar; empty strings leave that value unset.
	CPURequest, MemoryRequest, CPULimit, MemoryLimit string
	// APIPort and AdminPort the sidecar listens on, both on 127.0.0.1
	// (pod-local: the admin API creates connectors); ProbePort on 0.0.0.0,
	// serving only /healthz and /readyz (admin.probeListen), so kubelet
	// probes reach it.
	APIPort, AdminPort, ProbePort int32
	// TokenSecretKey is the key read from the meshd.io/api-token-secret
	// Secret when the annotation does not name one ("secret:key").
	TokenSecretKey string
	// ConfigKey is the key of the meshd.io/config ConfigMap holding the
	// meshd YAML file, mounted at ConfigDir.
	ConfigKey, ConfigDir string
	// DataDir of the sidecar, an emptyDir volume (the image's root
	// filesystem is read-only).
	DataDir string
}

// DefaultConfig is the Config of a bare `meshd injector`.
func DefaultConfig() Config {
	return Config{
		Image:          DefaultImage,
		ContainerName:  DefaultContainerName,
		LogLevel:       DefaultLogLevel,
		NativeSidecar:  true,
		CPURequest:     DefaultCPURequest,
		MemoryRequest:  DefaultMemoryRequest,
		MemoryLimit:    DefaultMemoryLimit,
		APIPort:        DefaultAPIPort,
		AdminPort:      DefaultAdminPort,
		ProbePort:      DefaultProbePort,
		TokenSecretKey: DefaultTokenSecretKey,
		ConfigKey:      DefaultConfigKey,
		ConfigDir:      DefaultConfigDir,
		DataDir:        DefaultDataDir,
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Image == "":
		return fmt.Errorf("%w: image is empty", ErrInvalidConfig)
	case c.ContainerName == "" || !isDNSLabel(c.ContainerName):
		return fmt.Errorf("%w: container name %q is not a DNS label", ErrInvalidConfig, c.ContainerName)
	case !validPort(c.APIPort):
		return fmt.Errorf("%w: api port %d out of range", ErrInvalidConfig, c.APIPort)
	case !validPort(c.AdminPort):
		return fmt.Errorf("%w: admin port %d out of range", ErrInvalidConfig, c.AdminPort)
	case !validPort(c.ProbePort):
		return fmt.Errorf("%w: probe port %d out of range", ErrInvalidConfig, c.ProbePort)
	case c.APIPort == c.AdminPort || c.APIPort == c.ProbePort || c.AdminPort == c.ProbePort:
		return fmt.Errorf("%w: api, admin and probe ports must differ (%d, %d, %d)", ErrInvalidConfig, c.APIPort, c.AdminPort, c.ProbePort)
	case c.TokenSecretKey == "":
		return fmt.Errorf("%w: token secret key is empty", ErrInvalidConfig)
	case c.ConfigKey == "" || strings.Contains(c.ConfigKey, "/"):
		return fmt.Errorf("%w: config key %q must be a file name", ErrInvalidConfig, c.ConfigKey)
	case !strings.HasPrefix(c.ConfigDir, "/"):
		return fmt.Errorf("%w: config dir %q is not absolute", ErrInvalidConfig, c.ConfigDir)
	case !strings.HasPrefix(c.DataDir, "/"):
		return fmt.Errorf("%w: data dir %q is not absolute", ErrInvalidConfig, c.DataDir)
	}
	switch c.ImagePullPolicy {
	case "", "Always", "IfNotPresent", "Never":
	default:
		return fmt.Errorf("%w: image pull policy %q", ErrInvalidConfig, c.ImagePullPolicy)
	}
	if err := checkLogLevel(c.LogLevel); err != nil {
		return fmt.Errorf("%w: log level: %v", ErrInvalidConfig, err)
	}
	if c.MeshURL != "" {
		if err := checkMeshURL(c.MeshURL); err != nil {
			return fmt.Errorf("%w: mesh url: %v", ErrInvalidConfig, err)
		}
	}
	for _, q := range []struct{ name, v string }{
		{"cpu request", c.CPURequest}, {"memory request", c.MemoryRequest},
		{"cpu limit", c.CPULimit}, {"memory limit", c.MemoryLimit},
	} {
		if q.v == "" {
			continue
		}
		if _, err := parseQuantity(q.v); err != nil {
			return fmt.Errorf("%w: %s %q: %v", ErrInvalidConfig, q.name, q.v, err)
		}
	}
	return nil
}

// RegisterFlags binds the fields of c to flags of fs, with c's current
// values as defaults. meshd inject and meshd injector share these flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Image, "image", c.Image, "meshd sidecar image")
	fs.Func("image-pull-policy", "sidecar image pull policy: Always, IfNotPresent, Never (default: cluster default)", func(s string) error {
		c.ImagePullPolicy = s
		return nil
	})
	fs.StringVar(&c.ContainerName, "container-name", c.ContainerName, "name of the injected sidecar container")
	fs.StringVar(&c.MeshURL, "mesh-url", c.MeshURL, "NATS JetStream servers the sidecars join, comma separated nats:// URLs (annotation meshd.io/mesh-url overrides)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "sidecar log level: debug, info, warn, error (annotation meshd.io/log-level overrides)")
	fs.BoolVar(&c.NativeSidecar, "native-sidecar", c.NativeSidecar, "inject meshd as a native sidecar (init container with restartPolicy Always, Kubernetes >= 1.29)")
	fs.BoolVar(&c.InjectByDefault, "inject-by-default", c.InjectByDefault, "inject pods without a meshd.io/inject annotation too")
	fs.BoolVar(&c.RejectInvalid, "reject-invalid", c.RejectInvalid, "deny pods with invalid meshd annotations instead of admitting them without a sidecar")
	fs.StringVar(&c.CPURequest, "sidecar-cpu", c.CPURequest, "sidecar CPU request (annotation meshd.io/sidecar-cpu overrides)")
	fs.StringVar(&c.MemoryRequest, "sidecar-memory", c.MemoryRequest, "sidecar memory request (annotation meshd.io/sidecar-memory overrides)")
	fs.StringVar(&c.CPULimit, "sidecar-cpu-limit", c.CPULimit, "sidecar CPU limit, empty for none (annotation meshd.io/sidecar-cpu-limit overrides)")
	fs.StringVar(&c.MemoryLimit, "sidecar-memory-limit", c.MemoryLimit, "sidecar memory limit, empty for none (annotation meshd.io/sidecar-memory-limit overrides)")
	fs.StringVar(&c.TokenSecretKey, "token-secret-key", c.TokenSecretKey, "key of the token in the meshd.io/api-token-secret and meshd.io/admin-token-secret Secrets")
	fs.Func("probe-port", fmt.Sprintf("port of the sidecar's probe listener, on every interface: /healthz and /readyz only (default %d)", c.ProbePort), func(s string) error {
		p, err := strconv.ParseInt(s, 10, 32)
		if err != nil || !validPort(int32(p)) {
			return fmt.Errorf("%q is not a port", s)
		}
		c.ProbePort = int32(p)
		return nil
	})
	fs.StringVar(&c.ConfigKey, "config-key", c.ConfigKey, "key of the meshd YAML in the meshd.io/config ConfigMap")
}

func validPort(p int32) bool { return p > 0 && p < 65536 }
