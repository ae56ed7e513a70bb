// Command meshd is the event-mesh sidecar. See `meshd help`.
package main

import (
	"os"

	"github.com/meshd/meshd/deploy/injector"
	"github.com/meshd/meshd/sidecar"
)

func main() {
	os.Exit(sidecar.Main(os.Args[1:], os.Stdout, os.Stderr, injector.Commands()...))
}
