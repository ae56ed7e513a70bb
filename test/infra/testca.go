package infra

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCA is a self-signed certificate authority written into a test's temp
// dir, with a server certificate (for 127.0.0.1, ::1 and localhost) and a
// client certificate it signed: for TLS and mutual TLS between processes.
// Every file is PEM; keys are written 0600.
type TestCA struct {
	CAFile                string // the CA certificate: trust it
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	OtherCAFile           string // an unrelated CA, for "not trusted" cases
	caCert                *x509.Certificate
	caKey                 *ecdsa.PrivateKey
	dir                   string
}

// NewTestCA writes a CA, a server and a client certificate into a temp dir.
func NewTestCA(t testing.TB) *TestCA {
	t.Helper()
	dir := t.TempDir()
	ca := &TestCA{dir: dir}
	ca.caCert, ca.caKey, ca.CAFile = newCA(t, dir, "meshd test CA", "ca.pem")
	_, _, ca.OtherCAFile = newCA(t, dir, "some other CA", "other-ca.pem")
	ca.ServerCert, ca.ServerKey = ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	ca.ClientCert, ca.ClientKey = ca.issue(t, "client", x509.ExtKeyUsageClientAuth)
	return ca
}

func newCA(t testing.TB, dir, name, file string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("creating the test CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing the test CA: %v", err)
	}
	path := filepath.Join(dir, file)
	writePEM(t, path, "CERTIFICATE", der, 0o644)
	return cert, key, path
}

// issue writes a certificate for 127.0.0.1, ::1 and localhost signed by ca.
func (ca *TestCA) issue(t testing.TB, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(t),
		Subject:      pkix.Name{CommonName: "meshd test " + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.caCert, &key.PublicKey, ca.caKey)
	if err != nil {
		t.Fatalf("issuing the test %s certificate: %v", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("encoding the test %s key: %v", name, err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der, 0o644)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER, 0o600)
	return certFile, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating a TLS key: %v", err)
	}
	return key
}

func serialNumber(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("generating a serial number: %v", err)
	}
	return n
}

func writePEM(t testing.TB, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
}
