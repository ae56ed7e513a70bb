package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireOneErrorLine checks how a meshd that could not start ended: a
// non-zero exit, and on stderr exactly one error line, starting with
// "meshd: <setting>", with no panic and no goroutine dump.
func requireOneErrorLine(t *testing.T, code int, stderr, setting string) string {
	t.Helper()
	assert.NotEqual(t, 0, code, "exit code; stderr:\n%s", stderr)
	assert.NotContains(t, stderr, "panic", "stderr:\n%s", stderr)
	assert.NotContains(t, stderr, "goroutine ", "stderr:\n%s", stderr)
	lines := errorLines(stderr)
	require.Len(t, lines, 1, "want exactly one error line; stderr:\n%s", stderr)
	assert.True(t, strings.HasPrefix(lines[0], "meshd: "+setting), "the line names %s: %s", setting, lines[0])
	return lines[0]
}

// Every way a start can fail ends with one clear line naming the setting
// to fix, and a non-zero exit: never a panic.
func TestStartupFailuresExplainThemselves(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { busy.Close() })
	// A server that accepts connections and never says a word: dialling
	// NATS there only ends by mesh.connectTimeout.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { silent.Close() })

	cases := []struct {
		name    string
		yaml    string
		flags   []string
		setting string
		detail  string
	}{
		{name: "api port in use", flags: []string{"--api.listen", busy.Addr().String()},
			setting: "api.listen", detail: "already in use"},
		{name: "admin port in use", flags: []string{"--admin.listen", busy.Addr().String()},
			setting: "admin.listen", detail: "already in use"},
		{name: "data dir is a file", flags: []string{"--data.dir", "{file}"},
			setting: "data.dir", detail: "not a directory"},
		{name: "mesh refuses", flags: []string{"--mesh.url", "nats://" + freeAddr(t)},
			setting: "mesh.url", detail: "cannot use the mesh at nats://127.0.0.1:"},
		{name: "mesh silent", flags: []string{"--mesh.url", "nats://" + silent.Addr().String(), "--mesh.connectTimeout", "1s"},
			setting: "mesh.url", detail: "mesh.connectTimeout 1s"},
		{name: "mesh password not shown", flags: []string{"--mesh.url", "nats://user:s3cret@" + freeAddr(t)},
			setting: "mesh.url", detail: "nats://user:xxxxx@"},
		{name: "bad subscription", yaml: "subscriptions:\n  - id: orders-out\n    topic: orders\n    sink: ftp://example.com/x\n",
			setting: "subscriptions[0].sink", detail: `(subscription "orders-out")`},
		{name: "bad connector", yaml: "connectors:\n  - name: ok\n    config: {connector.type: http-sink, topic: a, url: 'http://127.0.0.1:1/'}\n" +
			"  - name: hooks-out\n    config: {connector.type: http-sink, topic: orders}\n",
			setting: "connectors[1].config.url", detail: `(connector "hooks-out")`},
		{name: "bad connector name", yaml: "connectors:\n  - name: 'bad name'\n    config: {connector.type: http-sink, topic: a, url: 'http://127.0.0.1:1/'}\n",
			setting: "connectors[0].name", detail: `"bad name"`},
		{name: "missing mqtt CA file", yaml: "mqtt:\n  - name: plant\n    broker: ssl://127.0.0.1:8883\n    tls: {caFile: /nonexistent/ca.pem}\n    inbound: [{filter: a/b, topic: a}]\n",
			setting: "mqtt[0].tls.caFile", detail: "/nonexistent/ca.pem: no such file"},
		{name: "missing mqtt client key", yaml: "mqtt:\n  - name: plant\n    broker: ssl://127.0.0.1:8883\n    tls: {certFile: '{file}', keyFile: /nonexistent/key.pem}\n    inbound: [{filter: a/b, topic: a}]\n",
			setting: "mqtt[0].tls.keyFile", detail: "/nonexistent/key.pem: no such file"},
		{name: "missing NATS credentials", flags: []string{"--mesh.url", "nats://" + freeAddr(t), "--mesh.creds", "/nonexistent/x.creds"},
			setting: "mesh.creds", detail: "no such file"},
		{name: "missing mesh token file", flags: []string{"--mesh.url", "nats://" + freeAddr(t), "--mesh.tokenFile", "/nonexistent/mesh.token"},
			setting: "mesh.tokenFile", detail: "/nonexistent/mesh.token: no such file"},
		{name: "missing mesh NKey seed", flags: []string{"--mesh.url", "nats://" + freeAddr(t), "--mesh.nkeyFile", "/nonexistent/user.nk"},
			setting: "mesh.nkeyFile", detail: "/nonexistent/user.nk: no such file"},
		{name: "missing mesh CA", yaml: "mesh:\n  url: tls://127.0.0.1:4222\n  tls: {caFile: /nonexistent/ca.pem}\n",
			setting: "mesh.tls.caFile", detail: "/nonexistent/ca.pem: no such file"},
		{name: "mesh client key missing", yaml: "mesh:\n  url: tls://127.0.0.1:4222\n  tls: {certFile: '{file}'}\n",
			setting: "mesh.tls.certFile and mesh.tls.keyFile", detail: "set both or neither"},
		{name: "missing mesh.listen certificate", yaml: "mesh:\n  listen: 127.0.0.1:0\n  listenTLS: {certFile: /nonexistent/c.pem, keyFile: /nonexistent/k.pem}\n",
			setting: "mesh.listenTLS.certFile", detail: "/nonexistent/c.pem: no such file"},
		{name: "mesh.listenAuth typo", yaml: "mesh:\n  listen: 127.0.0.1:0\n  listenAuth: off\n",
			setting: "mesh.listenAuth", detail: `the one value is "none"`},
		{name: "secrets.key not a key", flags: []string{"--secrets.key", "s3cret"},
			setting: "secrets.key", detail: "is not base64"},
		{name: "YAML type error", yaml: "api:\n  listen: 127.0.0.1:0\n  maxBodyBytes: big\n",
			setting: "config ", detail: `api.maxBodyBytes (line 3): "big" is not an integer`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "a-file")
			require.NoError(t, os.WriteFile(file, []byte("x"), 0o600))
			config := filepath.Join(dir, "meshd.yaml")
			require.NoError(t, os.WriteFile(config, []byte(strings.ReplaceAll(tc.yaml, "{file}", file)), 0o600))
			args := []string{"run", "--config", config, "--api.listen", freeAddr(t), "--admin.listen", freeAddr(t), "--data.dir", filepath.Join(dir, "data")}
			for _, f := range tc.flags {
				args = append(args, strings.ReplaceAll(f, "{file}", file))
			}
			code, stderr, took := runMeshd(t, args...)
			line := requireOneErrorLine(t, code, stderr, tc.setting)
			assert.Contains(t, line, tc.detail)
			assert.NotContains(t, line, "s3cret")
			assert.NotRegexp(t, `sidecar\.|\*?[a-z]+\.[A-Z][A-Za-z]*Config`, line, "no Go type names")
			assert.Less(t, took, 15*time.Second, "a failing start ends promptly")
		})
	}
}

// A second meshd on a data dir in use refuses to start, naming the pid of
// the one holding it; the lock goes with its holder, at exit and at kill -9.
func TestSecondMeshdOnOneDataDirRefuses(t *testing.T) {
	a := newMeshd(t, "lock-holder", "")
	second := func() (int, string) {
		code, stderr, _ := runMeshd(t, "run", "--app.id", "intruder", "--api.listen", freeAddr(t), "--admin.listen", freeAddr(t), "--data.dir", a.dataDir())
		return code, stderr
	}
	code, stderr := second()
	line := requireOneErrorLine(t, code, stderr, "data.dir")
	assert.Contains(t, line, fmt.Sprintf("in use by another meshd (pid %d", a.cmd.Process.Pid))

	require.NoError(t, a.terminate())
	a.start() // fails unless the lock was released at exit
	code, stderr = second()
	line = requireOneErrorLine(t, code, stderr, "data.dir")
	assert.Contains(t, line, fmt.Sprintf("(pid %d", a.cmd.Process.Pid), "names the new holder")

	a.kill9()
	a.start() // fails unless the kernel dropped the lock of the killed process
	a.publishBinary("after-kill", "k-1", "com.example.t", []byte(`{}`))
}

// MESHD_* variables that name no setting are warned about, one line each,
// with the setting they probably meant; those the injector sets for the
// app are not.
func TestUnknownMESHDVariablesAreWarned(t *testing.T) {
	m := newMeshdEnv(t, "env-app", "", []string{
		"MESHD_API_LISTN=127.0.0.1:1", "MESHD_DELIVERY_TIMEOT=3s",
		"MESHD_HTTP_PORT=8080", "MESHD_ADMIN_PORT=8081", "MESHD_APP_PORT=8080",
	})
	var warnings []string
	for _, l := range strings.Split(m.logString(), "\n") {
		if strings.Contains(l, "unknown environment variable") {
			warnings = append(warnings, l)
		}
	}
	require.Len(t, warnings, 2, m.logString())
	assert.Contains(t, warnings[0]+warnings[1], "name=MESHD_API_LISTN hint=\"did you mean MESHD_API_LISTEN?\"")
	assert.Contains(t, warnings[0]+warnings[1], "name=MESHD_DELIVERY_TIMEOT hint=\"did you mean MESHD_DELIVERY_TIMEOUT?\"")
	for _, w := range warnings {
		assert.Contains(t, w, "level=WARN")
	}
}
