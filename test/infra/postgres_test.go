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
