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
	// The version reaches `meshd version` the way make build sets it (a
	// -X of a variable that does not exist is silently ignored).
	makefile, err := os.ReadFile(filepath.Join("..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	const versionVar = "-X github.com/meshd/meshd/sidecar.Version="
	for name, text := range map[string]string{"Dockerfile": df, "Makefile": string(makefile)} {
		if !strings.Contains(text, versionVar) {
			t.Errorf("%s does not set the version with %s", name, versionVar)
		}
	}
	if !strings.Contains(df, `-tags "${TAGS}"`) || !strings.Contains(string(makefile), "-tags meshd_lean") {
		t.Errorf("the lean build's tag is not passed (Dockerfile: TAGS; Makefile: build-lean)")
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
