package op

import (
	"go/build"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDependenciesPointOneWay pins the layout of docs/DESIGN.md: cmd → op →
// op/* → storage. No package under op/ imports op or cmd, storage imports
// nothing of op, and no op/* package imports the protocol library (the
// zitadel seam is op's alone).
func TestDependenciesPointOneWay(t *testing.T) {
	const mod = "github.com/totp-idp/idp/"
	type rule struct {
		dir    string
		refuse []string
	}
	var rules []rule
	subs, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range subs {
		if d.IsDir() && d.Name() != "testdata" {
			rules = append(rules, rule{d.Name(), []string{mod + "op", mod + "cmd", "github.com/zitadel/oidc/v3/pkg/op"}})
		}
	}
	if len(rules) < 8 {
		t.Fatalf("found %d packages under op/; the scan is broken", len(rules))
	}
	for _, dir := range []string{"../storage", "../storage/sqlite", "../storage/conformance"} {
		rules = append(rules, rule{dir, []string{mod + "op", mod + "cmd"}})
	}
	for _, r := range rules {
		pkg, err := build.ImportDir(r.dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", r.dir, err)
		}
		for _, imp := range append(pkg.Imports, pkg.TestImports...) {
			for _, bad := range r.refuse {
				if imp == bad || strings.HasPrefix(imp, bad+"/") && bad != mod+"op" {
					t.Errorf("%s imports %s", filepath.Clean(r.dir), imp)
				}
			}
		}
	}
}
