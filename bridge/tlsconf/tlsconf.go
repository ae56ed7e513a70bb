// Package tlsconf builds TLS configs from the settings meshd's parts share:
// the client side (MQTT links, http-sink, subscription delivery, database
// connectors, the mesh connection) and the server side (the embedded
// mesh's listener): one builder each, one set of errors naming the file.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Client is the TLS side of a connection meshd opens. The zero value means
// "no settings": Config returns nil and the caller picks its default.
type Client struct {
	// CAFile is a PEM file of CAs trusted for the server (default: the
	// system's).
	CAFile string `yaml:"caFile" json:"caFile,omitempty"`
	// CertFile and KeyFile are a client certificate for mutual TLS.
	CertFile string `yaml:"certFile" json:"certFile,omitempty"`
	KeyFile  string `yaml:"keyFile" json:"keyFile,omitempty"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"serverName" json:"serverName,omitempty"`
	// InsecureSkipVerify disables certificate checks (tests only).
	InsecureSkipVerify bool `yaml:"insecureSkipVerify" json:"insecureSkipVerify,omitempty"`
}

// Config returns the *tls.Config of c (TLS 1.2 at least), or nil for the
// zero Client. Errors say which file is wrong; callers wrap them with the
// name of their setting.
func (c Client) Config() (*tls.Config, error) {
	if c == (Client{}) {
		return nil, nil
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("a client certificate needs both its certificate and its key file")
	}
	cfg := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // opt-in, named insecure
	if c.CAFile != "" {
		pool, err := certPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Server is the TLS side of a listener meshd serves. The zero value means
// "no TLS": Config returns nil.
type Server struct {
	// CertFile and KeyFile are the server's certificate (with its chain)
	// and private key, PEM. Required unless the Server is zero.
	CertFile string
	KeyFile  string
	// ClientCAFile, if set, is a PEM file of CAs: every client must
	// present a certificate one of them signed (mutual TLS).
	ClientCAFile string
}

// Config returns the *tls.Config of s (TLS 1.2 at least), or nil for the
// zero Server. Errors say which file is wrong; callers wrap them with the
// name of their setting.
func (s Server) Config() (*tls.Config, error) {
	if s == (Server{}) {
		return nil, nil
	}
	if s.CertFile == "" || s.KeyFile == "" {
		return nil, fmt.Errorf("a server needs both its certificate and its key file")
	}
	pair, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the server certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if s.ClientCAFile != "" {
		pool, err := certPool(s.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// certPool reads a PEM file of CA certificates.
func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}
