//go:build !cesql

package bridge

import "errors"

// The CESQL parser (github.com/cloudevents/sdk-go/sql/v2/parser) needs
// github.com/antlr/antlr4/runtime/Go/antlr, which go.sum does not list yet.
// Until it does, build with -tags cesql (and the go.sum entry) to get the
// sql dialect; see filter_sql.go.
func compileSQL(string) (Filter, error) {
	return nil, errors.New("the sql dialect is not built into this binary (build tag cesql)")
}
