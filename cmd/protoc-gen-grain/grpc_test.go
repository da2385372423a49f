package main

import (
	"testing"

	gengo "google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
)

// grpcGolden is the proto of the golden of grpc=true. It is outside
// testdata/, where buf generate, which gives every file the parameters of
// buf.gen.yaml, would regenerate it without grpc=true.
const grpcGolden = "cmd/protoc-gen-grain/internal/grpcgolden/counter.proto"

// TestGRPCGolden checks the golden of the grpc=true parameter, and the
// protoc-gen-go output next to it, which buf generate does not make
// either: -update rewrites both. The protoc-gen-go-grpc output there is
// checked in as that plugin wrote it (see the package's doc.go); the
// package compiles, so no name of the two plugins clashes, and its test
// serves one type both as a gRPC server and as a grain.
func TestGRPCGolden(t *testing.T) {
	files := compile(t, grpcGolden)
	resp, err := runPlugin(request(files, genParameter+",grpc=true"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetError() != "" || len(resp.GetFile()) != 1 {
		t.Fatalf("error %q, %d files; want one file", resp.GetError(), len(resp.GetFile()))
	}
	checkGolden(t, resp.GetFile()[0].GetName(), []byte(resp.GetFile()[0].GetContent()))

	// protoc-gen-go, run as its main function runs it.
	gen, err := protogen.Options{}.New(request(files, genParameter))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range gen.Files {
		if f.Generate {
			gengo.GenerateFile(gen, f)
		}
	}
	gen.SupportedFeatures = gengo.SupportedFeatures
	goResp := gen.Response()
	if goResp.GetError() != "" || len(goResp.GetFile()) != 1 {
		t.Fatalf("protoc-gen-go: error %q, %d files; want one file", goResp.GetError(), len(goResp.GetFile()))
	}
	checkGolden(t, goResp.GetFile()[0].GetName(), []byte(goResp.GetFile()[0].GetContent()))
}
