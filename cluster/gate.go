package cluster

import (
	"context"
	"math/bits"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// gate counts the calls a node is serving so that a graceful shutdown can
// refuse new ones and wait for the running ones.
//
// Every call enters and leaves it, so it must cost a call as little as
// possible, on any core:
//   - No mutex: with one, 64 local callers convoyed behind whichever of
//     them was descheduled while holding it (a third of the mutex wait time
//     of a local-call benchmark).
//   - No single counter either. The trick: calls are counted in stripes,
//     each on a cache line of its own, and a goroutine enters by a stripe
//     of its own (see stripe). With one atomic word, every call's two
//     additions moved that word's line from core to core: the gate was 8%
//     of the CPU of bench/grains LocalCalls/callers=64, which ran 21%
//     faster with no gate at all, and 19% faster with the stripes. Stripes
//     picked at random for each call gave only half of that, as a random
//     line is as likely to be in the other core's cache as in this one's.
//   - A call leaves by the stripe it entered by (its gateTicket), even from
//     another goroutine, so a stripe's count is never negative.
//
// closed is read by every call and written once, so its line stays shared
// by all cores. A node's gate takes one cache line per stripe.
type gate struct {
	closed   atomic.Bool
	stripes  []gateStripe
	shift    uint          // log2 of len(stripes)
	idle     chan struct{} // closed when closed and no call is in
	idleOnce sync.Once
}

// gateStripe is one stripe of a gate's count, alone on its cache line.
type gateStripe struct {
	n atomic.Int64
	_ [cacheLine - 8]byte
}

// cacheLine is the size of a cache line on the machines we run on.
const cacheLine = 64

// fibonacci is 2^64 divided by the golden ratio. Multiplying by it and
// keeping the top bits spreads keys that differ only in their low bits
// over the whole range (Fibonacci hashing): gate.stripe and actTable.home
// pick their slots so.
const fibonacci = 0x9e3779b97f4a7c15

// gateTicket says which stripe of a gate a call entered by.
type gateTicket uint32

// gateStripesPerProc is how many stripes a gate has per GOMAXPROCS: with
// a few times more stripes than cores, two cores rarely pick the same
// stripe at the same time.
const gateStripesPerProc = 4

// minStackShift is log2 of the smallest goroutine stack, 2 KiB: the
// stacks of two goroutines are at least that far apart.
const minStackShift = 11

func newGate() *gate {
	shift := uint(bits.Len(uint(gateStripesPerProc*goruntime.GOMAXPROCS(0) - 1)))
	return &gate{stripes: make([]gateStripe, 1<<shift), shift: shift, idle: make(chan struct{})}
}

// enter counts a call in and returns the ticket to leave with; it reports
// false once the gate is closed.
//
// Counting in before reading closed, in enter, and closing before summing
// the stripes, in close, is what makes a call either refused or waited
// for: Go's atomics are sequentially consistent, so a call that reads the
// gate open counted itself in before close set closed, and close's sum
// sees it.
func (g *gate) enter() (gateTicket, bool) {
	t := g.stripe()
	g.stripes[t].n.Add(1)
	if g.closed.Load() {
		// Closed: undo the count, which may make the gate idle.
		g.leave(t)
		return 0, false
	}
	return t, true
}

// stripe picks the stripe a call enters by, from where the calling
// goroutine's stack is: the address is only hashed, never used. So a
// goroutine keeps entering by the same stripe while its stack stays put,
// and its line stays in the cache of the core it runs on, while other
// goroutines mostly use other stripes. A goroutine that moves to another
// core, or whose stack moves, costs one miss.
func (g *gate) stripe() gateTicket {
	var onStack byte
	h := uint64(uintptr(unsafe.Pointer(&onStack))>>minStackShift) * fibonacci
	return gateTicket(h >> (64 - g.shift))
}

// leave counts out a call that entered with t.
func (g *gate) leave(t gateTicket) {
	g.stripes[t].n.Add(-1)
	// A call that reads the gate open here left before close summed the
	// stripes, and close saw it gone; one that reads it closed may be the
	// last, and looks.
	if g.closed.Load() && g.empty() {
		g.setIdle()
	}
}

// empty reports whether no call is in. It reads the stripes one after the
// other, not at one instant. That is enough once the gate is closed: no
// call gets in any more, so a call that close waits for is counted in its
// stripe from before close until it leaves, and a stripe read as zero
// holds none. A refused call's passing count can only make empty report
// false, and that call looks again as it leaves.
func (g *gate) empty() bool {
	for i := range g.stripes {
		if g.stripes[i].n.Load() != 0 {
			return false
		}
	}
	return true
}

func (g *gate) setIdle() { g.idleOnce.Do(func() { close(g.idle) }) }

// close refuses new calls and waits for the running ones or ctx.
func (g *gate) close(ctx context.Context) error {
	g.closed.Store(true)
	if g.empty() {
		g.setIdle()
	}
	select {
	case <-g.idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
