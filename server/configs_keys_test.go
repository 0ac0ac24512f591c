package server

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/config"
)

// TestConfigReadsNameKnownKeys reads the broker's sources (and package
// config's): every typed
// config read with a literal key (config.Layers' Int, Duration, Bool,
// Float, String, List, Broker, their Topic forms, and the server's
// brokerInt, brokerBool, msConfig) names a key the config tables define,
// read as its type. A misspelt or removed key then fails here, not only on
// the path that reads it.
func TestConfigReadsNameKnownKeys(t *testing.T) {
	ints := []kmsg.ConfigType{kmsg.ConfigTypeInt, kmsg.ConfigTypeShort, kmsg.ConfigTypeLong}
	want := map[string][]kmsg.ConfigType{
		"Int": ints, "Duration": ints, "brokerInt": ints, "msConfig": ints, "TopicInt": ints, "TopicDuration": ints,
		"Bool": {kmsg.ConfigTypeBoolean}, "brokerBool": {kmsg.ConfigTypeBoolean}, "TopicBool": {kmsg.ConfigTypeBoolean},
		"Float": {kmsg.ConfigTypeDouble}, "TopicFloat": {kmsg.ConfigTypeDouble},
		"String":      {kmsg.ConfigTypeString, kmsg.ConfigTypePassword, kmsg.ConfigTypeList},
		"TopicString": {kmsg.ConfigTypeString, kmsg.ConfigTypeList},
		"List":        {kmsg.ConfigTypeList},
		"Broker":      nil, // any type
		"Topic":       nil,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	cfgFiles, err := filepath.Glob("config/*.go")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, cfgFiles...)
	fset := token.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		pkgs := map[string]bool{} // imported package names: slog.Int and the like are not config reads
		for _, im := range af.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			n := path[strings.LastIndex(path, "/")+1:]
			if im.Name != nil {
				n = im.Name.Name
			}
			pkgs[n] = true
		}
		ast.Inspect(af, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			var name string
			switch fn := call.Fun.(type) {
			case *ast.SelectorExpr:
				if x, ok := fn.X.(*ast.Ident); ok && pkgs[x.Name] {
					return true
				}
				name = fn.Sel.Name
			case *ast.Ident:
				name = fn.Name
			}
			types, ok := want[name]
			if !ok {
				return true
			}
			arg := call.Args[0]
			if name == "msConfig" && len(call.Args) == 2 {
				arg = call.Args[1]
			}
			lit, ok := arg.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			key, _ := strconv.Unquote(lit.Value)
			pos := fset.Position(lit.Pos())
			var typ kmsg.ConfigType
			if strings.HasPrefix(name, "Topic") {
				d := config.LookupTopicDef(key)
				if d == nil {
					t.Errorf("%s: %s(%q): not a topic key", pos, name, key)
					return true
				}
				typ = d.Type
			} else {
				d := config.BrokerDef(key)
				if d == nil {
					t.Errorf("%s: %s(%q): not a broker key", pos, name, key)
					return true
				}
				typ = d.Type
			}
			checked++
			if types == nil {
				return true
			}
			okType := false
			for _, ty := range types {
				okType = okType || ty == typ
			}
			if !okType {
				t.Errorf("%s: %s(%q) reads a %v key", pos, name, key, typ)
			}
			if strings.Contains(name, "Duration") || name == "msConfig" {
				if !strings.HasSuffix(key, ".ms") && !strings.HasSuffix(key, ".seconds") && !strings.HasSuffix(key, ".minutes") && !strings.HasSuffix(key, ".hours") {
					t.Errorf("%s: %s(%q): not a time key", pos, name, key)
				}
			}
			return true
		})
	}
	if checked < 20 {
		t.Fatalf("only %d config reads found: the scan no longer sees them", checked)
	}
}
