package reminder

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Relist asks for a listing of every hosted kind in the background, as
// Refresh does, and returns at once: call it whenever ownership may have
// moved (a member joined or left), from code that must not wait for the
// store. The scheduler lists on a goroutine of its own, one listing at a
// time, each within ListTimeout. Requests made while a listing runs are
// served by one more listing after it, whatever their number, which asks
// Config.Owns afresh. The kinds whose listing fails are listed again after
// ListRetryBackoff, doubling up to ListRetryBackoffMax, until their listing
// succeeds; the other kinds are scheduled meanwhile. Failures are logged,
// the first of a run of them as a warning and the others at debug level,
// so that a store down for a while does not fill the log.
//
// A request made before Start waits for it; after Stop, Relist does
// nothing.
func (s *Scheduler) Relist() {
	select {
	case s.relist <- struct{}{}:
	default: // a listing is asked for already, and will see this change too
	}
}

// listLoop is the goroutine of the background listings: see Relist. It
// returns at Stop.
func (s *Scheduler) listLoop() {
	defer s.wg.Done()
	pending := make(map[string]bool) // the kinds to list
	failures := 0                    // listings in a row that failed for some kind
	var retry Timer                  // set while kinds wait to be listed again
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case <-s.done:
			return
		case <-s.relist:
			for _, k := range s.cfg.Kinds {
				pending[k] = true
			}
		case <-s.relistRetry:
		}
		if len(pending) == 0 {
			continue // a retry timer that went off as a listing made it useless
		}
		if retry != nil {
			retry.Stop()
			retry = nil
		}
		kinds := make([]string, 0, len(pending))
		for _, k := range s.cfg.Kinds { // in Config order, for readable errors
			if pending[k] {
				kinds = append(kinds, k)
			}
		}
		clear(pending)
		failed, err := s.refresh(s.ctx, kinds)
		s.mu.Lock()
		s.relists++
		s.mu.Unlock()
		switch {
		case errors.Is(err, ErrClosed) || s.ctx.Err() != nil:
			return // stopped: the listing was cancelled, not failed
		case err == nil:
			if failures > 0 {
				s.cfg.Logger.Info("reminder: listed reminders again", "failed_before", failures)
			}
			failures = 0
			continue
		}
		for _, k := range failed {
			pending[k] = true
		}
		failures++
		wait := s.listBackoff(failures)
		level := slog.LevelWarn
		if failures > 1 {
			level = slog.LevelDebug
		}
		s.cfg.Logger.Log(context.Background(), level, "reminder: list reminders failed; trying again",
			"kinds", failed, "failures", failures, "retry_in", wait, "error", err)
		retry = s.cfg.Clock.AfterFunc(s.cfg.Clock.Now().Add(wait), func() {
			select {
			case s.relistRetry <- struct{}{}:
			default:
			}
		})
	}
}

// listBackoff returns the wait before listing again after the given number
// of failed listings in a row: ListRetryBackoff doubled per earlier
// failure, capped at ListRetryBackoffMax.
func (s *Scheduler) listBackoff(failures int) time.Duration {
	return doubled(s.cfg.ListRetryBackoff, s.cfg.ListRetryBackoffMax, failures)
}
