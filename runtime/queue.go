package runtime

import "sync/atomic"

// envelope is a queued message and, at the same time, the node of the queue
// that holds it, so enqueueing a message costs one allocation.
type envelope struct {
	next  atomic.Pointer[envelope]
	msg   any
	reply *replySlot // non-nil for a Request
}

// queue is an unbounded lock-free multi-producer single-consumer FIFO after
// Dmitry Vyukov's design. Producers swap themselves into head and then link
// the previous node to themselves; the single consumer follows next pointers
// from tail. tail always points at a node whose message was already taken
// (the stub), so the queue is empty when tail.next is nil.
//
// Between a producer's swap and its link, the consumer cannot see that
// producer's node nor any node pushed after it. The runtime relies on that
// producer to schedule the actor after linking, so nothing is lost.
type queue struct {
	head atomic.Pointer[envelope] // last pushed node; written by producers
	tail *envelope                // stub node; owned by the consumer
	stub envelope
}

// init must be called before the queue is used; the queue must not be
// copied afterwards, since it points into itself.
func (q *queue) init() {
	q.tail = &q.stub
	q.head.Store(&q.stub)
}

// push appends e. Safe for concurrent use by any number of producers.
func (q *queue) push(e *envelope) {
	prev := q.head.Swap(e)
	prev.next.Store(e)
}

// pop removes the oldest message. It must only be called by the consumer.
// ok is false when the queue is empty or when the oldest push is not linked
// yet.
func (q *queue) pop() (msg any, reply *replySlot, ok bool) {
	next := q.tail.next.Load()
	if next == nil {
		return nil, nil, false
	}
	// next becomes the stub: take its message and drop the references so
	// that the stub does not keep a delivered message alive.
	q.tail = next
	msg, reply = next.msg, next.reply
	next.msg, next.reply = nil, nil
	return msg, reply, true
}
