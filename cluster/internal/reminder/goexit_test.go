package reminder

import (
	goruntime "runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// TestAFireThatCallsGoexitFailed: a Fire that ends its goroutine with
// runtime.Goexit (a cluster node activates the grain on it, and a
// t.FailNow in OnActivate calls Goexit) failed, as one that returns an
// error: the reminder is retried after its backoff, and the firing's slot
// among MaxConcurrentFires is free for the next reminder due. Before, the
// entry stayed marked running for good: it never fired again and, with a
// single slot, no other reminder fired either.
func TestAFireThatCallsGoexitFailed(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	var exits atomic.Int32
	rec.setFail(func(r storage.Reminder) error {
		if r.Grain.Identity == "g1" && exits.Add(1) == 1 {
			goruntime.Goexit()
		}
		return nil
	})
	cfg := testConfig(t, st, clk, o.owns("a"), rec) // backoff 1s
	cfg.MaxConcurrentFires = 1
	s := start(t, cfg)
	due := t0().Add(time.Minute)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "once", Due: due})
	register(t, s, storage.Reminder{Grain: grain("g2"), Name: "once", Due: due.Add(2 * time.Second)})
	clk.Set(due)
	waitFor(t, wait, "the firing that exits, and its retry after the backoff", func() bool {
		return rec.calls.Load() == 1 && clk.timerAt(due.Add(time.Second))
	})

	clk.Set(due.Add(2 * time.Second)) // g1's retry and g2, in turn in the one slot
	waitFor(t, wait, "both reminders to fire", func() bool {
		return rec.count() == 2 && len(stored(t, st)) == 0 && s.Len() == 0
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != 0 {
		t.Errorf("%d firings counted in flight after every firing ended, want 0", s.inflight)
	}
}
