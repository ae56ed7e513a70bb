package infra

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Mailpit is an SMTP server that keeps what it receives and serves it over
// a REST API; its chaos API makes it answer real SMTP 4xx and 5xx replies.
// The Go module proxy refuses `go install github.com/axllent/mailpit@latest`,
// so test/install-deps.sh installs this exact version into the user cache
// dir.
const (
	MailpitVersion      = "v1.33.1"
	mailpitStartTimeout = 20 * time.Second
	mailpitStopTimeout  = 10 * time.Second
)

// MailpitMissing is the failure message when the binary is not installed.
var MailpitMissing = "mailpit " + MailpitVersion + " is not installed: run `make deps` " +
	"(test/install-deps.sh builds it with `go install github.com/axllent/mailpit@" + MailpitVersion + "` into " +
	"$XDG_CACHE_HOME/meshd/bin, default ~/.cache/meshd/bin)"

// MailpitBinary returns the path of the mailpit binary in the user cache
// dir (~/.cache/meshd/bin/mailpit-v1.33.1), failing the test with what to
// run when it is missing.
func MailpitBinary(t testing.TB) string {
	t.Helper()
	bin, err := cachedBinary("mailpit-" + MailpitVersion)
	if err != nil {
		t.Fatalf("%s (%v)", MailpitMissing, err)
	}
	return bin
}

// cachedBinary returns the path of an executable in the user cache dir's
// meshd/bin, where test/install-deps.sh puts the servers it builds.
func cachedBinary(name string) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "meshd", "bin", name)
	fi, err := os.Stat(bin)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", bin)
	}
	return bin, nil
}

// MailpitOptions adjusts the SMTP side of a Mailpit.
type MailpitOptions struct {
	// TLS gives the server a self-signed certificate for 127.0.0.1 and
	// localhost (Mailpit.CAFile): STARTTLS is offered.
	TLS bool
	// RequireSTARTTLS refuses mail before STARTTLS; RequireTLS makes the
	// port implicit TLS (SMTPS). Both imply TLS.
	RequireSTARTTLS, RequireTLS bool
	// Credentials, when set, are the only accepted user → password pairs
	// (AUTH is then required; no white space in either); otherwise any
	// AUTH, or none, is accepted.
	Credentials map[string]string
	// Args are more mailpit flags, e.g. --smtp-max-recipients 2.
	Args []string
}

// Mailpit is a running mailpit owned by a test.
type Mailpit struct {
	// SMTPAddr is the SMTP host:port on 127.0.0.1.
	SMTPAddr string
	// APIURL is the base URL of the REST API, without a trailing slash.
	APIURL string
	// CAFile is the PEM certificate of the server (its own CA) with TLS.
	CAFile string
	client *http.Client
}

// StartMailpit starts mailpit on two free loopback ports (SMTP and HTTP)
// with its database in a temp dir, chaos enabled, and waits until its API
// answers. It is stopped by PID when the test ends.
func StartMailpit(t testing.TB, opts MailpitOptions) *Mailpit {
	t.Helper()
	bin := MailpitBinary(t)
	dir := t.TempDir()
	m := &Mailpit{
		SMTPAddr: FreeAddr(t),
		client:   &http.Client{Timeout: 10 * time.Second},
	}
	apiAddr := FreeAddr(t)
	m.APIURL = "http://" + apiAddr
	args := []string{
		"--smtp", m.SMTPAddr,
		"--listen", apiAddr,
		"--database", filepath.Join(dir, "mailpit.db"),
		"--smtp-disable-rdns",
		"--disable-version-check",
		"--enable-chaos",
		"--quiet",
	}
	tls := opts.TLS || opts.RequireSTARTTLS || opts.RequireTLS
	if tls {
		certFile, keyFile := writeSelfSignedCert(t, dir)
		m.CAFile = certFile
		args = append(args, "--smtp-tls-cert", certFile, "--smtp-tls-key", keyFile)
		switch {
		case opts.RequireTLS:
			args = append(args, "--smtp-require-tls")
		case opts.RequireSTARTTLS:
			args = append(args, "--smtp-require-starttls")
		}
	}
	if opts.Credentials != nil {
		var b strings.Builder
		for u, p := range opts.Credentials {
			fmt.Fprintf(&b, "%s:%s\n", u, p)
		}
		authFile := filepath.Join(dir, "smtp-auth")
		if err := os.WriteFile(authFile, []byte(b.String()), 0o600); err != nil {
			t.Fatalf("mailpit: writing the auth file: %v", err)
		}
		args = append(args, "--smtp-auth-file", authFile)
	} else {
		args = append(args, "--smtp-auth-accept-any")
	}
	if !tls || !(opts.RequireSTARTTLS || opts.RequireTLS) {
		// mailpit refuses this flag together with required TLS.
		args = append(args, "--smtp-auth-allow-insecure")
	}
	args = append(args, opts.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	log := server{name: "mailpit", startTimeout: mailpitStartTimeout, stopTimeout: mailpitStopTimeout}.start(t, cmd, m.SMTPAddr)
	deadline := time.Now().Add(mailpitStartTimeout)
	for {
		resp, err := m.client.Get(m.APIURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailpit: the API at %s did not answer within %s (last error %v): %s", m.APIURL, mailpitStartTimeout, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MailpitAddress is a mailbox as the API shows it.
type MailpitAddress struct {
	Name    string
	Address string
}

// MailpitSummary is one message of the list (GET /api/v1/messages).
type MailpitSummary struct {
	ID        string
	MessageID string
	From      *MailpitAddress
	To, Cc    []MailpitAddress
	Bcc       []MailpitAddress
	Subject   string
	Created   time.Time
	Size      int
}

// MailpitMessage is one message with its parsed bodies
// (GET /api/v1/message/{ID}).
type MailpitMessage struct {
	ID        string
	MessageID string
	From      *MailpitAddress
	To, Cc    []MailpitAddress
	Bcc       []MailpitAddress
	ReplyTo   []MailpitAddress
	// ReturnPath is the envelope sender (MAIL FROM).
	ReturnPath string
	Subject    string
	Date       time.Time
	// Username is the one the client authenticated as, if any.
	Username string
	Text     string
	HTML     string
	Size     int
}

// Messages lists every stored message, newest first.
func (m *Mailpit) Messages(ctx context.Context) ([]MailpitSummary, error) {
	var out []MailpitSummary
	for start := 0; ; {
		var page struct {
			Total         int
			MessagesCount int `json:"messages_count"`
			Messages      []MailpitSummary
		}
		if err := m.call(ctx, http.MethodGet, "/api/v1/messages?limit=500&start="+strconv.Itoa(start), nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Messages...)
		start += len(page.Messages)
		if len(page.Messages) == 0 || start >= page.MessagesCount {
			return out, nil
		}
	}
}

// Message returns one message by its mailpit ID.
func (m *Mailpit) Message(ctx context.Context, id string) (MailpitMessage, error) {
	var msg MailpitMessage
	err := m.call(ctx, http.MethodGet, "/api/v1/message/"+url.PathEscape(id), nil, &msg)
	return msg, err
}

// Headers returns the decoded headers of one message.
func (m *Mailpit) Headers(ctx context.Context, id string) (map[string][]string, error) {
	var h map[string][]string
	err := m.call(ctx, http.MethodGet, "/api/v1/message/"+url.PathEscape(id)+"/headers", nil, &h)
	return h, err
}

// Raw returns one message as it was received (headers and encoded body).
func (m *Mailpit) Raw(ctx context.Context, id string) ([]byte, error) {
	var raw rawBody
	err := m.call(ctx, http.MethodGet, "/api/v1/message/"+url.PathEscape(id)+"/raw", nil, &raw)
	return raw, err
}

// Clear deletes every message.
func (m *Mailpit) Clear(ctx context.Context) error {
	return m.call(ctx, http.MethodDelete, "/api/v1/messages", struct{}{}, nil)
}

// MailpitTrigger makes the SMTP server answer ErrorCode (400-599) with
// Probability percent.
type MailpitTrigger struct {
	ErrorCode   int
	Probability int
}

// MailpitChaos sets when the SMTP server fails: at MAIL FROM (Sender), at
// each RCPT TO (Recipient), at AUTH (Authentication). A zero trigger never
// fires.
type MailpitChaos struct {
	Sender, Recipient, Authentication MailpitTrigger
}

// SetChaos replaces the chaos triggers (PUT /api/v1/chaos).
func (m *Mailpit) SetChaos(ctx context.Context, c MailpitChaos) error {
	return m.call(ctx, http.MethodPut, "/api/v1/chaos", c, nil)
}

// rawBody is a response body taken as it is.
type rawBody []byte

// call sends a request to the API: in, when not nil, as JSON; a 2xx
// answer is decoded into out (a *rawBody takes it as it is).
func (m *Mailpit) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.APIURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return fmt.Errorf("mailpit %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("mailpit %s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("mailpit %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *rawBody:
		*o = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("mailpit %s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// writeSelfSignedCert writes a self-signed ECDSA certificate for 127.0.0.1,
// ::1 and localhost, valid for a day, and its key into dir.
func writeSelfSignedCert(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(t),
		Subject:               pkix.Name{CommonName: "meshd test server"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("creating a TLS certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("encoding a TLS key: %v", err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", der, 0o644)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER, 0o600)
	return certFile, keyFile
}
