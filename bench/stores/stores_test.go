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

// opener opens a fresh, empty store for one benchmark and closes it when
// the benchmark ends.
type opener struct {
	name string
	open func(b *testing.B) storage.Store
}

// openers are the stores, durable ones first. pgstore's pool has a
// connection per caller of the widest run.
var openers = []opener{
	{"bolt", func(b *testing.B) storage.Store {
		s, err := boltstore.Open(filepath.Join(b.TempDir(), "grains.db"), boltstore.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}},
	{"postgres", func(b *testing.B) storage.Store { return pgtest.Open(b, maxCallers) }},
	{"redis-fsync", func(b *testing.B) storage.Store { return redistest.OpenOn(b, redistest.Start(b, true)) }},
	{"redis-memory", func(b *testing.B) storage.Store { return redistest.Open(b) }},
	{"memory", func(b *testing.B) storage.Store {
		s := memstore.New()
		b.Cleanup(func() { s.Close() })
		return s
	}},
}

// maxCallers is the widest run's number of goroutines.
const maxCallers = 16

// each runs bench for every store and number of callers, with b.N split
// between the callers, each on a grain of its own that prepare, if not
// nil, readies before the clock starts, and reports the operations per
// second.
func each(b *testing.B, unit string, prepare func(s storage.Store, grain storage.Key) error, bench func(b *testing.B, s storage.Store, grain storage.Key, n int)) {
	for _, o := range openers {
		for _, callers := range []int{1, maxCallers} {
			b.Run(fmt.Sprintf("store=%s/callers=%d", o.name, callers), func(b *testing.B) {
				s := o.open(b)
				grains := make([]storage.Key, callers)
				for c := range grains {
					grains[c] = storage.Key{Kind: "bench.Counter", Identity: fmt.Sprint("grain-", c)}
					if prepare != nil {
						if err := prepare(s, grains[c]); err != nil {
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
					wg.Go(func() { bench(b, s, grain, n) })
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
			})
		}
	}
}

// BenchmarkCommit commits one change, an entry of 16 bytes, to a grain per
// caller, over and over, each commit expecting the version of the last.
func BenchmarkCommit(b *testing.B) {
	value := []byte("0123456789abcdef")
	each(b, "commits/s", nil, func(b *testing.B, s storage.Store, grain storage.Key, n int) {
		var v storage.Version
		for range n {
			next, err := s.Commit(context.Background(), grain, v, []storage.Change{{Key: "total", Value: value}})
			if err != nil {
				b.Error(err)
				return
			}
			v = next
		}
	})
}

// BenchmarkLoad loads a grain per caller, each with ten entries of 16
// bytes, over and over.
func BenchmarkLoad(b *testing.B) {
	changes := make([]storage.Change, 10)
	for i := range changes {
		changes[i] = storage.Change{Key: fmt.Sprint("entry-", i), Value: []byte("0123456789abcdef")}
	}
	prepare := func(s storage.Store, grain storage.Key) error {
		_, err := s.Commit(context.Background(), grain, 0, changes)
		return err
	}
	each(b, "loads/s", prepare, func(b *testing.B, s storage.Store, grain storage.Key, n int) {
		for range n {
			if entries, _, err := s.Load(context.Background(), grain); err != nil || len(entries) != len(changes) {
				b.Errorf("Load: %d entries, %v; want %d", len(entries), err, len(changes))
				return
			}
		}
	})
}
