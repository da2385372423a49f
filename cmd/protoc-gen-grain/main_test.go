package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	protograinv1 "github.com/protograin/protograin/proto/protograin/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/pluginpb"
)

func TestHandleFlags(t *testing.T) {
	tests := []struct {
		args    []string
		handled bool
		prefix  string
	}{
		{[]string{"--version"}, true, "protoc-gen-grain "},
		{[]string{"-version"}, true, "protoc-gen-grain "},
		{[]string{"--help"}, true, "protoc-gen-grain generates"},
		{[]string{"-h"}, true, "protoc-gen-grain generates"},
		{nil, false, ""},                   // protoc's way: the request on stdin
		{[]string{"--verbose"}, false, ""}, // left to run, which rejects it
		{[]string{"--version", "x"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout bytes.Buffer
			if handled := handleFlags(tt.args, &stdout); handled != tt.handled {
				t.Fatalf("handled = %v, want %v", handled, tt.handled)
			}
			if !strings.HasPrefix(stdout.String(), tt.prefix) || (!tt.handled && stdout.Len() > 0) {
				t.Errorf("stdout %q, want prefix %q", stdout.String(), tt.prefix)
			}
		})
	}
}

// TestUsageListsEveryOption checks that --help lists every field of the
// options the plugin reads, one line each, under the option it belongs to.
func TestUsageListsEveryOption(t *testing.T) {
	for _, x := range []protoreflect.ExtensionType{protograinv1.E_Grain, protograinv1.E_Method} {
		xd := x.TypeDescriptor()
		header := "option (" + string(xd.FullName()) + ")"
		section, ok := usageSection(header)
		if !ok {
			t.Errorf("--help does not list %s", header)
			continue
		}
		fields := xd.Message().Fields()
		for i := range fields.Len() {
			if name := string(fields.Get(i).Name()); !strings.Contains(section, "\n    "+name+": ") {
				t.Errorf("--help does not list %s under %s", name, header)
			}
		}
	}
}

// usageSection returns the lines of usage from the one that mentions
// header up to the next line that is not indented further.
func usageSection(header string) (string, bool) {
	_, rest, ok := strings.Cut(usage, header)
	if !ok {
		return "", false
	}
	lines := strings.Split(rest, "\n")
	end := 1
	for end < len(lines) && strings.HasPrefix(lines[end], "    ") {
		end++
	}
	return strings.Join(lines[:end], "\n"), true
}

// buildPlugin builds the real binary once for the tests that run it.
func buildPlugin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the plugin binary")
	}
	bin := filepath.Join(t.TempDir(), "protoc-gen-grain")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBinary runs the built plugin the way protoc and buf do: flags on the
// command line, the request on stdin, the response on stdout.
func TestBinary(t *testing.T) {
	t.Parallel()
	bin := buildPlugin(t)

	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(bin, "--version").Output()
		if err != nil || !strings.HasPrefix(string(out), "protoc-gen-grain ") {
			t.Errorf("--version: %q, %v", out, err)
		}
	})
	t.Run("unknown argument", func(t *testing.T) {
		cmd := exec.Command(bin, "--verbose")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), `unknown argument "--verbose"`) {
			t.Errorf("got %q, %v; want a refusal and a failure", out, err)
		}
	})
	for _, tt := range []struct{ param, want string }{
		{"verbose=true", `protoc-gen-grain: unknown parameter "verbose": protoc-gen-grain takes only paths=, module=, grpc= and M<file>.proto= (see --help)`},
		{"grpc=yes", "protoc-gen-grain: parameter grpc=yes: want true or false"},
	} {
		t.Run("bad parameter "+tt.param, func(t *testing.T) {
			stdout, stderr, err := runBinary(t, bin, request(compile(t, "testdata/unary/unary.proto"), tt.param))
			if err == nil || stderr != tt.want+"\n" || len(stdout) != 0 {
				t.Errorf("got err %v, stderr %q, %d bytes on stdout; want a failure with stderr %q", err, stderr, len(stdout), tt.want+"\n")
			}
		})
	}
	t.Run("generate", func(t *testing.T) {
		stdout, stderr, err := runBinary(t, bin, request(compile(t, "testdata/unary/unary.proto"), "paths=source_relative"))
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		resp := &pluginpb.CodeGeneratorResponse{}
		if err := proto.Unmarshal(stdout, resp); err != nil {
			t.Fatal(err)
		}
		if resp.GetError() != "" || len(resp.GetFile()) != 1 {
			t.Fatalf("response error %q with %d files, want one file", resp.GetError(), len(resp.GetFile()))
		}
		checkGolden(t, resp.GetFile()[0].GetName(), []byte(resp.GetFile()[0].GetContent()))
	})
	t.Run("options", func(t *testing.T) {
		// The binary decodes the request with protograin's extensions
		// registered, so it meets the options parsed rather than as unknown
		// fields, unlike the in-process tests.
		stdout, stderr, err := runBinary(t, bin, request(compile(t, "testdata/manualflush/manualflush.proto"), genParameter))
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		resp := &pluginpb.CodeGeneratorResponse{}
		if err := proto.Unmarshal(stdout, resp); err != nil {
			t.Fatal(err)
		}
		if resp.GetError() != "" || len(resp.GetFile()) != 1 {
			t.Fatalf("response error %q with %d files, want one file", resp.GetError(), len(resp.GetFile()))
		}
		checkGolden(t, resp.GetFile()[0].GetName(), []byte(resp.GetFile()[0].GetContent()))
	})
	t.Run("streaming", func(t *testing.T) {
		stdout, stderr, err := runBinary(t, bin, request(compile(t, "testdata/errors/bidi_streaming.proto"), ""))
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		resp := &pluginpb.CodeGeneratorResponse{}
		if err := proto.Unmarshal(stdout, resp); err != nil {
			t.Fatal(err)
		}
		// protoc and buf print the response's error; the process succeeds.
		if !strings.HasSuffix(resp.GetError(), "bidirectional streaming is not supported for grains yet") {
			t.Errorf("response error %q", resp.GetError())
		}
	})
}

func runBinary(t *testing.T, bin string, req *pluginpb.CodeGeneratorRequest) (stdout []byte, stderr string, err error) {
	t.Helper()
	in, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	err = cmd.Run()
	return out.Bytes(), errOut.String(), err
}

// TestGoldensVet runs go vet over the golden packages. It names them one by
// one: the go command's ./... patterns skip directories named testdata.
func TestGoldensVet(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs go vet")
	}
	var pkgs []string
	for dir := range protoDirs(t) {
		if files, _ := filepath.Glob(filepath.Join(repoRoot, dir, "*.go")); len(files) > 0 {
			pkgs = append(pkgs, "./"+dir)
		}
	}
	cmd := exec.Command("go", append([]string{"vet"}, sorted(pkgs)...)...)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("go vet %v: %v\n%s", pkgs, err, out)
	}
}

func TestModuleVersion(t *testing.T) {
	tests := []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{
			name: "go install @version",
			info: debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "v1.2.3"}},
			want: "v1.2.3",
		},
		{
			name: "checkout",
			info: debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "(devel)"}},
			want: "(devel)",
		},
		{
			name: "tool of another module",
			info: debug.BuildInfo{
				Main: debug.Module{Path: "example.com/app", Version: "(devel)"},
				Deps: []*debug.Module{{Path: "golang.org/x/net", Version: "v0.1.0"}, {Path: modulePath, Version: "v1.4.0"}},
			},
			want: "v1.4.0",
		},
		{
			name: "replaced by a directory",
			info: debug.BuildInfo{
				Main: debug.Module{Path: "example.com/app"},
				Deps: []*debug.Module{{Path: modulePath, Version: "v1.4.0", Replace: &debug.Module{Path: "../protograin"}}},
			},
			want: "v1.4.0 (replaced by ../protograin)",
		},
		{
			name: "unknown",
			info: debug.BuildInfo{Main: debug.Module{Path: "example.com/app"}},
			want: "(devel)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := moduleVersion(&tt.info); got != tt.want {
				t.Errorf("moduleVersion = %q, want %q", got, tt.want)
			}
		})
	}
}
