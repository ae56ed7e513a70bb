package email

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// aLongTimeAgo is a deadline in the past: it unblocks every read and write
// of a connection at once.
var aLongTimeAgo = time.Unix(1, 0)

// quitTimeout bounds the QUIT of a connection being closed.
const quitTimeout = 5 * time.Second

// replyError is an SMTP reply refusing a command.
type replyError struct {
	command string
	code    int
	msg     string
}

func (e *replyError) Error() string {
	return fmt.Sprintf("SMTP server answered %s with %d %s", e.command, e.code, e.msg)
}

// lostError is a failure of the connection itself: it broke, timed out, or
// the server closes it (421). The session cannot be used again.
type lostError struct {
	command string
	err     error
}

func (e *lostError) Error() string {
	return fmt.Sprintf("SMTP connection lost at %s: %v", e.command, e.err)
}

func (e *lostError) Unwrap() error { return e.err }

// session is one SMTP connection, past EHLO, STARTTLS and AUTH: ready for
// mail.
type session struct {
	raw    net.Conn // under TLS, if any: its deadlines rule every read and write
	c      *smtp.Client
	sent   int  // mails accepted over it
	broken bool // a command failed and RSET did not repair it
}

// dial opens a session. Its errors are the server's as a whole (it cannot
// be reached, refuses the session, the TLS handshake or the credentials).
func (s *settings) dial(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to the SMTP server: %w", err)
	}
	// The deadline is the timeout's; ctx ends the wait through stop, after
	// ctx.Err is set, so the caller can tell the two apart.
	_ = raw.SetDeadline(time.Now().Add(s.timeout))
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(aLongTimeAgo) })
	defer stop()
	conn := raw
	if s.mode == TLSImplicit {
		tc := tls.Client(raw, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("TLS handshake with the SMTP server: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.host) // reads the greeting
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("reading the SMTP greeting: %w", err)
	}
	fail := func(what string, err error) (*session, error) {
		_ = c.Close()
		return nil, fmt.Errorf("SMTP %s: %w", what, err)
	}
	if err := c.Hello(s.helo); err != nil {
		return fail("EHLO", err)
	}
	if s.mode == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fail("STARTTLS", errors.New("the server does not offer STARTTLS (tls.mode tls or none may fit it)"))
		}
		if err := c.StartTLS(s.tls); err != nil {
			return fail("STARTTLS", err)
		}
	}
	if s.username != "" {
		a, err := s.auth(c)
		if err != nil {
			return fail("AUTH", err)
		}
		if err := c.Auth(a); err != nil {
			// A server might echo what it got: never pass the secret on.
			return fail("AUTH", errors.New(s.scrub(err.Error())))
		}
	}
	if !stop() { // ctx ended as the session became ready: its deadline is in the past
		return fail("connecting", ctx.Err())
	}
	_ = raw.SetDeadline(time.Time{})
	return &session{raw: raw, c: c}, nil
}

// auth picks the SASL mechanism.
func (s *settings) auth(c *smtp.Client) (smtp.Auth, error) {
	ok, list := c.Extension("AUTH")
	if !ok {
		return nil, errors.New("the server does not offer AUTH; remove username to send without it")
	}
	offered := strings.Fields(strings.ToUpper(list))
	mech := s.mech
	if mech == AuthAuto {
		switch {
		case slices.Contains(offered, "PLAIN"):
			mech = AuthPlain
		case slices.Contains(offered, "LOGIN"):
			mech = AuthLogin
		default:
			return nil, fmt.Errorf("the server offers neither PLAIN nor LOGIN (it offers %q)", list)
		}
	}
	return &saslAuth{mech: mech, user: s.username, pass: s.password}, nil
}

// scrub masks the password, alone or base64-encoded as AUTH sends it, in s.
func (s *settings) scrub(msg string) string {
	if s.password == "" {
		return msg
	}
	for _, secret := range []string{
		base64.StdEncoding.EncodeToString([]byte("\x00" + s.username + "\x00" + s.password)),
		base64.StdEncoding.EncodeToString([]byte(s.password)),
		s.password,
	} {
		msg = strings.ReplaceAll(msg, secret, "********")
	}
	return msg
}

// saslAuth is AUTH PLAIN (RFC 4616) or LOGIN. Like net/smtp's PlainAuth it
// sends the password only over TLS or to a loopback host.
type saslAuth struct {
	mech, user, pass string
	step             int
}

func (a *saslAuth) Start(si *smtp.ServerInfo) (string, []byte, error) {
	if !si.TLS && !isLoopback(si.Name) {
		return "", nil, errors.New("refusing to send the password over an unencrypted connection")
	}
	if a.mech == AuthPlain {
		return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
	}
	return "LOGIN", nil, nil
}

func (a *saslAuth) Next(_ []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	a.step++
	switch {
	case a.mech == AuthLogin && a.step == 1:
		return []byte(a.user), nil
	case a.mech == AuthLogin && a.step == 2:
		return []byte(a.pass), nil
	}
	return nil, fmt.Errorf("unexpected AUTH %s challenge", strings.ToUpper(a.mech))
}

// send sends m. Its errors are a *replyError (the server refused a command;
// the session is reset for the next mail) or a *lostError.
func (ss *session) send(ctx context.Context, m *message, timeout time.Duration) error {
	_ = ss.raw.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { _ = ss.raw.SetDeadline(aLongTimeAgo) })
	defer stop()
	if err := ss.c.Mail(m.from); err != nil {
		return ss.fail("MAIL FROM:<"+m.from+">", err)
	}
	for _, r := range m.rcpts {
		if err := ss.c.Rcpt(r); err != nil {
			return ss.fail("RCPT TO:<"+r+">", err)
		}
	}
	w, err := ss.c.Data()
	if err != nil {
		return ss.fail("DATA", err)
	}
	if _, err := w.Write(m.data); err != nil {
		return &lostError{command: "DATA", err: err}
	}
	if err := w.Close(); err != nil {
		return ss.fail("the end of DATA", err)
	}
	ss.sent++
	return nil
}

// fail turns the failure of command into a *replyError, resetting the
// session for the next mail, or a *lostError.
func (ss *session) fail(command string, err error) error {
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code == 421 {
		return &lostError{command: command, err: err}
	}
	if rerr := ss.c.Reset(); rerr != nil {
		ss.broken = true
	}
	return &replyError{command: command, code: te.Code, msg: strings.ReplaceAll(te.Msg, "\n", " ")}
}

// close ends the session, with QUIT when polite (its errors do not matter:
// the mails sent were accepted already).
func (ss *session) close(polite bool) {
	if polite && !ss.broken {
		_ = ss.raw.SetDeadline(time.Now().Add(quitTimeout))
		_ = ss.c.Quit()
	}
	_ = ss.c.Close()
}
