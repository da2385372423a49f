package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/boltstore"
)

func Example() {
	dir, _ := os.MkdirTemp("", "boltstore-example")
	defer os.RemoveAll(dir)
	store, err := boltstore.Open(filepath.Join(dir, "grains.db"), boltstore.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	ctx := context.Background()
	key := storage.Key{Kind: "demo.Counter", Identity: "c1"}
	v, _ := store.Commit(ctx, key, 0, []storage.Change{{Key: "n", Value: []byte("1")}})
	fmt.Println("committed version", v)

	// A second writer that also loaded version 0 is refused.
	_, err = store.Commit(ctx, key, 0, []storage.Change{{Key: "n", Value: []byte("stale")}})
	fmt.Println("stale commit refused:", errors.Is(err, storage.ErrConflict))

	entries, v, _ := store.Load(ctx, key)
	fmt.Printf("n=%s at version %d\n", entries["n"], v)
	// Output:
	// committed version 1
	// stale commit refused: true
	// n=1 at version 1
}
