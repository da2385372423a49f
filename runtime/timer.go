package runtime

import (
	"sync/atomic"
	"time"
)

// Timer is a message an actor scheduled for itself with Context.SendAfter
// or Context.SendEvery.
type Timer struct {
	r         *Ref
	msg       any
	every     time.Duration // zero for a one-shot timer
	cancelled atomic.Bool
	queued    atomic.Bool // a SendEvery timer's tick is in the mailbox (see fire)
	restarted uint32      // refExt.restarted when it was armed; beside the flags, in their padding
	stopClock func() bool // guarded by r.mu
}

// Stop cancels the timer. It reports whether this call cancelled it: false
// if it was already cancelled or, for SendAfter, had already fired. Once
// Stop returns, the timer's message is not delivered, even if it was queued.
//
// That promise is whole on the actor's own goroutine, in its handlers. Stop
// is safe to call from any goroutine, but on another one it races with the
// actor, which may have taken the timer's message from its mailbox, and
// found the timer live, just before Stop cancelled it: that one message is
// still delivered, and may be after Stop returns. Any other is dropped:
// the timer sends none once Stop has returned, and the actor drops those
// it takes from then on. The actor checks a flag as it takes the message;
// to close the window, Stop would have to wait for the actor's handler. To
// order a stop with the actor's messages, send the actor a message whose
// handler calls Stop.
func (t *Timer) Stop() bool {
	r := t.r
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.ext.Load() // not nil: startTimer made it
	if _, live := e.timers[t]; !live {
		t.cancelled.Store(true)
		return false
	}
	delete(e.timers, t)
	t.cancelled.Store(true)
	t.stopClock()
	return true
}

// startTimer arms a timer that sends msg after d and then, if every is
// positive, every every. It runs on the actor's goroutine.
//
// A stopping actor arms none: its timers were cancelled as it began to
// stop (see beginStop), so one armed later, in the *Stopping or *Stopped
// handler, would never be, and a periodic one would fire for good after
// the actor and its System are gone. Its message goes to the dead letters,
// and the Timer it returns is stopped already.
func (r *Ref) startTimer(d, every time.Duration, msg any) *Timer {
	t := &Timer{r: r, msg: msg, every: every}
	r.mu.Lock()
	e := r.side()
	t.restarted = e.restarted
	if r.inStop {
		r.mu.Unlock()
		t.cancelled.Store(true)
		r.sys.deadLetter(r, msg, ErrStopped)
		return t
	}
	if e.timers == nil {
		e.timers = make(map[*Timer]struct{})
	}
	e.timers[t] = struct{}{}
	t.stopClock = r.sys.clock.AfterFunc(d, t.fire)
	r.mu.Unlock()
	return t
}

// fire enqueues the timer's message and re-arms a periodic timer. Holding
// mu while enqueueing orders the send before any later cancellation;
// enqueueing never blocks here.
//
// A periodic timer whose last tick is still queued sends none: its ticks
// coalesce, as a time.Ticker's do in its channel. An actor busy in a long
// handler, or suspended through a restart's backoff, would otherwise find
// a tick per period in its mailbox, stale ones after a restart; in a
// bounded mailbox they took the room of other messages, and those past
// the capacity were dead letters.
func (t *Timer) fire() {
	r := t.r
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.ext.Load() // not nil: startTimer made it
	if _, live := e.timers[t]; !live {
		return
	}
	if t.every == 0 {
		delete(e.timers, t)
	}
	if t.every == 0 || !t.queued.Load() {
		r.enqueueTimer(t)
	}
	if t.every > 0 {
		t.stopClock = r.sys.clock.AfterFunc(t.every, t.fire)
	}
}

// cancelTimers stops all of the actor's timers, on stop and on restart.
func (r *Ref) cancelTimers() {
	e := r.ext.Load()
	if e == nil {
		return // no timer was ever started
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for t := range e.timers {
		t.cancelled.Store(true)
		t.stopClock()
	}
	e.timers = nil
}

// timerLive reports whether the queued message of t is still to be
// delivered: t was not stopped, and no restart came after it was armed
// (see refExt.restarted). It runs on the actor's goroutine.
func (r *Ref) timerLive(t *Timer) bool {
	return !t.cancelled.Load() && t.restarted == r.ext.Load().restarted
}

// enqueueTimer queues a fired timer's message without ever blocking: into a
// full bounded mailbox it becomes a dead letter.
func (r *Ref) enqueueTimer(t *Timer) {
	if r.isStopping() {
		return // the actor is cancelling its timers
	}
	if tokens := r.tokens(); tokens != nil {
		select {
		case tokens <- struct{}{}:
		default:
			r.sys.deadLetter(r, t.msg, ErrMailboxFull)
			return
		}
	}
	if t.every > 0 {
		// Before the push: the actor clears it once it takes the tick.
		t.queued.Store(true)
	}
	r.userHead.push(r.sys.envelopes.get(timerFired{t}, nil))
	r.schedule()
}
