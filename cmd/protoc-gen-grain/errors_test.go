package main

import (
	"testing"
)

func TestStreamingRPCsAreRejected(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{
			file: "testdata/errors/client_streaming.proto",
			want: "protoc-gen-grain: testdata/errors/client_streaming.proto: service protograin.testdata.errors.v1.Svc method Watch: client streaming is not supported for grains yet",
		},
		{
			file: "testdata/errors/server_streaming.proto",
			want: "protoc-gen-grain: testdata/errors/server_streaming.proto: service protograin.testdata.errors.v1.Svc method Watch: server streaming is not supported for grains yet",
		},
		{
			file: "testdata/errors/bidi_streaming.proto",
			want: "protoc-gen-grain: testdata/errors/bidi_streaming.proto: service protograin.testdata.errors.v1.Svc method Watch: bidirectional streaming is not supported for grains yet",
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
			want:  `unknown parameter "verbose": protoc-gen-grain takes only paths=, module= and M<file>= (see --help)`,
		},
		{
			param: "simple",
			want:  `unknown parameter "simple": protoc-gen-grain takes only paths=, module= and M<file>= (see --help)`,
		},
		{
			// protogen checks the parameters it owns; the plugin passes its
			// error through unchanged.
			param: "paths=nowhere",
			want:  `unknown path type "nowhere": want "import" or "source_relative"`,
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
