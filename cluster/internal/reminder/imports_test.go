package reminder

import (
	"go/build"
	"strings"
	"testing"
)

// TestImportRule checks what doc.go promises: of protograin, the package
// imports the storage package only, never cluster or runtime.
func TestImportRule(t *testing.T) {
	t.Parallel()
	const module = "github.com/protograin/protograin/"
	pkg, err := build.Import(module+"cluster/internal/reminder", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, module) && imp != module+"cluster/storage" {
			t.Errorf("reminder imports %s; only cluster/storage is allowed", imp)
		}
	}
}
