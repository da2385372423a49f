// Package counterpb holds the code generated from counter.proto, the
// Counter and Summary services the examples run: their messages
// (protoc-gen-go) and their grain interfaces, clients and kinds
// (protoc-gen-grain). Regenerate it with
// `go tool -modfile=tools/go.mod buf generate` at the repository root.
package counterpb
