package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestGoldensDocumentEveryExportedName parses every golden _grain.pb.go and
// checks that each exported declaration has a doc comment that starts with
// its name, as golint and pkgsite expect.
func TestGoldensDocumentEveryExportedName(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "testdata", "*", "*_grain.pb.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no goldens found: %v", err)
	}
	more, _ := filepath.Glob(filepath.Join(repoRoot, "examples", "*", "*_grain.pb.go"))
	more = append(more, filepath.Join(repoRoot, filepath.FromSlash(strings.TrimSuffix(grpcGolden, ".proto")+"_grain.pb.go")))
	for _, path := range append(files, more...) {
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			for _, d := range documented(decl) {
				if !ast.IsExported(d.name) {
					continue
				}
				if !strings.HasPrefix(d.doc.Text(), d.name+" ") {
					t.Errorf("%s: %s: doc %q does not start with the name", path, d.name, d.doc.Text())
				}
			}
		}
	}
}

type namedDoc struct {
	name string
	doc  *ast.CommentGroup
}

// documented lists the exported names a declaration introduces with the doc
// comment each one gets: a spec's own, else its declaration's (for a
// declaration with a single spec).
func documented(decl ast.Decl) []namedDoc {
	var out []namedDoc
	switch d := decl.(type) {
	case *ast.FuncDecl:
		out = append(out, namedDoc{d.Name.Name, d.Doc})
	case *ast.GenDecl:
		for _, spec := range d.Specs {
			switch s := spec.(type) {
			case *ast.TypeSpec:
				out = append(out, namedDoc{s.Name.Name, orDoc(s.Doc, d.Doc)})
				if iface, ok := s.Type.(*ast.InterfaceType); ok {
					for _, m := range iface.Methods.List {
						for _, n := range m.Names {
							out = append(out, namedDoc{n.Name, m.Doc})
						}
					}
				}
			case *ast.ValueSpec:
				for _, n := range s.Names {
					out = append(out, namedDoc{n.Name, orDoc(s.Doc, d.Doc)})
				}
			}
		}
	}
	return out
}

func orDoc(own, outer *ast.CommentGroup) *ast.CommentGroup {
	if own != nil {
		return own
	}
	return outer
}

func TestDoc(t *testing.T) {
	tests := []struct {
		name       string
		paragraphs []string
		want       string
	}{
		{"empty", nil, ""},
		{"skips empty paragraphs", []string{"", "A.", "", "B."}, "// A.\n//\n// B."},
		{
			name:       "proto comment keeps its lines and code blocks",
			paragraphs: []string{"Echo repeats.\n\n\tcode()\n  two spaces \nend"},
			want:       "// Echo repeats.\n//\n// \tcode()\n//  two spaces\n// end",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := doc(tt.paragraphs...); got != tt.want {
				t.Errorf("doc = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestProseWraps(t *testing.T) {
	long := strings.Repeat("word ", 40)
	for _, line := range strings.Split(prose("%s", long), "\n") {
		if len(line) > proseWidth || strings.HasSuffix(line, " ") || line == "" {
			t.Errorf("line %q: want at most %d characters, no trailing space", line, proseWidth)
		}
	}
	// A word longer than the width stays whole on its own line.
	name := strings.Repeat("x", proseWidth+10)
	if got := prose("a %s b", name); got != "a\n"+name+"\nb" {
		t.Errorf("prose = %q", got)
	}
}
