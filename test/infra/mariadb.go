package infra

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// MariaDBMissing is the failure message when MariaDB is not installed.
const MariaDBMissing = "install mariadb-server and mariadb-client (make test does it via test/install-deps.sh)"

// MariaDBDatabase is the database StartMariaDB creates.
const MariaDBDatabase = "meshd"

// StartMariaDB initialises a MariaDB data dir in a temp dir
// (mariadb-install-db), starts mariadbd on a free port of 127.0.0.1 and
// returns a go-sql-driver/mysql DSN, root without a password, database
// "meshd": root@tcp(127.0.0.1:PORT)/meshd. root has every privilege
// (replication included). With binlog the server writes a ROW binlog
// (server-id 1) for CDC. The server is stopped by PID when the test ends.
func StartMariaDB(t testing.TB, binlog bool) (dsn string) {
	t.Helper()
	sbin := []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"}
	installDB, ok1 := lookBin("mariadb-install-db", sbin...)
	mariadbd, ok2 := lookBin("mariadbd", sbin...)
	client, ok3 := lookBin("mariadb", sbin...)
	if !ok1 || !ok2 || !ok3 {
		t.Fatal(MariaDBMissing)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	sock := filepath.Join(dir, "mariadb.sock")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatalf("mariadb: %v", err)
	}
	user := "--user=root"
	if os.Geteuid() != 0 {
		user = ""
	}
	// Each server gets its own tmpdir: bootstraps running at once in the
	// shared /tmp collide on their temporary table files.
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatalf("mariadb: %v", err)
	}
	args := []string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp, "--auth-root-authentication-method=normal", "--skip-test-db"}
	if user != "" {
		args = append(args, user)
	}
	if out, err := exec.Command(installDB, args...).CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v: %s", err, out)
	}
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	sargs := []string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp, "--port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1", "--socket=" + sock, "--skip-name-resolve",
		"--pid-file=" + filepath.Join(dir, "mariadb.pid"), "--log-error=" + filepath.Join(dir, "error.log"),
		"--innodb-flush-log-at-trx-commit=2"}
	if user != "" {
		sargs = append(sargs, user)
	}
	if binlog {
		sargs = append(sargs, "--log-bin="+filepath.Join(dir, "binlog"), "--binlog-format=ROW", "--binlog-row-metadata=FULL", "--server-id=1")
	} else {
		sargs = append(sargs, "--skip-log-bin")
	}
	startDBProc(t, "mariadbd", exec.Command(mariadbd, sargs...), addr)

	// With --skip-name-resolve root@localhost only matches socket
	// connections: give root a 127.0.0.1 account too.
	setup := fmt.Sprintf("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; "+
		"GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; "+
		"CREATE DATABASE IF NOT EXISTS `%s`;", MariaDBDatabase)
	var out []byte
	var err error
	for deadline := time.Now().Add(dbStartTimeout); ; {
		out, err = exec.Command(client, "--no-defaults", "--socket="+sock, "-uroot", "-e", setup).CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("mariadb: setting up root@127.0.0.1: %v: %s\n%s", err, out, errLog)
		}
		time.Sleep(100 * time.Millisecond) // the server finishes its start-up
	}
	return fmt.Sprintf("root@tcp(%s)/%s", addr, MariaDBDatabase)
}
