package sidecar

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnvNameOfASetting(t *testing.T) {
	assert.Equal(t, "MESHD_APP_ID", EnvName("app.id"))
	assert.Equal(t, "MESHD_APP_PORT", EnvName("app.port"))
	assert.Equal(t, "MESHD_API_MAX_BODY_BYTES", EnvName("api.maxBodyBytes"))
	for _, notASetting := range []string{"app", "app.ID", "subscriptions", "api.allowedOrigins", ""} {
		assert.Panics(t, func() { EnvName(notASetting) }, notASetting)
	}
}

func TestAppPort(t *testing.T) {
	c := Defaults()
	require.NoError(t, c.ApplyEnv(func(name string) (string, bool) { return "8080", name == "MESHD_APP_PORT" }))
	assert.Equal(t, 8080, c.App.Port)
	require.NoError(t, c.Validate())
	for _, bad := range []int{-1, 65536} {
		c.App.Port = bad
		err := c.Validate()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "app.port")
	}
}

// TestMainRunsAddedCommands: commands given to Main run and are listed by
// meshd -h as sidecar's own are.
func TestMainRunsAddedCommands(t *testing.T) {
	var got []string
	cmd := Command{
		Name: "greet", Synopsis: "greet [--loud]", Summary: "say hello",
		Run: func(args []string, stdout, _ io.Writer) error {
			got = args
			if len(args) > 0 && args[0] == "-h" {
				return fmt.Errorf("greet: %w", flag.ErrHelp)
			}
			if len(args) > 0 && args[0] == "--fail" {
				return errors.New("no one to greet")
			}
			_, err := io.WriteString(stdout, "hello\n")
			return err
		},
	}
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 0, Main([]string{"greet", "--loud"}, &stdout, &stderr, cmd))
	assert.Equal(t, []string{"--loud"}, got)
	assert.Equal(t, "hello\n", stdout.String())
	assert.Equal(t, 0, Main([]string{"greet", "-h"}, &stdout, &stderr, cmd))
	assert.Equal(t, 1, Main([]string{"greet", "--fail"}, &stdout, &stderr, cmd))
	assert.Contains(t, stderr.String(), "meshd: no one to greet")

	stdout.Reset()
	assert.Equal(t, 0, Main([]string{"-h"}, &stdout, &stderr, cmd))
	help := stdout.String()
	line := "  meshd greet [--loud]                                say hello\n"
	assert.Contains(t, help, line, "aligned with the built-in commands")
	assert.Less(t, strings.Index(help, "meshd connectors"), strings.Index(help, line))
	assert.Less(t, strings.Index(help, line), strings.Index(help, "meshd version"))

	stderr.Reset()
	assert.Equal(t, 2, Main([]string{"greet"}, &stdout, &stderr), "not added: unknown")
	assert.Contains(t, stderr.String(), `unknown command "greet"`)
}
