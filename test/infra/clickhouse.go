package infra

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// ClickHouseMissing is the failure message when the server is not installed.
const ClickHouseMissing = "install clickhouse-server: apt-get install clickhouse-server clickhouse-client"

const (
	clickHouseConfigDir    = "/etc/clickhouse-server"
	clickHouseStartTimeout = 60 * time.Second
	clickHouseStopTimeout  = 15 * time.Second
)

// StartClickHouse starts the installed clickhouse-server with a copy of
// /etc/clickhouse-server/{config.xml,users.xml} whose paths point into a
// temp dir and whose ports are free loopback ports (native tcp_port,
// http_port, interserver_http_port; https, MySQL and PostgreSQL listeners
// removed). It returns the native protocol address host:port and stops the
// server (by PID) when the test ends.
func StartClickHouse(t testing.TB) (addr string) {
	t.Helper()
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		t.Fatal(ClickHouseMissing)
	}
	conf, err := os.ReadFile(filepath.Join(clickHouseConfigDir, "config.xml"))
	if err != nil {
		t.Fatalf("reading the clickhouse config (%s): %v", ClickHouseMissing, err)
	}
	users, err := os.ReadFile(filepath.Join(clickHouseConfigDir, "users.xml"))
	if err != nil {
		t.Fatalf("reading the clickhouse users config (%s): %v", ClickHouseMissing, err)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data") + "/"
	tcpPort, httpPort, interPort := FreePort(t), FreePort(t), FreePort(t)
	set := func(tag, value string) {
		re := regexp.MustCompile(`<` + tag + `>[^<]*</` + tag + `>`)
		conf = re.ReplaceAll(conf, []byte("<"+tag+">"+value+"</"+tag+">"))
	}
	set("log", filepath.Join(dir, "clickhouse-server.log"))
	set("errorlog", filepath.Join(dir, "clickhouse-server.err.log"))
	set("tcp_port", strconv.Itoa(tcpPort))
	set("http_port", strconv.Itoa(httpPort))
	set("interserver_http_port", strconv.Itoa(interPort))
	set("tmp_path", filepath.Join(data, "tmp")+"/")
	set("user_files_path", filepath.Join(data, "user_files")+"/")
	set("format_schema_path", filepath.Join(data, "format_schemas")+"/")
	// The top-level data path (other <path> elements, e.g. of distributed
	// DDL, are ZooKeeper paths).
	conf = regexp.MustCompile(`<path>/var/lib/clickhouse/</path>`).ReplaceAll(conf, []byte("<path>"+data+"</path>"))
	for _, tag := range []string{"https_port", "tcp_port_secure", "mysql_port", "postgresql_port", "interserver_https_port"} {
		conf = regexp.MustCompile(`<`+tag+`>[^<]*</`+tag+`>`).ReplaceAll(conf, nil)
	}
	conf = regexp.MustCompile(`<listen_host>[^<]*</listen_host>`).ReplaceAll(conf, nil)
	conf = regexp.MustCompile(`</yandex>|</clickhouse>`).ReplaceAllFunc(conf, func(end []byte) []byte {
		return append([]byte("<listen_host>127.0.0.1</listen_host>\n"), end...)
	})
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), conf, 0o600); err != nil {
		t.Fatalf("writing the clickhouse config: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), users, 0o600); err != nil {
		t.Fatalf("writing the clickhouse users config: %v", err)
	}
	cmd := exec.Command(bin, "--config-file="+filepath.Join(dir, "config.xml"))
	cmd.Dir = dir
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tcpPort))
	server{
		name:         "clickhouse-server",
		startTimeout: clickHouseStartTimeout,
		stopTimeout:  clickHouseStopTimeout,
		diagnostics: func() string {
			errLog, _ := os.ReadFile(filepath.Join(dir, "clickhouse-server.err.log"))
			return string(errLog)
		},
	}.start(t, cmd, addr)
	return addr
}
