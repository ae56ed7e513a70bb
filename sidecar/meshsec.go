package sidecar

// Who may use the mesh, and what of it is secret: the credentials and TLS
// of the connection to mesh.url, what clients on the embedded mesh's
// mesh.listen must present, and the key that encrypts connector secrets in
// the mesh KV. docs/security.md says the same for users.

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/meshd/meshd/bridge/tlsconf"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/mesh/natsjs"
)

// Files meshd generates in data.dir when their setting is not given.
const (
	// meshTokenFile holds the token clients on mesh.listen must present
	// (mesh.listenToken); a sidecar joining on the same host reads it with
	// mesh.tokenFile.
	meshTokenFile = "mesh.token"
	// secretsKeyFile holds the key of connector secrets (secrets.key).
	secretsKeyFile = "secrets.key"
)

// listenAuthNone is the one value of mesh.listenAuth.
const listenAuthNone = "none"

// named is a setting and whether it is set, for rules over several.
type named struct {
	name string
	set  bool
}

func (c *Config) meshClientSettings() []named {
	m := c.Mesh
	return []named{{"mesh.creds", m.Creds != ""}, {"mesh.nkeyFile", m.NKeyFile != ""}, {"mesh.user", m.User != ""},
		{"mesh.password", m.Password != ""}, {"mesh.token", m.Token != ""}, {"mesh.tokenFile", m.TokenFile != ""},
		{"mesh.tls.caFile", m.TLS.CAFile != ""}, {"mesh.tls.certFile", m.TLS.CertFile != ""},
		{"mesh.tls.keyFile", m.TLS.KeyFile != ""}, {"mesh.tls.serverName", m.TLS.ServerName != ""}}
}

func (c *Config) meshListenSettings() []named {
	m := c.Mesh
	return []named{{"mesh.listenAuth", m.ListenAuth != ""}, {"mesh.listenToken", m.ListenToken != ""},
		{"mesh.listenUser", m.ListenUser != ""}, {"mesh.listenPassword", m.ListenPassword != ""},
		{"mesh.listenTLS.certFile", m.ListenTLS.CertFile != ""}, {"mesh.listenTLS.keyFile", m.ListenTLS.KeyFile != ""},
		{"mesh.listenTLS.clientCAFile", m.ListenTLS.ClientCAFile != ""}}
}

// validateMeshSecurity checks the mesh credentials, TLS and secrets.key,
// naming the setting to fix. It reads the files they name.
func (c *Config) validateMeshSecurity() error {
	for _, s := range c.meshClientSettings() {
		if s.set && c.Mesh.URL == "" && c.Mesh.Leaf == "" {
			return fmt.Errorf("%s: only for mesh.url or mesh.leaf (the embedded mesh's own listener takes mesh.listenToken, mesh.listenTLS...)", s.name)
		}
	}
	for _, s := range c.meshListenSettings() {
		switch {
		case s.set && c.Mesh.URL != "":
			return fmt.Errorf("%s: only for the embedded mesh; unset mesh.url or %s", s.name, s.name)
		case s.set && c.Mesh.Listen == "":
			return fmt.Errorf("%s: needs mesh.listen", s.name)
		}
	}
	if err := c.validateMeshClient(); err != nil {
		return err
	}
	if err := c.validateMeshListen(); err != nil {
		return err
	}
	if c.Secrets.Key != "" {
		if _, err := decodeSecretsKey(c.Secrets.Key); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateMeshClient() error {
	m := c.Mesh
	var kinds []string
	for _, s := range []named{{"mesh.creds", m.Creds != ""}, {"mesh.nkeyFile", m.NKeyFile != ""}, {"mesh.user", m.User != ""},
		{"mesh.token", m.Token != ""}, {"mesh.tokenFile", m.TokenFile != ""}} {
		if s.set {
			kinds = append(kinds, s.name)
		}
	}
	switch {
	case len(kinds) > 1:
		return fmt.Errorf("%s: set one kind of mesh credentials, not several", strings.Join(kinds, ", "))
	case m.User != "" && m.Password == "":
		return errors.New("mesh.user: needs mesh.password")
	case m.Password != "" && m.User == "":
		return errors.New("mesh.password: needs mesh.user")
	case (m.TLS.CertFile == "") != (m.TLS.KeyFile == ""):
		return errors.New("mesh.tls.certFile and mesh.tls.keyFile: set both or neither")
	}
	for _, f := range []struct{ setting, path string }{{"mesh.creds", m.Creds}, {"mesh.nkeyFile", m.NKeyFile},
		{"mesh.tokenFile", m.TokenFile}, {"mesh.tls.caFile", m.TLS.CAFile}, {"mesh.tls.certFile", m.TLS.CertFile},
		{"mesh.tls.keyFile", m.TLS.KeyFile}} {
		if err := checkReadable(f.setting, f.path); err != nil {
			return err
		}
	}
	if m.NKeyFile != "" {
		if _, err := nats.NkeyOptionFromSeed(m.NKeyFile); err != nil {
			return fmt.Errorf("mesh.nkeyFile: %s holds no user NKey seed: %w", m.NKeyFile, err)
		}
	}
	if m.TokenFile != "" {
		if _, err := readTokenFile(m.TokenFile); err != nil {
			return err
		}
	}
	if _, err := (tlsconf.Client{CAFile: m.TLS.CAFile}).Config(); err != nil {
		return fmt.Errorf("mesh.tls.caFile: %w", err)
	}
	if _, err := (tlsconf.Client{CertFile: m.TLS.CertFile, KeyFile: m.TLS.KeyFile}).Config(); err != nil {
		return fmt.Errorf("mesh.tls.certFile, mesh.tls.keyFile: %w", err)
	}
	return nil
}

func (c *Config) validateMeshListen() error {
	m := c.Mesh
	switch {
	case m.ListenAuth != "" && m.ListenAuth != listenAuthNone:
		return fmt.Errorf("mesh.listenAuth: %q: the one value is %q (anonymous clients on mesh.listen); leave it unset to require a token or user/password", m.ListenAuth, listenAuthNone)
	case m.ListenAuth == listenAuthNone && (m.ListenToken != "" || m.ListenUser != ""):
		return errors.New("mesh.listenAuth: none cannot be combined with mesh.listenToken or mesh.listenUser")
	case m.ListenToken != "" && m.ListenUser != "":
		return errors.New("mesh.listenToken, mesh.listenUser: set one, not both")
	case (m.ListenUser == "") != (m.ListenPassword == ""):
		return errors.New("mesh.listenUser and mesh.listenPassword: set both or neither")
	case (m.ListenTLS.CertFile == "") != (m.ListenTLS.KeyFile == ""):
		return errors.New("mesh.listenTLS.certFile and mesh.listenTLS.keyFile: set both or neither")
	case m.ListenTLS.ClientCAFile != "" && m.ListenTLS.CertFile == "":
		return errors.New("mesh.listenTLS.clientCAFile: needs mesh.listenTLS.certFile and mesh.listenTLS.keyFile")
	}
	for _, f := range []struct{ setting, path string }{{"mesh.listenTLS.certFile", m.ListenTLS.CertFile},
		{"mesh.listenTLS.keyFile", m.ListenTLS.KeyFile}, {"mesh.listenTLS.clientCAFile", m.ListenTLS.ClientCAFile}} {
		if err := checkReadable(f.setting, f.path); err != nil {
			return err
		}
	}
	if _, err := (tlsconf.Server{CertFile: m.ListenTLS.CertFile, KeyFile: m.ListenTLS.KeyFile}).Config(); err != nil {
		return fmt.Errorf("mesh.listenTLS.certFile, mesh.listenTLS.keyFile: %w", err)
	}
	if _, err := (tlsconf.Client{CAFile: m.ListenTLS.ClientCAFile}).Config(); err != nil {
		return fmt.Errorf("mesh.listenTLS.clientCAFile: %w", err)
	}
	return nil
}

// readTokenFile reads the token in path (surrounding space trimmed).
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("mesh.tokenFile: cannot read %s: %w", path, pathCause(err))
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("mesh.tokenFile: %s is empty", path)
	}
	return tok, nil
}

// decodeSecretsKey decodes secrets.key; errors never show it.
func decodeSecretsKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("secrets.key: is not base64; make one with: head -c 32 /dev/urandom | base64")
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("secrets.key: holds %d bytes, want 32; make one with: head -c 32 /dev/urandom | base64", len(key))
	}
	return key, nil
}

// meshClient sets the credentials and TLS of the connection to mesh.url.
func (c *Config) meshClient(js *natsjs.Config) error {
	m := c.Mesh
	js.CredsFile, js.NKeyFile, js.User, js.Password, js.Token = m.Creds, m.NKeyFile, m.User, m.Password, m.Token
	if m.TokenFile != "" {
		tok, err := readTokenFile(m.TokenFile)
		if err != nil {
			return err
		}
		js.Token = tok
	}
	tc, err := m.TLS.client().Config()
	if err != nil {
		return fmt.Errorf("mesh.tls: %w", err)
	}
	js.TLS = tc
	return nil
}

// meshListen sets what clients on mesh.listen must present: the token
// (mesh.listenToken, or the one in data.dir/mesh.token, generated the
// first time), a user and password, or nothing (mesh.listenAuth: none);
// and the listener's TLS.
func (c *Config) meshListen(e *embedded.Config, dataDir string, logger *slog.Logger) error {
	m := c.Mesh
	if m.Listen == "" {
		return nil
	}
	tc, err := m.ListenTLS.server().Config()
	if err != nil {
		return fmt.Errorf("mesh.listenTLS: %w", err)
	}
	e.TLS = tc
	switch {
	case m.ListenAuth == listenAuthNone:
		e.NoAuth = true
		logger.Warn("mesh.listen accepts clients without credentials (mesh.listenAuth: none): anyone who reaches "+m.Listen+
			" can read the connector configs and publish, consume or delete every stream", "listen", m.Listen)
	case m.ListenUser != "":
		e.User, e.Password = m.ListenUser, m.ListenPassword
	case m.ListenToken != "":
		e.Token = m.ListenToken
	default:
		path := filepath.Join(dataDir, meshTokenFile)
		tok, created, err := readOrCreateSecret(path, func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) })
		if err != nil {
			return fmt.Errorf("mesh.listenToken: not set, and the generated token: %w", err)
		}
		e.Token = tok
		logger.Info("clients on mesh.listen must present the token in "+path+" (mesh.tokenFile)", "created", created)
	}
	return nil
}

// secretsKey returns the key of connector secrets: secrets.key, or the key
// in data.dir/secrets.key, generated the first time.
func (c *Config) secretsKey(logger *slog.Logger) func() ([]byte, error) {
	return func() ([]byte, error) {
		if c.Secrets.Key != "" {
			return decodeSecretsKey(c.Secrets.Key)
		}
		dir, err := filepath.Abs(c.Data.Dir)
		if err != nil {
			return nil, fmt.Errorf("secrets.key: not set, and data.dir: %w", err)
		}
		path := filepath.Join(dir, secretsKeyFile)
		s, created, err := readOrCreateSecret(path, base64.StdEncoding.EncodeToString)
		if err != nil {
			return nil, fmt.Errorf("secrets.key: not set, and the generated key: %w", err)
		}
		key, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("secrets.key: not set, and %s does not hold the base64 of 32 bytes", path)
		}
		if created && c.Mesh.URL != "" {
			logger.Warn("secrets.key is not set: connector secrets stored in the mesh are encrypted with a key generated in "+path+
				"; other sidecars of app "+c.App.ID+", and this one if it loses its data dir, cannot decrypt them: give every sidecar of the app one secrets.key",
				"file", path)
		}
		return key, nil
	}
}

// readOrCreateSecret reads the secret in path or, when there is no such
// file, writes a new one: 32 random bytes in encode's form, 0600, created
// whole or not at all. created says which.
func readOrCreateSecret(path string, encode func([]byte) string) (secret string, created bool, err error) {
	if b, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, false, nil
		}
		return "", false, fmt.Errorf("%s is empty: delete it to have a new one generated", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("reading %s: %w", path, pathCause(err))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, fmt.Errorf("creating %s: %w", filepath.Dir(path), pathCause(err))
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", false, err
	}
	secret = encode(raw)
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", false, fmt.Errorf("creating %s: %w", path, pathCause(err))
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(secret + "\n")
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil { // CreateTemp makes it 0600
		return "", false, fmt.Errorf("writing %s: %w", path, err)
	}
	// A link fails if path exists: another process made it meanwhile.
	if err := os.Link(tmp.Name(), path); errors.Is(err, os.ErrExist) {
		return readOrCreateSecret(path, encode)
	} else if err != nil {
		return "", false, fmt.Errorf("creating %s: %w", path, pathCause(err))
	}
	return secret, true, nil
}

// explainMeshError turns a failure to use mesh.url into one line naming
// the settings to fix: refused credentials, an untrusted certificate, or
// (by default) the mesh not answering.
func explainMeshError(c Config, err error) error {
	where := redactedMeshURL(c)
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var remote *net.OpError // a TLS alert from the server is a "remote error"
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return fmt.Errorf("%s: the mesh at %s refused this sidecar's credentials (%s): %w", c.meshCredentialSetting(), where, c.meshCredentialWhat(), rootCause(err))
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &badHost):
		return fmt.Errorf("mesh.tls.caFile: the certificate of the mesh at %s is not trusted (mesh.tls.caFile, mesh.tls.serverName): %w", where, rootCause(err))
	case errors.As(err, &remote) && remote.Op == "remote error",
		// With TLS 1.3 the server checks the client's certificate after
		// the client finished its handshake: the refusal may reach the
		// client as a closed connection instead of the alert.
		c.Mesh.TLS.CertFile == "" && c.meshUsesTLS() && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)):
		return fmt.Errorf("mesh.tls.certFile: the mesh at %s refused the TLS connection (mutual TLS needs mesh.tls.certFile and mesh.tls.keyFile): %w", where, rootCause(err))
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("mesh.tls: the mesh at %s does not offer TLS, which mesh.tls asks for: %w", where, rootCause(err))
	}
	return fmt.Errorf("mesh.url: cannot use the mesh at %s (mesh.connectTimeout %s): %w", where, c.Mesh.ConnectTimeout, rootCause(err))
}

// meshUsesTLS says whether the connection to mesh.url is made with TLS.
func (c *Config) meshUsesTLS() bool {
	if c.Mesh.TLS != (MeshTLSConfig{}) {
		return true
	}
	for _, u := range c.MeshURLs() {
		if strings.HasPrefix(u, "tls://") {
			return true
		}
	}
	return false
}

// meshCredentialSetting is the setting of the credentials meshd presents
// to mesh.url, to start an error line with.
func (c *Config) meshCredentialSetting() string {
	m := c.Mesh
	switch {
	case m.Creds != "":
		return "mesh.creds"
	case m.NKeyFile != "":
		return "mesh.nkeyFile"
	case m.User != "":
		return "mesh.user"
	case m.Token != "":
		return "mesh.token"
	case m.TokenFile != "":
		return "mesh.tokenFile"
	}
	return "mesh.url"
}

// meshCredentialWhat says which credentials were presented, never their
// value.
func (c *Config) meshCredentialWhat() string {
	m := c.Mesh
	switch {
	case m.Creds != "":
		return "the credentials file " + m.Creds
	case m.NKeyFile != "":
		return "the NKey seed in " + m.NKeyFile
	case m.User != "":
		return "user " + m.User + " and mesh.password"
	case m.Token != "":
		return "mesh.token"
	case m.TokenFile != "":
		return "the token in " + m.TokenFile
	}
	for _, u := range c.MeshURLs() {
		if p, err := url.Parse(u); err == nil && p.User != nil {
			return "the user in mesh.url"
		}
	}
	return "none were set: set mesh.token, mesh.tokenFile, mesh.user and mesh.password, mesh.nkeyFile or mesh.creds"
}
