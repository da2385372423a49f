module github.com/protograin/protograin

go 1.24.0

tool google.golang.org/protobuf/cmd/protoc-gen-go

require (
	github.com/jackc/pgx/v5 v5.8.0
	go.etcd.io/bbolt v1.4.3
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.2 // indirect
	golang.org/x/sync v0.17.0 // indirect
	golang.org/x/sys v0.29.0 // indirect
	golang.org/x/text v0.29.0 // indirect
)
