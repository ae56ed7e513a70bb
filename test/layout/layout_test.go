// Package layout checks the import rules of ../shared/DESIGN.md on the
// non-test code — sidecar → protocols, connectors → bridge → mesh, deploy →
// sidecar, no protocol importing a sibling protocol, no connector importing
// another connector or the runtime — that no Kubernetes is in the meshd
// binary, and that every connector type that ships runs the connectortest
// suite of its kind.
package layout

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
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
	"deploy":     {"deploy", "sidecar"},
}

// siblingsAllowed lists the packages that may import other parts of their
// own folder (protocols/X importing protocols/Y, connectors/X importing
// connectors/Y): the runtime's API and the list of what ships, besides the
// test-support packages (their names end in "test").
var siblingsAllowed = map[string]bool{
	"protocols/protocoltest":   true,
	"connectors/connectortest": true,
	"connectors/api":           true,
	"connectors/standard":      true,
}

// siblingOK says whether pkg may import dep of the same top folder: its own
// subtree, the folder's root package (the connector SDK), or a shared
// internal package.
func siblingOK(pkg, dep string) bool {
	if top(pkg) != "protocols" && top(pkg) != "connectors" || top(dep) != top(pkg) {
		return true
	}
	own := part(pkg)
	if siblingsAllowed[own] || strings.HasSuffix(pkg, "test") || dep == top(pkg) || part(dep) == own || strings.HasPrefix(dep, top(pkg)+"/internal/") {
		return true
	}
	return false
}

// part is the first two levels of a package path: connectors/jdbc for
// connectors/jdbc/x.
func part(pkg string) string {
	parts := strings.SplitN(pkg, "/", 3)
	if len(parts) < 2 {
		return pkg
	}
	return parts[0] + "/" + parts[1]
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
			if !siblingOK(pkg, dep) {
				t.Errorf("%s imports %s: a part of %s may not import another (move what both need below them)", pkg, dep, top(pkg))
			}
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d packages; go list output:\n%s", checked, out)
	}
}

// TestSidecarLinksNoKubernetes: the meshd binary runs in every pod, so it
// links no Kubernetes packages (k8s.io/..., sigs.k8s.io/...). The injector
// it carries works on manifests as generic JSON; typed Kubernetes objects
// belong in tests only.
func TestSidecarLinksNoKubernetes(t *testing.T) {
	const binary = module + "sidecar/cmd/meshd"
	out, err := exec.Command(goBinary(), "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, binary).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		imports[fields[0]] = fields[1:]
	}
	if _, ok := imports[binary]; !ok || len(imports) < 100 {
		t.Fatalf("go list gave %d packages, not meshd's:\n%s", len(imports), out)
	}
	// Name each way in: a package of not Kubernetes importing one that is.
	var count int
	var ways []string
	for pkg, imps := range imports {
		if isKubernetes(pkg) {
			count++
			continue
		}
		for _, imp := range imps {
			if isKubernetes(imp) {
				ways = append(ways, strings.Join(append(importChain(imports, binary, pkg), imp), " → "))
			}
		}
	}
	if count > 0 {
		slices.Sort(ways)
		t.Errorf("meshd links %d Kubernetes packages, through:\n%s", count, strings.Join(ways, "\n"))
	}
}

func isKubernetes(pkg string) bool {
	return strings.HasPrefix(pkg, "k8s.io/") || strings.Contains(pkg, ".k8s.io/")
}

// importChain is a shortest chain of imports from root to pkg, our
// packages named without the module path.
func importChain(imports map[string][]string, root, pkg string) []string {
	from := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == pkg {
			var chain []string
			for ; p != ""; p = from[p] {
				chain = append([]string{strings.TrimPrefix(p, module)}, chain...)
			}
			return chain
		}
		for _, imp := range imports[p] {
			if _, seen := from[imp]; !seen {
				from[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	return []string{pkg}
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

// TestLeanBuildLeavesOutTheDataDrivers: the meshd_lean build (make
// build-lean) links none of the heavy drivers of the data connectors.
func TestLeanBuildLeavesOutTheDataDrivers(t *testing.T) {
	out, err := exec.Command(goBinary(), "list", "-deps", "-tags", "meshd_lean", module+"sidecar/cmd/meshd").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, heavy := range []string{"github.com/aws/aws-sdk-go-v2/service/s3", "github.com/ClickHouse/clickhouse-go/v2",
		"github.com/jackc/pgx/v5", "go.mongodb.org/mongo-driver/v2/mongo", "modernc.org/sqlite", "github.com/go-mysql-org/go-mysql/replication"} {
		for _, line := range strings.Split(string(out), "\n") {
			if line == heavy {
				t.Errorf("the lean build links %s", heavy)
			}
		}
	}
	if !strings.Contains(string(out), module+"connectors/httpsink") {
		t.Error("the lean build lost the light connectors")
	}
}
