package hygiene

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// pacing lists the sleeps that are neither a bounded poll's step nor in a
// synctest bubble, by file and enclosing function, with why each is
// allowed (docs/testing.md). A new entry needs the same kind of reason: a
// sleep that orders two events in a test is never one.
var pacing = map[string]string{
	"internal/testcluster/scale_bench_test.go:scalePartitions": "benchmark: lets an idle consumer settle on long polls before its CPU is measured",
	"internal/testcluster/scale_bench_test.go:brokersCPU":      "benchmark: the measurement window of a CPU sample",
	"server/controller/harness_test.go:harness.command":        "scenario step `advance` in a synctest bubble: moves the bubble's fake clock",
}

// TestNoSleepOrdersEvents: every time.Sleep in the repository's tests is
// the step of a bounded poll, runs in a synctest bubble or is a listed
// pacing site; no test fails on real elapsed time (time.Since/time.Until
// compared in an if that fails the test). A finding names the file, line
// and what to do.
func TestNoSleepOrdersEvents(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	var findings []string
	used := map[string]bool{}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch name := d.Name(); {
			case path == root:
			case strings.HasPrefix(name, "."), name == "third_party", name == "testdata", name == "node_modules", name == "target", name == "bin", name == "data":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		files++
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, s := range checkFile(fset, rel, f) {
			if s.pacingKey != "" {
				if _, ok := pacing[s.pacingKey]; ok {
					used[s.pacingKey] = true
					continue
				}
			}
			findings = append(findings, s.msg)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("only %d test files found under %s", files, root)
	}
	for k := range pacing {
		if !used[k] {
			findings = append(findings, k+": listed as a pacing site but has no such sleep (remove it from the list)")
		}
	}
	sort.Strings(findings)
	for _, f := range findings {
		t.Error(f)
	}
}

// finding is a rule broken at a place; pacingKey is set for a sleep the
// pacing list may allow.
type finding struct {
	msg       string
	pacingKey string
}

// checkFile finds the sleeps and elapsed-time assertions of one test file
// that break the rules.
func checkFile(fset *token.FileSet, rel string, f *ast.File) []finding {
	timePkg, synctestPkg := importName(f, "time"), importName(f, "testing/synctest")
	if timePkg == "" {
		return nil
	}
	// Functions handed by name to synctest.Test run in a bubble.
	bubbled := map[string]bool{}
	if synctestPkg != "" {
		ast.Inspect(f, func(n ast.Node) bool {
			if c, ok := n.(*ast.CallExpr); ok && isCall(c, synctestPkg, "Test") && len(c.Args) == 2 {
				if id, ok := c.Args[1].(*ast.Ident); ok {
					bubbled[id.Name] = true
				}
			}
			return true
		})
	}
	var out []finding
	for _, decl := range f.Decls {
		fd, ok := decl.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		name := funcName(fd)
		elapsed := elapsedVars(fd, timePkg)
		var stack []ast.Node
		ast.Inspect(fd, func(n ast.Node) bool {
			if n == nil {
				stack = stack[:len(stack)-1]
				return true
			}
			stack = append(stack, n)
			switch n := n.(type) {
			case *ast.CallExpr:
				if !isCall(n, timePkg, "Sleep") {
					return true
				}
				pos := fset.Position(n.Pos())
				where := rel + ":" + strconv.Itoa(pos.Line)
				switch {
				case bubbled[fd.Name.Name] || inBubble(stack, synctestPkg):
				case boundedLoop(stack, timePkg):
				default:
					out = append(out, finding{
						msg: where + " (" + name + "): time.Sleep outside a bounded poll: wait on the event (a channel, a bounded poll of the condition " +
							"with a real-time deadline) or move a manual clock; pacing that orders nothing goes in the pacing list with its reason",
						pacingKey: rel + ":" + name,
					})
				}
			case *ast.IfStmt:
				if assertsElapsed(n, timePkg, elapsed) {
					pos := fset.Position(n.Pos())
					out = append(out, finding{msg: rel + ":" + strconv.Itoa(pos.Line) + " (" + name + "): asserts on real elapsed time " +
						"(time.Since/time.Until): drop the assertion, or report the time as a benchmark metric"})
				}
			}
			return true
		})
	}
	return out
}

// importName is the name f refers to the package path by ("" when not
// imported).
func importName(f *ast.File, path string) string {
	for _, im := range f.Imports {
		if p, _ := strconv.Unquote(im.Path.Value); p == path {
			if im.Name != nil {
				return im.Name.Name
			}
			return path[strings.LastIndex(path, "/")+1:]
		}
	}
	return ""
}

// funcName is a function's name, a method's prefixed with its receiver's
// type.
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	typ := fd.Recv.List[0].Type
	if st, ok := typ.(*ast.StarExpr); ok {
		typ = st.X
	}
	if id, ok := typ.(*ast.Ident); ok {
		return id.Name + "." + fd.Name.Name
	}
	return fd.Name.Name
}

// isCall reports whether c calls pkg.name.
func isCall(c *ast.CallExpr, pkg, name string) bool {
	sel, ok := c.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg
}

// inBubble reports whether the innermost node of stack is inside a
// function literal handed to synctest.Test.
func inBubble(stack []ast.Node, synctestPkg string) bool {
	if synctestPkg == "" {
		return false
	}
	for i := len(stack) - 1; i > 0; i-- {
		if fl, ok := stack[i].(*ast.FuncLit); ok {
			if c, ok := stack[i-1].(*ast.CallExpr); ok && isCall(c, synctestPkg, "Test") && len(c.Args) == 2 && c.Args[1] == fl {
				return true
			}
		}
	}
	return false
}

// boundedLoop reports whether the innermost loop around the end of stack
// (within the same function) is bounded: in real time (it reads the time
// or a deadline, or watches a context) or by a count (it compares with a
// constant).
func boundedLoop(stack []ast.Node, timePkg string) bool {
	for i := len(stack) - 1; i >= 0; i-- {
		switch n := stack[i].(type) {
		case *ast.FuncLit:
			return false // a goroutine or callback: its own loop, if any, is inside
		case *ast.ForStmt, *ast.RangeStmt:
			return loopBound(n, timePkg)
		}
	}
	return false
}

// loopBound looks for a bound in a loop's condition and body.
func loopBound(loop ast.Node, timePkg string) bool {
	bounded := false
	ast.Inspect(loop, func(n ast.Node) bool {
		if bounded {
			return false
		}
		switch n := n.(type) {
		case *ast.CallExpr:
			if isCall(n, timePkg, "Now") || isCall(n, timePkg, "Since") || isCall(n, timePkg, "Until") {
				bounded = true
			}
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Err" || sel.Sel.Name == "Done") && len(n.Args) == 0 {
				bounded = true // a context's end
			}
		case *ast.Ident:
			if strings.Contains(strings.ToLower(n.Name), "deadline") {
				bounded = true
			}
		case *ast.BinaryExpr:
			switch n.Op {
			case token.LSS, token.GTR, token.LEQ, token.GEQ:
				if constInt(n.X) || constInt(n.Y) {
					bounded = true // a retry count
				}
			}
		}
		return true
	})
	return bounded
}

// constInt reports whether e is an integer constant expression of
// literals.
func constInt(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.BasicLit:
		return e.Kind == token.INT
	case *ast.BinaryExpr:
		return constInt(e.X) && constInt(e.Y)
	case *ast.ParenExpr:
		return constInt(e.X)
	}
	return false
}

// elapsedVars are the names a function assigns real elapsed time to
// (time.Since or time.Until).
func elapsedVars(fd *ast.FuncDecl, timePkg string) map[string]bool {
	vars := map[string]bool{}
	ast.Inspect(fd, func(n ast.Node) bool {
		if as, ok := n.(*ast.AssignStmt); ok {
			for i, rhs := range as.Rhs {
				if i < len(as.Lhs) && callsElapsed(rhs, timePkg) {
					if id, ok := as.Lhs[i].(*ast.Ident); ok {
						vars[id.Name] = true
					}
				}
			}
		}
		return true
	})
	return vars
}

// assertsElapsed reports whether an if statement compares real elapsed
// time (time.Since or time.Until, directly or through a variable the
// function assigns it to) and fails the test in its body.
func assertsElapsed(is *ast.IfStmt, timePkg string, elapsedVars map[string]bool) bool {
	compares := false
	ast.Inspect(is.Cond, func(n ast.Node) bool {
		be, ok := n.(*ast.BinaryExpr)
		if !ok {
			return true
		}
		switch be.Op {
		case token.LSS, token.GTR, token.LEQ, token.GEQ, token.EQL, token.NEQ:
			for _, side := range []ast.Expr{be.X, be.Y} {
				if id, ok := side.(*ast.Ident); ok && elapsedVars[id.Name] {
					compares = true
				}
				if callsElapsed(side, timePkg) {
					compares = true
				}
			}
		}
		return true
	})
	if !compares {
		return false
	}
	fails := false
	ast.Inspect(is.Body, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if sel, ok := c.Fun.(*ast.SelectorExpr); ok {
				switch sel.Sel.Name {
				case "Fatal", "Fatalf", "Error", "Errorf", "Fail", "FailNow":
					fails = true
				}
			}
		}
		return !fails
	})
	return fails
}

// callsElapsed reports whether e calls time.Since or time.Until.
func callsElapsed(e ast.Expr, timePkg string) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok && (isCall(c, timePkg, "Since") || isCall(c, timePkg, "Until")) {
			found = true
		}
		return !found
	})
	return found
}
