//go:build meshd_lean

package standard

import "github.com/meshd/meshd/connectors"

func init() {
	connectors.Omit("the lean build (make build-lean, tag meshd_lean) leaves the data connectors out; run this one on a meshd of the full build", dataTypes...)
}
