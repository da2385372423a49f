package grains

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster"
)

// idleCounts lists the idle grain counts BenchmarkIdleMemory measures; a
// quick run keeps the default, run.sh adds 1,000,000.
var idleCounts = flag.String("grains.idle", "100000", "comma-separated numbers of idle grains BenchmarkIdleMemory activates per peer")

// idleProfileDir, when set, is where BenchmarkIdleMemory writes a heap
// profile taken while the idle grains are alive, named
// <peer>-idle-<count>.heap.pprof; its inuse_space shows what an idle grain
// is made of.
var idleProfileDir = flag.String("grains.idleprofile", "", "directory for heap profiles of BenchmarkIdleMemory taken with the idle grains alive")

// callerCounts are the numbers of concurrent callers of the call benchmarks.
var callerCounts = []int{1, 64}

// activationCallers is how many concurrent callers activate fresh grains.
const activationCallers = 64

// forEachPeer runs bench once per peer as a sub-benchmark named
// "impl="+name, so that benchstat -col /impl puts the peers side by side.
func forEachPeer(b *testing.B, bench func(b *testing.B, p peer)) {
	for _, p := range peers() {
		b.Run("impl="+p.name(), func(b *testing.B) { bench(b, p) })
	}
}

// benchCalls runs the callers=N sub-benchmarks against warmed clients: one
// op is one call; it reports calls/s and the p50, p99 and p99.9 latency.
func benchCalls(b *testing.B, clients []func() error) {
	for _, callers := range callerCounts {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			run, err := driveCalls(b.N, callers, clients)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			reportCalls(b, run)
		})
	}
}

// reportCalls reports throughput and latency quantiles of run.
func reportCalls(b *testing.B, run callRun) {
	q := quantiles(run.latencies, 0.50, 0.99, 0.999)
	b.ReportMetric(perSecond(len(run.latencies), run.elapsed), "calls/s")
	b.ReportMetric(micros(q[0]), "p50-µs")
	b.ReportMetric(micros(q[1]), "p99-µs")
	b.ReportMetric(micros(q[2]), "p99.9-µs")
}

// BenchmarkLocalCalls measures typed grain calls with caller and grain on
// one node, over warmIdentities active counters.
func BenchmarkLocalCalls(b *testing.B) { benchLocalCalls(b, context.Background()) }

// BenchmarkLocalCallsDeadline is BenchmarkLocalCalls with every call under
// a context that has a deadline (one context for the whole run, as a
// long-lived request scope would be). protograin runs the grain's turn on
// the caller only for calls whose context can never end (see
// cluster.Node.Invoke); this measures the other path, where each call is
// handed to the grain's worker and the caller can return at its deadline.
// protoactor-go's calls are the same as in BenchmarkLocalCalls: its
// generated client has no context, and every call carries its timeout.
func BenchmarkLocalCallsDeadline(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	benchLocalCalls(b, ctx)
}

// BenchmarkLocalCallsTurnOnCaller is BenchmarkLocalCallsDeadline with
// protograin's calls made cluster.WithTurnOnCaller: a caller that accepts
// returning late from a grain method that ignores its context runs an idle
// grain's turn itself, deadline or not. protoactor-go's calls are the same
// as in the other two.
func BenchmarkLocalCallsTurnOnCaller(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	benchLocalCalls(b, ctx, cluster.WithTurnOnCaller())
}

// benchLocalCalls runs the local call benchmarks on every peer, each call
// with ctx, and protograin's with opts.
func benchLocalCalls(b *testing.B, ctx context.Context, opts ...cluster.CallOption) {
	forEachPeer(b, func(b *testing.B, p peer) {
		n, err := p.local(b)
		if err != nil {
			b.Fatal(err)
		}
		if pn, ok := n.(*protograinNode); ok {
			pn.callOpts = opts
		}
		clients, err := warm(ctx, n, "local", warmIdentities)
		if err != nil {
			b.Fatal(err)
		}
		benchCalls(b, clients)
	})
}

// BenchmarkRemoteCalls measures typed grain calls between two OS processes
// on loopback: the grains live in a host process, the callers here.
func BenchmarkRemoteCalls(b *testing.B) {
	forEachPeer(b, func(b *testing.B, p peer) {
		n, err := p.join(b, startHost(b, p.name()))
		if err != nil {
			b.Fatal(err)
		}
		clients, err := warm(context.Background(), n, "remote", warmIdentities)
		if err != nil {
			b.Fatal(err)
		}
		benchCalls(b, clients)
	})
}

// BenchmarkActivation measures activation across processes: every op is the
// first call to a fresh identity, which the host process activates. It
// reports activations/s; run it with -benchtime=100000x for the issue's
// 100,000 identities.
func BenchmarkActivation(b *testing.B) {
	forEachPeer(b, func(b *testing.B, p peer) {
		n, err := p.join(b, startHost(b, p.name()))
		if err != nil {
			b.Fatal(err)
		}
		round := 0 // fresh identities for every run of the sub-benchmark
		b.Run(fmt.Sprintf("callers=%d", activationCallers), func(b *testing.B) {
			round++
			clients := make([]func() error, b.N)
			for i := range clients {
				clients[i] = n.client(context.Background(), identityName(fmt.Sprintf("fresh%d", round), i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			run, err := driveCalls(b.N, activationCallers, clients)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(perSecond(b.N, run.elapsed), "activations/s")
		})
	})
}

// BenchmarkOneWay measures messages between two processes, ping and pong
// both counted: one op is one message. protoactor-go sends actor messages
// between a pinger actor here and a pong actor in the host; protograin sends
// one-way grain messages (methods marked (protograin.v1.method).one_way)
// between a pinger grain here and a ponger grain in the host, so the calling
// node hosts the pinger kind for this benchmark. Each side keeps
// oneWayInFlight pings outstanding.
func BenchmarkOneWay(b *testing.B) {
	forEachPeer(b, func(b *testing.B, p peer) {
		n, err := p.join(b, startHost(b, p.name()))
		if err != nil {
			b.Fatal(err)
		}
		if err := n.exchange(2 * oneWayInFlight); err != nil { // warm-up: connections, activations
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("inflight=%d", oneWayInFlight), func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			err := n.exchange(b.N)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(perSecond(b.N, b.Elapsed()), "msgs/s")
		})
	})
}

// BenchmarkIdleMemory measures what an idle grain costs: it activates N
// counters on one node (callers in the same process), then reports the
// growth of heap and goroutine stacks per grain after a full collection.
// Everything the activations leave behind counts, on both sides: the grain,
// its mailbox and timers, and the node's tables and caches for it. Run it
// with -benchtime=1x: one op is the whole measurement.
func BenchmarkIdleMemory(b *testing.B) {
	counts, err := parseCounts(*idleCounts)
	if err != nil {
		b.Fatal(err)
	}
	for _, count := range counts {
		b.Run(fmt.Sprintf("grains=%d", count), func(b *testing.B) {
			forEachPeer(b, func(b *testing.B, p peer) {
				for range b.N {
					measureIdle(b, p, count)
				}
			})
		})
	}
}

// measureIdle activates count counters on a fresh local node of p and
// reports the memory each holds.
func measureIdle(b *testing.B, p peer, count int) {
	n, err := p.local(b)
	if err != nil {
		b.Fatal(err)
	}
	// One call first, so that what the node allocates once (connections,
	// caches, pools) is in the baseline and not charged to the grains.
	if _, err := warm(context.Background(), n, "baseline", 1); err != nil {
		b.Fatal(err)
	}
	before := measureMemory()
	clients := make([]func() error, count)
	for i := range clients {
		clients[i] = n.client(context.Background(), identityName("idle", i))
	}
	if _, err := driveCalls(count, activationCallers, clients); err != nil {
		b.Fatal(err)
	}
	after := measureMemory()
	heap, stack := perGrain(before.heap, after.heap, count), perGrain(before.stack, after.stack, count)
	b.ReportMetric(heap, "heap-B/grain")
	b.ReportMetric(stack, "stack-B/grain")
	b.ReportMetric(heap+stack, "B/grain")
	if *idleProfileDir != "" {
		path := filepath.Join(*idleProfileDir, fmt.Sprintf("%s-idle-%d.heap.pprof", p.name(), count))
		if err := writeHeapProfile(path); err != nil {
			b.Fatal(err)
		}
	}
}

// writeHeapProfile writes a heap profile to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("grains: heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("grains: write heap profile %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("grains: close heap profile %s: %w", path, err)
	}
	return nil
}

// parseCounts parses a comma-separated list of positive counts.
func parseCounts(s string) ([]int, error) {
	var counts []int
	for field := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("grains: %q is not a positive count in %q", field, s)
		}
		counts = append(counts, n)
	}
	return counts, nil
}
