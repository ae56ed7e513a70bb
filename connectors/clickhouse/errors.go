package clickhouse

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/meshd/meshd/bridge"
)

// unavailableCodes are server exceptions that say the server cannot take
// inserts now, whatever the rows: the table or a column is missing (an
// operator fixes it), access is denied, limits are reached (too many
// parts or queries, memory), the table is read-only, the network failed.
var unavailableCodes = map[int32]bool{
	16: true, 60: true, 81: true, 159: true, 164: true, 202: true, 203: true, 209: true, 210: true,
	241: true, 242: true, 252: true, 425: true, 497: true, 516: true,
}

// failure classifies a failed insert: a server that cannot be reached or
// cannot take inserts holds the batch; others are retried.
func failure(err error) error {
	var ex *ch.Exception
	if errors.As(err, &ex) {
		if unavailableCodes[ex.Code] {
			return bridge.UnavailableError(err, 0)
		}
		return err
	}
	var ne net.Error
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "acquire conn timeout") {
		return bridge.UnavailableError(err, 0)
	}
	return err
}
