package state_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// TestAgainstModel drives a Buffer with a seeded random mix of Set, Remove,
// Flush, Discard and reload, and checks after each step that it shows what a
// plain map model says, and that the store holds the last flushed state.
func TestAgainstModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			s := memstore.New()
			t.Cleanup(func() { s.Close() })
			b := load(t, s, state.Config{})
			committed := map[string]string{} // what the store should hold
			view := map[string]string{}      // what the buffer should show
			for step := range 200 {
				key := fmt.Sprint("k", rng.IntN(8))
				switch op := rng.IntN(10); {
				case op < 5:
					value := fmt.Sprint(step)
					mustSet(t, b, key, value)
					view[key] = value
				case op < 8:
					if err := b.Remove(key); err != nil {
						t.Fatal(err)
					}
					delete(view, key)
				case op < 9:
					mustFlush(t, b)
					committed = maps.Clone(view)
				default:
					if rng.IntN(2) == 0 {
						b.Discard()
					} else { // a new activation loses what was buffered
						b = load(t, s, state.Config{})
					}
					view = maps.Clone(committed)
				}
				wantEntries(t, b, view)
				// Dirty may be true with nothing changed (a Set to the
				// stored value), never false with something changed.
				if !b.Dirty() && !maps.Equal(view, committed) {
					t.Fatalf("step %d: clean buffer, but it shows %v over stored %v", step, view, committed)
				}
			}
			wantStored(t, s, committed)
		})
	}
}
