package sidecar

// Edge mode: mesh.leaf makes the embedded mesh a NATS leaf node of a hub
// (mesh/embedded/leaf.go). The link authenticates with the credentials and
// TLS settings of mesh.url (mesh.creds, mesh.user, mesh.token, mesh.tls...).

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/mesh/natsjs"
)

// leafDomainFile holds the generated JetStream domain of an edge
// (mesh.leafDomain): the hub remembers how far it copied each domain, so
// it must not change while data.dir keeps the stream.
const leafDomainFile = "leaf.domain"

// leafURLs splits mesh.leaf.
func (c *Config) leafURLs() []string { return splitURLs(c.Mesh.Leaf) }

// validateLeaf checks mesh.leaf, mesh.leafDomain and mesh.hubDomain.
func (c *Config) validateLeaf() error {
	m := c.Mesh
	if m.Leaf == "" {
		if m.LeafDomain != "" {
			return errors.New("mesh.leafDomain: needs mesh.leaf")
		}
		return nil
	}
	if m.URL != "" {
		return errors.New("mesh.leaf: only for the embedded mesh; unset mesh.url or mesh.leaf")
	}
	for _, u := range c.leafURLs() {
		if !strings.Contains(u, "://") {
			return fmt.Errorf("mesh.leaf: %q needs a scheme, e.g. nats://%s", u, u)
		}
	}
	if m.LeafDomain != "" && !mesh.IsToken(m.LeafDomain, 64) {
		return fmt.Errorf("mesh.leafDomain: %q must be 1 to 64 letters, digits, '-' and '_'", m.LeafDomain)
	}
	if !mesh.IsToken(m.HubDomain, 64) {
		return fmt.Errorf("mesh.hubDomain: %q must be 1 to 64 letters, digits, '-' and '_'", m.HubDomain)
	}
	if m.LeafDomain != "" && m.LeafDomain == m.HubDomain {
		return fmt.Errorf("mesh.leafDomain: %q is the hub's domain (mesh.hubDomain); each edge needs its own", m.LeafDomain)
	}
	return nil
}

// leafConfig is the leaf node configuration of the embedded mesh in
// dataDir, nil without mesh.leaf: the hub's URLs, this edge's domain
// (mesh.leafDomain or the one generated into data.dir/leaf.domain), and
// the credentials and TLS of the link.
func (c *Config) leafConfig(dataDir string, logger *slog.Logger) (*embedded.LeafConfig, error) {
	if c.Mesh.Leaf == "" {
		return nil, nil
	}
	var client natsjs.Config
	if err := c.meshClient(&client); err != nil {
		return nil, err
	}
	leaf := &embedded.LeafConfig{
		URLs: c.leafURLs(), Domain: c.Mesh.LeafDomain, HubDomain: c.Mesh.HubDomain,
		CredsFile: client.CredsFile, User: client.User, Password: client.Password, Token: client.Token, TLS: client.TLS,
	}
	if c.Mesh.NKeyFile != "" {
		seed, err := os.ReadFile(c.Mesh.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("mesh.nkeyFile: cannot read %s: %w", c.Mesh.NKeyFile, pathCause(err))
		}
		leaf.NKeySeed = strings.TrimSpace(string(seed))
	}
	if leaf.Domain == "" {
		// Readable; the random part keeps domains apart.
		app := strings.Trim(legacyUnsafe.ReplaceAllString(c.App.ID, "_"), "_-")
		if len(app) > 40 {
			app = app[:40]
		}
		path := filepath.Join(dataDir, leafDomainFile)
		domain, created, err := readOrCreateSecret(path, func(b []byte) string { return "edge-" + app + "-" + hex.EncodeToString(b[:4]) })
		if err != nil {
			return nil, fmt.Errorf("mesh.leafDomain: not set, and the generated one: %w", err)
		}
		if !mesh.IsToken(domain, 64) {
			return nil, fmt.Errorf("mesh.leafDomain: not set, and %s holds %q, which is not a JetStream domain", path, domain)
		}
		leaf.Domain = domain
		if created {
			logger.Info("this edge's JetStream domain was generated into "+path+" (mesh.leafDomain)", "domain", domain)
		}
	}
	return leaf, nil
}
