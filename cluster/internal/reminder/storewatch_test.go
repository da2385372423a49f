package reminder

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// errOutage is what a Fire returns when the grain's state could not be
// loaded or saved because the store is down; outageConfig classes it as
// the store's.
var errOutage = errors.New("test: the store is down")

// outageConfig returns the tests' Config with every backoff an hour, so
// that a firing or a listing tried again within seconds was let out of its
// backoff by the store's recovery, and with the errors of Fire that wrap
// errOutage classed as the store's. ProbeEvery is the default second.
func outageConfig(t *testing.T, st storage.Store, clk Clock, own func(string, string) bool, rec *recorder) Config {
	cfg := testConfig(t, st, clk, own, rec)
	cfg.RetryBackoff, cfg.RetryBackoffMax = time.Hour, time.Hour
	cfg.StoreFailure = func(err error) bool { return errors.Is(err, errOutage) }
	return cfg
}

// retryAt returns when the reminder name of grain g is tried next, if it
// waits on the heap after a failure; the zero time otherwise.
func retryAt(s *Scheduler, g storage.Key, name string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[id{g, name}]
	if e == nil || e.running || e.failures == 0 {
		return time.Time{}
	}
	return e.at
}

// probeDone reports whether s has no probe under way or due.
func probeDone(s *Scheduler) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.watch.probing
}

// TestAFiringThatFailedForTheStoreFiresOnceTheStoreWorks: two firings
// fail while the store is down, one for the store and one for its grain;
// both wait an hour. The scheduler probes the store every second while it
// is down, and once a probe finds it working again, the firing that failed
// for the store is tried within a second, while the one that failed for
// its grain keeps its hour.
func TestAFiringThatFailedForTheStoreFiresOnceTheStoreWorks(t *testing.T) {
	t.Parallel()
	st := &listFaults{Store: newMemstore(t)}
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := start(t, outageConfig(t, st, clk, o.owns("a"), rec))
	due := t0().Add(time.Minute)
	register(t, s, storage.Reminder{Grain: grain("store"), Name: "r", Due: due})
	register(t, s, storage.Reminder{Grain: grain("grain"), Name: "r", Due: due})
	rec.setFail(func(r storage.Reminder) error {
		if r.Grain.Identity == "store" {
			return fmt.Errorf("load the grain's state: %w", errOutage)
		}
		return errors.New("the grain is busy")
	})
	st.fail(probeKind, true)
	clk.Set(due)
	inAnHour := due.Add(time.Hour)
	waitFor(t, wait, "both firings to fail for an hour, and a probe to find the store down", func() bool {
		return rec.calls.Load() == 2 && retryAt(s, grain("store"), "r").Equal(inAnHour) &&
			retryAt(s, grain("grain"), "r").Equal(inAnHour) && st.listings(probeKind) == 1 && pendingAt(clk, due.Add(time.Second))
	})
	clk.Advance(time.Second)
	waitFor(t, wait, "a second probe to find the store down, a second later", func() bool {
		return st.listings(probeKind) == 2 && pendingAt(clk, due.Add(2*time.Second))
	})

	st.fail(probeKind, false)
	rec.setFail(func(r storage.Reminder) error {
		if r.Grain.Identity == "grain" {
			return errors.New("the grain is busy")
		}
		return nil
	})
	clk.Advance(time.Second)
	waitFor(t, wait, "a third probe to find the store working", func() bool {
		return st.listings(probeKind) == 3 && probeDone(s)
	})
	clk.Advance(time.Second)
	waitFor(t, wait, "the firing that failed for the store, within a second", func() bool {
		return rec.count() == 1 && len(stored(t, st)) == 1 && s.Len() == 1
	})
	if got := rec.all()[0].Grain; got != grain("store") {
		t.Fatalf("fired %s, want the reminder whose firing failed for the store", got)
	}
	if at := retryAt(s, grain("grain"), "r"); !at.Equal(inAnHour) || rec.calls.Load() != 3 {
		t.Fatalf("the firing that failed for its grain: %d calls, next at %v; want 3 calls and its retry kept at %v", rec.calls.Load(), at, inAnHour)
	}
}

// TestAFiringThatFailedForTheStoreWhileItWorksKeepsItsBackoff: a firing
// fails for the store, but the probe it asks for finds the store working
// (the grain's record alone could not be read, say): the store coming
// "back" says nothing about it, so it keeps its backoff, and the probe is
// not repeated.
func TestAFiringThatFailedForTheStoreWhileItWorksKeepsItsBackoff(t *testing.T) {
	t.Parallel()
	st := &listFaults{Store: newMemstore(t)}
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := start(t, outageConfig(t, st, clk, o.owns("a"), rec))
	due := t0().Add(time.Minute)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: due})
	rec.setFail(func(storage.Reminder) error { return fmt.Errorf("load the grain's state: %w", errOutage) })
	clk.Set(due)
	inAnHour := due.Add(time.Hour)
	waitFor(t, wait, "the firing to fail, and a probe to find the store working", func() bool {
		return rec.calls.Load() == 1 && st.listings(probeKind) == 1 && probeDone(s)
	})
	if at, p := retryAt(s, grain("g1"), "r"), clk.pending(); !at.Equal(inAnHour) || len(p) != 1 || !p[0].Equal(inAnHour) {
		t.Fatalf("retry at %v, timers %v; want the retry kept at %v, and no other timer", at, p, inAnHour)
	}

	clk.Set(inAnHour)
	waitFor(t, wait, "the retry to fail, and one more probe", func() bool {
		return rec.calls.Load() == 2 && st.listings(probeKind) == 2 && probeDone(s) &&
			retryAt(s, grain("g1"), "r").Equal(inAnHour.Add(time.Hour))
	})
}

// TestAFiringThatFailedForTheStoreAsItCameBackIsTriedSoon: a firing runs
// while the store goes down and comes back, and fails for the store once
// a probe found the store working again. Its failure is news from before
// the recovery, which no probe will follow: it is tried again within a
// second, not after its backoff.
func TestAFiringThatFailedForTheStoreAsItCameBackIsTriedSoon(t *testing.T) {
	t.Parallel()
	st := &listFaults{Store: newMemstore(t)}
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	cfg := outageConfig(t, st, clk, o.owns("a"), rec)
	entered, release := make(chan struct{}), make(chan struct{})
	held := false // only the first firing of "slow" is held; the firings of one reminder do not overlap
	cfg.Fire = func(ctx context.Context, r storage.Reminder) error {
		if r.Grain.Identity == "slow" && !held {
			held = true
			close(entered)
			<-release
			return fmt.Errorf("commit the grain's state: %w", errOutage)
		}
		return rec.Fire(ctx, r)
	}
	s := start(t, cfg)
	due := t0().Add(time.Minute)
	register(t, s, storage.Reminder{Grain: grain("slow"), Name: "r", Due: due})
	register(t, s, storage.Reminder{Grain: grain("quick"), Name: "r", Due: due})
	rec.setFail(func(storage.Reminder) error { return fmt.Errorf("load the grain's state: %w", errOutage) })
	st.fail(probeKind, true)
	clk.Set(due)
	receive(t, entered, "the firing of slow")
	waitFor(t, wait, "quick's firing to fail, and a probe to find the store down", func() bool {
		return rec.calls.Load() == 1 && st.listings(probeKind) == 1 && pendingAt(clk, due.Add(time.Second))
	})

	st.fail(probeKind, false)
	rec.setFail(nil)
	clk.Advance(time.Second)
	waitFor(t, wait, "a probe to find the store working", func() bool {
		return st.listings(probeKind) == 2 && probeDone(s)
	})
	close(release)
	soon := due.Add(2 * time.Second)
	waitFor(t, wait, "slow's firing to fail, and its retry within a second", func() bool {
		at := retryAt(s, grain("slow"), "r")
		return !at.IsZero() && !at.After(soon) || rec.count() == 2 // with no jitter, it fired already
	})
	clk.Set(soon)
	waitFor(t, wait, "both firings", func() bool { return rec.count() == 2 && len(stored(t, st)) == 0 })
}

// TestAListingThatFailedForTheStoreIsTriedOnceTheStoreWorks: the node
// starts while the store is down; its listing fails and waits an hour. The
// probe that follows finds the store down, and the next one, a second
// later, finds it working: the listing is tried within a second, and the
// reminder it finds fires.
func TestAListingThatFailedForTheStoreIsTriedOnceTheStoreWorks(t *testing.T) {
	t.Parallel()
	st := &listFaults{Store: newMemstore(t)}
	if err := st.SaveReminder(context.Background(), storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0()}); err != nil {
		t.Fatal(err)
	}
	st.fail(kind, true)
	st.fail(probeKind, true)
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := start(t, outageConfig(t, st, clk, o.owns("a"), rec))
	waitFor(t, wait, "the listing to fail for an hour, and a probe to find the store down", func() bool {
		return st.listings(kind) == 1 && st.listings(probeKind) == 1 &&
			pendingAt(clk, t0().Add(time.Hour)) && pendingAt(clk, t0().Add(time.Second))
	})

	st.fail(kind, false)
	st.fail(probeKind, false)
	clk.Advance(time.Second)
	waitFor(t, wait, "a probe to find the store working, and the listing's hour to be cut short", func() bool {
		return st.listings(probeKind) == 2 && probeDone(s) && !pendingAt(clk, t0().Add(time.Hour))
	})
	clk.Advance(time.Second)
	waitForState(t, wait, "the listing, and the firing of what it found", func() bool {
		return st.listings(kind) == 2 && rec.count() == 1 && len(stored(t, st)) == 0
	}, func() string {
		return fmt.Sprintf("%d listings of the kind, %d of the probe's, %d firings, %d reminders stored, timers pending at %v (now %v)",
			st.listings(kind), st.listings(probeKind), rec.count(), len(stored(t, st)), clk.pending(), clk.Now())
	})
}

// heldListing holds the first listing of kind until release is closed,
// and then fails it, as a listing that met the store while it was down
// and took long to say so; the listings after it, and the probes, go to
// listFaults.
type heldListing struct {
	*listFaults
	entered, release chan struct{}
	held             atomic.Bool
}

func (h *heldListing) ListReminders(ctx context.Context, k string) ([]storage.Reminder, error) {
	if k == kind && h.held.CompareAndSwap(false, true) {
		close(h.entered)
		<-h.release
		return nil, errOutage
	}
	return h.listFaults.ListReminders(ctx, k)
}

// TestAListingThatFailedForTheStoreAsItCameBackIsTriedSoon: a listing
// runs while the store goes down (a firing's failure makes the probe see
// it) and comes back, and fails once a probe found the store working
// again. Its failure is news from before the recovery: it is tried again
// within a second, not after its hour of backoff.
func TestAListingThatFailedForTheStoreAsItCameBackIsTriedSoon(t *testing.T) {
	t.Parallel()
	st := &heldListing{listFaults: &listFaults{Store: newMemstore(t)}, entered: make(chan struct{}), release: make(chan struct{})}
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := startNoWait(t, outageConfig(t, st, clk, o.owns("a"), rec))
	receive(t, st.entered, "the listing asked for by Start")
	rec.setFail(func(storage.Reminder) error { return fmt.Errorf("load the grain's state: %w", errOutage) })
	st.fail(probeKind, true)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0()})
	waitFor(t, wait, "the firing to fail, and a probe to find the store down", func() bool {
		return rec.calls.Load() == 1 && st.listings(probeKind) == 1 && pendingAt(clk, t0().Add(time.Second))
	})

	st.fail(probeKind, false)
	rec.setFail(nil)
	clk.Advance(time.Second)
	waitFor(t, wait, "a probe to find the store working", func() bool {
		return st.listings(probeKind) == 2 && probeDone(s)
	})
	clk.Advance(time.Second)
	waitFor(t, wait, "the firing, within a second", func() bool { return rec.count() == 1 && len(clk.pending()) == 0 })

	close(st.release)
	soon := t0().Add(3 * time.Second)
	waitFor(t, wait, "the listing to fail, and its retry within a second", func() bool {
		p := clk.pending()
		return len(p) == 1 && p[0].Before(soon) || st.listings(kind) == 1 // with no jitter, it listed already
	})
	clk.Set(soon)
	waitFor(t, wait, "the retry", func() bool { return st.listings(kind) == 1 && relists(s) == 2 })
}
