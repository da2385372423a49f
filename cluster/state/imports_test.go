package state_test

import (
	"go/build"
	"strings"
	"testing"
)

// TestImportRule checks what the doc.go files promise: state and storage,
// with every store, import nothing else of protograin, in particular not the
// cluster or runtime packages they are the base of.
func TestImportRule(t *testing.T) {
	const module = "github.com/protograin/protograin/"
	allowed := func(path string) bool {
		for _, own := range []string{"cluster/state", "cluster/storage"} {
			if path == module+own || strings.HasPrefix(path, module+own+"/") {
				return true
			}
		}
		return false
	}
	seen := map[string]bool{}
	var walk func(path, from string)
	walk = func(path, from string) {
		if seen[path] || !strings.HasPrefix(path, module) {
			return
		}
		seen[path] = true
		if !allowed(path) {
			t.Errorf("%s imports %s", from, path)
			return
		}
		pkg, err := build.Import(path, "", 0)
		if err != nil {
			t.Fatalf("import %s: %v", path, err)
		}
		for _, imp := range pkg.Imports {
			walk(imp, path)
		}
	}
	for _, root := range []string{"state", "storage", "storage/memstore", "storage/boltstore", "storage/pgstore", "storage/redisstore", "storage/redisstore/redistest", "storage/storagetest"} {
		walk(module+"cluster/"+root, "test")
	}
}
