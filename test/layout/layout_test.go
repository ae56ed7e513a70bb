// Package layout checks the import rules of ../shared/DESIGN.md on the
// non-test code: sidecar → protocols, connectors → bridge → mesh.
package layout

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/meshd/meshd/"

// allowed lists, by top folder, the top folders of ours it may import.
var allowed = map[string][]string{
	"mesh":       {"mesh"},
	"bridge":     {"bridge", "mesh"},
	"protocols":  {"protocols", "bridge", "mesh"},
	"connectors": {"connectors", "bridge", "mesh"},
}

func TestImportRules(t *testing.T) {
	out, err := exec.Command(goBinary(), "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "github.com/meshd/meshd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		rules, ok := allowed[top(pkg)]
		if !ok {
			continue
		}
		checked++
		for _, imp := range fields[1:] {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			if !contains(rules, top(dep)) {
				t.Errorf("%s imports %s: %s may import only %v of ours", pkg, dep, top(pkg), rules)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d packages; go list output:\n%s", checked, out)
	}
}

// goBinary is the go command that runs this test (GOROOT's), else the one
// on PATH.
func goBinary() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func top(pkg string) string {
	first, _, _ := strings.Cut(pkg, "/")
	return first
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
