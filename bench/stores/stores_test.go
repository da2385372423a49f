package stores

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/boltstore"
	"github.com/protograin/protograin/cluster/storage/memstore"
	"github.com/protograin/protograin/cluster/storage/pgstore/pgtest"
	"github.com/protograin/protograin/cluster/storage/redisstore/redistest"
)

// opener opens a fresh, empty store for one benchmark or test and closes
// it when that ends.
type opener struct {
	name string
	open func(tb testing.TB) storage.Store
}

// openers are the stores, durable ones first. pgstore's pool has a
// connection per caller of the widest run.
var openers = []opener{
	{"bolt", func(tb testing.TB) storage.Store {
		s, err := boltstore.Open(filepath.Join(tb.TempDir(), "grains.db"), boltstore.Config{})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s
	}},
	{"postgres", func(tb testing.TB) storage.Store { return pgtest.Open(tb, maxCallers) }},
	{"redis-fsync", func(tb testing.TB) storage.Store { return redistest.OpenOn(tb, redistest.Start(tb, true)) }},
	{"redis-memory", func(tb testing.TB) storage.Store { return redistest.Open(tb) }},
	{"memory", func(tb testing.TB) storage.Store {
		s := memstore.New()
		tb.Cleanup(func() { s.Close() })
		return s
	}},
}

// maxCallers is the widest run's number of goroutines.
const maxCallers = 16

// A workload is what a benchmark does on one grain: prepare, if not nil,
// readies the grain before the clock starts, and run does n operations on
// it.
type workload struct {
	prepare func(grain storage.Key) error
	run     func(grain storage.Key, n int) error
}

// each runs the workload that on makes of a store for every store and
// number of callers, with b.N split between the callers, each on a grain of
// its own, and reports the operations per second.
func each(b *testing.B, unit string, on func(tb testing.TB, s storage.Store) workload) {
	for _, o := range openers {
		for _, callers := range []int{1, maxCallers} {
			b.Run(fmt.Sprintf("store=%s/callers=%d", o.name, callers), func(b *testing.B) {
				w := on(b, o.open(b))
				grains := make([]storage.Key, callers)
				for c := range grains {
					grains[c] = storage.Key{Kind: accountKind, Identity: fmt.Sprint("grain-", c)}
					if w.prepare != nil {
						if err := w.prepare(grains[c]); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ResetTimer()
				var wg sync.WaitGroup
				for c, grain := range grains {
					n := b.N / callers
					if c < b.N%callers {
						n++
					}
					wg.Go(func() {
						if err := w.run(grain, n); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
			})
		}
	}
}

// commits is the workload of BenchmarkCommit.
func commits(_ testing.TB, s storage.Store) workload {
	return workload{run: func(grain storage.Key, n int) error { return commit(s, grain, n) }}
}

// loads is the workload of BenchmarkLoad.
func loads(_ testing.TB, s storage.Store) workload {
	return workload{
		prepare: func(grain storage.Key) error { return prepareLoad(s, grain) },
		run:     func(grain storage.Key, n int) error { return load(s, grain, n) },
	}
}

// commit commits one change, an entry of 16 bytes, to grain n times, each
// commit expecting the version of the last.
func commit(s storage.Store, grain storage.Key, n int) error {
	value := []byte("0123456789abcdef")
	var v storage.Version
	for range n {
		next, err := s.Commit(context.Background(), grain, v, []storage.Change{{Key: "total", Value: value}})
		if err != nil {
			return err
		}
		v = next
	}
	return nil
}

// loaded is what prepareLoad commits to a grain: ten entries of 16 bytes.
var loaded = func() []storage.Change {
	changes := make([]storage.Change, 10)
	for i := range changes {
		changes[i] = storage.Change{Key: fmt.Sprint("entry-", i), Value: []byte("0123456789abcdef")}
	}
	return changes
}()

// prepareLoad commits the entries that load reads.
func prepareLoad(s storage.Store, grain storage.Key) error {
	_, err := s.Commit(context.Background(), grain, 0, loaded)
	return err
}

// load loads grain n times, checking that it finds what prepareLoad
// committed.
func load(s storage.Store, grain storage.Key, n int) error {
	for range n {
		entries, _, err := s.Load(context.Background(), grain)
		if err != nil {
			return err
		}
		if len(entries) != len(loaded) {
			return fmt.Errorf("load %s: %d entries; want %d", grain, len(entries), len(loaded))
		}
	}
	return nil
}

// BenchmarkCommit commits one change to a grain per caller, over and over
// (see commit).
func BenchmarkCommit(b *testing.B) { each(b, "commits/s", commits) }

// BenchmarkLoad loads a grain per caller, each with ten entries of 16
// bytes, over and over.
func BenchmarkLoad(b *testing.B) { each(b, "loads/s", loads) }

// BenchmarkGrainCalls calls a grain per caller on a node whose store is the
// one measured (see deposits): each call is a grain call and the commit of
// the grain's state that precedes its reply.
func BenchmarkGrainCalls(b *testing.B) { each(b, "calls/s", deposits) }

// BenchmarkGrainCallsLargeReply is BenchmarkGrainCalls with replies of 1
// KiB: the commit after each call also writes the caller's exactly-once
// record, which holds its last 64 replies (docs/state.md).
func BenchmarkGrainCallsLargeReply(b *testing.B) { each(b, "calls/s", statements) }

// TestEveryStoreCommitsAndLoads runs what the benchmarks run, a few times
// on each store, so that a broken opener or a store that fails them fails
// go test instead of a benchmark run. Stores whose server is not there
// skip, as their own tests do.
func TestEveryStoreCommitsAndLoads(t *testing.T) {
	grain := storage.Key{Kind: accountKind, Identity: "smoke"}
	for _, o := range openers {
		t.Run(o.name, func(t *testing.T) {
			s := o.open(t)
			if err := commit(s, grain, 3); err != nil {
				t.Fatalf("commit: %v", err)
			}
			other := storage.Key{Kind: grain.Kind, Identity: "loaded"}
			if err := prepareLoad(s, other); err != nil {
				t.Fatalf("prepare the load: %v", err)
			}
			if err := load(s, other, 3); err != nil {
				t.Fatalf("load: %v", err)
			}
			for name, calls := range map[string]func(testing.TB, storage.Store) workload{"deposits": deposits, "statements": statements} {
				called := storage.Key{Kind: grain.Kind, Identity: name}
				if err := calls(t, s).run(called, 3); err != nil {
					t.Fatalf("grain calls, %s: %v", name, err)
				}
				entries, v, err := s.Load(context.Background(), called)
				if err != nil || v < 3 || len(entries) == 0 {
					t.Fatalf("after three %s the grain's state is %q at version %d (%v); want a commit each", name, entries, v, err)
				}
			}
		})
	}
}
