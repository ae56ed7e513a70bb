package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDockerfile checks what can be checked without a Docker engine: the
// image builds the meshd command statically and runs it as non-root.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		"FROM --platform=$BUILDPLATFORM golang:1.26 AS build",
		"CGO_ENABLED=0",
		"./sidecar/cmd/meshd",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532",
		`ENTRYPOINT ["/usr/local/bin/meshd"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join("..", "sidecar", "cmd", "meshd")); err != nil {
		t.Errorf("the package the image builds: %v", err)
	}
	// Go version of the builder matches go.mod's.
	mod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mod), "\n") {
		if v, ok := strings.CutPrefix(l, "go "); ok {
			parts := strings.Split(v, ".")
			if len(parts) < 2 || !strings.Contains(df, "golang:"+parts[0]+"."+parts[1]) {
				t.Errorf("builder image is not Go %s", v)
			}
		}
	}
}
