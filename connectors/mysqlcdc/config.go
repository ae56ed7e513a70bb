// Package mysqlcdc is the mysql-cdc-source connector: change data capture
// from the row-format binlog of MySQL or MariaDB. An optional initial
// snapshot of the selected tables is followed by one CloudEvent per inserted,
// updated or deleted row, with the before and after images. The binlog
// position is the committed offset, so a restarted task resumes exactly after
// the last row the mesh stored.
package mysqlcdc

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/meshd/meshd/bridge/tlsconf"
	"github.com/meshd/meshd/connectors"
)

// Type is the connector.type of this connector.
const Type = "mysql-cdc-source"

// Config field names.
const (
	FieldURL       = "url"
	FieldTables    = "tables"
	FieldSnapshot  = "snapshot"
	FieldServerID  = "server.id"
	FieldPrefix    = "type.prefix"
	FieldFlavor    = "flavor"
	FieldBatchSize = "batch.size"
	FieldTimeout   = "connect.timeout"
	FieldGTID      = "gtid"
	FieldUnwrap    = "unwrap"
)

// Defaults.
const (
	DefaultPrefix    = "meshd.mysql"
	DefaultServerID  = 4201
	DefaultFlavor    = "mariadb"
	DefaultBatchSize = 500
)

// Spec is the registered spec of mysql-cdc-source.
var Spec = connectors.Spec{
	Name:    Type,
	Kind:    connectors.KindSource,
	Summary: "Change data capture from the MySQL/MariaDB row binlog: an optional snapshot, then one event per inserted, updated or deleted row.",
	Fields: []connectors.Field{
		{Name: FieldURL, Type: connectors.TypeString, Required: true, Secret: true, Description: "mysql://user:password@host:port/db[?tls=true|skip-verify&tls-ca=/path/ca.pem]; the user needs REPLICATION SLAVE, REPLICATION CLIENT and SELECT."},
		{Name: FieldTables, Type: connectors.TypeList, Description: "Tables captured, as table (in the URL's database) or db.table (default: every table of the URL's database)."},
		{Name: FieldSnapshot, Type: connectors.TypeBool, Default: false, Description: "Emit the existing rows of the tables once, before the changes."},
		{Name: FieldServerID, Type: connectors.TypeInt, Default: int64(DefaultServerID), Description: "Replica server id the connector registers with; unique among the server's replicas."},
		{Name: FieldPrefix, Type: connectors.TypeString, Default: DefaultPrefix, Description: "Event types are <prefix>.row.inserted, .row.updated, .row.deleted (and .row.snapshot)."},
		{Name: FieldFlavor, Type: connectors.TypeString, Default: DefaultFlavor, Description: "mariadb or mysql."},
		{Name: FieldBatchSize, Type: connectors.TypeInt, Default: int64(DefaultBatchSize), Description: "Most rows returned by one poll (and queued ahead of the mesh)."},
		{Name: FieldGTID, Type: connectors.TypeBool, Default: false, Description: "Resume by GTID set instead of binlog file and position: survives a failover to another server of the replication topology (MariaDB GTIDs are always on; MySQL needs gtid_mode=ON)."},
		{Name: FieldUnwrap, Type: connectors.TypeBool, Default: false, Description: "Debezium's ExtractNewRecordState: the data is the row after the change, a delete is a tombstone (no data) whose subject is the primary key (one column: its value; several: a JSON object), an update of the key is a tombstone of the old key then the row — what jdbc-sink and clickhouse-sink write as a replica of the table. Off: the data is {before, after}."},
		{Name: FieldTimeout, Type: connectors.TypeDuration, Default: 10 * time.Second, Description: "Timeout of connecting and of reading the binlog stream before reconnecting."},
	},
	New: func() connectors.Connector {
		return connectors.NewConnector(func() connectors.Task { return &Task{} }, connectors.OneTask) // a binlog is read by one task
	},
	Check: check,
}

func init() { connectors.Register(Spec) }

func check(cfg connectors.Config) []connectors.FieldError {
	var errs []connectors.FieldError
	if _, err := parseURL(cfg.String(FieldURL)); err != nil {
		errs = append(errs, connectors.FieldError{Field: FieldURL, Reason: err.Error()})
	}
	for _, tb := range cfg.Strings(FieldTables) {
		if tb == "" || strings.Count(tb, ".") > 1 {
			errs = append(errs, connectors.FieldError{Field: FieldTables, Reason: fmt.Sprintf("%q: want table or db.table", tb)})
		}
	}
	if id := cfg.Int(FieldServerID); id <= 0 || id > 1<<32-1 {
		errs = append(errs, connectors.FieldError{Field: FieldServerID, Reason: "want 1 to 4294967295"})
	}
	if cfg.String(FieldPrefix) == "" {
		errs = append(errs, connectors.FieldError{Field: FieldPrefix, Reason: "must not be empty"})
	}
	if f := cfg.String(FieldFlavor); f != "mariadb" && f != "mysql" {
		errs = append(errs, connectors.FieldError{Field: FieldFlavor, Reason: "want mariadb or mysql"})
	}
	if n := cfg.Int(FieldBatchSize); n <= 0 || n > 10000 {
		errs = append(errs, connectors.FieldError{Field: FieldBatchSize, Reason: "want 1 to 10000"})
	}
	if cfg.Duration(FieldTimeout) <= 0 {
		errs = append(errs, connectors.FieldError{Field: FieldTimeout, Reason: "must be positive"})
	}
	return errs
}

// dsn is a parsed url field.
type dsn struct {
	host     string
	port     uint16
	user     string
	password string
	db       string
	tls      *tls.Config // nil: plain TCP
}

func (d dsn) addr() string { return net.JoinHostPort(d.host, strconv.Itoa(int(d.port))) }

// parseURL parses mysql://user:pass@host:port/db. Its errors never echo the
// URL (it holds the password).
func parseURL(s string) (dsn, error) {
	u, err := url.Parse(s)
	if err != nil {
		return dsn{}, errors.New("want mysql://user:password@host:port/db")
	}
	if u.Scheme != "mysql" && u.Scheme != "mariadb" {
		return dsn{}, errors.New("want the scheme mysql://")
	}
	d := dsn{host: u.Hostname(), port: 3306, db: strings.Trim(u.Path, "/")}
	if d.host == "" {
		return dsn{}, errors.New("want a host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return dsn{}, errors.New("want a port from 1 to 65535")
		}
		d.port = uint16(n)
	}
	if strings.Contains(d.db, "/") {
		return dsn{}, errors.New("want at most one path segment, the database")
	}
	if u.User == nil || u.User.Username() == "" {
		return dsn{}, errors.New("want a user")
	}
	d.user = u.User.Username()
	d.password, _ = u.User.Password()
	q := u.Query()
	for k := range q {
		if k != "tls" && k != "tls-ca" {
			return dsn{}, fmt.Errorf("unknown option %q (want tls, tls-ca)", k)
		}
	}
	switch mode := q.Get("tls"); mode {
	case "", "false":
		if q.Get("tls-ca") != "" {
			return dsn{}, errors.New("tls-ca without tls=true")
		}
	case "true", "skip-verify":
		cfg, err := tlsconf.Client{ServerName: d.host, InsecureSkipVerify: mode == "skip-verify", CAFile: q.Get("tls-ca")}.Config()
		if err != nil {
			return dsn{}, fmt.Errorf("tls-ca: %w", err)
		}
		d.tls = cfg
	default:
		return dsn{}, fmt.Errorf("tls=%q: want true, skip-verify or false", mode)
	}
	return d, nil
}

// options are the client options of a connection to d: TLS if asked.
func (d dsn) options() []client.Option {
	if d.tls == nil {
		return nil
	}
	return []client.Option{func(c *client.Conn) error {
		c.SetTLSConfig(d.tls)
		return nil
	}}
}
