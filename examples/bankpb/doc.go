// Package bankpb holds the code generated from bank.proto, the Account
// service of the bank example: its messages (protoc-gen-go) and its grain
// interface, client, kind and typed state access (protoc-gen-grain).
// Regenerate it with `go tool -modfile=tools/go.mod buf generate` at the
// repository root.
package bankpb
