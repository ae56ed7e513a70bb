package infra

import (
	"net"
	"os/exec"
	"strings"
	"testing"
)

// The launched server answers a query on its native port.
func TestStartClickHouse(t *testing.T) {
	addr := StartClickHouse(t)
	client, err := exec.LookPath("clickhouse-client")
	if err != nil {
		t.Skip("clickhouse-client is not installed")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(client, "--host", host, "--port", port, "--query", "SELECT 1 + 1").CombinedOutput()
	if err != nil {
		t.Fatalf("clickhouse-client: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "2" {
		t.Fatalf("SELECT 1 + 1 = %q, want 2", got)
	}
}
