package email_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/connectortest"
	"github.com/meshd/meshd/connectors/email"
	"github.com/meshd/meshd/test/infra"
)

// create starts connector name on env with the mailpit's address and
// fields.
func create(t *testing.T, env *connectortest.Runtime, name string, mp *infra.Mailpit, fields map[string]any) {
	t.Helper()
	host, port, _ := net.SplitHostPort(mp.SMTPAddr)
	cfg := map[string]any{
		email.FieldHost: host, email.FieldPort: port, email.FieldTLSMode: email.TLSNone,
		email.FieldFrom: from, email.FieldTo: "{{.Data.email}}", email.FieldSubject: "{{.ID}}",
		connectors.FieldAttempts: 1000,
	}
	maps.Copy(cfg, fields)
	env.Create(t, name, cfg)
}

// publish stores the event id, to rcpt, on the topic env's connectors read.
func publish(t *testing.T, env *connectortest.Runtime, id, rcpt string) {
	t.Helper()
	env.Publish(t, newEvent(t, id, map[string]any{"email": rcpt}))
}

// messageFor waits for the mail of event id (the subject is the id).
func messageFor(t *testing.T, mp *infra.Mailpit, id string) infra.MailpitSummary {
	t.Helper()
	var found infra.MailpitSummary
	require.Eventually(t, func() bool {
		list, err := mp.Messages(context.Background())
		if err != nil {
			return false
		}
		for _, s := range list {
			if s.Subject == id {
				found = s
				return true
			}
		}
		return false
	}, wait, tick, "the mail of %s should arrive", id)
	return found
}

// Through the runtime: a 4xx is retried until the server takes the mail;
// a 5xx dead-letters the event with the server's reply; the password is
// never shown.
func TestRuntimeRetriesAndDeadLetters(t *testing.T) {
	const password = "Runtime-Secret-Pw-9"
	mp := infra.StartMailpit(t, infra.MailpitOptions{})
	env := connectortest.NewRuntime(t, email.Spec)
	create(t, env, "mail", mp, map[string]any{email.FieldUsername: "meshd", email.FieldPassword: password})
	ctx := t.Context()

	require.NoError(t, mp.SetChaos(ctx, infra.MailpitChaos{Recipient: infra.MailpitTrigger{ErrorCode: 451, Probability: 100}}))
	publish(t, env, "soft-1", "a@example.org")
	require.Eventually(t, func() bool {
		return strings.Count(env.Logs.String(), "451 Chaos recipient error") >= 2
	}, wait, tick, "the runtime retries the refused event")
	require.NoError(t, mp.SetChaos(ctx, infra.MailpitChaos{}))
	got := messageFor(t, mp, "soft-1")
	assert.Equal(t, strings.Trim(email.MessageID("/emailtest", "soft-1", fromAddr), "<>"), got.MessageID)

	dead := env.DeadLetters(t)
	require.NoError(t, mp.SetChaos(ctx, infra.MailpitChaos{Recipient: infra.MailpitTrigger{ErrorCode: 550, Probability: 100}}))
	publish(t, env, "hard-1", "b@example.org")
	dl, reason := dead.Next(t)
	assert.Equal(t, "hard-1", dl.ID())
	assert.Equal(t, "SMTP server answered RCPT TO:<b@example.org> with 550 Chaos recipient error", reason)
	assert.EqualValues(t, "1", fmt.Sprint(dl.Extensions()[bridge.ExtDeliveryAttempts]), "a 5xx spends no retries")
	require.NoError(t, mp.SetChaos(ctx, infra.MailpitChaos{}))

	shown := env.Shown(t, "mail")
	assert.Contains(t, shown, connectors.Mask, "the password is masked")
	assert.NotContains(t, shown, password)
	assert.NotContains(t, reason, password)
}

// A wrong password holds the events, shows nowhere, and a corrected config
// sends them.
func TestRuntimeWrongPassword(t *testing.T) {
	const wrong, right = "Wrong-Runtime-Pw-3", "Right-Runtime-Pw-4"
	mp := infra.StartMailpit(t, infra.MailpitOptions{Credentials: map[string]string{"meshd": right}})
	env := connectortest.NewRuntime(t, email.Spec)
	create(t, env, "mail", mp, map[string]any{email.FieldUsername: "meshd", email.FieldPassword: wrong})
	publish(t, env, "held-1", "a@example.org")
	require.Eventually(t, func() bool {
		return strings.Contains(env.Logs.String(), "Authentication credentials invalid")
	}, wait, tick, "the refused AUTH is logged")
	shown := env.Shown(t, "mail")
	assert.NotContains(t, shown, wrong)
	assert.Contains(t, shown, "535", "the reason is shown")

	info, err := env.RT.Get("mail")
	require.NoError(t, err)
	cfg := info.Config // masked: put back as it is, the stored password is kept
	cfg[email.FieldPassword] = right
	_, _, err = env.RT.Put(t.Context(), "mail", cfg)
	require.NoError(t, err)
	m := messageFor(t, mp, "held-1")
	full, err := mp.Message(t.Context(), m.ID)
	require.NoError(t, err)
	assert.Equal(t, "meshd", full.Username)
	assert.NotContains(t, env.Shown(t, "mail"), right)
}
