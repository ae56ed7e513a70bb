package infra

import (
	"os/exec"
	"strings"
	"testing"
)

func TestStartMariaDB(t *testing.T) {
	dsn := StartMariaDB(t, true)
	// root@tcp(127.0.0.1:PORT)/meshd
	hostPort := strings.TrimSuffix(strings.TrimPrefix(dsn, "root@tcp("), ")/"+MariaDBDatabase)
	host, port, _ := strings.Cut(hostPort, ":")
	client, ok := lookBin("mariadb", "/usr/bin")
	if !ok {
		t.Fatal(MariaDBMissing)
	}
	out, err := exec.Command(client, "--no-defaults", "-h", host, "-P", port, "-uroot", "-N", "-e",
		"SELECT @@log_bin, @@binlog_format, DATABASE()", MariaDBDatabase).CombinedOutput()
	if err != nil {
		t.Fatalf("querying over TCP: %v: %s", err, out)
	}
	if got := strings.Join(strings.Fields(string(out)), " "); got != "1 ROW meshd" {
		t.Fatalf("got %q, want binlog on, ROW, database meshd", got)
	}
}
