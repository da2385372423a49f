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
	stopClock func() bool // guarded by r.mu
}

// Stop cancels the timer. It reports whether this call cancelled it: false
// if it was already cancelled or, for SendAfter, had already fired. Once
// Stop returns, the timer's message is not delivered, even if it was queued.
func (t *Timer) Stop() bool {
	r := t.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, live := r.timers[t]; !live {
		t.cancelled.Store(true)
		return false
	}
	delete(r.timers, t)
	t.cancelled.Store(true)
	t.stopClock()
	return true
}

// startTimer arms a timer that sends msg after d and then, if every is
// positive, every every.
func (r *Ref) startTimer(d, every time.Duration, msg any) *Timer {
	t := &Timer{r: r, msg: msg, every: every}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timers == nil {
		r.timers = make(map[*Timer]struct{})
	}
	r.timers[t] = struct{}{}
	t.stopClock = r.sys.clock.AfterFunc(d, t.fire)
	return t
}

// fire enqueues the timer's message and re-arms a periodic timer. Holding
// mu while enqueueing orders the send before any later cancellation;
// enqueueing never blocks here.
func (t *Timer) fire() {
	r := t.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, live := r.timers[t]; !live {
		return
	}
	if t.every == 0 {
		delete(r.timers, t)
	}
	r.enqueueTimer(t)
	if t.every > 0 {
		t.stopClock = r.sys.clock.AfterFunc(t.every, t.fire)
	}
}

// cancelTimers stops all of the actor's timers, on stop and on restart.
func (r *Ref) cancelTimers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t := range r.timers {
		t.cancelled.Store(true)
		t.stopClock()
	}
	r.timers = nil
}

// enqueueTimer queues a fired timer's message without ever blocking: into a
// full bounded mailbox it becomes a dead letter.
func (r *Ref) enqueueTimer(t *Timer) {
	if r.stopping.Load() {
		return // the actor is cancelling its timers
	}
	if r.tokens != nil {
		select {
		case r.tokens <- struct{}{}:
		default:
			r.sys.deadLetter(r, t.msg, ErrMailboxFull)
			return
		}
	}
	r.userq.push(r.sys.envelopes.get(timerFired{t}, nil))
	r.schedule()
}
