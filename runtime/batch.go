package runtime

import (
	"context"
	"unsafe"
)

// Batch queues a run of user messages for one actor at a time, from a
// goroutine outside any actor's turn that sends in bursts, such as a
// network reader delivering the messages of one received packet: Add
// collects messages for an actor, Flush appends them to its mailbox in the
// order they were added, as one push. Adding a message for another actor
// flushes the run collected so far, so the messages each actor receives
// keep the order of the Adds.
//
// The actor sees nothing of a message until it is flushed. A message that
// Add accepted is delivered as a Send that returned nil would be: if the
// actor stops first, it becomes a dead letter.
//
// The trick: a push is an atomic swap of the mailbox's head and an atomic
// store into the node before it, which the actor's goroutine, on another
// core, has just read; a run links its nodes with plain stores and pays
// those once, and takes its nodes from the pool a run at a time (see
// envelopePool). In bench/grains BenchmarkOneWay, whose stream readers
// deliver a few hundred messages per packet to one grain, a Send per
// message was 9 to 15% of the CPU of each process; the runs gained 5.5%
// and the nodes taken a run at a time another 9.5% (interleaved A/Bs of
// `grains.test -test.bench 'OneWay/impl=protograin'`, n=8 each).
//
// The zero Batch is ready to use. A Batch is owned by one goroutine, and
// whatever it holds must be flushed: a Batch that is dropped unflushed
// loses its messages. Between runs it keeps the free queue nodes it took
// from the System's pool in one piece (a few hundred at most), so keep
// one Batch for a goroutine's life rather than one per run.
type Batch struct {
	to          *Ref
	first, last *envelope
	free        spareList // nodes for the next Adds, a run from the pool (see envelopePool)
}

// Add collects msg for the actor to. It fails as Send would, and then
// collects nothing: ErrNilMessage for a nil msg, ErrStopped (and a dead
// letter) once the actor has begun to stop. A message for an actor with a
// bounded mailbox is sent at once, after the run collected so far, since
// every such message takes its own slot; a full MailboxFail mailbox fails
// it with ErrMailboxFull, a full MailboxBlock mailbox blocks until it has
// room.
func (b *Batch) Add(to *Ref, msg any) error {
	if to == nil {
		return errNilRef
	}
	if msg == nil {
		return ErrNilMessage
	}
	if to != b.to {
		b.Flush()
	}
	if to.tokens() != nil {
		return to.enqueue(context.Background(), msg, nil, nil, false)
	}
	if to.isStopping() {
		to.sys.deadLetter(to, msg, ErrStopped)
		return ErrStopped
	}
	e := b.free.take(msg, nil)
	if e == nil {
		b.free.head = to.sys.envelopes.getRun()
		e = b.free.take(msg, nil)
	}
	if b.first == nil {
		b.to, b.first = to, e
	} else {
		// Private until Flush publishes the run: see queueHead.pushRun.
		b.last.next = unsafe.Pointer(e)
	}
	b.last = e
	return nil
}

// Flush appends the messages collected to their actor's mailbox and
// schedules the actor. It does nothing for an empty batch.
func (b *Batch) Flush() {
	if b.first == nil {
		return
	}
	to := b.to
	to.userHead.pushRun(b.first, b.last)
	if !to.fedInRuns.Load() { // read first: the actor's goroutine writes that line on every message
		to.fedInRuns.Store(true)
	}
	b.to, b.first, b.last = nil, nil, nil
	to.schedule()
}
