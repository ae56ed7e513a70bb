package sidecar_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/meshd/meshd/deploy/injector"
	"github.com/meshd/meshd/sidecar"
)

// The variables the injector sets for the app are known to meshd: a
// sidecar that sees them is not warned about them.
func TestInjectorAppEnvIsNotWarnedAbout(t *testing.T) {
	assert.Empty(t, sidecar.UnknownEnvNames([]string{injector.EnvHTTPPort + "=1", injector.EnvAdminPort + "=2"}))
}
