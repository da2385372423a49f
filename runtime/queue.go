package runtime

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// envelope is a queued message and, at the same time, the node of the queue
// that holds it.
type envelope struct {
	// next is the following node, read and linked with sync/atomic. It is
	// an unsafe.Pointer rather than an atomic.Pointer so that get can clear
	// it with a plain store: a recycled node is private to the goroutine
	// that took it from the pool (nothing reads a node's next once the
	// consumer has moved past it), and an atomic store would be one more
	// locked instruction per message.
	next  unsafe.Pointer // *envelope
	msg   any
	reply *replySlot // non-nil for a Request
}

// envelopePool recycles envelopes, so that a send does not allocate.
//
// The trick: allocating a 32-byte node per message, and collecting it again,
// was about half the CPU of a ping-pong send (mallocgc, memclr of fresh
// spans, background marking, write barriers). A node leaves the queue when
// the consumer moves past it (see queueTail.pop), and from then on nothing
// refers to it: the producer that linked it is done with it, and no other
// producer ever saw it. So the consumer can hand it back to a sync.Pool,
// whose per-P caches make a Get and a Put a few nanoseconds; an actor that
// both receives and sends on one P, as most do, reuses its own nodes.
//
// The nodes that a turn of an actor fed by Batches freed travel in one
// piece, as a run linked through next, if there are many of them (see put):
// the consumer puts the run into runs with one Put (see spareList.flush),
// and a Batch takes a whole run with one Get (see getRun). When a turn
// handled many messages from a burst, that is one pool operation per run
// instead of two per message, and the Get is the one that mostly missed
// its P's cache, since bursts come from a goroutine on another P. Single
// sends do not look at runs: a second pool's miss on every miss of the
// first cost Request from 16 callers 7% (bench BenchmarkRequest, n=8).
type envelopePool struct {
	single sync.Pool // *envelope, unlinked
	runs   sync.Pool // *envelope, the first of at least minRun linked through next
}

func (ep *envelopePool) init() { ep.single.New = func() any { return new(envelope) } }

// get returns an unlinked envelope holding msg and reply.
func (ep *envelopePool) get(msg any, reply *replySlot) *envelope {
	e := ep.single.Get().(*envelope)
	e.next = nil // a recycled node still points at its old successor
	e.msg, e.reply = msg, reply
	return e
}

// getRun returns free nodes linked through next, their number unknown: a
// run if there is one, else a single node.
func (ep *envelopePool) getRun() *envelope {
	if e, _ := ep.runs.Get().(*envelope); e != nil {
		return e
	}
	e := ep.single.Get().(*envelope)
	e.next = nil
	return e
}

// minRun is the fewest free nodes that go back to the pool as a run: a
// short run saves little, and leaves the single sends of other producers
// without nodes.
const minRun = 32

// put hands the nodes of list, linked through next, to the pool: as one
// run if asRun is set and there are at least minRun of them.
//
// Only an actor that Batches feed (Ref.fedInRuns) returns runs. Others, a
// pinger that receives a hundred pongs in a turn and sends the next pings
// in another, would make their own sends split the runs again: 4-pair
// ping-pong lost 13% of its rate (bench BenchmarkPingPong, n=10).
func (ep *envelopePool) put(list *envelope, asRun bool) {
	if asRun {
		n := 0
		for e := list; e != nil && n < minRun; e = (*envelope)(e.next) {
			n++
		}
		if n == minRun {
			ep.runs.Put(list)
			return
		}
	}
	for e := list; e != nil; {
		next := (*envelope)(e.next)
		ep.single.Put(e)
		e = next
	}
}

// The mailbox queue is an unbounded lock-free multi-producer single-consumer
// FIFO after Dmitry Vyukov's design. Producers swap themselves into the
// head and then link the previous node to themselves; the single consumer
// follows next pointers from the tail. The tail always points at a node
// whose message was already taken (the stub), so the queue is empty when
// the stub's next is nil.
//
// Between a producer's swap and its link, the consumer cannot see that
// producer's node nor any node pushed after it. The runtime relies on that
// producer to schedule the actor after linking, so nothing is lost.
//
// The queue comes in two halves, its producers' end (queueHead) and its
// consumer's end (queueTail), so that an actor can keep them on different
// cache lines (see Ref).
//
// The first stub comes from the pool rather than being a field of the
// queue: an idle actor then holds one node per queue, the current stub,
// and not also an unused initial one.

// queueHead is the producers' end of a queue: the last node pushed.
type queueHead struct{ last atomic.Pointer[envelope] }

// queueTail is the consumer's end of a queue: the stub.
type queueTail struct{ stub *envelope }

// initQueue makes the empty queue of h and t. It must be called before the
// queue is used.
func initQueue(h *queueHead, t *queueTail, free *envelopePool) {
	t.stub = free.get(nil, nil)
	h.last.Store(t.stub)
}

// push appends e. Safe for concurrent use by any number of producers.
func (h *queueHead) push(e *envelope) { h.pushRun(e, e) }

// pushRun appends the nodes first to last, linked through next, as push
// appends one: the consumer reaches the run through the atomic store into
// the node before it, which also publishes the plain stores that linked
// the run (a consumer that sees a node has seen everything written before
// it was linked).
func (h *queueHead) pushRun(first, last *envelope) {
	prev := h.last.Swap(last)
	atomic.StorePointer(&prev.next, unsafe.Pointer(first))
}

// empty reports whether nothing was pushed since stub became the
// consumer's stub. Unlike a look at stub.next it does not read the node, so
// it is safe on a stub saved before the actor went idle, which another
// goroutine may since have moved past and recycled: then the head differs
// from it (or, if the node came back to this queue's head, the actor was
// run by that other goroutine, which checks for itself).
func (h *queueHead) empty(stub *envelope) bool { return h.last.Load() == stub }

// pop removes the oldest message. It must only be called by the consumer.
// ok is false when the queue is empty or when the oldest push is not linked
// yet. The node the queue no longer needs is pushed onto the list *spare
// (linked through next, owned by the consumer), for the consumer's own
// sends or the pool (see Context.Send and spareList.flush).
func (t *queueTail) pop(spare *spareList) (msg any, reply *replySlot, ok bool) {
	old := t.stub
	next := (*envelope)(atomic.LoadPointer(&old.next))
	if next == nil {
		return nil, nil, false
	}
	// next becomes the stub: take its message and drop the references so
	// that the stub does not keep a delivered message alive.
	t.stub = next
	msg, reply = next.msg, next.reply
	next.msg, next.reply = nil, nil
	spare.push(old)
	return msg, reply, true
}

// spareList is a list of free nodes owned by one goroutine, linked through
// next with plain stores: a node off the queue is private (see
// envelopePool).
type spareList struct{ head *envelope }

func (l *spareList) push(e *envelope) {
	e.next = unsafe.Pointer(l.head)
	l.head = e
}

// take returns a node holding msg and reply, nil if the list is empty.
func (l *spareList) take(msg any, reply *replySlot) *envelope {
	e := l.head
	if e == nil {
		return nil
	}
	l.head = (*envelope)(e.next)
	e.next = nil
	e.msg, e.reply = msg, reply
	return e
}

// flush hands the list's nodes to the pool, as a run if asRun is set (see
// envelopePool.put).
func (l *spareList) flush(free *envelopePool, asRun bool) {
	free.put(l.head, asRun)
	l.head = nil
}
