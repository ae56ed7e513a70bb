//go:build !meshd_lean

package standard

import (
	// The data connectors, left out of the lean build (see imports.go).
	_ "github.com/meshd/meshd/connectors/clickhouse"
	_ "github.com/meshd/meshd/connectors/jdbc"
	_ "github.com/meshd/meshd/connectors/mongodb"
	_ "github.com/meshd/meshd/connectors/mysqlcdc"
	_ "github.com/meshd/meshd/connectors/s3"
)
