package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

func TestStreamingRPCsAreRejected(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{
			file: "testdata/errors/client_streaming.proto",
			want: "protoc-gen-grain: testdata/errors/client_streaming.proto:13:3: service protograin.testdata.errors.v1.Svc method Watch: client streaming is not supported for grains yet",
		},
		{
			file: "testdata/errors/server_streaming.proto",
			want: "protoc-gen-grain: testdata/errors/server_streaming.proto:13:3: service protograin.testdata.errors.v1.Svc method Watch: server streaming is not supported for grains yet",
		},
		{
			file: "testdata/errors/bidi_streaming.proto",
			want: "protoc-gen-grain: testdata/errors/bidi_streaming.proto:13:3: service protograin.testdata.errors.v1.Svc method Watch: bidirectional streaming is not supported for grains yet",
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			resp, err := runPlugin(request(compile(t, tt.file), "paths=source_relative"))
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetError(); got != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", got, tt.want)
			}
			// The file's unary service must not be generated on its own: a
			// failed run writes nothing.
			if len(resp.GetFile()) != 0 {
				t.Errorf("failed run returned %d files, want none", len(resp.GetFile()))
			}
		})
	}
}

// TestFailedFileFailsTheWholeRun checks that a streaming RPC in one file
// stops generation of the other files of the same run too, so that a package
// is never left half generated.
func TestFailedFileFailsTheWholeRun(t *testing.T) {
	files := compile(t, "testdata/unary/unary.proto", "testdata/errors/server_streaming.proto")
	resp, err := runPlugin(request(files, "paths=source_relative"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetError() == "" || len(resp.GetFile()) != 0 {
		t.Errorf("got error %q and %d files, want an error and no files", resp.GetError(), len(resp.GetFile()))
	}
}

func TestBadParameters(t *testing.T) {
	tests := []struct {
		param string
		want  string
	}{
		{
			param: "paths=source_relative,verbose=true",
			want:  `unknown parameter "verbose": protoc-gen-grain takes only paths=, module=, grpc= and M<file>.proto= (see --help)`,
		},
		{
			param: "simple",
			want:  `unknown parameter "simple": protoc-gen-grain takes only paths=, module=, grpc= and M<file>.proto= (see --help)`,
		},
		{
			// protogen would say `unknown path type "nowhere"`; the plugin
			// checks the value first, so that every bad value gets an error
			// of one form.
			param: "paths=nowhere",
			want:  `parameter paths=nowhere: want import or source_relative`,
		},
		{
			param: "paths=",
			want:  `parameter paths needs a value: want import or source_relative`,
		},
		// protogen would take the rest silently.
		{
			// module=, capitalised: protogen would take it as an M<file>
			// mapping of the file "odule".
			param: "Module=github.com/protograin/protograin",
			want:  `unknown parameter "Module": protoc-gen-grain takes only paths=, module=, grpc= and M<file>.proto= (see --help)`,
		},
		{
			param: "=x",
			want:  `parameter "=x" has no name`,
		},
		{
			param: "annotate_code",
			want:  `unknown parameter "annotate_code": protoc-gen-grain takes only paths=, module=, grpc= and M<file>.proto= (see --help)`,
		},
		{
			param: "annotate_code=true",
			want:  `unknown parameter "annotate_code": protoc-gen-grain takes only paths=, module=, grpc= and M<file>.proto= (see --help)`,
		},
		{
			param: "default_api_level=API_OPAQUE",
			want:  `unknown parameter "default_api_level": protoc-gen-grain takes only paths=, module=, grpc= and M<file>.proto= (see --help)`,
		},
		{
			param: "apilevelMtestdata/unary/unary.proto=API_OPAQUE",
			want:  `unknown parameter "apilevelMtestdata/unary/unary.proto": protoc-gen-grain takes only paths=, module=, grpc= and M<file>.proto= (see --help)`,
		},
		{
			param: "module",
			want:  `parameter module needs a value: want the Go import path prefix to strip from output paths`,
		},
		{
			param: "grpc",
			want:  `parameter grpc needs a value: want true or false`,
		},
		{
			// flag's own error would be "parse error".
			param: "grpc=yes",
			want:  `parameter grpc=yes: want true or false`,
		},
		{
			param: "paths=source_relative,grpc=maybe",
			want:  `parameter grpc=maybe: want true or false`,
		},
		{
			param: "Mtestdata/unary/unary.proto=",
			want:  `parameter Mtestdata/unary/unary.proto needs a value: want the Go import path of testdata/unary/unary.proto`,
		},
	}
	files := compile(t, "testdata/unary/unary.proto")
	for _, tt := range tests {
		t.Run(tt.param, func(t *testing.T) {
			_, err := runPlugin(request(files, tt.param))
			if err == nil || err.Error() != tt.want {
				t.Errorf("error\n got: %v\nwant: %s", err, tt.want)
			}
		})
	}
}

// TestOutputPaths checks that protogen's placement parameters apply to the
// _grain.pb.go file as they do to protoc-gen-go's output.
func TestOutputPaths(t *testing.T) {
	files := compile(t, "testdata/unary/unary.proto")
	tests := []struct {
		param string
		want  string
	}{
		{"paths=source_relative", "testdata/unary/unary_grain.pb.go"},
		{"", "github.com/protograin/protograin/testdata/unary/unary_grain.pb.go"},
		{"paths=import", "github.com/protograin/protograin/testdata/unary/unary_grain.pb.go"},
		{"module=github.com/protograin/protograin", "testdata/unary/unary_grain.pb.go"},
		{"Mtestdata/unary/unary.proto=example.com/elsewhere;echo", "example.com/elsewhere/unary_grain.pb.go"},
		// Empty parameters, as from a trailing comma, are ignored.
		{"module=github.com/protograin/protograin,,grpc=false,", "testdata/unary/unary_grain.pb.go"},
	}
	for _, tt := range tests {
		t.Run(tt.param, func(t *testing.T) {
			resp, err := runPlugin(request(files, tt.param))
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetError() != "" {
				t.Fatal(resp.GetError())
			}
			if len(resp.GetFile()) != 1 || resp.GetFile()[0].GetName() != tt.want {
				var names []string
				for _, f := range resp.GetFile() {
					names = append(names, f.GetName())
				}
				t.Errorf("files %v, want [%s]", names, tt.want)
			}
		})
	}
}

// TestCommentsAreCleaned: a proto comment may hold a byte order mark, NUL
// or invalid UTF-8, none of which Go source may hold. The generated comment
// has U+FFFD for invalid UTF-8 and drops the others.
func TestCommentsAreCleaned(t *testing.T) {
	req := request(compile(t, "testdata/unary/unary.proto"), genParameter)
	file := req.ProtoFile[len(req.ProtoFile)-1]
	set := false
	for _, loc := range file.GetSourceCodeInfo().GetLocation() {
		path := loc.GetPath()
		switch {
		case len(path) == 2 && path[0] == 6 && path[1] == 0: // service 0
			loc.LeadingComments = proto.String(" Echo \ufeffhas a BOM,\x00 a NUL and caf\xe9 in Latin-1.\n")
			set = true
		case len(path) == 4 && path[0] == 6 && path[1] == 0 && path[2] == 2 && path[3] == 0: // its method 0
			loc.LeadingComments = proto.String(" Say \xff\xfe\ufeff.\n")
		}
	}
	if !set {
		t.Fatal("no source location for the service; the test does not test what it says")
	}
	resp, err := runPlugin(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetError() != "" || len(resp.GetFile()) != 1 {
		t.Fatalf("error %.300q, %d files; want one file", resp.GetError(), len(resp.GetFile()))
	}
	src := resp.GetFile()[0].GetContent()
	for _, want := range []string{"// Echo has a BOM, a NUL and caf\ufffd in Latin-1.", "// Say \ufffd."} {
		if !strings.Contains(src, want) {
			t.Errorf("generated code lacks %q", want)
		}
	}
}

// TestRenderErrorNamesTheService: should the generated code fail to
// format, which is a bug, the error names the service whose code fails,
// without the source listing the formatter's error comes with.
func TestRenderErrorNamesTheService(t *testing.T) {
	gen := plugin(t, "testdata/multiservice/multi.proto")
	file := gen.FilesByPath["testdata/multiservice/multi.proto"]
	names := packageNames(gen.Files, hasStateOption, false)
	configs, err := fileConfigs(gen, file)
	if err != nil {
		t.Fatal(err)
	}
	names.services[servicesByName(gen)["protograin.testdata.multiservice.v1.Second"]].Kind = "Second Kind" // not an identifier
	err = generateFile(gen, file, names, configs)
	const prefix = "protoc-gen-grain: testdata/multiservice/multi.proto:14:1: service protograin.testdata.multiservice.v1.Second: " +
		"generated Go code does not format ("
	if err == nil || !strings.HasPrefix(err.Error(), prefix) || strings.Contains(err.Error(), "\n") || len(err.Error()) > len(prefix)+100 {
		t.Errorf("error %q, want one line starting %q", err, prefix)
	}
}

// TestErrorPositionFallsBack: an error about a service or method points at
// the option it is about (TestBadOptionsAreRejected), else at the service
// or method, else, without source info, as in a descriptor set built
// without it, at the file alone.
func TestErrorPositionFallsBack(t *testing.T) {
	const svc = "service protograin.testdata.errors.v1.Svc"
	tests := []struct {
		name string
		file string
		// keep says which source locations the request keeps.
		keep func(path []int32) bool
		want string
	}{
		{
			name: "no option location",
			file: "testdata/errors/state_missing.proto",
			keep: func(path []int32) bool { return len(path) <= 2 }, // the service, not its options
			want: "protoc-gen-grain: testdata/errors/state_missing.proto:11:1: " + svc + `: option (protograin.v1.grain).state ` +
				`names "Missing", which is not a message in this file or the files it imports`,
		},
		{
			name: "no source info",
			file: "testdata/errors/state_missing.proto",
			keep: func([]int32) bool { return false },
			want: "protoc-gen-grain: testdata/errors/state_missing.proto: " + svc + `: option (protograin.v1.grain).state ` +
				`names "Missing", which is not a message in this file or the files it imports`,
		},
		{
			name: "method without source info",
			file: "testdata/errors/one_way_response.proto",
			keep: func([]int32) bool { return false },
			want: "protoc-gen-grain: testdata/errors/one_way_response.proto: " + svc + " method Notify: " +
				"option (protograin.v1.method).one_way needs the response type google.protobuf.Empty, " +
				"not protograin.testdata.errors.v1.Msg",
		},
		{
			name: "streaming without source info",
			file: "testdata/errors/bidi_streaming.proto",
			keep: func([]int32) bool { return false },
			want: "protoc-gen-grain: testdata/errors/bidi_streaming.proto: " + svc + " method Watch: " +
				"bidirectional streaming is not supported for grains yet",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := request(compile(t, tt.file), genParameter)
			for _, f := range req.ProtoFile {
				info := f.GetSourceCodeInfo()
				kept := info.GetLocation()[:0]
				for _, loc := range info.GetLocation() {
					if tt.keep(loc.GetPath()) {
						kept = append(kept, loc)
					}
				}
				if len(kept) == 0 {
					f.SourceCodeInfo = nil
				} else {
					info.Location = kept
				}
			}
			resp, err := runPlugin(req)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetError(); got != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}
