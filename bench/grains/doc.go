// Package grains measures typed grain calls side by side: protograin's
// generated client (protoc-gen-grain, package protograinpb) over its cluster,
// and protoactor-go's generated grain client (protoc-gen-go-grain, package
// protoactorpb) over its cluster, with the same counter service
// (rpc Add(AddRequest) returns (AddResponse)), in one test binary.
//
// The scenarios are local calls (caller and grain on one node), cross-node
// calls between two OS processes on loopback, activation of fresh identities
// across the two processes, one-way messages between the processes, and the
// memory an idle grain holds. The second process is this test binary run
// again (TestHostProcess); it hosts the grains and prints its addresses.
// Everything lives in _test.go files; run.sh runs the benchmarks and compares
// the peers with benchstat, and docs/benchmarks-grains.md records the results.
//
// It imports protograin's cluster package and protoactor-go; nothing in the
// main module may import it, and it must not import the rest of bench/.
package grains
