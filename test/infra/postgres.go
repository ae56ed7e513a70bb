package infra

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// PostgresMissing is the failure message when PostgreSQL is not installed.
const PostgresMissing = "install postgresql (make test does it via test/install-deps.sh)"

// postgresTestUser runs the server when the tests run as root (initdb and
// postgres refuse root).
const postgresTestUser = "meshd-test"

// StartPostgres initialises a cluster in a temp dir (initdb, trust auth,
// superuser "postgres"), starts postgres on a free port of 127.0.0.1 with
// its socket in that dir and returns a pgx URL:
// postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable. Run as
// root, the server runs as the system user meshd-test (created if
// missing). It is stopped by PID when the test ends.
func StartPostgres(t testing.TB) (dsn string) {
	t.Helper()
	return StartPostgresServer(t).URL
}

// Postgres is a PostgreSQL server a test can stop and start again, on the
// same data dir and port: a database that goes away and comes back.
type Postgres struct {
	// URL is the pgx URL of the server (see StartPostgres).
	URL string

	t        testing.TB
	bins     []string
	postgres string
	dir      string
	data     string
	port     int
	cred     *syscall.Credential
	stop     func() // nil while stopped
}

// StartPostgresServer is StartPostgres returning the server, to Stop and
// Start it.
func StartPostgresServer(t testing.TB) *Postgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	initdb, ok1 := lookBin("initdb", bins...)
	postgres, ok2 := lookBin("postgres", bins...)
	if !ok1 || !ok2 {
		t.Fatal(PostgresMissing)
	}
	// Not t.TempDir: its parents are 0700 root, closed to the server's user.
	dir, err := os.MkdirTemp("", "meshd-pg-")
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = postgresCredential(t)
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatalf("postgres: %v", err)
		}
	}
	data := filepath.Join(dir, "data")
	cmd := exec.Command(initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v: %s", err, out)
	}
	p := &Postgres{t: t, bins: bins, postgres: postgres, dir: dir, data: data, port: FreePort(t), cred: cred}
	p.URL = fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", p.addr())
	p.Start()
	return p
}

func (p *Postgres) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// Start starts the server (again) and waits until it accepts sessions.
func (p *Postgres) Start() {
	p.t.Helper()
	if p.stop != nil {
		return
	}
	srv := exec.Command(p.postgres, "-D", p.data, "-p", strconv.Itoa(p.port), "-k", p.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200")
	srv.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	log, stop := server{name: "postgres", stopSignal: syscall.SIGINT}.startStoppable(p.t, srv, p.addr())
	p.stop = stop
	// The port opens before the server accepts sessions ("starting up").
	if isready, ok := lookBin("pg_isready", p.bins...); ok {
		for deadline := time.Now().Add(dbStartTimeout); ; {
			if exec.Command(isready, "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "postgres").Run() == nil {
				break
			}
			if time.Now().After(deadline) {
				p.t.Fatalf("postgres not ready within %s: %s", dbStartTimeout, log.String())
			}
			time.Sleep(50 * time.Millisecond) // polling pg_isready
		}
	}
}

// Stop stops the server (SIGINT, a fast shutdown: sessions are cut) and waits
// until it exited. Start brings it back with its data.
func (p *Postgres) Stop() {
	if p.stop != nil {
		p.stop()
		p.stop = nil
	}
}

// postgresCredential returns the uid/gid of meshd-test, creating the user
// when missing.
func postgresCredential(t testing.TB) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup(postgresTestUser)
	if err != nil {
		out, aerr := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", postgresTestUser).CombinedOutput()
		if u, err = user.Lookup(postgresTestUser); err != nil {
			t.Fatalf("postgres: creating the user %s to run the server as (initdb refuses root): %v: %s", postgresTestUser, aerr, out)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}
