package sidecar

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/bridge/tlsconf"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/natsjs"
	"github.com/meshd/meshd/protocols/mqtt"
)

// Config is everything meshd reads at start. Each leaf can be set in the
// YAML file (--config), by the environment (MESHD_API_LISTEN for api.listen)
// and by a flag (--api.listen), later sources winning.
type Config struct {
	App           AppConfig             `yaml:"app"`
	Log           LogConfig             `yaml:"log"`
	Data          DataConfig            `yaml:"data"`
	API           APIConfig             `yaml:"api"`
	Admin         AdminConfig           `yaml:"admin"`
	Mesh          MeshConfig            `yaml:"mesh"`
	Secrets       SecretsConfig         `yaml:"secrets"`
	Worker        WorkerConfig          `yaml:"worker"`
	Delivery      DeliveryConfig        `yaml:"delivery"`
	Memory        MemoryConfig          `yaml:"memory"`
	Subscriptions []bridge.Subscription `yaml:"subscriptions"`
	Webhook       WebhookConfig         `yaml:"webhook"`
	Connectors    []ConnectorConfig     `yaml:"connectors"`
	MQTT          []mqtt.LinkConfig     `yaml:"mqtt"`
}

type MemoryConfig struct {
	// LimitMB is the soft limit of the Go heap (GOMEMLIMIT): the garbage
	// collector works harder as it nears it. 0: 90% of the container's
	// memory limit (cgroup), or none outside a container.
	LimitMB int `yaml:"limitMB" usage:"soft memory limit in MiB (0: 90% of the container's limit, none outside one)"`
}

type AppConfig struct {
	// ID names this app: the source of wrapped raw events. Default: hostname.
	ID string `yaml:"id" usage:"app id, the source of wrapped raw events (default: hostname)"`
	// Port is where the app listens in this pod or host (0: not said).
	Port int `yaml:"port" usage:"port of the app in this pod/host; subscription sinks given as a path (\"/events\") are delivered to http://127.0.0.1:<port><path>"`
}

type LogConfig struct {
	Level  string `yaml:"level" usage:"log level: debug, info, warn, error"`
	Format string `yaml:"format" usage:"log format: text or json"`
}

type DataConfig struct {
	Dir string `yaml:"dir" usage:"data directory of the embedded mesh"`
}

type APIConfig struct {
	Listen       string `yaml:"listen" usage:"app API address (HTTP and WebSocket); keep it on loopback"`
	Token        string `yaml:"token" usage:"API token required on every app API call (empty: none)" secret:"true"`
	MaxBodyBytes int64  `yaml:"maxBodyBytes" usage:"largest request body accepted, in bytes"`
	DefaultType  string `yaml:"defaultType" usage:"type of the CloudEvent wrapped around a raw body"`
	// AllowedOrigins are the browser origins allowed to call the app API
	// (HTTP and WebSocket) besides localhost pages ("*": any); requests of
	// other pages are refused with 403 (apitoken.Origins). YAML only.
	AllowedOrigins    []string      `yaml:"allowedOrigins"`
	ReadHeaderTimeout time.Duration `yaml:"readHeaderTimeout" usage:"app API: longest wait for a request's headers"`
	ReadTimeout       time.Duration `yaml:"readTimeout" usage:"app API: longest wait for a whole request, body included (WebSockets are not limited by it)"`
	IdleTimeout       time.Duration `yaml:"idleTimeout" usage:"app API: keep-alive connections idle this long are closed"`
	MaxConns          int           `yaml:"maxConns" usage:"app API: most open connections (WebSockets included); more wait to be accepted"`
}

type AdminConfig struct {
	Listen string `yaml:"listen" usage:"admin address: /healthz, /readyz, /metrics, the connectors API; keep it on loopback"`
	// Token guards every admin path but /healthz and /readyz (and /metrics
	// with OpenMetrics). Never logged.
	Token       string `yaml:"token" usage:"admin token required (Authorization: Bearer) on every admin call but /healthz and /readyz (empty: none)" secret:"true"`
	ProbeListen string `yaml:"probeListen" usage:"a second admin listener serving only /healthz, /readyz (and /metrics with admin.openMetrics), without token: for kubelet probes (empty: none)"`
	OpenMetrics bool   `yaml:"openMetrics" usage:"serve /metrics without the admin token, also on admin.probeListen"`
	// Pprof serves Go's profiler at /debug/pprof/ on the admin port (behind
	// the admin token): what to attach to a report of a performance problem.
	Pprof bool `yaml:"pprof" usage:"serve Go's profiler at /debug/pprof/ on the admin port (off by default)"`
}

type MeshConfig struct {
	URL        string        `yaml:"url" usage:"NATS JetStream servers, comma separated (empty: embedded mesh)"`
	Listen     string        `yaml:"listen" usage:"embedded mesh: also accept NATS clients on this host:port (empty: no port); they must authenticate (mesh.listenToken)"`
	Stream     string        `yaml:"stream" usage:"JetStream stream holding the events"`
	Replicas   int           `yaml:"replicas" usage:"stream replicas (external cluster)"`
	MaxAge     time.Duration `yaml:"maxAge" usage:"how long events are kept"`
	SyncAlways bool          `yaml:"syncAlways" usage:"embedded mesh: fsync every write (survives power loss, slower)"`

	// Edge mode: the embedded mesh as a leaf node of a hub (leaf.go).
	Leaf       string `yaml:"leaf" usage:"embedded mesh: run it as a NATS leaf node of the hub at these URLs (nats://hub:7422, comma separated): events are stored here and copied to the hub's stream whenever the link is up; mesh.creds, mesh.user, mesh.token, mesh.tls... authenticate the link"`
	LeafDomain string `yaml:"leafDomain" usage:"mesh.leaf: this edge's JetStream domain, unique among the hub's edges and kept for the life of data.dir (default: generated into data.dir/leaf.domain)"`
	HubDomain  string `yaml:"hubDomain" usage:"mesh.leaf: the hub's JetStream domain"`

	// Credentials meshd presents to mesh.url: at most one kind.
	Creds     string        `yaml:"creds" usage:"mesh.url: NATS credentials file (user JWT and NKey seed)"`
	NKeyFile  string        `yaml:"nkeyFile" usage:"mesh.url: file holding a user NKey seed (SU...)"`
	User      string        `yaml:"user" usage:"mesh.url: user name (with mesh.password)"`
	Password  string        `yaml:"password" usage:"mesh.url: password of mesh.user" secret:"true"`
	Token     string        `yaml:"token" usage:"mesh.url: token" secret:"true"`
	TokenFile string        `yaml:"tokenFile" usage:"mesh.url: file holding the token, e.g. the data.dir/mesh.token of the sidecar whose embedded mesh this one joins"`
	TLS       MeshTLSConfig `yaml:"tls"`

	// What clients on mesh.listen must present (embedded mesh).
	ListenAuth     string              `yaml:"listenAuth" usage:"embedded mesh: 'none' lets clients on mesh.listen in without credentials: anyone reaching the port can read connector configs and delete every stream (default: a token or user/password is required)"`
	ListenToken    string              `yaml:"listenToken" usage:"embedded mesh: token clients on mesh.listen must present (default: generated into data.dir/mesh.token)" secret:"true"`
	ListenUser     string              `yaml:"listenUser" usage:"embedded mesh: user clients on mesh.listen must present (with mesh.listenPassword), instead of a token"`
	ListenPassword string              `yaml:"listenPassword" usage:"embedded mesh: password of mesh.listenUser" secret:"true"`
	ListenTLS      MeshListenTLSConfig `yaml:"listenTLS"`

	// ConnectTimeout bounds reaching mesh.url at start, per server.
	ConnectTimeout time.Duration `yaml:"connectTimeout" usage:"external cluster: how long to wait for each mesh server at start"`
	// DuplicateWindow is how long a published event's source and id are
	// remembered: a re-publish inside it is acknowledged and not stored.
	DuplicateWindow time.Duration `yaml:"duplicateWindow" usage:"how long a re-publish of the same source and id is acknowledged without being stored again"`
	MaxConsumers    int           `yaml:"maxConsumers" usage:"most consumer groups and subscribers the stream holds"`
}

// MeshTLSConfig is the TLS of the connection to mesh.url.
type MeshTLSConfig struct {
	CAFile     string `yaml:"caFile" usage:"mesh.url: PEM file of the CAs trusted for the servers' certificates (default: the system's); setting any mesh.tls file requires TLS"`
	CertFile   string `yaml:"certFile" usage:"mesh.url: PEM client certificate for mutual TLS (with mesh.tls.keyFile)"`
	KeyFile    string `yaml:"keyFile" usage:"mesh.url: PEM private key of mesh.tls.certFile"`
	ServerName string `yaml:"serverName" usage:"mesh.url: name expected in the servers' certificates (default: the host of each URL)"`
}

func (t MeshTLSConfig) client() tlsconf.Client {
	return tlsconf.Client{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName}
}

// MeshListenTLSConfig makes clients on mesh.listen speak TLS.
type MeshListenTLSConfig struct {
	CertFile     string `yaml:"certFile" usage:"embedded mesh: PEM certificate of mesh.listen (with mesh.listenTLS.keyFile): TLS only"`
	KeyFile      string `yaml:"keyFile" usage:"embedded mesh: PEM private key of mesh.listenTLS.certFile"`
	ClientCAFile string `yaml:"clientCAFile" usage:"embedded mesh: PEM CAs one of which must have signed each client's certificate (mutual TLS)"`
}

func (t MeshListenTLSConfig) server() tlsconf.Server {
	return tlsconf.Server{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile}
}

// SecretsConfig is the key that encrypts connector secrets in the mesh.
type SecretsConfig struct {
	Key string `yaml:"key" usage:"base64 of the 32-byte key encrypting connector secrets stored in the mesh (default: generated into data.dir/secrets.key); sidecars of one app sharing a cluster need the same key" secret:"true"`
}

// WorkerConfig places this sidecar in the worker group of its app: the
// sidecars sharing app.id and the mesh share the tasks of its connectors,
// each task running on one of them at a time.
type WorkerConfig struct {
	ID        string        `yaml:"id" usage:"name of this sidecar among the sidecars of its app, the worker_id of connector statuses; unique among them (default: hostname:admin port)"`
	LeaseTime time.Duration `yaml:"leaseTime" usage:"how long a sidecar may go silent before the other sidecars of its app take its connector tasks over; the same on every sidecar of the app"`
}

type DeliveryConfig struct {
	Timeout        time.Duration `yaml:"timeout" usage:"timeout of one delivery to a subscriber"`
	AckWait        time.Duration `yaml:"ackWait" usage:"time before an unfinished delivery is redelivered"`
	DedupSize      int           `yaml:"dedupSize" usage:"recently delivered events remembered per subscription"`
	BackoffInitial time.Duration `yaml:"backoffInitial" usage:"first retry delay"`
	BackoffMax     time.Duration `yaml:"backoffMax" usage:"longest retry delay"`
	// AllowedTargets, when set, are the only targets subscriptions and HTTP
	// connectors may reach: host names (*.example.com), IP addresses,
	// networks (10.0.0.0/8). meshd's own listeners are always refused, and
	// link-local and cloud metadata addresses unless listed by address.
	// YAML only.
	AllowedTargets []string `yaml:"allowedTargets"`
}

// backoff is the retry schedule of every delivery loop and retry.
func (d DeliveryConfig) backoff() bridge.Backoff {
	return bridge.Backoff{Initial: d.BackoffInitial, Max: d.BackoffMax}
}

// Defaults returns the configuration meshd runs with when nothing is set.
func Defaults() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "meshd"
	}
	return Config{
		App:  AppConfig{ID: host},
		Log:  LogConfig{Level: "info", Format: "text"},
		Data: DataConfig{Dir: "./data"},
		API: APIConfig{Listen: "127.0.0.1:10105", MaxBodyBytes: 4 << 20, DefaultType: "meshd.raw",
			ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxConns: 1024},
		Admin:   AdminConfig{Listen: "127.0.0.1:10106"},
		Webhook: defaultWebhook(),
		Mesh: MeshConfig{Stream: "MESHD", Replicas: 1, MaxAge: 72 * time.Hour, ConnectTimeout: 5 * time.Second, HubDomain: natsjs.DefaultHubDomain,
			DuplicateWindow: natsjs.DefaultDuplicateWindow, MaxConsumers: natsjs.DefaultMaxConsumers},
		Worker: WorkerConfig{LeaseTime: worker.DefaultLeaseTime},
		Delivery: DeliveryConfig{
			Timeout:        10 * time.Second,
			AckWait:        30 * time.Second,
			DedupSize:      10000,
			BackoffInitial: bridge.DefaultBackoff.Initial,
			BackoffMax:     bridge.DefaultBackoff.Max,
		},
	}
}

// DecodeYAML merges a YAML document into c. Unknown keys are errors.
// Errors name the config path and line (api.listen (line 3): ...).
func (c *Config) DecodeYAML(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return errors.New(strings.TrimPrefix(oneLine(err.Error()), "yaml: "))
	}
	if err := checkYAML(&doc, reflect.TypeFor[Config](), ""); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return errors.New(strings.TrimPrefix(oneLine(err.Error()), "yaml: "))
	}
	return nil
}

// oneLine joins the lines of a multi-line message (yaml.v3 lists its
// errors one per line) with "; ".
func oneLine(msg string) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// Validate names the first bad setting.
func (c *Config) Validate() error {
	if err := c.validateEndpoints(); err != nil {
		return err
	}
	for name, addr := range map[string]string{"api.listen": c.API.Listen, "admin.listen": c.Admin.Listen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s: %q is not host:port: %w", name, addr, err)
		}
	}
	if err := c.validateEdges(); err != nil {
		return err
	}
	if c.Mesh.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Mesh.Listen); err != nil {
			return fmt.Errorf("mesh.listen: %q is not host:port: %w", c.Mesh.Listen, err)
		}
		if c.Mesh.URL != "" {
			return errors.New("mesh.listen: only for the embedded mesh; unset mesh.url or mesh.listen")
		}
	}
	for _, u := range c.MeshURLs() {
		if !strings.Contains(u, "://") {
			return fmt.Errorf("mesh.url: %q needs a scheme, e.g. nats://%s", u, u)
		}
	}
	if err := c.validateLeaf(); err != nil {
		return err
	}
	if err := c.validateMeshSecurity(); err != nil {
		return err
	}
	if c.Mesh.DuplicateWindow <= 0 || c.Mesh.DuplicateWindow > c.Mesh.MaxAge {
		return fmt.Errorf("mesh.duplicateWindow: %s must be positive and at most mesh.maxAge (%s)", c.Mesh.DuplicateWindow, c.Mesh.MaxAge)
	}
	if c.Memory.LimitMB < 0 {
		return fmt.Errorf("memory.limitMB: %d must not be negative", c.Memory.LimitMB)
	}
	if c.Mesh.MaxConsumers < 1 {
		return fmt.Errorf("mesh.maxConsumers: %d must be positive", c.Mesh.MaxConsumers)
	}
	if c.Mesh.ConnectTimeout <= 0 {
		return fmt.Errorf("mesh.connectTimeout: %s must be positive", c.Mesh.ConnectTimeout)
	}
	if c.App.ID == "" {
		return errors.New("app.id: must not be empty")
	}
	if c.App.Port < 0 || c.App.Port > 65535 {
		return fmt.Errorf("app.port: %d is not a port", c.App.Port)
	}
	if c.API.MaxBodyBytes <= 0 {
		return fmt.Errorf("api.maxBodyBytes: %d must be positive", c.API.MaxBodyBytes)
	}
	if c.Mesh.URL == "" && c.Data.Dir == "" {
		return errors.New("data.dir: the embedded mesh needs a data directory")
	}
	if c.Mesh.Replicas < 1 || c.Mesh.Replicas > 5 {
		return fmt.Errorf("mesh.replicas: %d must be 1 to 5", c.Mesh.Replicas)
	}
	if !mesh.IsToken(c.Mesh.Stream, 64) {
		return fmt.Errorf("mesh.stream: %q must be letters, digits, '-' and '_'", c.Mesh.Stream)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is not text or json", c.Log.Format)
	}
	if c.Worker.LeaseTime < worker.MinLeaseTime {
		return fmt.Errorf("worker.leaseTime: %s must be at least %s", c.Worker.LeaseTime, worker.MinLeaseTime)
	}
	if strings.ContainsAny(c.Worker.ID, "\n\r") {
		return errors.New("worker.id: must be one line")
	}
	if c.Delivery.Timeout <= 0 || c.Delivery.AckWait <= c.Delivery.Timeout {
		return fmt.Errorf("delivery.ackWait (%s) must exceed delivery.timeout (%s), which must be positive", c.Delivery.AckWait, c.Delivery.Timeout)
	}
	if err := c.validateDeclared(); err != nil {
		return err
	}
	return c.validateConnectors()
}

// checkReadable says, naming setting, why the file at path cannot be read
// ("" is not set: fine).
func checkReadable(setting, path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: cannot read %s: %w", setting, path, pathCause(err))
	}
	return f.Close()
}

// pathCause is the reason of an *os.PathError without its operation and
// path ("no such file or directory"), for messages that name the path.
func pathCause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// stateBucket names the mesh KV bucket of this app's state (subscriptions,
// connector instances, offsets): base, '-' and the app id mapped one to
// one onto bucket-name characters (bucketSuffix), so sidecars sharing one
// cluster keep apart what each runs.
func (c *Config) stateBucket(base string) string {
	return base + "-" + bucketSuffix(c.App.ID)
}

// maxBucketSuffix keeps bucket names well under the mesh's 255 characters.
const maxBucketSuffix = 200

// bucketSuffix maps app ids to bucket-name characters one to one. An id of
// letters, digits, '-' and '_' without "__" is kept as it is: the buckets
// of such ids stay where earlier versions put them. Any other id becomes
// "__" and its bytes, each one other than a letter, a digit or '-' written
// as '_' and two hex digits ('_' too). No kept id holds "__", and the
// escaping is undone byte by byte, so two ids never share a suffix. An
// escaped id too long for a bucket name becomes "__h" and 32 hex digits of
// its SHA-256 (no '_' after the prefix, unlike every escaped id).
func bucketSuffix(id string) string {
	if id != "" && mesh.IsToken(id, maxBucketSuffix) && !strings.Contains(id, "__") {
		return id
	}
	var b strings.Builder
	b.WriteString("__")
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "_%02x", c)
	}
	if b.Len() > maxBucketSuffix {
		sum := sha256.Sum256([]byte(id))
		return "__h" + hex.EncodeToString(sum[:16])
	}
	return b.String()
}

// legacyStateBucket is where meshd kept an app's state before bucketSuffix:
// every character other than letters, digits, '-' and '_' replaced with
// '_', so that "a.b" and "a_b" shared their buckets.
func (c *Config) legacyStateBucket(base string) string {
	return base + "-" + legacyUnsafe.ReplaceAllString(c.App.ID, "_")
}

var legacyUnsafe = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// MeshURLs splits mesh.url.
func (c *Config) MeshURLs() []string { return splitURLs(c.Mesh.URL) }

// splitURLs splits a comma-separated list of URLs.
func splitURLs(list string) []string {
	var urls []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}
