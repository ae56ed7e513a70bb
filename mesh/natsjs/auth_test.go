package natsjs_test

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge/tlsconf"
	"github.com/meshd/meshd/mesh"
	"github.com/meshd/meshd/mesh/natsjs"
	"github.com/meshd/meshd/test/infra"
)

// connectWith connects to url with cfg's credentials and, if that worked,
// publishes an event (JetStream works for that user) and closes.
func connectWith(t *testing.T, url string, cfg natsjs.Config) error {
	t.Helper()
	cfg.URLs, cfg.Name, cfg.ConnectTimeout = []string{url}, t.Name(), 2*time.Second
	eng, err := natsjs.Connect(t.Context(), cfg)
	if err != nil {
		return err
	}
	defer eng.Close()
	require.NoError(t, eng.Publish(t.Context(), "auth", []*event.Event{newEvent("e-1")}))
	return nil
}

// Each kind of credential against a nats-server process that requires it:
// the right one connects and stores events; a wrong one, or none, is
// refused with nats's authorization error (which the sidecar turns into
// a message naming its setting).
func TestConnectCredentials(t *testing.T) {
	nkeyConf, seedFile := infra.NATSNKeyUser(t)
	_, otherSeed := infra.NATSNKeyUser(t)
	opConf, creds, otherCreds := infra.NATSOperator(t)
	cases := []struct {
		name      string
		conf      string
		good, bad natsjs.Config
	}{
		{name: "token", conf: "authorization { token: \"t0ken-of-the-mesh\" }\n",
			good: natsjs.Config{Token: "t0ken-of-the-mesh"}, bad: natsjs.Config{Token: "guess"}},
		{name: "user and password", conf: "authorization { user: meshd, password: \"pw-of-meshd\" }\n",
			good: natsjs.Config{User: "meshd", Password: "pw-of-meshd"}, bad: natsjs.Config{User: "meshd", Password: "wrong"}},
		{name: "nkey", conf: nkeyConf,
			good: natsjs.Config{NKeyFile: seedFile}, bad: natsjs.Config{NKeyFile: otherSeed}},
		{name: "creds", conf: opConf,
			good: natsjs.Config{CredsFile: creds}, bad: natsjs.Config{CredsFile: otherCreds}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := infra.StartNATSConf(t, tc.conf)
			require.NoError(t, connectWith(t, url, tc.good))
			err := connectWith(t, url, tc.bad)
			require.ErrorIs(t, err, nats.ErrAuthorization, "wrong credentials")
			err = connectWith(t, url, natsjs.Config{})
			require.ErrorIs(t, err, nats.ErrAuthorization, "no credentials")
			require.ErrorIs(t, err, mesh.ErrUnavailable)
		})
	}
}

func TestConnectTLS(t *testing.T) {
	ca := infra.NewTestCA(t)
	conf := fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n  ca_file: %q\n  verify: true\n}\nauthorization { token: tok }\n",
		ca.ServerCert, ca.ServerKey, ca.CAFile)
	url := infra.StartNATSConf(t, conf)
	withTLS := func(c tlsconf.Client) natsjs.Config {
		tc, err := c.Config()
		require.NoError(t, err)
		return natsjs.Config{Token: "tok", TLS: tc}
	}
	require.NoError(t, connectWith(t, url, withTLS(tlsconf.Client{CAFile: ca.CAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey})))
	// The same with a tls:// URL.
	require.NoError(t, connectWith(t, "tls"+url[len("nats"):], withTLS(tlsconf.Client{CAFile: ca.CAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey})))

	var verr *tls.CertificateVerificationError
	require.ErrorAs(t, connectWith(t, url, withTLS(tlsconf.Client{CAFile: ca.OtherCAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey})), &verr,
		"a server certificate from an untrusted CA")
	require.ErrorAs(t, connectWith(t, url, natsjs.Config{Token: "tok"}), &verr, "the system's CAs do not know the test CA")
	require.Error(t, connectWith(t, url, withTLS(tlsconf.Client{CAFile: ca.CAFile})), "no client certificate")
	require.ErrorContains(t, connectWith(t, url, withTLS(tlsconf.Client{CAFile: ca.CAFile, CertFile: ca.ClientCert, KeyFile: ca.ClientKey, ServerName: "other.example"})),
		"other.example")
}

// A TLS setting against a server without TLS is refused, not silently
// sent in clear.
func TestConnectTLSToPlainServer(t *testing.T) {
	ca := infra.NewTestCA(t)
	url, _, _ := infra.StartNATS(t)
	tc, err := tlsconf.Client{CAFile: ca.CAFile}.Config()
	require.NoError(t, err)
	require.ErrorIs(t, connectWith(t, url, natsjs.Config{TLS: tc}), nats.ErrSecureConnWanted)
}
