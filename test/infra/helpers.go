package infra

import "testing"

// SelfSignedCert writes a self-signed certificate for 127.0.0.1, ::1 and
// localhost, valid for a day, and its key into dir: for servers a test
// starts with TLS. The certificate is its own CA: trust certFile.
func SelfSignedCert(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	return writeSelfSignedCert(t, dir)
}

// SyncBuffer is a bytes.Buffer that a logger (or a process) may write while
// the test reads it: Write and String are safe for concurrent use.
type SyncBuffer = syncBuffer
