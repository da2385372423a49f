// Command protoc-gen-grain is a protoc and buf plugin that generates typed
// grain code for proto services: for every .proto file with services it
// writes <file>_grain.pb.go next to protoc-gen-go's <file>.pb.go, holding per
// service a grain interface, an embeddable Unimplemented type, a typed client
// and a constructor for the cluster.Kind a node hosts.
//
// Make it a tool of your module, so that it is built from the same
// protograin version as the cluster package your code compiles against:
//
//	go get -tool github.com/protograin/protograin/cmd/protoc-gen-grain
//	go get -tool google.golang.org/protobuf/cmd/protoc-gen-go
//
// Then use it from buf.gen.yaml (version v2):
//
//	plugins:
//	  - local: ["go", "tool", "protoc-gen-go"]
//	    out: .
//	    opt: paths=source_relative
//	  - local: ["go", "tool", "protoc-gen-grain"]
//	    out: .
//	    opt: paths=source_relative
//
// or, with the binary on PATH, from protoc:
//
//	protoc --go_out=. --go_opt=paths=source_relative \
//	       --grain_out=. --grain_opt=paths=source_relative counter.proto
//
// Parameters are the ones protoc-gen-go takes for placing files (paths=,
// module=, M<file>=<import path>, where <file> is the path of a .proto
// file), and grpc=true; any other parameter is an error, including the
// ones protoc-gen-go takes for its own code (annotate_code,
// default_api_level, apilevelM<file>). Only unary RPCs are supported: a
// streaming RPC fails the run with an error that names the file, service
// and method, and nothing is written. Errors about a service, a method or
// an option give its position as compilers do, file:line:column (the file
// alone when the request has no source info).
//
// Set grpc=true when protoc-gen-go-grpc writes into the same Go packages:
// the generated names then yield to the ones protoc-gen-go-grpc declares
// (<S>Client, New<S>Client, <S>Server, Unimplemented<S>Server,
// Unsafe<S>Server, Register<S>Server, <S>_ServiceDesc,
// <S>_<M>_FullMethodName, and <S>_<M>Client and <S>_<M>Server for
// streaming RPCs), by the renaming rule of names.go: the grain client of a
// service Counter becomes CounterClient_, made by NewCounterClient_. The
// golden is internal/grpcgolden.
//
// A service may name a typed state message and a flush mode, and an RPC may
// be marked read-only or one-way, with the options of
// protograin/v1/options.proto (in the protograin module's proto/ directory;
// see docs/state-options.md; --help lists them). They are read only in
// files that import options.proto, directly or not: in other files, an
// option with the same field number belongs to another option set. The
// kind then carries NewState, Flush and ReadOnly, the client's method for a
// one-way RPC returns only an error, and a typed accessor
// <Service>StateOf(ctx) returns the state message during a call.
// Options that name no message or an unknown flush mode, and one_way on an
// RPC whose response type is not google.protobuf.Empty, fail the run,
// naming the option's position and the service and method.
//
// Generate all files of one Go package in one run: generated names that
// collide with names declared in other files of the package are resolved
// across the files of the run, and a run cannot see the files of another.
// buf runs the plugin once per directory by default, which suffices when a
// Go package's .proto files share a directory. When they do not (say proto
// packages a.v1 and b.v1, in different directories, with one go_package),
// set "strategy: all" on the plugin in buf.gen.yaml, or give protoc all the
// files at once; otherwise two services named Cart both generate CartKind,
// and the Go package does not compile. The rules are in names.go.
//
// The generated code imports github.com/protograin/protograin/cluster and
// must compile against a cluster package of the same protograin version; see
// cluster.SupportPackageIsVersion1.
//
// This package owns code generation only. It must not import the runtime or
// the cluster packages: it only names them in the code it writes. It imports
// the generated options package (proto/protograin/v1) to read the options.
package main
