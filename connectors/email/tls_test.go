package email_test

import (
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors/email"
	"github.com/meshd/meshd/test/infra"
)

const (
	tlsUser     = "meshd"
	tlsPassword = "Pa55-wörd:%+=" // (mailpit splits its credentials at white space)
)

// STARTTLS and implicit TLS against mailpit with a self-signed
// certificate, AUTH PLAIN and LOGIN with real credentials.
func TestTLSModes(t *testing.T) {
	creds := map[string]string{tlsUser: tlsPassword}
	ctx := t.Context()
	send := func(task *email.Task, id string) error {
		return task.Put(ctx, []event.Event{newEvent(t, id, map[string]any{"email": "a@example.org"})})
	}

	t.Run("STARTTLS", func(t *testing.T) {
		mp := infra.StartMailpit(t, infra.MailpitOptions{RequireSTARTTLS: true, Credentials: creds})
		login := []any{email.FieldTLSCAFile, mp.CAFile, email.FieldUsername, tlsUser, email.FieldPassword, tlsPassword}
		for i, mech := range []string{email.AuthAuto, email.AuthPlain, email.AuthLogin} {
			task := startTask(t, mp.SMTPAddr, append(login, email.FieldTLSMode, email.TLSStartTLS, email.FieldAuthMechanism, mech)...)
			require.NoError(t, send(task, "starttls-"+mech), "auth.mechanism %s", mech)
			list := waitMessages(t, mp, i+1)
			m, err := mp.Message(ctx, list[0].ID)
			require.NoError(t, err)
			assert.Equal(t, tlsUser, m.Username)
		}

		wrong := startTask(t, mp.SMTPAddr, email.FieldTLSMode, email.TLSStartTLS, email.FieldTLSCAFile, mp.CAFile,
			email.FieldUsername, tlsUser, email.FieldPassword, "Wrong-Pa55word-7")
		err := send(wrong, "wrong-password")
		require.Error(t, err)
		assert.Equal(t, bridge.Unavailable, class(err), "refused credentials hold the batch: %v", err)
		assert.Contains(t, err.Error(), "535")
		assert.NotContains(t, err.Error(), "Wrong-Pa55word-7")

		untrusted := startTask(t, mp.SMTPAddr, email.FieldTLSMode, email.TLSStartTLS, email.FieldUsername, tlsUser, email.FieldPassword, tlsPassword)
		err = send(untrusted, "untrusted")
		require.Error(t, err)
		assert.Equal(t, bridge.Unavailable, class(err), "%v", err)
		assert.Contains(t, err.Error(), "certificate")

		insecure := startTask(t, mp.SMTPAddr, email.FieldTLSMode, email.TLSStartTLS, email.FieldTLSInsecure, true,
			email.FieldUsername, tlsUser, email.FieldPassword, tlsPassword)
		require.NoError(t, send(insecure, "insecure"), "tls.insecure skips the verification")

		plain := startTask(t, mp.SMTPAddr) // tls.mode none, no AUTH, against a server requiring STARTTLS
		err = send(plain, "plain")
		require.Error(t, err)
		assert.Equal(t, bridge.Unavailable, class(err), "a server that wants TLS or AUTH first holds the batch: %v", err)
		assert.Contains(t, err.Error(), "530")
	})

	t.Run("ImplicitTLS", func(t *testing.T) {
		mp := infra.StartMailpit(t, infra.MailpitOptions{RequireTLS: true, Credentials: creds})
		task := startTask(t, mp.SMTPAddr, email.FieldTLSMode, email.TLSImplicit, email.FieldTLSCAFile, mp.CAFile,
			email.FieldUsername, tlsUser, email.FieldPassword, tlsPassword)
		require.NoError(t, send(task, "smtps-1"))
		require.NoError(t, send(task, "smtps-2"))
		waitMessages(t, mp, 2)

		// The server waits for a TLS hello, the task for a greeting: the timeout ends it.
		starttls := startTask(t, mp.SMTPAddr, email.FieldTLSMode, email.TLSStartTLS, email.FieldTLSCAFile, mp.CAFile, email.FieldTimeout, "500ms")
		err := send(starttls, "mismatch")
		require.Error(t, err)
		assert.Equal(t, bridge.Unavailable, class(err), "%v", err)
	})

	t.Run("NoSTARTTLSOffered", func(t *testing.T) {
		mp := infra.StartMailpit(t, infra.MailpitOptions{})
		task := startTask(t, mp.SMTPAddr, email.FieldTLSMode, email.TLSStartTLS, email.FieldTLSInsecure, true)
		err := send(task, "downgrade")
		require.Error(t, err)
		assert.Equal(t, bridge.Unavailable, class(err), "%v", err)
		assert.Contains(t, err.Error(), "does not offer STARTTLS", "no silent fall back to plain text")
		list, err := mp.Messages(ctx)
		require.NoError(t, err)
		assert.Empty(t, list)
	})
}
