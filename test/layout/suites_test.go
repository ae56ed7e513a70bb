package layout

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/meshd/meshd/connectors"
	_ "github.com/meshd/meshd/connectors/standard"
)

// TestEveryShippedConnectorRunsTheSuite ties the registry to the suites:
// each package that registers connector types must call
// connectortest.RunSink (RunSource) in its tests at least once per sink
// (source) type it registers, with distinct specs.
func TestEveryShippedConnectorRunsTheSuite(t *testing.T) {
	type kinds struct{ sinks, sources []string }
	byPkg := map[string]*kinds{}
	for _, s := range connectors.Default().Specs() {
		pkg := specPackage(s)
		if pkg == "" {
			t.Errorf("connector type %q: cannot tell which package registers it", s.Name)
			continue
		}
		k := byPkg[pkg]
		if k == nil {
			k = &kinds{}
			byPkg[pkg] = k
		}
		if s.Kind == connectors.KindSink {
			k.sinks = append(k.sinks, s.Name)
		} else {
			k.sources = append(k.sources, s.Name)
		}
	}
	if len(byPkg) < 5 {
		t.Fatalf("found %d connector packages in the registry; want every shipped one", len(byPkg))
	}
	root := moduleRoot(t)
	for pkg, k := range byPkg {
		sinks, sources := suiteCalls(t, filepath.Join(root, strings.TrimPrefix(pkg, module)))
		if len(sinks) < len(k.sinks) {
			t.Errorf("%s registers sink types %v but its tests run connectortest.RunSink with %d distinct specs", pkg, k.sinks, len(sinks))
		}
		if len(sources) < len(k.sources) {
			t.Errorf("%s registers source types %v but its tests run connectortest.RunSource with %d distinct specs", pkg, k.sources, len(sources))
		}
	}
}

// specPackage is the import path of the package whose function s.New is.
func specPackage(s connectors.Spec) string {
	fn := runtime.FuncForPC(reflect.ValueOf(s.New).Pointer())
	if fn == nil {
		return ""
	}
	name := fn.Name() // github.com/meshd/meshd/connectors/jdbc.init.func1
	slash := strings.LastIndex(name, "/")
	dot := strings.Index(name[slash+1:], ".")
	if slash < 0 || dot < 0 {
		return ""
	}
	return name[:slash+1+dot]
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
			return exprString(kv.Value)
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
