package main

import (
	"bytes"
	"context"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/pluginpb"
)

// How the golden tests work, and why this way:
//
// The checked-in goldens under testdata/ are produced by `buf generate` at the
// repository root, the same run that CI uses to check that generated files are
// up to date. These tests rebuild the same CodeGeneratorRequest in-process:
// protocompile compiles the .proto files (with the well-known types built in,
// as in buf), the descriptors become a pluginpb.CodeGeneratorRequest, and the
// generator runs on it through the same protogen options as the binary. The
// output must equal the checked-in _grain.pb.go files byte for byte. So a
// generator change shows up here as a diff before anyone runs buf, and
// `go test -run TestGolden -update` rewrites the goldens (buf generate then
// leaves them unchanged, which CI checks). No protoc or buf binary is needed
// to run the tests, and failure cases (streaming RPCs, bad parameters), which
// buf generate cannot contain, run through the very same path.

var update = flag.Bool("update", false, "rewrite the golden _grain.pb.go files under testdata/")

// repoRoot is the repository root: the root of buf.yaml's module of example
// and golden protos, which import one another by paths relative to it.
const repoRoot = "../.."

// optionsRoot is the root of buf.yaml's other module, where the protograin
// options are "protograin/v1/options.proto".
const optionsRoot = repoRoot + "/proto"

// genParameter is the parameter buf.gen.yaml gives the plugin.
const genParameter = "module=github.com/protograin/protograin"

// errorCases holds protos the generator must reject; buf.yaml excludes it.
const errorCases = "testdata/errors"

// compile compiles the .proto files at paths, relative to repoRoot, with
// source info so that comments reach the generator. Imports resolve as in
// buf's workspace: from repoRoot or optionsRoot, or to a well-known type.
func compile(t *testing.T, paths ...string) []protoreflect.FileDescriptor {
	t.Helper()
	return compileSources(t, nil, paths...)
}

// compileSources is compile with the source of some files given: sources
// maps a path to its source, for cases kept out of testdata/ because buf
// generate must not see them. Other imports resolve as in compile.
func compileSources(t *testing.T, sources map[string]string, paths ...string) []protoreflect.FileDescriptor {
	t.Helper()
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(protocompile.CompositeResolver{
			&protocompile.SourceResolver{Accessor: protocompile.SourceAccessorFromMap(sources)},
			&protocompile.SourceResolver{ImportPaths: []string{repoRoot, optionsRoot}},
		}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	files, err := c.Compile(context.Background(), paths...)
	if err != nil {
		t.Fatalf("compile %v: %v", paths, err)
	}
	fds := make([]protoreflect.FileDescriptor, len(files))
	for i, f := range files {
		fds[i] = f
	}
	return fds
}

// request builds the CodeGeneratorRequest protoc or buf would send to generate
// files: every file with its dependencies before it.
func request(files []protoreflect.FileDescriptor, parameter string) *pluginpb.CodeGeneratorRequest {
	req := &pluginpb.CodeGeneratorRequest{Parameter: proto.String(parameter)}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(fd))
	}
	for _, fd := range files {
		add(fd)
		req.FileToGenerate = append(req.FileToGenerate, fd.Path())
	}
	return req
}

// runPlugin runs the generator on req as the binary does: parameter errors
// come back as an error (the binary prints them and exits 1), generation
// errors in the response.
func runPlugin(req *pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, error) {
	return respond(req)
}

// protoDirs returns every directory under testdata/ holding .proto files,
// relative to repoRoot, with the .proto files of each, except errorCases.
// buf runs the plugin once per directory; so do the golden tests.
func protoDirs(t *testing.T) map[string][]string {
	t.Helper()
	dirs := map[string][]string{}
	err := filepath.WalkDir(filepath.Join(repoRoot, "testdata"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repoRoot, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() && rel == errorCases {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(rel, ".proto") {
			dirs[filepath.ToSlash(filepath.Dir(rel))] = append(dirs[filepath.ToSlash(filepath.Dir(rel))], rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func TestGolden(t *testing.T) {
	dirs := protoDirs(t)
	if len(dirs) < 12 {
		t.Fatalf("found %d proto directories under testdata, want every golden case", len(dirs))
	}
	for dir, protos := range dirs {
		t.Run(strings.TrimPrefix(dir, "testdata/"), func(t *testing.T) {
			resp, err := runPlugin(request(compile(t, protos...), genParameter))
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetError() != "" {
				t.Fatalf("plugin error: %s", resp.GetError())
			}
			checkFeatures(t, resp)
			var generated []string
			for _, f := range resp.GetFile() {
				generated = append(generated, f.GetName())
				checkGolden(t, f.GetName(), []byte(f.GetContent()))
			}
			if onDisk := goldenFiles(t, dir); !slices.Equal(sorted(generated), onDisk) {
				t.Errorf("generated files %v, golden files on disk %v", sorted(generated), onDisk)
			}
		})
	}
}

// checkFeatures checks what the plugin tells buf and protoc it supports.
func checkFeatures(t *testing.T, resp *pluginpb.CodeGeneratorResponse) {
	t.Helper()
	want := uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL | pluginpb.CodeGeneratorResponse_FEATURE_SUPPORTS_EDITIONS)
	if resp.GetSupportedFeatures() != want {
		t.Errorf("supported features %b, want %b", resp.GetSupportedFeatures(), want)
	}
	if resp.GetMinimumEdition() == 0 || resp.GetMaximumEdition() < resp.GetMinimumEdition() {
		t.Errorf("editions %d..%d, want a proper range", resp.GetMinimumEdition(), resp.GetMaximumEdition())
	}
}

// checkGolden compares content with the golden file name (relative to
// repoRoot), or rewrites it with -update.
func checkGolden(t *testing.T, name string, content []byte) {
	t.Helper()
	path := filepath.Join(repoRoot, filepath.FromSlash(name))
	if *update {
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden: %v (run go test -update to create it)", err)
	}
	if !bytes.Equal(content, want) {
		t.Errorf("%s differs from the generator's output; run `go test ./cmd/protoc-gen-grain -update` "+
			"and `go tool -modfile=tools/go.mod buf generate`, and review the diff:\n%s", name, firstDiff(string(want), string(content)))
	}
}

// goldenFiles lists the _grain.pb.go files directly in dir.
func goldenFiles(t *testing.T, dir string) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(repoRoot, dir, "*_grain.pb.go"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range matches {
		rel, err := filepath.Rel(repoRoot, m)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.ToSlash(rel))
	}
	return sorted(names)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// firstDiff shows the first line where want and got differ.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  golden:    " + wl + "\n  generated: " + gl
		}
	}
	return "(no line differs)"
}
