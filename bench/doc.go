// Package bench measures the protograin runtime side by side with
// protoactor-go (github.com/asynkron/protoactor-go), the actor runtime
// protograin is compared against.
//
// This package's code lives in _test.go files: the benchmarks, one adapter
// per peer (a "system" that spawns the actors each scenario needs), and a
// smoke test that runs every scenario on every peer at a tiny size, so a
// broken adapter fails `go test` instead of hanging a benchmark. The scenarios are in-process
// ping-pong, request/response round trips, spawn and stop, and the memory
// held by idle actors. run.sh runs them all and compares the peers with
// benchstat; docs/benchmarks.md records the results.
//
// bench is a separate Go module so that the main module never depends on
// protoactor-go, and so that `go test ./...` in the main module does not run
// these benchmarks. Nothing in the main module may import this package.
package bench
