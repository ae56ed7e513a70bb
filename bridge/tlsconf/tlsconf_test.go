package tlsconf_test

import (
	"crypto/tls"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge/tlsconf"
	"github.com/meshd/meshd/test/infra"
)

// handshake runs one TLS handshake between the two configs on loopback and
// returns the client's error and the server's.
func handshake(t *testing.T, server, client *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	require.NoError(t, err)
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		err = c.(*tls.Conn).Handshake()
		if err == nil {
			_, err = c.Write([]byte("ok"))
		}
		served <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		_, err = io.ReadFull(c, make([]byte, 2))
		c.Close()
	}
	return err, <-served
}

func TestZeroValuesMeanNoSettings(t *testing.T) {
	c, err := tlsconf.Client{}.Config()
	require.NoError(t, err)
	assert.Nil(t, c)
	s, err := tlsconf.Server{}.Config()
	require.NoError(t, err)
	assert.Nil(t, s)
}

func TestServerAndClientHandshake(t *testing.T) {
	ca := infra.NewTestCA(t)
	server, err := tlsconf.Server{CertFile: ca.ServerCert, KeyFile: ca.ServerKey}.Config()
	require.NoError(t, err)
	assert.Equal(t, uint16(tls.VersionTLS12), server.MinVersion)
	assert.Equal(t, tls.NoClientCert, server.ClientAuth)

	trusting, err := tlsconf.Client{CAFile: ca.CAFile}.Config()
	require.NoError(t, err)
	cerr, serr := handshake(t, server, trusting)
	require.NoError(t, cerr)
	require.NoError(t, serr)

	other, err := tlsconf.Client{CAFile: ca.OtherCAFile}.Config()
	require.NoError(t, err)
	cerr, _ = handshake(t, server, other)
	var verr *tls.CertificateVerificationError
	assert.True(t, errors.As(cerr, &verr), "a server signed by another CA is not trusted: %v", cerr)

	named, err := tlsconf.Client{CAFile: ca.CAFile, ServerName: "not-in-the-cert.example"}.Config()
	require.NoError(t, err)
	cerr, _ = handshake(t, server, named)
	require.ErrorContains(t, cerr, "not-in-the-cert.example", "serverName is the name checked")
}

func TestMutualTLS(t *testing.T) {
	ca := infra.NewTestCA(t)
	server, err := tlsconf.Server{CertFile: ca.ServerCert, KeyFile: ca.ServerKey, ClientCAFile: ca.CAFile}.Config()
	require.NoError(t, err)
	assert.Equal(t, tls.RequireAndVerifyClientCert, server.ClientAuth)

	anonymous, err := tlsconf.Client{CAFile: ca.CAFile}.Config()
	require.NoError(t, err)
	_, serr := handshake(t, server, anonymous)
	require.Error(t, serr, "a client without a certificate is refused")

	withCert, err := tlsconf.Client{CAFile: ca.CAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey}.Config()
	require.NoError(t, err)
	cerr, serr := handshake(t, server, withCert)
	require.NoError(t, cerr)
	require.NoError(t, serr)
}

func TestErrorsNameTheFile(t *testing.T) {
	ca := infra.NewTestCA(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	_, err := tlsconf.Server{CertFile: ca.ServerCert}.Config()
	require.ErrorContains(t, err, "both its certificate and its key file")
	_, err = tlsconf.Server{CertFile: missing, KeyFile: ca.ServerKey}.Config()
	require.ErrorContains(t, err, missing)
	_, err = tlsconf.Server{CertFile: ca.ServerCert, KeyFile: ca.ServerKey, ClientCAFile: missing}.Config()
	require.ErrorContains(t, err, missing)
	_, err = tlsconf.Server{CertFile: ca.ServerCert, KeyFile: ca.ServerKey, ClientCAFile: ca.ServerKey}.Config()
	require.ErrorContains(t, err, "holds no PEM certificate")
	_, err = tlsconf.Client{CAFile: missing}.Config()
	require.ErrorContains(t, err, missing)
	_, err = tlsconf.Client{CertFile: ca.ClientCert}.Config()
	require.ErrorContains(t, err, "both its certificate and its key file")
}
