// Package counterpb holds the code generated from counter.proto, the
// Counter service the examples run: its messages (protoc-gen-go) and its
// grain interface, client and kind (protoc-gen-grain). Regenerate it with
// `go tool -modfile=tools/go.mod buf generate` at the repository root.
package counterpb
