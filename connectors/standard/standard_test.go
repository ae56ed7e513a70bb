package standard

import (
	"testing"

	"github.com/meshd/meshd/connectors"
)

// The types the lean build says it leaves out are the data connectors'
// (a renamed one would be "unknown" there instead).
func TestDataTypesAreRegistered(t *testing.T) {
	reg := connectors.Default()
	for _, name := range dataTypes {
		if _, ok := reg.Lookup(name); !ok {
			t.Errorf("dataTypes names %q, which no data connector registers", name)
		}
	}
}
