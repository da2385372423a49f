package bench

import (
	"context"
	"flag"
	"fmt"
	goruntime "runtime"
	"testing"
)

// idleActors is how many actors BenchmarkIdleMemory keeps in memory at once.
// The goal is stated for a million; -actors=100000 makes a quick run.
var idleActors = flag.Int("actors", 1_000_000, "number of idle actors BenchmarkIdleMemory spawns per peer")

// pingPongBatch is how many pings a pinger keeps in flight, as in
// protoactor-go's own in-process benchmark.
const pingPongBatch = 100

// forEachPeer runs bench once per peer as a sub-benchmark named
// prefix+"impl="+name, so benchstat -col /impl puts the peers side by side.
func forEachPeer(b *testing.B, prefix string, bench func(b *testing.B, sys system)) {
	for _, p := range peers() {
		b.Run(prefix+"impl="+p.name, func(b *testing.B) {
			sys := p.newSystem(b)
			defer sys.close()
			bench(b, sys)
		})
	}
}

// BenchmarkPingPong measures in-process message throughput: pairs of actors
// bounce a ping back and forth, batched as protoactor-go's own benchmark
// does. One op is one message (a ping or a pong); msgs/s counts both.
func BenchmarkPingPong(b *testing.B) {
	for _, n := range []int{1, 2 * goruntime.GOMAXPROCS(0)} {
		forEachPeer(b, fmt.Sprintf("pairs=%d/", n), func(b *testing.B, sys system) {
			b.ReportAllocs()
			ps, err := sys.newPairs(n, pingPongBatch)
			if err != nil {
				b.Fatal(err)
			}
			// Each round is one ping and one pong, so b.N messages take
			// b.N/2 rounds spread over the pairs.
			rounds := max(1, b.N/(2*n))
			b.ResetTimer()
			ps.run(rounds)
			b.StopTimer()
			msgs := float64(2 * n * rounds)
			b.ReportMetric(msgs/b.Elapsed().Seconds(), "msgs/s")
			ps.stop()
		})
	}
}

// BenchmarkRequest measures request/response round trips to one echo actor,
// from one caller and from many concurrent callers. One op is one round trip.
func BenchmarkRequest(b *testing.B) {
	const parallelism = 8 // callers per GOMAXPROCS in the concurrent case
	for _, callers := range []int{1, parallelism * goruntime.GOMAXPROCS(0)} {
		forEachPeer(b, fmt.Sprintf("callers=%d/", callers), func(b *testing.B, sys system) {
			r, err := sys.newEcho()
			if err != nil {
				b.Fatal(err)
			}
			defer r.stop()
			// One context for the whole run, as a caller with a request-scoped
			// context would have; protoactor-go takes a timeout per call instead.
			ctx, cancel := context.WithTimeout(context.Background(), protoactorTimeout)
			defer cancel()
			msg := &ping{}
			b.ReportAllocs()
			b.ResetTimer()
			if callers == 1 {
				for range b.N {
					roundTrip(b, ctx, r, msg)
				}
			} else {
				b.SetParallelism(parallelism)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						roundTrip(b, ctx, r, msg)
					}
				})
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rtt/s")
		})
	}
}

func roundTrip(b *testing.B, ctx context.Context, r requester, msg *ping) {
	resp, err := r.request(ctx, msg)
	if err != nil {
		b.Error(err) // Error, not Fatal: this may run on a RunParallel goroutine
		return
	}
	if resp != any(msg) {
		b.Errorf("bench: echo answered %#v, want the request back", resp)
	}
}

// BenchmarkSpawnStop measures an actor's whole life: spawn it, stop it and
// wait until it has stopped. One op is one actor.
func BenchmarkSpawnStop(b *testing.B) {
	forEachPeer(b, "", func(b *testing.B, sys system) {
		spawnStop := sys.spawner()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := spawnStop(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkIdleMemory measures what an idle actor costs: the growth of heap
// and goroutine stacks, after garbage collection, when -actors actors have
// been spawned and have each handled one message. Run it with -benchtime=1x:
// each op spawns all the actors. It reports B/actor and hides ns/op, which
// would only time the spawning and the garbage collections.
func BenchmarkIdleMemory(b *testing.B) {
	n := *idleActors
	if n <= 0 {
		b.Fatalf("bench: -actors=%d, want a positive number", n)
	}
	forEachPeer(b, "", func(b *testing.B, sys system) {
		var total uint64
		for range b.N {
			set := sys.newIdle(n)
			before := liveBytes()
			if err := spawnIdle(set, n); err != nil {
				b.Fatal(err)
			}
			after := liveBytes()
			goruntime.KeepAlive(set)
			if after > before {
				total += after - before
			}
			set.stop()
		}
		b.ReportMetric(float64(total)/float64(b.N*n), "B/actor")
		b.ReportMetric(0, "ns/op")
	})
}

// idleChunk is how many idle actors are spawned before waiting for them to
// handle their message. Spawning all at once would have up to n goroutines
// alive together, and the Go runtime never frees a goroutine's descriptor:
// the measurement would include a burst's high-water mark of goroutines
// instead of what an idle actor holds.
const idleChunk = 1000

// spawnIdle spawns the n actors of set, idleChunk at a time.
func spawnIdle(set idleSet, n int) error {
	for i := range n {
		if err := set.spawn(i); err != nil {
			return err
		}
		if (i+1)%idleChunk == 0 || i == n-1 {
			set.wait()
		}
	}
	return nil
}

// liveBytes returns the bytes of live heap objects and goroutine stacks after
// a full garbage collection. Two collections let finalizers and sync.Pool's
// victim cache drain, so the figure is what the program really holds.
func liveBytes() uint64 {
	goruntime.GC()
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}
