package redisstore_test

import (
	"context"
	"log"

	"github.com/protograin/protograin/cluster/storage/redisstore"
)

// Every node of a cluster opens the same server, with the same prefix, and
// passes the store in its cluster.Config.Store. The server should keep an
// append-only file synced on every write (appendonly yes, appendfsync
// always) for commits that outlive its crashes (see the package
// documentation). This example needs a server, so go test compiles it and
// does not run it.
func ExampleOpen() {
	ctx := context.Background()
	store, err := redisstore.Open(ctx, redisstore.Config{URL: "redis://127.0.0.1:6379/0", Prefix: "orders"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	// cfg := cluster.Config{Store: store, ...}; node, err := cluster.Start(ctx, cfg)
}
