package cluster

import (
	"runtime"
	"runtime/metrics"
)

// A node with Config.MaxHeapBytes passivates its least recently used idle
// grains early when the process's live heap is over that size: the same
// trim that Config.MaxActivations starts for a count of grains (see
// activations.trimTo), started by the heap.
//
// The live heap is what the last garbage collection marked
// (/gc/heap/live:bytes of runtime/metrics), so the node looks after each
// collection, when the figure is new, and at no other time: a look between
// two collections would see the grains it had asked to passivate still
// counted, and ask more. A collection tells the node that it ended through
// a cleanup (runtime.AddCleanup) on an object that only the cleanup's
// chain refers to: each run wakes the node's sweep and arms the next, on a
// new object, until the node stops.

// heapMetric is the runtime/metrics figure a node watches: the bytes of
// the objects the last garbage collection marked live.
const heapMetric = "/gc/heap/live:bytes"

// heapWatch is a node's look at the live heap (see above). The sweep
// owns it.
type heapWatch struct {
	sample []metrics.Sample
}

func newHeapWatch() *heapWatch {
	return &heapWatch{sample: []metrics.Sample{{Name: heapMetric}}}
}

// live returns the bytes the last garbage collection marked live.
func (w *heapWatch) live() uint64 {
	metrics.Read(w.sample)
	if w.sample[0].Value.Kind() != metrics.KindUint64 {
		return 0 // a Go without the metric: no look says the heap is over
	}
	return w.sample[0].Value.Uint64()
}

// gcSentinel is the object whose cleanup tells a node that a garbage
// collection ended (see watchCollections). It must not be a zero-size or
// pointer-free tiny object, which the allocator may batch with others and
// keep alive with them: a pointer keeps it an object of its own.
type gcSentinel struct{ _ *byte }

// watchCollections wakes the node's sweep (heapNow) after every garbage
// collection until the node stops, for MaxHeapBytes.
func (n *Node) watchCollections() {
	runtime.AddCleanup(new(gcSentinel), collected, n)
}

// collected is the cleanup of a gcSentinel: a collection ended. It wakes
// the sweep, without waiting (cleanups run one at a time, on one goroutine
// for the process), and arms the next look. A node that stopped ends the
// chain, and so lets itself go.
func collected(n *Node) {
	if isDone(n.stop) {
		if n.cfg.collectionWatchEnded != nil {
			n.cfg.collectionWatchEnded()
		}
		return
	}
	select {
	case n.acts.heapNow <- struct{}{}:
	default: // a look is due already
	}
	n.watchCollections()
}

// shed asks the least recently used idle grains to passivate if the live
// heap is over Config.MaxHeapBytes, and returns how many it asked: as many
// as bring the activations down in proportion, to the share of the table
// that nine tenths of MaxHeapBytes would hold at the heap's bytes per
// activation (the heap holds more than grains, so a look after the next
// collection may ask more). Grains that are busy, or that the trims leave
// be, stay (see trim); a look that finds too few idle grains is noted as a
// trim that fell short is. The sweep calls it, with the live heap.
func (t *activations) shed(live uint64) int {
	max := uint64(t.n.cfg.MaxHeapBytes)
	if max == 0 || live <= max {
		return 0
	}
	held := t.held.Load()
	aim := max - max/trimmedShare
	asked := t.trimTo(int(float64(held) * float64(aim) / float64(live)))
	if asked > 0 {
		t.n.heapPassivations.Add(uint64(asked))
		if t.n.shedding.note() {
			t.n.logShedding("live", live, "activations", held, "asked", asked)
		}
	}
	return asked
}

// logShedding logs the looks that asked grains to passivate for
// Config.MaxHeapBytes not logged yet, if any, with args: a line a second
// at most, as collections may come faster.
func (n *Node) logShedding(args ...any) {
	n.logTaken(&n.shedding, "cluster: the live heap was over Config.MaxHeapBytes after garbage collections: asked least recently used idle grains to passivate",
		"looks", append(args, "max", n.cfg.MaxHeapBytes)...)
}
