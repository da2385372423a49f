// Package grpcgolden is the golden of protoc-gen-grain's grpc=true
// parameter: counter.proto generated into one Go package by protoc-gen-go
// (counter.pb.go), protoc-gen-go-grpc (counter_grpc.pb.go) and
// protoc-gen-grain with grpc=true (counter_grain.pb.go), whose client is
// CounterClient_ because protoc-gen-go-grpc's is CounterClient. That the
// package compiles shows that no name clashes; its test serves the service
// over gRPC from a grain on a cluster node.
//
// It is outside testdata/ because buf generate gives every file there the
// same parameters. The tests of protoc-gen-grain check counter.pb.go and
// counter_grain.pb.go, and rewrite them with
//
//	go test ./cmd/protoc-gen-grain -run TestGRPCGolden -update
//
// counter_grpc.pb.go is checked in as protoc-gen-go-grpc v1.6.2 wrote it,
// from the repository root:
//
//	protoc --go-grpc_out=. --go-grpc_opt=module=github.com/protograin/protograin \
//	       cmd/protoc-gen-grain/internal/grpcgolden/counter.proto
//
// It must not import anything of protograin but cluster.
package grpcgolden
