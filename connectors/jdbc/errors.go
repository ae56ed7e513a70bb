package jdbc

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// failure is what a database error says about a write.
type failure int

const (
	// failRetry: this write failed (a deadlock, a lock timeout, something
	// unknown); trying again may work.
	failRetry failure = iota
	// failRow: the database refused a value or row (bad data, a
	// constraint): the write of the other rows may work without it.
	failRow
	// failDown: the database cannot take writes now — unreachable, shut
	// down, out of connections or disk, or the table or a grant is
	// missing, which an operator fixes. Nothing is written until it is
	// back.
	failDown
)

// classify says what err, returned by a write of dialect d, means.
func (d dialect) classify(err error) failure {
	var pg *pgconn.PgError
	var my *mysql.MySQLError
	var lite *sqlite.Error
	switch {
	case errors.As(err, &pg):
		return classifyPostgres(pg.Code)
	case errors.As(err, &my):
		return classifyMySQL(my.Number)
	case errors.As(err, &lite):
		return classifySQLite(lite.Code(), lite.Error())
	}
	return classifyConn(err)
}

// classifyConn classifies errors that come from the connection rather
// than the server's answer.
func classifyConn(err error) failure {
	var ne net.Error
	var ce *pgconn.ConnectError
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, mysql.ErrInvalidConn),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne), errors.As(err, &ce), pgconn.SafeToRetry(err):
		return failDown
	}
	s := err.Error()
	for _, p := range []string{"conn closed", "connection refused", "connection reset", "broken pipe", "bad connection", "server closed"} {
		if strings.Contains(s, p) {
			return failDown
		}
	}
	return failRetry
}

// classifyPostgres reads a SQLSTATE
// (https://www.postgresql.org/docs/current/errcodes-appendix.html).
func classifyPostgres(code string) failure {
	switch code {
	case "40001", "40P01", "55P03", "57014": // serialization, deadlock, lock not available, statement timeout
		return failRetry
	case "42501", "42P01", "42703", "3D000", "3F000", "25006": // privilege, table, column, database, schema, read-only
		return failDown
	case "42804", "42P18": // datatype mismatch, indeterminate datatype: a value of the wrong kind
		return failRow
	}
	switch code[:2] {
	case "22", "23": // data exception, integrity constraint violation
		return failRow
	case "08", "53", "57", "58", "28", "54": // connection, resources, shutdown, system, authorization, limits
		return failDown
	}
	return failRetry
}

// classifyMySQL reads a MySQL/MariaDB server error number.
func classifyMySQL(n uint16) failure {
	switch n {
	case 1205, 1213: // lock wait timeout, deadlock
		return failRetry
	case 1040, 1041, 1044, 1045, 1049, 1053, 1054, 1142, 1143, 1146, 1203, 1226, 1290, 1836, 1114, 1021, 1030:
		// too many connections, out of memory, access denied (db, user,
		// table, column), unknown database, shutdown, unknown column,
		// unknown table, user limits, read-only, table full, disk full,
		// storage engine error
		return failDown
	case 1048, 1062, 1136, 1216, 1217, 1264, 1265, 1292, 1366, 1367, 1406, 1411, 1451, 1452, 1644, 3140, 3819, 4025, 4078:
		// null, duplicate key, column count, foreign keys, out of range,
		// truncated, bad date/time, bad value, too long, bad function
		// value, signal in a trigger, invalid JSON, check constraint
		return failRow
	}
	return failRetry
}

// classifySQLite reads an SQLite result code
// (https://www.sqlite.org/rescode.html).
func classifySQLite(code int, text string) failure {
	switch code & 0xff {
	case 5, 6: // busy, locked
		return failRetry
	case 18, 19, 20, 25: // too big, constraint, type mismatch, range
		return failRow
	case 3, 8, 10, 13, 14, 23: // permission, read-only, I/O, disk full, cannot open, authorization
		return failDown
	}
	if strings.Contains(text, "no such table") || strings.Contains(text, "has no column named") {
		return failDown
	}
	return failRetry
}
