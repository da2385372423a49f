// Package workersgolden calls the stateless workers golden of
// protoc-gen-grain (testdata/workers) on a real cluster node: the kind the
// generated NewQuoteKind builds must run four calls to one identity at once,
// as its service's stateless_workers option asks. It holds only tests.
package workersgolden
