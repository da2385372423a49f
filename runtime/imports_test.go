package runtime

import (
	"go/build"
	"strings"
	"testing"
)

// TestImports enforces doc.go: the runtime knows nothing about the cluster,
// protobuf or gRPC, and uses the standard library and the module's internal
// packages only.
func TestImports(t *testing.T) {
	t.Parallel()
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	const internal = "github.com/protograin/protograin/internal/"
	for _, imp := range pkg.Imports {
		if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") && !strings.HasPrefix(imp, internal) {
			t.Errorf("runtime imports %q; it must use the standard library and %s... only", imp, internal)
		}
	}
}
