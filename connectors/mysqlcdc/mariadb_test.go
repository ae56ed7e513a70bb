package mysqlcdc_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/test/infra"
)

// mariaDB is a MariaDB with a ROW binlog that a test can stop and start
// again on the same data dir and port (infra.StartMariaDB cannot restart).
type mariaDB struct {
	t        *testing.T
	dir      string
	port     int
	cmd      *exec.Cmd
	done     chan struct{}
	mariadbd string
	extra    []string // more mariadbd options
}

// startMariaDBBinlog starts a MariaDB with log_bin and binlog_format=ROW,
// database meshd, and user cdc/secret with only the grants the connector
// needs. It is stopped when the test ends. extra are more mariadbd
// options.
func startMariaDBBinlog(t *testing.T, extra ...string) *mariaDB {
	t.Helper()
	installDB, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		t.Fatal("install MariaDB: apt-get install mariadb-server mariadb-client")
	}
	mariadbd := "/usr/sbin/mariadbd"
	if p, err := exec.LookPath("mariadbd"); err == nil {
		mariadbd = p
	}
	dir := t.TempDir()
	// Its own tmpdir: bootstraps running at once in /tmp collide.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	args := []string{"--no-defaults", "--datadir=" + filepath.Join(dir, "data"), "--tmpdir=" + filepath.Join(dir, "tmp"), "--auth-root-authentication-method=normal", "--skip-test-db"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	out, err := exec.Command(installDB, args...).CombinedOutput()
	require.NoError(t, err, "mariadb-install-db: %s", out)
	port := infra.FreePort(t)
	m := &mariaDB{t: t, dir: dir, port: port, mariadbd: mariadbd, extra: extra}
	m.Start()
	t.Cleanup(m.Stop)
	m.admin("CREATE DATABASE meshd; CREATE USER 'cdc'@'%' IDENTIFIED BY 'secret'; " +
		"GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'%'; " +
		"CREATE USER 'app'@'%' IDENTIFIED BY 'app'; GRANT ALL ON meshd.* TO 'app'@'%';")
	return m
}

func (m *mariaDB) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port)) }

// URL is the connector's url field.
func (m *mariaDB) URL() string { return "mysql://cdc:secret@" + m.addr() + "/meshd" }

// Start starts mariadbd and waits until it answers.
func (m *mariaDB) Start() {
	m.t.Helper()
	args := []string{"--no-defaults", "--datadir=" + filepath.Join(m.dir, "data"), "--tmpdir=" + filepath.Join(m.dir, "tmp"), "--port=" + strconv.Itoa(m.port),
		"--bind-address=127.0.0.1", "--socket=" + filepath.Join(m.dir, "s.sock"), "--skip-name-resolve",
		"--pid-file=" + filepath.Join(m.dir, "m.pid"), "--log-error=" + filepath.Join(m.dir, "error.log"),
		"--log-bin=" + filepath.Join(m.dir, "binlog"), "--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL", "--server-id=1",
		"--innodb-flush-log-at-trx-commit=2"}
	args = append(args, m.extra...)
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	m.cmd = exec.Command(m.mariadbd, args...)
	require.NoError(m.t, m.cmd.Start())
	m.done = make(chan struct{})
	cmd, done := m.cmd, m.done
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command("mariadb", "--no-defaults", "--socket="+filepath.Join(m.dir, "s.sock"), "-uroot", "-e", "SELECT 1").CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(m.dir, "error.log"))
			m.t.Fatalf("mariadb did not start: %v: %s\n%s", err, out, log)
		}
		time.Sleep(50 * time.Millisecond) // the server finishes its start-up
	}
}

// Stop stops mariadbd by its PID (SIGTERM, then SIGKILL).
func (m *mariaDB) Stop() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

func (m *mariaDB) admin(sql string) {
	m.t.Helper()
	out, err := exec.Command("mariadb", "--no-defaults", "--socket="+filepath.Join(m.dir, "s.sock"), "-uroot", "-e", sql).CombinedOutput()
	require.NoError(m.t, err, "mariadb: %s", out)
}

// exec runs statements as the application user.
func (m *mariaDB) exec(t *testing.T, stmts ...string) {
	t.Helper()
	c, err := client.Connect(m.addr(), "app", "app", "meshd")
	require.NoError(t, err)
	defer c.Close()
	for _, s := range stmts {
		_, err := c.Execute(s)
		require.NoError(t, err, "%s", s)
	}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

var _ = fmt.Sprintf
