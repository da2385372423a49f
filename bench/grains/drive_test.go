package grains

import (
	"context"
	"errors"
	"fmt"
	"math"
	goruntime "runtime"
	"slices"
	"sync"
	"time"
)

// warmIdentities is how many counter identities the call benchmarks spread
// their calls over; all are activated before the timer starts.
const warmIdentities = 1000

// errNotJoined is returned by exchange on a node that did not join a host.
var errNotJoined = errors.New("grains: node has not joined a host process")

// identityName names the i-th counter of a set.
func identityName(set string, i int) string {
	return fmt.Sprintf("%s-%d", set, i)
}

// boolInt is 1 for true and 0 for false.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// share is how many of n items caller g of callers gets: n split as evenly
// as possible.
func share(n, callers, g int) int {
	return n/callers + boolInt(g < n%callers)
}

// waitFor polls cond every few milliseconds until it holds or timeout
// passes.
func waitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return fmt.Errorf("grains: condition not met within %v", timeout)
		case <-tick.C:
		}
	}
	return nil
}

// warm makes one client per identity of set and calls each once, so that
// every grain is active before a measurement starts.
func warm(ctx context.Context, n node, set string, count int) ([]func() error, error) {
	clients := make([]func() error, count)
	for i := range clients {
		clients[i] = n.client(ctx, identityName(set, i))
		if err := clients[i](); err != nil {
			return nil, fmt.Errorf("grains: warm up %s: %w", identityName(set, i), err)
		}
	}
	return clients, nil
}

// callRun is the outcome of driveCalls: how long the calls took and each
// call's latency.
type callRun struct {
	elapsed   time.Duration
	latencies []time.Duration
}

// driveCalls makes calls calls from callers concurrent goroutines, caller g
// going round the clients from its own starting point so that the callers
// spread over the identities, and records every call's latency. It stops at
// the first error.
func driveCalls(calls, callers int, clients []func() error) (callRun, error) {
	perCaller := make([][]time.Duration, callers)
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range callers {
		lat := make([]time.Duration, share(calls, callers, g))
		perCaller[g] = lat
		first := g * len(clients) / callers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range lat {
				call := clients[(first+k)%len(clients)]
				t0 := time.Now()
				if err := call(); err != nil {
					errs <- fmt.Errorf("grains: call %d of caller %d: %w", k, g, err)
					return
				}
				lat[k] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return callRun{}, err
	}
	return callRun{elapsed: elapsed, latencies: slices.Concat(perCaller...)}, nil
}

// perSecond is n events over d, per second.
func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// quantiles returns the latencies at each quantile q (0 < q ≤ 1) of
// samples, by the nearest-rank method: the smallest sample that at least
// q×len(samples) samples do not exceed. It sorts samples in place; with no
// samples every quantile is 0.
func quantiles(samples []time.Duration, qs ...float64) []time.Duration {
	out := make([]time.Duration, len(qs))
	if len(samples) == 0 {
		return out
	}
	slices.Sort(samples)
	for i, q := range qs {
		rank := int(math.Ceil(q * float64(len(samples))))
		out[i] = samples[min(max(rank, 1), len(samples))-1]
	}
	return out
}

// micros is d in microseconds.
func micros(d time.Duration) float64 {
	return float64(d) / float64(time.Microsecond)
}

// memSnapshot is the memory the Go runtime holds for live objects and
// goroutine stacks after a full collection.
type memSnapshot struct {
	heap, stack uint64
}

// measureMemory collects garbage twice (the second pass frees what the
// first one's finalizers released) and reads the heap and stack in use.
func measureMemory() memSnapshot {
	goruntime.GC()
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return memSnapshot{heap: m.HeapAlloc, stack: m.StackInuse}
}

// perGrain is the growth from before to after, per grain, in bytes; growth
// below zero (a collection freed more than the grains hold) counts as none.
func perGrain(before, after uint64, grains int) float64 {
	if after <= before || grains <= 0 {
		return 0
	}
	return float64(after-before) / float64(grains)
}
