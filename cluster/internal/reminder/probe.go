package reminder

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"time"
)

// probeKind is the kind whose reminders the probe lists. No grain has it (a
// kind is a proto service name, which holds no space), so the listing reads
// nothing, yet it needs a working store all the same: it is a cheap question
// that only a store that is down fails.
const probeKind = "protograin reminder store probe"

// storeWatch is what a Scheduler knows of whether its store works, from the
// probe: a listing of probeKind that the scheduler makes after a firing or
// a listing failed for the store, and then every ProbeEvery while it fails.
//
// The probe, not the failures themselves, tells an outage: a firing that
// fails for one grain only (a record the store cannot read, a row locked
// for long) or a kind whose listing keeps failing (a damaged record) would
// otherwise look like an outage that ends at the next store operation
// that succeeds, and be tried again without backoff, over and over. A
// probe asks the same question whoever failed, so only an outage that the
// probe saw begin and end lets the firings and listings that wait for the
// store out of their backoff. Its fields are guarded by Scheduler.mu.
type storeWatch struct {
	down    bool // the last probe failed
	probing bool // a probe runs, or timer is set for the next one
	// again is set when a failure for the store comes while a probe runs,
	// which may have got through before the store went down: another
	// probe follows it.
	again bool
	timer Timer     // the next probe, while down or asked for too soon after the last
	last  time.Time // when the last probe started
	// recoveries counts the probes that found the store working after one
	// that found it down. A firing or a listing that began before such a
	// probe and failed for the store after it is tried again within
	// ProbeEvery: it met the store as it was before, and no later recovery
	// may come to let it out of its backoff.
	recoveries uint64
}

// suspectStoreLocked asks for a probe after a failure for the store, unless
// one is under way or due. Probes run ProbeEvery apart at the least, so
// that a store that works and a grain that keeps failing for its own
// reasons cost one probe per ProbeEvery at most.
func (s *Scheduler) suspectStoreLocked() {
	w := &s.watch
	switch {
	case s.stopped:
	case w.probing && w.timer == nil: // a probe runs, and may have got through before this failure
		w.again = true
	case !w.probing:
		w.probing = true
		s.probeAtLocked(w.last.Add(s.cfg.ProbeEvery))
	}
}

// probeAtLocked runs the next probe at at, or at once if at is past.
func (s *Scheduler) probeAtLocked(at time.Time) {
	if at.After(s.cfg.Clock.Now()) {
		s.watch.timer = s.cfg.Clock.AfterFunc(at, s.probeTimerFired)
		return
	}
	s.watch.timer = nil
	s.wg.Add(1) // under mu, with stopped checked: Stop's Wait cannot miss it
	go s.probe()
}

// probeTimerFired runs the probe the timer was set for, unless the
// scheduler stopped meanwhile (Stop could not stop the timer in time).
func (s *Scheduler) probeTimerFired() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.probeAtLocked(time.Time{})
	}
}

// probe lists probeKind within ListTimeout, and acts on the answer: a
// failure means the store is down, and another probe follows ProbeEvery
// later; a success after a failure means the store works again, and lets
// out of their backoff the firings and listings that wait for it.
func (s *Scheduler) probe() {
	defer s.wg.Done()
	s.mu.Lock()
	s.watch.last, s.watch.again = s.cfg.Clock.Now(), false
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ListTimeout)
	_, err := s.cfg.Store.ListReminders(ctx, probeKind)
	cancel()

	s.mu.Lock()
	defer s.mu.Unlock()
	w := &s.watch
	switch {
	case s.stopped: // cancelled, not failed
	case err != nil:
		if !w.down {
			s.cfg.Logger.Warn("reminder: the store does not work; what failed for it is tried again once it does",
				"probe_every", s.cfg.ProbeEvery, "error", err)
		}
		w.down = true
		s.probeAtLocked(w.last.Add(s.cfg.ProbeEvery))
	case w.down:
		w.down, w.probing, w.again = false, false, false
		w.recoveries++
		n := s.releaseLocked()
		select {
		case s.recovered <- struct{}{}: // listLoop lets the failed listings out
		default: // it has yet to take the last one, which stands for this one
		}
		s.cfg.Logger.Info("reminder: the store works again; trying again what failed for it", "firings", n)
	case w.again: // a failure came while this probe ran, which may have been too early to see it
		w.again = false
		s.probeAtLocked(w.last.Add(s.cfg.ProbeEvery))
	default: // the store works, and worked: what failed did so for its own reasons
		w.probing = false
	}
}

// releaseLocked lets the entries that wait in backoff after a failure for
// the store out of it: each is tried again within ProbeEvery, at a random
// moment, so that a store that just came back is not met by all of them at
// once (MaxConcurrentFires bounds them as well). It returns their number.
func (s *Scheduler) releaseLocked() int {
	now, n := s.cfg.Clock.Now(), 0
	for _, e := range s.entries {
		if !e.storeWait {
			continue
		}
		e.storeWait = false
		n++
		if at := s.soon(now); at.Before(e.at) && e.index >= 0 {
			e.at = at
			heap.Fix(&s.queue, e.index)
		}
	}
	s.poke()
	return n
}

// soon returns a random moment in the ProbeEvery after now: when a firing
// or a listing that failed for the store is tried again once the store
// works.
func (s *Scheduler) soon(now time.Time) time.Time {
	return now.Add(rand.N(s.cfg.ProbeEvery))
}
