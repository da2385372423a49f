package runtime

import (
	"context"
	"fmt"
	goruntime "runtime"
	"sync/atomic"
)

// Reply slot states. A slot goes from pending to exactly one of completing
// (the responder won) or abandoned (the caller gave up first).
const (
	slotPending uint32 = iota
	slotCompleting
	slotAbandoned
)

// replySlot carries one reply from an actor to the goroutine blocked in
// Request. Slots are pooled per System; a slot whose caller gave up is never
// returned to the pool, so a late reply cannot reach a later request.
type replySlot struct {
	state atomic.Uint32
	ready chan struct{} // capacity 1: completing never blocks
	val   any
	err   error
}

func newReplySlot() any { return &replySlot{ready: make(chan struct{}, 1)} }

func (s *System) getSlot() *replySlot { return s.slots.Get().(*replySlot) }

// putSlot recycles a slot whose reply was consumed.
func (s *System) putSlot(slot *replySlot) {
	slot.val, slot.err = nil, nil
	slot.state.Store(slotPending)
	s.slots.Put(slot)
}

// complete delivers the reply. It reports false, and drops the reply, when
// the caller has already given up.
func (slot *replySlot) complete(val any, err error) bool {
	if !slot.state.CompareAndSwap(slotPending, slotCompleting) {
		return false
	}
	slot.val, slot.err = val, err
	slot.ready <- struct{}{}
	return true
}

// wait blocks until the reply arrives or ctx ends.
//
// Parking a goroutine and waking it again costs more than most turns, so a
// caller whose reply is not there yet first yields its processor once: the
// actor it asked often runs and answers in that time, and the caller then
// takes the reply without parking.
//
// The select on ctx.Done() is the expensive part when many callers share a
// context: every select locks that one channel twice (to wait and to stop
// waiting). So it is skipped when the reply is already there and when ctx
// can never end.
//
// It reports whether the caller gave up: ctx ended before the responder
// began to reply, and the slot is abandoned (see Ref.Ask).
func (slot *replySlot) wait(ctx context.Context, s *System) (any, bool, error) {
	if !slot.arrived() {
		goruntime.Gosched()
		if !slot.arrived() {
			if err := slot.block(ctx); err != nil {
				return nil, true, err
			}
		}
	}
	val, err := slot.val, slot.err
	s.putSlot(slot)
	return val, false, err
}

// arrived reports, without blocking, whether the reply is there. When it
// reports true it has consumed the ready signal.
func (slot *replySlot) arrived() bool {
	select {
	case <-slot.ready:
		return true
	default:
		return false
	}
}

// block waits for the reply or for ctx to end. It returns ctx's error only
// when the caller gave up before the responder began to reply.
func (slot *replySlot) block(ctx context.Context) error {
	done := ctx.Done()
	if done == nil {
		<-slot.ready
		return nil
	}
	select {
	case <-slot.ready:
		return nil
	case <-done:
		if slot.state.CompareAndSwap(slotPending, slotAbandoned) {
			return ctx.Err()
		}
		// The responder won the race and is writing the reply now.
		<-slot.ready
		return nil
	}
}

// Responder answers a Request after Receive has returned; see
// Context.DetachReply. Its methods are safe for concurrent use, and only
// the first Respond or RespondError has an effect.
//
// A Responder dropped unanswered still answers: once the garbage collector
// finds it unreachable, its Request fails with an error wrapping
// ErrNoReply, where a caller without a deadline would otherwise wait for
// good. That comes when a collection comes, so it is a backstop, not a way
// to answer: a Responder should answer, and callers have deadlines.
type Responder struct {
	answer *detached
}

// detached is the reply slot of a Responder, shared with the cleanup that
// answers for the Responder once it is unreachable (see
// Context.DetachReply). Whoever swaps the slot out answers, once: the
// cleanup of a Responder that answered finds nil, so it cannot reach the
// slot, which its caller has put back in the pool for another Request by
// then. (A cleanup given the slot itself would answer that Request.)
type detached struct {
	slot atomic.Pointer[replySlot]
	who  *Ref // for the error; the Responder is not reachable from it unless the actor keeps it
}

// drop answers for a Responder that was collected unanswered.
func (d *detached) drop() {
	if slot := d.slot.Swap(nil); slot != nil {
		slot.complete(nil, fmt.Errorf("%w: %s dropped the Responder of a Request unanswered", ErrNoReply, d.who))
	}
}

// Respond makes the Request return msg. It reports whether the reply was
// delivered: false if a reply was already given or the caller gave up.
func (r *Responder) Respond(msg any) bool { return r.finish(msg, nil) }

// RespondError makes the Request return err, as is.
func (r *Responder) RespondError(err error) bool { return r.finish(nil, err) }

func (r *Responder) finish(val any, err error) bool {
	slot := r.answer.slot.Swap(nil)
	return slot != nil && slot.complete(val, err)
}
