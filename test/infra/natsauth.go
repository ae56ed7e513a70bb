package infra

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// NATSNKeyUser makes a user NKey: the authorization block that lets it in
// (for StartNATSConf) and a file holding its seed, 0600 (for a client).
func NATSNKeyUser(t testing.TB) (conf, seedFile string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatalf("creating a user nkey: %v", err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile = filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatalf("writing the nkey seed: %v", err)
	}
	return fmt.Sprintf("authorization {\n  users = [ { nkey: %q } ]\n}\n", pub), seedFile
}

// NATSOperator sets up decentralized (JWT) authentication: an operator, a
// system account, an account with JetStream and a user of it. It returns
// the server config (for StartNATSConf; accounts preloaded into a memory
// resolver) and the user's credentials file, 0600. otherCreds is the
// credentials file of a user signed by another operator's account: valid
// in form, refused by this server.
func NATSOperator(t testing.TB) (conf, creds, otherCreds string) {
	t.Helper()
	dir := t.TempDir()
	op := newKP(t, nkeys.CreateOperator)
	sys, acc := newKP(t, nkeys.CreateAccount), newKP(t, nkeys.CreateAccount)
	opPub, sysPub, accPub := pub(t, op), pub(t, sys), pub(t, acc)

	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "meshd-test"
	oc.SystemAccount = sysPub
	opJWT := encode(t, oc, op)
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT := encode(t, sc, op)
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = "APP"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT := encode(t, ac, op)

	opFile := filepath.Join(dir, "operator.jwt")
	if err := os.WriteFile(opFile, []byte(opJWT), 0o600); err != nil {
		t.Fatalf("writing the operator JWT: %v", err)
	}
	conf = fmt.Sprintf("operator: %q\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n  %s: %q\n}\n",
		opFile, sysPub, sysPub, sysJWT, accPub, accJWT)
	creds = userCreds(t, acc, filepath.Join(dir, "user.creds"))
	otherCreds = userCreds(t, newKP(t, nkeys.CreateAccount), filepath.Join(dir, "other.creds"))
	return conf, creds, otherCreds
}

// userCreds writes the credentials file of a new user of account acc.
func userCreds(t testing.TB, acc nkeys.KeyPair, path string) string {
	t.Helper()
	user := newKP(t, nkeys.CreateUser)
	uc := jwt.NewUserClaims(pub(t, user))
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(encode(t, uc, acc), seed)
	if err != nil {
		t.Fatalf("formatting user credentials: %v", err)
	}
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatalf("writing user credentials: %v", err)
	}
	return path
}

func newKP(t testing.TB, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatalf("creating an nkey: %v", err)
	}
	return kp
}

func pub(t testing.TB, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatalf("reading a public nkey: %v", err)
	}
	return p
}

func encode(t testing.TB, c interface {
	Encode(nkeys.KeyPair) (string, error)
}, signer nkeys.KeyPair) string {
	t.Helper()
	s, err := c.Encode(signer)
	if err != nil {
		t.Fatalf("encoding a JWT: %v", err)
	}
	return s
}
