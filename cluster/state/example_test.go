package state_test

import (
	"context"
	"fmt"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// A grain's call with exactly-once handling: look the call up, run it if it
// is new, record the reply with the state change, flush, then reply.
func Example() {
	ctx := context.Background()
	store := memstore.New()
	defer store.Close()
	counter := storage.Key{Kind: "demo.Counter", Identity: "c1"}

	add := func(client string, seq uint64) string {
		b, err := state.Load(ctx, store, counter, state.Config{})
		if err != nil {
			return err.Error()
		}
		if reply, ok, err := b.Seen(client, seq); err != nil {
			return err.Error()
		} else if ok {
			return "retry, earlier reply: " + string(reply)
		}
		n := 0
		if v, ok := b.TryGet("n"); ok {
			fmt.Sscan(string(v), &n)
		}
		n++
		reply := fmt.Sprint("n=", n)
		b.Set("n", []byte(fmt.Sprint(n)))
		b.Record(client, seq, []byte(reply))
		if err := b.Flush(ctx); err != nil {
			return err.Error()
		}
		return reply
	}

	fmt.Println(add("client-1", 1))
	fmt.Println(add("client-1", 1)) // the reply was lost; the client retries
	fmt.Println(add("client-1", 2))
	// Output:
	// n=1
	// retry, earlier reply: n=1
	// n=2
}
