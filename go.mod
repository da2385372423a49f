module github.com/protograin/protograin

go 1.24.0

tool google.golang.org/protobuf/cmd/protoc-gen-go

require (
	go.etcd.io/bbolt v1.4.3
	google.golang.org/protobuf v1.36.12
)

require golang.org/x/sys v0.29.0 // indirect
