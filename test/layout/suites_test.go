package layout

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshd/meshd/connectors"
	_ "github.com/meshd/meshd/connectors/standard"
)

// TestEveryShippedConnectorRunsTheSuite ties the registry to the suites:
// every connectors.Register(X) in a connector package must be matched by a
// connectortest.RunSink or RunSource call with Spec: X in that package's
// tests, and every type that ships must be registered that way.
func TestEveryShippedConnectorRunsTheSuite(t *testing.T) {
	root := moduleRoot(t)
	dirs, err := filepath.Glob(filepath.Join(root, "connectors", "*"))
	if err != nil {
		t.Fatal(err)
	}
	registered := 0
	for _, dir := range dirs {
		regs := registerCalls(t, dir)
		if len(regs) == 0 {
			continue
		}
		sinks, sources := suiteCalls(t, dir)
		for _, spec := range regs {
			registered++
			if !sinks[spec] && !sources[spec] {
				t.Errorf("%s registers %s but its tests never run connectortest.RunSink or RunSource with Spec: %s",
					strings.TrimPrefix(dir, root+"/"), spec, spec)
			}
		}
	}
	if shipped := len(connectors.Default().Specs()); registered != shipped {
		t.Errorf("found %d connectors.Register calls in connectors/*, but %d connector types ship: register each in its own package's init", registered, shipped)
	}
}

// registerCalls returns the arguments of connectors.Register calls in the
// non-test files of dir (identifiers: Spec, SinkSpec, ...).
func registerCalls(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parsing %s: %v", f, err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 1 {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Register" {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "connectors" {
					out = append(out, exprString(call.Args[0]))
				}
			}
			return true
		})
	}
	return out
}

// suiteCalls returns the Spec expressions of the connectortest.RunSink and
// RunSource calls in the _test.go files of dir.
func suiteCalls(t *testing.T, dir string) (sinks, sources map[string]bool) {
	t.Helper()
	sinks, sources = map[string]bool{}, map[string]bool{}
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parsing %s: %v", f, err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "connectortest" {
				return true
			}
			spec := specField(call.Args[1])
			switch sel.Sel.Name {
			case "RunSink":
				sinks[spec] = true
			case "RunSource":
				sources[spec] = true
			}
			return true
		})
	}
	return sinks, sources
}

// specField is the source text of the Spec field of a suite description
// literal ("?" if it is not a literal).
func specField(e ast.Expr) string {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return "?"
	}
	for _, el := range lit.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Spec" {
			// dingtalk.Spec in an external test package is Spec.
			name := exprString(kv.Value)
			return name[strings.LastIndex(name, ".")+1:]
		}
	}
	return "?"
}

func exprString(e ast.Expr) string {
	switch v := e.(type) {
	case *ast.Ident:
		return v.Name
	case *ast.SelectorExpr:
		return exprString(v.X) + "." + v.Sel.Name
	default:
		return "?"
	}
}

// moduleRoot is the folder of go.mod, above this test's folder.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
}
