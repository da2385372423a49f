package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage/memstore"
	"github.com/protograin/protograin/internal/goroutines"
	"github.com/protograin/protograin/internal/tlstest"
)

// Benchmarks of one call through the cluster: go test -bench . -benchtime 2000x ./cluster
// (numbers depend on the machine; the bench/ module compares with peers).

func BenchmarkInvokeLocal(b *testing.B) {
	nodes, _ := echoCluster(b, 2, 0, nil)
	benchInvoke(b, nodes, nodes[0])
}

// benchInvoke calls from nodes[0], b.N times in turn, a grain that owner
// hosts.
func benchInvoke(b *testing.B, nodes []*Node, owner *Node) {
	call := addCall(identityOwnedBy(b, nodes, owner), 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := nodes[0].Invoke(ctx, call); err != nil {
			b.Fatal(err)
		}
	}
}

// remoteTransports are the two transports the cross-node benchmarks run
// on: in the clear, and mutual TLS with gossip keys (what securing a
// cluster costs a call).
var remoteTransports = []struct {
	name   string
	secure bool
}{{"clear", false}, {"tls", true}}

// benchCluster is echoCluster of two nodes, secured with secure.
func benchCluster(b *testing.B, secure bool) []*Node {
	var configure func(*Config)
	if secure {
		configure = secured(b, tlstest.NewCA(b, "nodes"), gossipKey(1))
	}
	nodes, _ := echoCluster(b, 2, 0, configure)
	return nodes
}

func BenchmarkInvokeRemote(b *testing.B) {
	for _, tr := range remoteTransports {
		b.Run("transport="+tr.name, func(b *testing.B) {
			nodes := benchCluster(b, tr.secure)
			benchInvoke(b, nodes, nodes[1])
		})
	}
}

func BenchmarkInvokeRemoteParallel(b *testing.B) {
	for _, tr := range remoteTransports {
		b.Run("transport="+tr.name, func(b *testing.B) {
			nodes := benchCluster(b, tr.secure)
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(32)
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				// One grain per goroutine, all owned by the other node, so
				// that the transport is what is measured, not one grain's
				// mailbox.
				id := fmt.Sprintf("grain-%d", next.Add(1))
				for m, _ := nodes[0].Owner(echoKind, id); m.Name != nodes[1].Name(); m, _ = nodes[0].Owner(echoKind, id) {
					id = fmt.Sprintf("grain-%d", next.Add(1))
				}
				call := addCall(id, 1)
				for pb.Next() {
					if _, err := nodes[0].Invoke(ctx, call); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkInvokeLocalParallel calls grains of the calling node from 64
// goroutines, each walking 1,000 grains from its own starting point: what
// the local path's locks cost under contention.
func BenchmarkInvokeLocalParallel(b *testing.B) {
	nodes, _ := echoCluster(b, 1, 0, nil)
	ids := make([]string, 1000)
	ctx := context.Background()
	for i := range ids {
		ids[i] = fmt.Sprintf("grain-%d", i)
		if _, err := nodes[0].Invoke(ctx, addCall(ids[i], 1)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.SetParallelism(32) // 64 goroutines on 2 cores
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(97))
		for pb.Next() {
			i++
			if _, err := nodes[0].Invoke(ctx, addCall(ids[i%len(ids)], 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkActivateLocal makes the first call to a fresh grain of the
// calling node: activation, its actor, and the table. It reports the heap
// each idle activation keeps (idle-B/grain, after the calls, over b.N
// grains that stay active).
func BenchmarkActivateLocal(b *testing.B) {
	// Never passivate, and sweep rarely: the tests' 10 ms sweeps over
	// every activation would be most of what this measures.
	nodes, _ := echoCluster(b, 1, -1, func(c *Config) { c.PassivationInterval = time.Hour })
	ctx := context.Background()
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("grain-%d", i)
	}
	if _, err := nodes[0].Invoke(ctx, addCall("warm-up", 1)); err != nil {
		b.Fatal(err)
	}
	before := heapAlloc()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := nodes[0].Invoke(ctx, addCall(ids[i], 1)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(heapAlloc()-before)/float64(b.N), "idle-B/grain")
}

// BenchmarkDeactivateAll deactivates every grain of a node, as its
// Shutdown does once it has left the cluster (and as passivation and a
// change of owners do for some): each grain's OnDeactivate (which returns
// at once) and state flush (there is no state) on its actor, the actor's
// stop, and its removal from the table. The grains are activated before
// the timer starts. It reports the time per grain and the peak number of
// goroutines while they are deactivated.
func BenchmarkDeactivateAll(b *testing.B) {
	const grains = 50_000
	open := make(chan struct{})
	close(open)
	n := gateNode(b, func(string) gateGrain { return gateGrain{enter: func() {}, release: open} })
	ctx := context.Background()
	peak := 0
	for b.Loop() {
		b.StopTimer()
		activateGates(b, n, "g", grains)
		stopSampling := goroutines.Peak()
		b.StartTimer()
		if err := n.acts.deactivateAll(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		peak = max(peak, stopSampling())
		if left := n.acts.count(); left != 0 {
			b.Fatalf("%d activations left after deactivateAll", left)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*grains), "ns/grain")
	b.ReportMetric(float64(peak), "peak-goroutines")
}

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	goruntime.GC()
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkFrameCodec encodes request frames into a batch as a conn does
// and decodes them as its reader does, with names as strings and with a
// stream's name dictionary (see nameRefs). One op is one frame.
func BenchmarkFrameCodec(b *testing.B) {
	for _, tc := range []struct {
		name string
		f    frame
	}{
		{"one-way", frame{typ: frameRequest, oneWay: oneWaySent, kind: "bench.counter.v1.Ponger", identity: "ponger",
			method: "/bench.counter.v1.Ponger/Ping", payload: []byte{8, 1}}},
		{"call", frame{typ: frameRequest, id: 123456, kind: "bench.counter.v1.Counter", identity: "counter-417",
			method: "/bench.counter.v1.Counter/Add", payload: []byte{8, 1}, timeout: 4 * time.Second,
			stamp: stamp{client: "0123456789abcdef0123456789abcdef", seq: 987654}}},
	} {
		for _, ids := range []bool{false, true} {
			b.Run(fmt.Sprintf("frame=%s/ids=%t", tc.name, ids), func(b *testing.B) {
				const perBatch = 256
				var d nameDict
				d.on = ids
				var names nameTable
				batch := make([]byte, 0, 64<<10)
				total := 0
				b.ReportAllocs()
				for i := 0; i < b.N; i += perBatch {
					batch = batch[:0]
					for range min(perBatch, b.N-i) {
						f := tc.f
						f.refs = d.refs(&f)
						batch = appendFrame(batch, &f)
					}
					total += len(batch)
					if err := decodeBatchNames(batch, &names, func(*frame) {}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(total)/float64(b.N), "B/frame")
			})
		}
	}
}

// BenchmarkWaitingMemory measures what a message waiting for a grain stuck
// in a turn costs its node: the live heap that b.N messages add, per
// message. One-way messages come from a peer (each decoded on its own, as
// a peer's are), with a payload of 0 and 1,024 bytes; calls are local, and
// their callers give up after a millisecond, so that they stay in the
// mailbox until the grain reaches them. It backs the costs that
// docs/architecture.md gives for the bounds (Config.MaxQueuedOneWay,
// MaxQueuedCalls):
//
//	go test -run '^$' -bench WaitingMemory -benchtime 20000x -count 3 ./cluster
func BenchmarkWaitingMemory(b *testing.B) {
	ctx := context.Background()
	for _, payload := range []int{0, 1024} {
		b.Run(fmt.Sprintf("one-way/payload=%d", payload), func(b *testing.B) {
			nodes, hs := echoCluster(b, 2, time.Hour, func(c *Config) { c.MaxQueuedOneWay = -1 })
			owner, sender := nodes[0], nodes[1]
			id := ownedInEveryView(b, nodes, owner, echoKind, "held")
			probe := ownedInEveryView(b, nodes, owner, echoKind, "probe")
			heldTurn(b, sender, hs[owner.Name()], id)
			call := stringCall(methodString, id, strings.Repeat("x", payload))
			before := heapAlloc()
			for range b.N {
				if err := sender.Send(ctx, call); err != nil {
					b.Fatal(err)
				}
			}
			// A call behind them on the same stream: once it is answered,
			// the owner's reader has queued every message before it.
			if _, err := sender.Invoke(ctx, addCall(probe, 0)); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(heapAlloc()-before)/float64(b.N), "B/msg")
		})
	}
	b.Run("call-given-up", func(b *testing.B) {
		nodes, hs := echoCluster(b, 1, time.Hour, func(c *Config) { c.MaxQueuedCalls = -1 })
		n := nodes[0]
		id := identityOwnedBy(b, nodes, n)
		heldTurn(b, n, hs[n.Name()], id)
		before := heapAlloc()
		var next atomic.Int64
		concurrently(b, 16, func(int) error {
			for next.Add(1) <= int64(b.N) {
				cctx, cancel := context.WithTimeout(ctx, time.Millisecond)
				_, err := n.Invoke(cctx, addCall(id, 1))
				cancel()
				if status.Code(err) != codes.DeadlineExceeded {
					return fmt.Errorf("a call to a held grain: %v, want DeadlineExceeded", err)
				}
			}
			return nil
		})
		waiting := callsIn(n, id)
		if waiting <= 0 {
			b.Fatalf("no call waits for the held grain")
		}
		b.ReportMetric(float64(heapAlloc()-before)/float64(waiting), "B/call")
	})
}

// heldTurn holds identity's grain in a one-way Hold turn sent by from,
// until h.releaseHeld (echoCluster calls it before its nodes close).
func heldTurn(b *testing.B, from *Node, h *hooks, identity string) {
	b.Helper()
	if err := from.Send(context.Background(), stringCall(methodHold, identity, "")); err != nil {
		b.Fatal(err)
	}
	receive(b, h.entered, "the held turn")
}

// BenchmarkTrimLook measures the look at every activation that a trim past
// Config.MaxActivations takes (see activations.trimTo), on a node holding
// that many idle grains, with a target of as many, so that the look asks
// none to passivate: one op is one look. The sweep's passivation look
// walks the table the same way.
func BenchmarkTrimLook(b *testing.B) {
	for _, grains := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("grains=%d", grains), func(b *testing.B) {
			nodes, _ := echoCluster(b, 1, 0, func(cfg *Config) { cfg.PassivationInterval = time.Hour })
			n := nodes[0]
			ctx := context.Background()
			for i := range grains {
				if _, err := n.Invoke(ctx, addCall(fmt.Sprintf("grain-%d", i), 1)); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				if asked := n.acts.trimTo(grains); asked != 0 {
					b.Fatalf("the look asked %d grains to passivate, want none", asked)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(grains), "ns/grain")
		})
	}
}

// BenchmarkCallsDuringALeave measures what a graceful leave costs the
// callers of the leaver's grains, for each flush mode: only FlushManual
// grains wait for the leaver's release (see handoffs). Three nodes in the
// LAN gossip profile, eight callers on the first depositing in turn on 200
// grains of the third, which shuts down once every caller has made 100
// calls; the calls go on until each has made 100 more after Shutdown
// returned. It reports the Shutdown's length, the longest and 99th
// percentile call, and the attempts the callers retried, answered by the
// leaver and by the other members; a call that fails fails it. One op is
// one such leave: run it with -benchtime=1x.
//
//	go test -run '^$' -bench CallsDuringALeave -benchtime 1x -count 2 ./cluster
func BenchmarkCallsDuringALeave(b *testing.B) {
	for _, kind := range []string{accountKind, manualKind} {
		b.Run("kind="+kind, func(b *testing.B) {
			for b.Loop() {
				leave := leaveUnderCalls(b, kind)
				b.ReportMetric(float64(leave.shutdown.Milliseconds()), "shutdown-ms")
				b.ReportMetric(float64(leave.max.Milliseconds()), "max-call-ms")
				b.ReportMetric(float64(leave.p99.Microseconds()), "p99-µs")
				b.ReportMetric(float64(leave.byLeaver), "retries-leaver")
				b.ReportMetric(float64(leave.byOthers), "retries-others")
			}
		})
	}
}

// leaveFigures are what leaveUnderCalls measured.
type leaveFigures struct {
	shutdown, max, p99 time.Duration
	// byLeaver and byOthers count the attempts the callers retried
	// (ErrNotOwner, mostly) on the leaver's answer, and on another
	// member's: one whose view did not have the leave yet.
	byLeaver, byOthers int64
}

// leaveUnderCalls runs one leave of BenchmarkCallsDuringALeave on grains of
// kind, and returns how long the leaver's Shutdown took, the longest and
// 99th-percentile call, and the attempts retried.
func leaveUnderCalls(b *testing.B, kind string) leaveFigures {
	const callers, grains, calls = 8, 200, 100
	memory := memstore.New()
	b.Cleanup(func() { memory.Close() })
	var leaverName atomic.Pointer[string]
	var byLeaver, byOthers atomic.Int64
	nodes := startCluster(b, 3, func(name string) []*Kind {
		bk := newBank(name)
		return []*Kind{newAccountKind(bk, accountKind, FlushAfterCall, time.Hour), newAccountKind(bk, manualKind, FlushManual, time.Hour)}
	}, func(cfg *Config) {
		cfg.Store = memory
		cfg.Gossip = GossipLAN
		// The nodes' closing lines would come between a result's name
		// and its figures.
		cfg.Logger = slog.New(slog.DiscardHandler)
		cfg.retrying = func(err error) {
			// The errors name the member that answered.
			if name := leaverName.Load(); name != nil && strings.Contains(err.Error(), *name) {
				byLeaver.Add(1)
			} else {
				byOthers.Add(1)
			}
		}
	})
	caller, leaver := nodes[0], nodes[2]
	name := leaver.Name()
	leaverName.Store(&name)
	var ids []string
	for i := 0; len(ids) < grains; i++ {
		if o, _ := caller.Owner(kind, fmt.Sprintf("g-%d", i)); o.Name == leaver.Name() {
			ids = append(ids, fmt.Sprintf("g-%d", i))
		}
	}
	var left atomic.Bool
	warm, after := make(chan struct{}, callers), make(chan struct{}, callers)
	took := make([][]time.Duration, callers)
	errs := make(chan error, callers)
	for c := range callers {
		go func() {
			made, madeAfter := 0, 0
			for r := 0; madeAfter < calls; r++ {
				began := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := caller.Invoke(ctx, depositCall(kind, ids[(r*callers+c)%len(ids)], 1))
				cancel()
				if err != nil {
					errs <- err
					return
				}
				took[c] = append(took[c], time.Since(began))
				if made++; made == calls {
					warm <- struct{}{}
				}
				if left.Load() {
					madeAfter++
				}
			}
			after <- struct{}{}
		}()
	}
	for range callers {
		select {
		case <-warm:
		case err := <-errs:
			b.Fatalf("a call before the leave: %v", err)
		}
	}
	began := time.Now()
	if err := leaver.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	shutdown := time.Since(began)
	left.Store(true)
	for range callers {
		select {
		case <-after:
		case err := <-errs:
			b.Fatalf("a call during or after the leave: %v", err)
		}
	}
	all := slices.Concat(took...)
	slices.Sort(all)
	return leaveFigures{shutdown: shutdown, max: all[len(all)-1], p99: all[len(all)*99/100],
		byLeaver: byLeaver.Load(), byOthers: byOthers.Load()}
}

// BenchmarkHotIdentity calls one identity from 64 goroutines of the node
// that hosts its kind, a method that hashes 4 KiB (a few microseconds of
// CPU): with workers=0 an ordinary grain, one call at a time, and with
// workers=N a kind of N stateless workers (Kind.StatelessWorkers).
func BenchmarkHotIdentity(b *testing.B) {
	page := make([]byte, 4096)
	for _, workers := range []int{0, 2, 8} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			cfg := testConfig(b)
			cfg.Kinds = []*Kind{{
				Name:             "bench.Hash",
				StatelessWorkers: workers,
				New:              func(string) any { return struct{}{} },
				Methods: []Method{{
					Name:       "/bench.Hash/Sum",
					NewRequest: newInt64,
					Handle: func(_ any, _ GrainContext, req proto.Message) (proto.Message, error) {
						sum := sha256.Sum256(page)
						return wrapperspb.Int64(int64(binary.BigEndian.Uint64(sum[:]))), nil
					},
				}},
			}}
			n := startNode(b, cfg)
			call := Call{Kind: "bench.Hash", Identity: "hot", Method: "/bench.Hash/Sum", Request: wrapperspb.Int64(1), NewResponse: newInt64}
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(32) // 64 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := n.Invoke(ctx, call); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}
