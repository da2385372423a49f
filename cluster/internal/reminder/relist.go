package reminder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// Refresh makes the schedule match the store and the current ownership,
// and returns once it does: it lists every hosted kind, adds the reminders
// of grains this node now owns, drops those it no longer owns, and takes
// over changes other nodes made. Relist does the same in the background.
// The kinds are listed at once, each within ListTimeout, and each kind's
// part of the schedule is updated as its listing ends. The listing of a
// kind that fails leaves that kind's part of the schedule as it was; the
// error names each kind that failed. Refresh does not retry: Relist does.
func (s *Scheduler) Refresh(ctx context.Context) error {
	if err := s.usable(); err != nil {
		return err
	}
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return ErrClosed // it would schedule what never fires
	}
	errs := make([]error, len(s.cfg.Kinds))
	var wg sync.WaitGroup
	for i, kind := range s.cfg.Kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.listKind(ctx, kind)
		}()
	}
	wg.Wait()
	var failed listError // in Config order, for readable errors
	for _, err := range errs {
		switch {
		case errors.Is(err, ErrClosed):
			return ErrClosed
		case err != nil:
			failed = append(failed, err)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return failed
}

// listKind lists the reminders of kind within ListTimeout and makes the
// kind's part of the schedule match the store and the current ownership
// (see Refresh). It returns the listing's error, naming the kind, or
// ErrClosed if the scheduler stopped meanwhile. It holds no lock while it
// waits for the store.
func (s *Scheduler) listKind(ctx context.Context, kind string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ListTimeout)
	defer cancel()
	s.mu.Lock()
	start := s.beginListingLocked()
	s.kindSeq[kind]++
	n := s.kindSeq[kind]
	s.mu.Unlock()
	rs, err := s.cfg.Store.ListReminders(ctx, kind)
	if err != nil {
		s.mu.Lock()
		s.endListingLocked(start)
		s.mu.Unlock()
		return fmt.Errorf("reminder: list reminders of kind %q: %w", kind, err)
	}
	return s.apply(kind, rs, start, n)
}

// listed is one reminder found in the store by a listing.
type listed struct {
	r     storage.Reminder
	owned bool // this node owns the grain
}

// apply makes the part of the schedule of kind match rs, its reminders as
// a listing that started at seq start found them in the store, and the
// current ownership. It leaves alone the reminders this node wrote while
// the listing ran (see Scheduler.writes): the schedule already shows those
// writes, which the listing may not have seen; where what it read of them
// disagrees with the schedule, it asks for another listing. n numbers the
// listing among those of kind (see Scheduler.kindSeq).
func (s *Scheduler) apply(kind string, rs []storage.Reminder, start, n uint64) error {
	// Ownership is asked and applied under own, one step for stillOwned.
	s.own.Lock()
	defer s.own.Unlock()
	found := make(map[id]listed, len(rs))
	for _, r := range rs {
		found[id{r.Grain, r.Name}] = listed{r, s.cfg.Owns(r.Grain.Kind, r.Grain.Identity)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.endListingLocked(start)
	if s.stopped {
		return ErrClosed // it would schedule what never fires
	}
	if n < s.applied[kind] {
		return nil // a listing of kind that started later was applied: this read may be older
	}
	s.applied[kind] = n
	for k, e := range s.entries {
		if k.grain.Kind != kind {
			continue
		}
		l, ok := found[k]
		switch {
		case s.skipLocked(k, start):
			// What the listing read of k may be older than this node's
			// write, but ownership is asked now: a grain this node does
			// not own leaves the schedule all the same, and its owner
			// lists the reminder from the store.
			if !ok || !same(e.stored, l.r) {
				s.recheckLocked(k)
			}
			if !ok {
				l.owned = s.cfg.Owns(k.grain.Kind, k.grain.Identity)
			}
			if !l.owned {
				s.removeLocked(e)
			}
		case !ok: // deleted by another node: a running firing must neither deliver nor write it back
			e.bump()
			s.removeLocked(e)
		case !l.owned: // moved: a running firing still records its outcome
			s.removeLocked(e)
		}
	}
	for k, e := range s.leaving {
		if _, ok := found[k]; !ok && k.grain.Kind == kind && !s.skipLocked(k, start) {
			e.bump()
		}
	}
	for k, l := range found {
		if !l.owned {
			continue
		}
		if !s.skipLocked(k, start) {
			s.adoptLocked(k, l.r)
		} else if e, ok := s.entries[k]; !ok || !same(e.stored, l.r) {
			s.recheckLocked(k) // it may be this node's again, or changed by another
		}
	}
	s.poke()
	return nil
}

// listError is the error of a listing that failed for some kinds: one
// error per kind, each naming it, on one line.
type listError []error

// Error returns the error of each kind, separated by semicolons.
func (e listError) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns the error of each kind.
func (e listError) Unwrap() []error { return e }

// adoptLocked schedules r, listed from the store, unless the schedule
// already holds it as stored. When the store holds something else, another
// node wrote it after this one: it replaces the entry, and a firing under
// way for the entry is cancelled and will not write its outcome over it.
// An entry that left the schedule while being fired and is listed
// unchanged comes back as it is, so that the firing's outcome still
// applies to it.
func (s *Scheduler) adoptLocked(k id, r storage.Reminder) {
	if e, ok := s.entries[k]; ok {
		if !same(e.stored, r) {
			s.putLocked(k, r)
		}
		return
	}
	if e, ok := s.leaving[k]; ok && same(e.stored, r) {
		delete(s.leaving, k)
		e.gone = false
		s.entries[k] = e
		return
	}
	s.putLocked(k, r)
}

// same reports whether a and b are the same reminder record.
func same(a, b storage.Reminder) bool {
	return a.Grain == b.Grain && a.Name == b.Name && a.Due.Equal(b.Due) && a.Period == b.Period
}

// Relist asks for a listing of every hosted kind in the background, as
// Refresh does, and returns at once: call it whenever ownership may have
// moved (a member joined or left), from code that must not wait for the
// store. The scheduler lists each kind on a goroutine of its own, all
// kinds at once, each within ListTimeout, and updates a kind's part of the
// schedule as soon as its listing ends, so a kind whose listing hangs
// holds up no other. Requests made while a kind is being listed are served
// by one more listing of it after that one, whatever their number, which
// asks Config.Owns afresh. A kind whose listing fails is listed again
// after ListRetryBackoff, doubling up to ListRetryBackoffMax, until its
// listing succeeds, or within ProbeEvery once a probe finds the store
// working again after it found it down (see storeWatch). Failures are
// logged, per kind, the first of a run of them as a warning and the others
// at debug level, so that a store down for a while does not fill the log.
//
// Besides, the scheduler asks for a listing by itself RelistEvery after
// the last one asked for. A request made before Start waits for it; after
// Stop, Relist does nothing.
func (s *Scheduler) Relist() {
	select {
	case s.relist <- struct{}{}:
	default: // a listing is asked for already, and will see this change too
	}
}

// RelistAfter asks for a listing of every hosted kind, as Relist does, d
// from now. Call it when another node's store writes may land after the
// listings this node made for a change: a member that leaves deactivates
// its grains after the others saw it leave, and their OnDeactivate hooks
// may still register and unregister reminders. At most one such request
// is pending: a request for a later time than the pending one moves it
// there (the later listing sees what the earlier one would have), one for
// an earlier time is served by the pending one. It does nothing after
// Stop, and before Start the listing waits for Start.
func (s *Scheduler) RelistAfter(d time.Duration) {
	if s.cfgErr != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	at := s.cfg.Clock.Now().Add(d)
	if s.later != nil {
		if !at.After(s.laterAt) {
			return
		}
		s.later.Stop()
	}
	s.laterGen++
	gen := s.laterGen
	s.laterAt = at
	s.later = s.cfg.Clock.AfterFunc(at, func() {
		s.mu.Lock()
		if gen == s.laterGen { // not a timer stopped too late
			s.later, s.laterAt = nil, time.Time{}
		}
		s.mu.Unlock()
		s.Relist()
	})
}

// kindListing is what listLoop knows of the background listing of one
// kind.
type kindListing struct {
	pending  bool  // a listing is asked for
	running  bool  // a listing runs
	failures int   // listings in a row that failed
	retry    Timer // set while the kind waits to be listed again after a failure
}

// kindListed is the outcome of one background listing of kind.
type kindListed struct {
	kind string
	err  error
	// recoveries is storeWatch.recoveries when the listing started.
	recoveries uint64
}

// listLoop is the goroutine that runs the background listings: see Relist.
// It returns at Stop.
func (s *Scheduler) listLoop() {
	defer s.wg.Done()
	kinds := make(map[string]*kindListing, len(s.cfg.Kinds))
	for _, k := range s.cfg.Kinds {
		kinds[k] = &kindListing{}
	}
	// One listing per kind runs at a time, so the buffer takes every
	// outcome: a listing that ends after Stop does not block.
	results := make(chan kindListed, len(s.cfg.Kinds))
	var every Timer // the next anti-entropy listing (RelistEvery)
	defer func() {
		if every != nil {
			every.Stop()
		}
		for _, l := range kinds {
			if l.retry != nil {
				l.retry.Stop()
			}
		}
	}()
	for {
		select {
		case <-s.done:
			return
		case <-s.relist:
			every = s.relistAll(kinds, every)
		case k := <-s.relistRetry:
			kinds[k].pending = true
		case <-s.recovered:
			s.listSoon(kinds)
		case res := <-results:
			l := kinds[res.kind]
			l.running = false
			if s.listed(res, l) {
				return // stopped: the listing was cancelled, not failed
			}
			idle := true
			for _, l := range kinds {
				idle = idle && !l.running
			}
			if idle {
				s.mu.Lock()
				s.relists++
				s.mu.Unlock()
			}
		}
		// A request made before the listings below start is served by
		// them: taken now, it cannot ask for another round after them.
		select {
		case <-s.relist:
			every = s.relistAll(kinds, every)
		default:
		}
		for _, k := range s.cfg.Kinds {
			l := kinds[k]
			if !l.pending || l.running {
				continue
			}
			l.pending, l.running = false, true
			if l.retry != nil {
				l.retry.Stop()
				l.retry = nil
			}
			s.wg.Add(1) // listLoop is counted too, so Stop's Wait cannot miss this
			go func() {
				defer s.wg.Done()
				recoveries := s.recoveries()
				results <- kindListed{k, s.listKind(s.ctx, k), recoveries}
			}()
		}
	}
}

// relistAll marks every kind for listing, for a request of Relist, and
// sets the anti-entropy timer (RelistEvery) afresh in place of every; it
// returns the new timer, nil if RelistEvery is negative.
func (s *Scheduler) relistAll(kinds map[string]*kindListing, every Timer) Timer {
	for _, l := range kinds {
		l.pending = true
	}
	if every != nil {
		every.Stop()
	}
	if s.cfg.RelistEvery < 0 {
		return nil
	}
	return s.cfg.Clock.AfterFunc(s.cfg.Clock.Now().Add(s.cfg.RelistEvery), s.Relist)
}

// listed handles the outcome of a background listing of one kind, whose
// state is l: it logs a failure and sets the timer that lists the kind
// again, or logs the recovery. It reports whether the scheduler stopped.
//
// A listing fails for the store, whatever the cause (a store that is down,
// or a damaged record): the store is probed, and once a probe finds it
// working after one found it down, the kind is listed again within
// ProbeEvery (see listSoon) rather than after its backoff; so is a kind
// whose listing failed while a probe found the store working again, as
// that failure is news from before.
func (s *Scheduler) listed(res kindListed, l *kindListing) (stopped bool) {
	switch {
	case errors.Is(res.err, ErrClosed) || s.ctx.Err() != nil:
		return true
	case res.err == nil:
		if l.failures > 0 {
			s.cfg.Logger.Info("reminder: listed reminders again", "kind", res.kind, "failed_before", l.failures)
		}
		l.failures = 0
		return false
	}
	l.failures++
	now := s.cfg.Clock.Now()
	wait := s.listBackoff(l.failures)
	s.mu.Lock()
	if res.recoveries != s.watch.recoveries {
		wait = min(wait, s.soon(now).Sub(now))
	}
	s.suspectStoreLocked()
	s.mu.Unlock()
	level := slog.LevelWarn
	if l.failures > 1 {
		level = slog.LevelDebug
	}
	s.cfg.Logger.Log(context.Background(), level, "reminder: list reminders failed; trying again",
		"kind", res.kind, "failures", l.failures, "retry_in", wait, "error", res.err)
	if l.retry != nil {
		l.retry.Stop()
	}
	l.retry = s.listAgainAt(res.kind, now.Add(wait))
	return false
}

// listAgainAt returns a timer that asks listLoop, at at, for a listing of
// kind, whose last listing failed.
func (s *Scheduler) listAgainAt(kind string, at time.Time) Timer {
	return s.cfg.Clock.AfterFunc(at, func() {
		select {
		case s.relistRetry <- kind:
		case <-s.done:
		}
	})
}

// listSoon lists again, each within ProbeEvery, the kinds that wait in
// backoff after a failed listing: a probe found the store working again
// (see storeWatch). A kind whose timer went off already is asked for by
// it.
func (s *Scheduler) listSoon(kinds map[string]*kindListing) {
	now := s.cfg.Clock.Now()
	for k, l := range kinds {
		if l.retry != nil && l.retry.Stop() {
			l.retry = s.listAgainAt(k, s.soon(now))
		}
	}
}

// recoveries returns storeWatch.recoveries.
func (s *Scheduler) recoveries() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watch.recoveries
}

// listBackoff returns the wait before listing a kind again after the
// given number of its failed listings in a row: ListRetryBackoff doubled
// per earlier failure, capped at ListRetryBackoffMax.
func (s *Scheduler) listBackoff(failures int) time.Duration {
	return doubled(s.cfg.ListRetryBackoff, s.cfg.ListRetryBackoffMax, failures)
}
