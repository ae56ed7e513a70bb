package infra

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestStartPostgres(t *testing.T) {
	dsn := StartPostgres(t)
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	psql, ok := lookBin("psql", bins...)
	if !ok {
		t.Fatal(PostgresMissing)
	}
	out, err := exec.Command(psql, dsn, "-tAc", "SELECT 40+2").CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "42" {
		t.Fatalf("got %q", got)
	}
}

// A stopped server refuses connections; started again it has its data.
func TestPostgresStopStart(t *testing.T) {
	pg := StartPostgresServer(t)
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	psql, _ := lookBin("psql", bins...)
	run := func(q string) (string, error) {
		out, err := exec.Command(psql, pg.URL, "-tAc", q).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := run("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatalf("psql: %v: %s", err, out)
	}
	pg.Stop()
	if out, err := run("SELECT 1"); err == nil {
		t.Fatalf("a stopped server answered: %s", out)
	}
	pg.Start()
	if out, err := run("SELECT n FROM kept"); err != nil || out != "7" {
		t.Fatalf("after the restart: %q, %v", out, err)
	}
}
