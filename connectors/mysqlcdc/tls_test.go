package mysqlcdc_test

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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/mysqlcdc"
)

// writeCerts writes a CA and a server certificate for 127.0.0.1 signed by
// it into dir: ca.pem, server.pem, server-key.pem.
func writeCerts(t *testing.T, dir string) {
	t.Helper()
	write := func(name, typ string, der []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "meshd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	write("ca.pem", "CERTIFICATE", caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	write("server.pem", "CERTIFICATE", srvDER)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	write("server-key.pem", "PRIVATE KEY", keyDER)
}

// A server that requires TLS of the connector's user: the connector reads
// the binlog over TLS, verifying the server against tls-ca; without TLS it
// is refused, and an unknown CA fails the certificate check.
func TestMySQLCDCTLS(t *testing.T) {
	certs := t.TempDir()
	writeCerts(t, certs)
	db := startMariaDBBinlog(t, "--ssl-ca="+filepath.Join(certs, "ca.pem"),
		"--ssl-cert="+filepath.Join(certs, "server.pem"), "--ssl-key="+filepath.Join(certs, "server-key.pem"))
	db.admin("ALTER USER 'cdc'@'%' REQUIRE SSL")
	db.exec(t, "CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t VALUES (1)")

	// The snapshot's connection, the schema reader and the binlog stream.
	url := db.URL() + "?tls=true&tls-ca=" + filepath.Join(certs, "ca.pem")
	task := startTask(t, map[string]any{"url": url, "tables": "t", "snapshot": true}, nil)
	assert.Equal(t, []string{"snapshot:1"}, subjects(pollN(t, task, 1)))
	db.exec(t, "INSERT INTO t VALUES (2)")
	assert.Equal(t, []string{"inserted:2"}, subjects(pollN(t, task, 1)))
	require.NoError(t, task.Stop(t.Context()))

	skip := startTask(t, map[string]any{"url": db.URL() + "?tls=skip-verify", "tables": "t"}, nil)
	db.exec(t, "INSERT INTO t VALUES (3)")
	assert.Equal(t, []string{"inserted:3"}, subjects(pollN(t, skip, 1)))
	require.NoError(t, skip.Stop(t.Context()))

	for name, c := range map[string]struct{ url, want string }{
		"plain":      {db.URL(), "Access denied"},
		"unknown CA": {db.URL() + "?tls=true", "certificate"},
	} {
		cfg := connectortest.Config(t, mysqlcdc.Spec, "url", c.url, "tables", "t")
		task := &mysqlcdc.Task{}
		task.Init(connectortest.TaskContext(nil))
		err := task.Start(t.Context(), cfg)
		if err == nil { // the position is read at start; the stream may fail later
			_, err = task.Poll(t.Context())
		}
		_ = task.Stop(t.Context())
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), c.want, name)
	}

	for _, bad := range []string{"?tls=maybe", "?tls-ca=/x.pem", "?tls=true&tls-ca=/nonexistent.pem", "?sslmode=require"} {
		_, err := mysqlcdc.Spec.Validate(map[string]any{connectors.FieldConnectorType: mysqlcdc.Type, connectors.FieldTopic: "cdc", "url": db.URL() + bad})
		assert.Error(t, err, bad)
	}
}
