package clickhouse

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

const (
	defaultPort        = "9000"
	defaultDialTimeout = 10 * time.Second
)

// parseURL reads a clickhouse:// URL into driver options: native protocol
// only (the HTTP mode of the driver is refused by older servers), port
// 9000 by default, a 10 s dial timeout unless the URL sets one. Errors
// never echo the URL (it may hold a password).
func parseURL(raw string) (*ch.Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL")
	}
	if u.Scheme != "clickhouse" && u.Scheme != "tcp" {
		return nil, fmt.Errorf("scheme %q is not clickhouse:// (the native protocol, port 9000)", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("clickhouse URL without a host")
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), defaultPort)
	}
	u.Scheme = "clickhouse"
	opts, err := ch.ParseDSN(u.String())
	if err != nil {
		// The driver's errors name the option, not the URL.
		return nil, fmt.Errorf("bad option: %s", strings.TrimPrefix(err.Error(), "clickhouse [dsn parse]: "))
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = defaultDialTimeout
	}
	opts.ClientInfo.Products = append(opts.ClientInfo.Products, struct{ Name, Version string }{"meshd", ""})
	return opts, nil
}

// open connects to the server of a clickhouse:// URL and pings it.
func open(ctx context.Context, raw string) (driver.Conn, error) {
	opts, err := parseURL(raw)
	if err != nil {
		return nil, err
	}
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("opening ClickHouse: %w", err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connecting to ClickHouse: %w", err)
	}
	return conn, nil
}

// quote quotes one identifier; a dotted name (database.table) is quoted
// part by part.
func quote(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = quoteIdent(p)
	}
	return strings.Join(parts, ".")
}

func quoteIdent(p string) string {
	return "`" + strings.NewReplacer(`\`, `\\`, "`", "\\`").Replace(p) + "`"
}

// column is one column of a result or a table.
type column struct {
	name string
	typ  string       // the ClickHouse type, e.g. Nullable(Decimal(18, 4))
	scan reflect.Type // the Go type the driver reads and writes
}

// resultColumns returns the columns of what SELECT * FROM from returns:
// for a table, the columns an INSERT may name (MATERIALIZED and ALIAS
// columns are computed by the server and left out of *).
func resultColumns(ctx context.Context, conn driver.Conn, from string) ([]column, error) {
	rows, err := conn.Query(ctx, "SELECT * FROM "+from+" LIMIT 0")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	out := make([]column, len(types))
	for i, c := range types {
		out[i] = column{name: c.Name(), typ: c.DatabaseTypeName(), scan: c.ScanType()}
	}
	for rows.Next() { //nolint:revive // LIMIT 0: drains the end of the stream
	}
	return out, rows.Err()
}
