package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A failed start returns its cause, stops what it started (here: the data
// dir lock) and does not panic.
func TestFailedStartReturnsTheCause(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	cfg := Defaults()
	cfg.Data.Dir = t.TempDir()
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = busy.Addr().String()
	logger := slog.New(slog.DiscardHandler)

	s, err := Start(t.Context(), cfg, logger)
	require.Error(t, err)
	assert.Nil(t, s)
	assert.Equal(t, fmt.Sprintf("admin.listen: %s is already in use by another process", busy.Addr()), err.Error())

	cfg.Admin.Listen = "127.0.0.1:0"
	s, err = Start(t.Context(), cfg, logger)
	require.NoError(t, err, "the failed start released the data dir and the api port")
	require.NoError(t, s.Shutdown(context.Background()))
}

func TestDataDirLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l, err := lockDataDir(dir)
	require.NoError(t, err)
	pid, err := os.ReadFile(filepath.Join(dir, lockFileName))
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("%d\n", os.Getpid()), string(pid))

	// flock(2) locks belong to an open file: a second open in this
	// process conflicts as a second process would.
	_, err = lockDataDir(dir)
	require.ErrorIs(t, err, errDataDirInUse)
	assert.Contains(t, err.Error(), fmt.Sprintf("data.dir: %s is in use by another meshd (pid %d", dir, os.Getpid()))

	require.NoError(t, l.release())
	require.NoError(t, l.release(), "idempotent")
	l, err = lockDataDir(dir)
	require.NoError(t, err, "free again after release")
	require.NoError(t, l.release())

	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = lockDataDir(file)
	require.Error(t, err)
	assert.Equal(t, "data.dir: cannot create "+file+": not a directory", err.Error())
}

func TestUnknownEnv(t *testing.T) {
	got := unknownEnv([]string{
		"MESHD_API_LISTN=127.0.0.1:1", "MESHD_API_LISTEN=127.0.0.1:2", "MESHD_NOPE=1",
		"MESHD_CONFIG=/etc/meshd.yaml", "MESHD_URL=http://x", "MESHD_ADMIN_URL=http://y",
		"MESHD_HTTP_PORT=10105", "MESHD_ADMIN_PORT=10106", "MESHD_API_TOKEN=x",
		"HOME=/root", "XMESHD_FOO=1",
	})
	assert.Equal(t, []envWarning{{name: "MESHD_API_LISTN", suggest: "MESHD_API_LISTEN"}, {name: "MESHD_NOPE"}}, got)
}

func TestDataContentType(t *testing.T) {
	for data, want := range map[string]string{
		"":             "",
		`{"a":1}`:      "application/json",
		`"text"`:       "application/json",
		"hello world":  "text/plain; charset=utf-8",
		"{not json":    "text/plain; charset=utf-8",
		"\xff\xfe\x00": "application/octet-stream",
	} {
		assert.Equal(t, want, dataContentType([]byte(data)), "%q", data)
	}
}
