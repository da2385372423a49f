package reminder

import (
	"container/heap"
	"context"
	"errors"
	"math"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// errFireExited is the failure of a firing whose Fire called
// runtime.Goexit (see Scheduler.exited).
var errFireExited = errors.New("reminder: Fire called runtime.Goexit")

// fire runs one firing of r, entry e's reminder at generation gen, in its own
// goroutine, and then puts e back on the schedule or takes it off.
//
// Fire is the caller's code, and the grain's may run in it (a cluster node
// activates the grain on this goroutine): one that calls runtime.Goexit
// ends the goroutine, and fire never gets back from it. The deferred call
// tells that by firing, set while Fire runs, and fails the firing all the
// same (see exited).
func (s *Scheduler) fire(e *entry, r storage.Reminder, gen uint64) {
	var recoveries uint64
	firing := false
	defer func() {
		if firing {
			s.exited(e, r, gen, recoveries)
		}
		s.wg.Done()
	}()
	if !s.stillOwned(e, r, gen) {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.FireTimeout)
	defer cancel()
	s.mu.Lock()
	if e.gen != gen { // replaced or unregistered since dispatch: nothing to deliver
		s.finishLocked(e)
		s.mu.Unlock()
		return
	}
	e.cancelFire = cancel // see entry.bump
	recoveries = s.watch.recoveries
	s.mu.Unlock()
	firing = true
	err := s.cfg.Fire(ctx, r)
	firing = false
	s.mu.Lock()
	e.cancelFire = nil
	s.mu.Unlock()
	if err != nil {
		s.retry(e, r, gen, err, recoveries)
		return
	}
	s.fired(e, r, gen)
}

// exited ends the firing of r, entry e's reminder at generation gen, whose
// Fire called runtime.Goexit (t.FailNow, or a library's), among the
// deferred calls of the goroutine that it ends: the firing failed, as one
// whose Fire returned an error does, and is retried after its backoff
// (see retry, which logs it). Without it the entry stayed marked running
// for good, so that the reminder never fired again on this node, and its
// firing held one of the MaxConcurrentFires slots until Stop. recoveries is
// as for retry.
func (s *Scheduler) exited(e *entry, r storage.Reminder, gen uint64, recoveries uint64) {
	s.mu.Lock()
	e.cancelFire = nil
	s.mu.Unlock()
	s.retry(e, r, gen, errFireExited, recoveries)
}

// stillOwned asks Config.Owns whether this node still owns r's grain, and
// takes e off the schedule if not. Holding own makes the answer and its
// effect one step for a listing: a listing that keeps e either comes
// before (and then this check is the newer word) or after (and adds the
// reminder back).
func (s *Scheduler) stillOwned(e *entry, r storage.Reminder, gen uint64) bool {
	s.own.Lock()
	defer s.own.Unlock()
	if s.cfg.Owns(r.Grain.Kind, r.Grain.Identity) {
		return true
	}
	s.disown(e, gen)
	return false
}

// disown takes e off the schedule: the grain moved to another node, whose
// Refresh lists the reminder from the store.
func (s *Scheduler) disown(e *entry, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.gen == gen && !e.gone {
		delete(s.entries, e.id)
		e.gone = true
	}
	s.finishLocked(e)
}

// retry schedules the next attempt after a failed Fire, with exponential
// backoff. The store is left alone: the reminder still has the due time that
// failed, so a restart fires it again. A firing whose reminder was replaced
// or unregistered meanwhile (its context was cancelled for that) did not
// fail: it is neither retried nor logged.
//
// A firing that failed for the store (Config.StoreFailure) waits for it:
// the store is probed, and the entry is let out of its backoff once a probe
// finds the store working after one found it down (see storeWatch). If a
// probe did so while the firing ran (recoveries is the count of such
// probes when it started), the failure is news from before the store came
// back, and the entry is tried again soon rather than after its backoff.
func (s *Scheduler) retry(e *entry, r storage.Reminder, gen uint64, err error, recoveries uint64) {
	store := s.cfg.StoreFailure != nil && s.cfg.StoreFailure(err) // not under mu: it is the caller's code
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.gen == gen && !e.gone {
		now := s.cfg.Clock.Now()
		e.failures++
		e.at = now.Add(s.backoff(e.failures))
		if store {
			if recoveries == s.watch.recoveries {
				e.storeWait = true
			} else if at := s.soon(now); at.Before(e.at) {
				e.at = at
			}
			s.suspectStoreLocked()
		}
		if !s.closed {
			s.cfg.Logger.Warn("reminder: fire failed; retrying",
				"grain", r.Grain.String(), "reminder", r.Name, "due", r.Due,
				"failures", e.failures, "retry_at", e.at, "store_failed", store, "error", err)
		}
	}
	s.finishLocked(e)
}

// backoff returns the wait before retrying after the given number of failed
// attempts in a row: RetryBackoff doubled per earlier failure, capped at
// RetryBackoffMax.
func (s *Scheduler) backoff(failures int) time.Duration {
	return doubled(s.cfg.RetryBackoff, s.cfg.RetryBackoffMax, failures)
}

// doubled returns first doubled per failure in a row after the first,
// capped at most.
func doubled(first, most time.Duration, failures int) time.Duration {
	d := first
	for i := 1; i < failures && d < most; i++ {
		d *= 2
	}
	return min(d, most)
}

// fired records a successful Fire: it saves a periodic reminder's next due
// time or deletes a one-shot reminder, then reschedules or forgets e.
//
// The store write is conditional (Store.CompleteReminder): it applies only
// if the store still holds the reminder as this node last read or wrote
// it. So a firing never undoes a change made meanwhile, by this node or
// another: a Register or Unregister here, a leaving node's hook, a firing
// on a node that owned the grain a moment before. That is why no lock
// orders the firing's write with Register's and Unregister's: whichever
// lands last, the store is right (Register's unconditional save last: its
// reminder stands; the firing's write last: it finds Register's reminder,
// not the fired one, and changes nothing; likewise for a delete, which the
// firing's write cannot undo). When the write changes nothing, the entry
// leaves the schedule unless a Register or Unregister here changed it
// meanwhile (they raised its generation, and own it now), and a listing is
// asked for, which schedules whatever the store holds. An entry that a
// listing dropped because another node owns the grain now keeps its
// generation, so its write still happens and the new owner does not fire
// the same due time again.
func (s *Scheduler) fired(e *entry, r storage.Reminder, gen uint64) {
	s.mu.Lock()
	if e.gen != gen { // replaced or unregistered while firing: that write wins
		s.finishLocked(e)
		s.mu.Unlock()
		return
	}
	was := e.stored          // as this node last read or wrote it: what the write expects
	s.beginWriteLocked(e.id) // with the read of was: no listing applies in between
	s.mu.Unlock()

	next := r
	if r.Period > 0 {
		next.Due = nextDue(r.Due, r.Period, s.cfg.Clock.Now())
	}
	done, err := s.persist(was, r, next)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.endWriteLocked(e.id)
	switch {
	case e.gen != gen: // replaced or unregistered meanwhile: that change owns e
	case err == nil && !done:
		// Another writer replaced or deleted the reminder: the next
		// listing schedules what the store holds.
		if !e.gone {
			delete(s.entries, e.id)
			e.gone = true
		}
		s.Relist()
	case r.Period > 0:
		e.due, e.at, e.failures = next.Due, next.Due, 0
		if err == nil {
			e.stored = next
		}
	case !e.gone:
		delete(s.entries, e.id)
		e.gone = true
	}
	s.finishLocked(e)
}

// persist writes the outcome of a successful firing of r to the store, if
// the store still holds was: next for a periodic reminder, a deletion for
// a one-shot one. It reports whether the write applied. The write is
// bounded by FireTimeout and cancelled when the context given to Stop ends.
// A failure is logged: the firing is over, and the worst outcome is that
// it repeats, which at-least-once allows.
func (s *Scheduler) persist(was, r, next storage.Reminder) (bool, error) {
	ctx, cancel := context.WithTimeout(s.writeCtx, s.cfg.FireTimeout)
	defer cancel()
	var n *storage.Reminder
	if r.Period > 0 {
		n = &next
	}
	done, err := s.cfg.Store.CompleteReminder(ctx, was, n)
	if err != nil {
		s.cfg.Logger.Error("reminder: store write after firing failed; the reminder may fire again",
			"grain", r.Grain.String(), "reminder", r.Name, "due", r.Due, "error", err)
	}
	return done, err
}

// finishLocked ends e's firing and puts e back on the heap unless it left
// the schedule meanwhile.
func (s *Scheduler) finishLocked(e *entry) {
	e.running = false
	s.inflight--
	if !e.gone {
		heap.Push(&s.queue, e)
	} else if s.leaving[e.id] == e {
		delete(s.leaving, e.id)
	}
	s.poke()
}

// nextDue returns the first due+k·period, k ≥ 1, that is after now: the
// periods missed while the node was down or Fire kept failing collapse into
// the firing that just happened.
func nextDue(due time.Time, period time.Duration, now time.Time) time.Time {
	next := due.Add(period)
	for !next.After(now) {
		// now.Sub saturates for gaps beyond ~292 years, and k is capped so
		// that period*k cannot overflow; the loop then takes another step.
		k := now.Sub(next) / period
		if k < math.MaxInt64/period {
			k++
		}
		next = next.Add(period * k)
	}
	return next
}
