package reminder

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/boltstore"
	"github.com/protograin/protograin/cluster/storage/memstore"
	"github.com/protograin/protograin/cluster/storage/pgstore/pgtest"
)

const wait = 10 * time.Second

func TestFiresWhenDue(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	due := t0().Add(time.Minute)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "wake", Due: due})
	waitFor(t, wait, "timer armed for the due time", func() bool { return clk.timerAt(due) })

	clk.Advance(59 * time.Second)
	if !clk.timerAt(due) || rec.calls.Load() != 0 {
		t.Fatalf("before due: %d fires, timers %v; want none and one at %v", rec.calls.Load(), clk.pending(), due)
	}
	clk.Advance(time.Second)
	waitFor(t, wait, "the firing and the deletion of the one-shot reminder", func() bool {
		return rec.count() == 1 && len(stored(t, st)) == 0 && s.Len() == 0
	})
	got := rec.all()[0]
	want := storage.Reminder{Grain: grain("g1"), Name: "wake", Due: due}
	if !same(got, want) {
		t.Errorf("fired %+v, want %+v", got, want)
	}
	waitFor(t, wait, "no timer left", func() bool { return len(clk.pending()) == 0 })
}

func TestPastDueFiresAtOnce(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "late", Due: t0().Add(-time.Hour)})
	waitFor(t, wait, "the firing", func() bool { return rec.count() == 1 && len(stored(t, st)) == 0 })
}

func TestPeriodicPersistsNextDueAndSkipsMissedPeriods(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	due := t0().Add(time.Minute)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "tick", Due: due, Period: time.Minute})

	clk.Set(due)
	next := due.Add(time.Minute)
	waitFor(t, wait, "first firing, next due saved and armed", func() bool {
		return rec.count() == 1 && storedDue(t, st, next)() && clk.timerAt(next)
	})

	// The node was busy for five and a half periods: one firing for the
	// missed ones, then the first due time in the future.
	clk.Set(t0().Add(7*time.Minute + 30*time.Second))
	after := t0().Add(8 * time.Minute)
	waitFor(t, wait, "one firing for the missed periods", func() bool {
		return storedDue(t, st, after)() && clk.timerAt(after)
	})
	fired := rec.all()
	if len(fired) != 2 || !fired[1].Due.Equal(next) {
		t.Fatalf("fired %+v; want two firings, the second due at %v", fired, next)
	}
}

func TestRestartFiresWhatIsDue(t *testing.T) {
	t.Parallel()
	st, clk, o := newMemstore(t), newFakeClock(), &owners{}
	rec1 := &recorder{}
	s1 := start(t, testConfig(t, st, clk, o.owns("a"), rec1))
	due := t0().Add(time.Minute)
	register(t, s1, storage.Reminder{Grain: grain("g1"), Name: "once", Due: due})
	register(t, s1, storage.Reminder{Grain: grain("g2"), Name: "tick", Due: due, Period: time.Hour})
	s1.Close()

	clk.Set(due.Add(time.Second)) // while no scheduler runs
	if n := rec1.calls.Load(); n != 0 {
		t.Fatalf("a closed scheduler fired %d times", n)
	}

	rec2 := &recorder{}
	s2 := start(t, testConfig(t, st, clk, o.owns("a"), rec2))
	waitFor(t, wait, "both overdue reminders fired after the restart", func() bool {
		return rec2.count() == 2 && storedDue(t, st, due.Add(time.Hour))() && s2.Len() == 1
	})
}

// TestLostWriteFiresAgain shows at-least-once: when the store write after a
// successful firing is lost (as in a crash between the two), the next
// scheduler fires the same due time again.
func TestLostWriteFiresAgain(t *testing.T) {
	t.Parallel()
	st := &faultyStore{Store: newMemstore(t)}
	clk, o := newFakeClock(), &owners{}
	rec1 := &recorder{}
	s1 := start(t, testConfig(t, st, clk, o.owns("a"), rec1))
	due := t0().Add(time.Minute)
	register(t, s1, storage.Reminder{Grain: grain("g1"), Name: "once", Due: due})
	register(t, s1, storage.Reminder{Grain: grain("g2"), Name: "tick", Due: due, Period: time.Minute})

	st.broken.Store(true)
	clk.Set(due)
	waitFor(t, wait, "both fired, the periodic one armed for its next due", func() bool {
		return rec1.count() == 2 && clk.timerAt(due.Add(time.Minute)) && s1.Len() == 1
	})
	if rs := stored(t, st); len(rs) != 2 || !rs[0].Due.Equal(due) || !rs[1].Due.Equal(due) {
		t.Fatalf("store after lost writes: %+v; want both reminders still due at %v", rs, due)
	}
	s1.Close()
	st.broken.Store(false)

	rec2 := &recorder{}
	start(t, testConfig(t, st, clk, o.owns("a"), rec2))
	waitFor(t, wait, "both fired again after the restart", func() bool {
		return rec2.count() == 2 && storedDue(t, st, due.Add(time.Minute))()
	})
	for _, r := range rec2.all() {
		if !r.Due.Equal(due) {
			t.Errorf("refired %q due %v, want %v", r.Name, r.Due, due)
		}
	}
}

func TestOwnershipMoves(t *testing.T) {
	t.Parallel()
	st, clk, o := newMemstore(t), newFakeClock(), &owners{}
	recA, recB := &recorder{}, &recorder{}
	sa := start(t, testConfig(t, st, clk, o.owns("a"), recA))
	sb := start(t, testConfig(t, st, clk, o.owns("b"), recB))
	due := t0().Add(time.Minute)
	register(t, sa, storage.Reminder{Grain: grain("g1"), Name: "tick", Due: due, Period: time.Minute})
	if sa.Len() != 1 || sb.Len() != 0 {
		t.Fatalf("scheduled on a: %d, on b: %d; want 1 and 0", sa.Len(), sb.Len())
	}

	clk.Set(due)
	waitFor(t, wait, "a fired and saved the next due", func() bool {
		return recA.count() == 1 && storedDue(t, st, due.Add(time.Minute))() && clk.timerAt(due.Add(time.Minute))
	})

	o.set("g1", "b")
	for _, s := range []*Scheduler{sa, sb} {
		if err := s.Refresh(context.Background()); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
	}
	if sa.Len() != 0 || sb.Len() != 1 {
		t.Fatalf("after the move, scheduled on a: %d, on b: %d; want 0 and 1", sa.Len(), sb.Len())
	}

	clk.Set(due.Add(time.Minute))
	waitFor(t, wait, "b fired and saved the next due", func() bool {
		return recB.count() == 1 && storedDue(t, st, due.Add(2*time.Minute))() && clk.timerAt(due.Add(2*time.Minute))
	})
	if n := recA.calls.Load(); n != 1 {
		t.Errorf("a fired %d times, want 1 (none after the move)", n)
	}
}

// TestFireRechecksOwnership moves a grain without a Refresh: the old owner
// must not fire, and the reminder stays in the store for the new owner.
func TestFireRechecksOwnership(t *testing.T) {
	t.Parallel()
	st, clk, o := newMemstore(t), newFakeClock(), &owners{}
	recA := &recorder{}
	sa := start(t, testConfig(t, st, clk, o.owns("a"), recA))
	due := t0().Add(time.Minute)
	register(t, sa, storage.Reminder{Grain: grain("g1"), Name: "once", Due: due})

	o.set("g1", "b")
	clk.Set(due)
	waitFor(t, wait, "a dropped the reminder", func() bool { return sa.Len() == 0 })
	if n := recA.calls.Load(); n != 0 {
		t.Fatalf("a fired %d times for a grain it no longer owns", n)
	}
	if len(stored(t, st)) != 1 {
		t.Fatalf("the reminder left the store: %+v", stored(t, st))
	}

	recB := &recorder{}
	start(t, testConfig(t, st, clk, o.owns("b"), recB))
	waitFor(t, wait, "b fired it", func() bool { return recB.count() == 1 && len(stored(t, st)) == 0 })
}

func TestRegisterWhenNotOwnerOnlySaves(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0().Add(time.Minute)})
	o.set("g1", "b")
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0().Add(time.Hour)})
	if s.Len() != 0 || !storedDue(t, st, t0().Add(time.Hour))() {
		t.Fatalf("scheduled %d, stored %+v; want 0 scheduled and the new due stored", s.Len(), stored(t, st))
	}
}

func TestFailedFireRetriesWithBackoff(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	rec.setFail(func(storage.Reminder) error { return errors.New("grain busy") })
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec)) // backoff 1s, max 4s
	due := t0().Add(time.Minute)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "once", Due: due})
	clk.Set(due)

	for i, backoff := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		retryAt := clk.Now().Add(backoff)
		waitFor(t, wait, fmt.Sprintf("failure %d and a retry after %v", i+1, backoff), func() bool {
			return rec.calls.Load() == int64(i+1) && clk.timerAt(retryAt)
		})
		if len(stored(t, st)) != 1 {
			t.Fatalf("after failure %d the reminder left the store", i+1)
		}
		if i < 3 {
			clk.Advance(backoff)
		}
	}
	rec.setFail(nil)
	clk.Advance(4 * time.Second)
	waitFor(t, wait, "the retry that succeeds", func() bool {
		return rec.count() == 1 && len(stored(t, st)) == 0 && s.Len() == 0
	})
	if got := rec.all()[0].Due; !got.Equal(due) {
		t.Errorf("the retry fired due %v, want the original %v", got, due)
	}
}

func TestRetryStopsWhenOwnershipMoves(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	rec.setFail(func(storage.Reminder) error { return errors.New("grain busy") })
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	due := t0().Add(time.Minute)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "once", Due: due})
	clk.Set(due)
	waitFor(t, wait, "the first failure", func() bool {
		return rec.calls.Load() == 1 && clk.timerAt(due.Add(time.Second))
	})
	o.set("g1", "b")
	clk.Advance(time.Second)
	waitFor(t, wait, "the reminder dropped", func() bool { return s.Len() == 0 })
	if n := rec.calls.Load(); n != 1 {
		t.Errorf("Fire called %d times, want 1", n)
	}
	if len(stored(t, st)) != 1 {
		t.Errorf("the reminder left the store")
	}
}

func TestUnregister(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	due := t0().Add(time.Minute)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: due})
	ctx := context.Background()
	if err := s.Unregister(ctx, grain("g1"), "r"); err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	if err := s.Unregister(ctx, grain("g1"), "missing"); err != nil {
		t.Fatalf("Unregister of a missing reminder: %v", err)
	}
	if s.Len() != 0 || len(stored(t, st)) != 0 {
		t.Fatalf("after Unregister: %d scheduled, stored %+v", s.Len(), stored(t, st))
	}
	waitFor(t, wait, "the timer stopped", func() bool { return len(clk.pending()) == 0 })
	clk.Set(due)
	if n := rec.calls.Load(); n != 0 {
		t.Errorf("an unregistered reminder fired %d times", n)
	}
}

func TestRegisterReplaces(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0().Add(time.Minute), Period: time.Minute})
	later := t0().Add(2 * time.Minute)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: later})
	waitFor(t, wait, "one timer, for the replacement", func() bool { return clk.timerAt(later) })
	if s.Len() != 1 || !storedDue(t, st, later)() {
		t.Fatalf("%d scheduled, stored %+v; want the replacement only", s.Len(), stored(t, st))
	}
	clk.Set(later)
	waitFor(t, wait, "the replacement fired once", func() bool { return rec.count() == 1 && len(stored(t, st)) == 0 })
	if r := rec.all()[0]; !r.Due.Equal(later) || r.Period != 0 {
		t.Errorf("fired %+v, want the one-shot replacement", r)
	}
}

// TestRefreshTakesOverStoreChanges: another node replaced one reminder and
// deleted another; Refresh makes the schedule match.
func TestRefreshTakesOverStoreChanges(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "moved", Due: t0().Add(time.Minute)})
	register(t, s, storage.Reminder{Grain: grain("g2"), Name: "deleted", Due: t0().Add(time.Minute)})
	ctx := context.Background()
	later := t0().Add(time.Hour)
	if err := st.SaveReminder(ctx, storage.Reminder{Grain: grain("g1"), Name: "moved", Due: later}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteReminder(ctx, grain("g2"), "deleted"); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	waitFor(t, wait, "one timer, for the moved reminder", func() bool { return s.Len() == 1 && clk.timerAt(later) })
}

func TestCloseCancelsAndWaitsForFire(t *testing.T) {
	t.Parallel()
	st, clk, o := newMemstore(t), newFakeClock(), &owners{}
	started, cancelled, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var returned atomic.Bool
	cfg := testConfig(t, st, clk, o.owns("a"), &recorder{})
	cfg.Fire = func(ctx context.Context, _ storage.Reminder) error {
		close(started)
		<-ctx.Done()
		close(cancelled)
		<-release
		returned.Store(true)
		return ctx.Err()
	}
	s := start(t, cfg)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0()})
	receive(t, started, "Fire to start")

	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	receive(t, cancelled, "Close to cancel Fire's context")
	select {
	case <-closed:
		t.Fatal("Close returned while Fire was running")
	default:
	}
	close(release)
	receive(t, closed, "Close to return")
	if !returned.Load() {
		t.Fatal("Close returned before Fire")
	}

	s.Close() // idempotent
	ctx := context.Background()
	r := storage.Reminder{Grain: grain("g1"), Name: "r2", Due: t0()}
	for name, err := range map[string]error{
		"Start":      s.Start(),
		"Refresh":    s.Refresh(ctx),
		"Register":   s.Register(ctx, r),
		"Unregister": s.Unregister(ctx, grain("g1"), "r"),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if len(stored(t, st)) != 1 {
		t.Errorf("a firing cancelled by Close deleted the reminder")
	}
}

// receive waits for ch to be closed.
func receive(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestManyRemindersOneTimer(t *testing.T) {
	t.Parallel()
	const n = 10_000
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	for i := range n {
		due := t0().Add(time.Duration(n-i) * time.Second) // registered latest first
		register(t, s, storage.Reminder{Grain: grain(fmt.Sprint("g", i%100)), Name: fmt.Sprint("r", i), Due: due})
	}
	waitFor(t, wait, "one timer, for the earliest", func() bool { return s.Len() == n && clk.timerAt(t0().Add(time.Second)) })

	clk.Set(t0().Add(n * time.Second))
	waitFor(t, 3*wait, "every reminder fired", func() bool { return rec.count() == n })
	waitFor(t, wait, "every reminder deleted", func() bool { return s.Len() == 0 && len(stored(t, st)) == 0 })
	clk.mu.Lock()
	defer clk.mu.Unlock()
	if clk.maxActive != 1 {
		t.Errorf("up to %d timers pending at once, want 1", clk.maxActive)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	st, rec, o := newMemstore(t), &recorder{}, &owners{}
	good := func() Config { return testConfig(t, st, newFakeClock(), o.owns("a"), rec) }
	for name, tc := range map[string]struct {
		change func(*Config)
		want   string
	}{
		"no store":              {func(c *Config) { c.Store = nil }, "Config.Store is nil"},
		"no owns":               {func(c *Config) { c.Owns = nil }, "Config.Owns is nil"},
		"no fire":               {func(c *Config) { c.Fire = nil }, "Config.Fire is nil"},
		"negative retry":        {func(c *Config) { c.RetryBackoff = -1 }, "must not be negative"},
		"max below retry":       {func(c *Config) { c.RetryBackoffMax = time.Millisecond }, "below RetryBackoff"},
		"negative fires":        {func(c *Config) { c.MaxConcurrentFires = -1 }, "MaxConcurrentFires"},
		"negative fire timeout": {func(c *Config) { c.FireTimeout = -1 }, "FireTimeout"},
		"negative list timeout": {func(c *Config) { c.ListTimeout = -1 }, "ListTimeout"},
		"negative list retry":   {func(c *Config) { c.ListRetryBackoff = -1 }, "must not be negative"},
		"list max below retry":  {func(c *Config) { c.ListRetryBackoff, c.ListRetryBackoffMax = time.Hour, time.Minute }, "ListRetryBackoffMax 1m0s is below"},
		"negative probe":        {func(c *Config) { c.ProbeEvery = -1 }, "ProbeEvery"},
		"empty kind":            {func(c *Config) { c.Kinds = []string{""} }, "empty grain kind"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := good()
			tc.change(&cfg)
			s := New(cfg)
			defer s.Close()
			err := s.Start()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "reminder: ") {
				t.Errorf("Start: %v, want an error saying %q", err, tc.want)
			}
			if err2 := s.Register(context.Background(), storage.Reminder{Grain: grain("g"), Name: "r", Due: t0()}); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("Register: %v, want the Start error", err2)
			}
		})
	}

	s := start(t, good())
	if err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start: %v, want ErrStarted", err)
	}
	ctx := context.Background()
	for name, tc := range map[string]struct {
		r    storage.Reminder
		want error
	}{
		"empty name":      {storage.Reminder{Grain: grain("g"), Due: t0()}, storage.ErrInvalid},
		"zero due":        {storage.Reminder{Grain: grain("g"), Name: "r"}, storage.ErrInvalid},
		"negative period": {storage.Reminder{Grain: grain("g"), Name: "r", Due: t0(), Period: -time.Second}, storage.ErrInvalid},
		"bad identity":    {storage.Reminder{Grain: grain("a\x00b"), Name: "r", Due: t0()}, storage.ErrInvalid},
		"unknown kind":    {storage.Reminder{Grain: storage.Key{Kind: "other.v1.Kind", Identity: "g"}, Name: "r", Due: t0()}, ErrUnknownKind},
	} {
		if err := s.Register(ctx, tc.r); !errors.Is(err, tc.want) || !strings.HasPrefix(err.Error(), "reminder: ") {
			t.Errorf("Register %s: %v, want %v", name, err, tc.want)
		}
	}
	if err := s.Unregister(ctx, storage.Key{Kind: "other.v1.Kind"}, "r"); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("Unregister of an unknown kind: %v, want ErrUnknownKind", err)
	}
	if err := s.Unregister(ctx, grain("g"), ""); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("Unregister of an empty name: %v, want storage.ErrInvalid", err)
	}
	if rs := stored(t, st); len(rs) != 0 || s.Len() != 0 {
		t.Errorf("bad input was kept: %d scheduled, stored %+v", s.Len(), rs)
	}
}

// TestStoreErrorsAreReported: Start does not wait for the store, so a
// store that fails does not make it fail; Refresh and Register report the
// store's errors.
func TestStoreErrorsAreReported(t *testing.T) {
	t.Parallel()
	st := memstore.New()
	rec, o := &recorder{}, &owners{}
	s := New(testConfig(t, st, newFakeClock(), o.owns("a"), rec))
	t.Cleanup(s.Close)
	st.Close()
	if err := s.Start(); err != nil {
		t.Errorf("Start over a closed store: %v, want nil (the listing is tried again in the background)", err)
	}
	err := s.Refresh(context.Background())
	if !errors.Is(err, storage.ErrClosed) || !strings.Contains(err.Error(), kind) || !strings.HasPrefix(err.Error(), "reminder: ") {
		t.Errorf("Refresh over a closed store: %v, want storage.ErrClosed naming the kind", err)
	}
	err = s.Register(context.Background(), storage.Reminder{Grain: grain("g"), Name: "r", Due: t0()})
	if !errors.Is(err, storage.ErrClosed) || s.Len() != 0 {
		t.Errorf("Register over a closed store: %v, %d scheduled; want storage.ErrClosed and nothing", err, s.Len())
	}
}

// TestDurableStores runs the main paths against the durable stores: a
// periodic reminder fires and its next due time, and a one-shot reminder,
// survive a new scheduler on the same store. PostgreSQL runs when
// PROTOGRAIN_POSTGRES_DSN is set.
func TestDurableStores(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(t *testing.T) storage.Store{
		"boltstore": openBolt,
		"pgstore":   func(t *testing.T) storage.Store { return pgtest.Open(t, 2) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testDurable(t, open(t))
		})
	}
}

func testDurable(t *testing.T, st storage.Store) {
	clk, o := newFakeClock(), &owners{}
	rec1 := &recorder{}
	s1 := start(t, testConfig(t, st, clk, o.owns("a"), rec1))
	due := t0().Add(time.Minute)
	register(t, s1, storage.Reminder{Grain: grain("g1"), Name: "tick", Due: due, Period: time.Minute})
	register(t, s1, storage.Reminder{Grain: grain("g2"), Name: "once", Due: due.Add(time.Hour)})
	clk.Set(due)
	waitFor(t, wait, "the firing and the saved next due", func() bool {
		rs := stored(t, st)
		return rec1.count() == 1 && len(rs) == 2 && rs[0].Due.Equal(due.Add(time.Minute))
	})
	s1.Close()

	rec2 := &recorder{}
	s2 := start(t, testConfig(t, st, clk, o.owns("a"), rec2))
	waitFor(t, wait, "a new scheduler on the same store to schedule both", func() bool { return s2.Len() == 2 })
	clk.Set(due.Add(time.Hour))
	waitFor(t, wait, "both fired", func() bool { return rec2.count() == 2 && len(stored(t, st)) == 1 })
}

// openBolt opens a boltstore in a temporary file.
func openBolt(t *testing.T) storage.Store {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), boltstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestRealClock fires a reminder with real time.
func TestRealClock(t *testing.T) {
	t.Parallel()
	st, rec, o := newMemstore(t), &recorder{}, &owners{}
	cfg := testConfig(t, st, nil, o.owns("a"), rec)
	s := start(t, cfg)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: time.Now().Add(10 * time.Millisecond), Period: time.Millisecond})
	waitFor(t, wait, "three firings", func() bool { return rec.count() >= 3 })
}

func TestNextDue(t *testing.T) {
	t.Parallel()
	due := t0()
	for _, tc := range []struct {
		name   string
		period time.Duration
		now    time.Time
		want   time.Time
	}{
		{"on time", time.Minute, due, due.Add(time.Minute)},
		{"late within the period", time.Minute, due.Add(59 * time.Second), due.Add(time.Minute)},
		{"exactly one period late", time.Minute, due.Add(time.Minute), due.Add(2 * time.Minute)},
		{"many periods missed", time.Minute, due.Add(90*time.Minute + time.Second), due.Add(91 * time.Minute)},
		{"early", time.Minute, due.Add(-time.Hour), due.Add(time.Minute)},
		{"a nanosecond period", time.Nanosecond, due.Add(time.Hour), due.Add(time.Hour + time.Nanosecond)},
	} {
		if got := nextDue(due, tc.period, tc.now); !got.Equal(tc.want) {
			t.Errorf("%s: nextDue = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A gap beyond what a Duration holds must not overflow.
	old := time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC)
	now := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := nextDue(old, time.Nanosecond, now); !got.Equal(now.Add(time.Nanosecond)) {
		t.Errorf("nextDue over 400 years = %v, want %v", got, now.Add(time.Nanosecond))
	}
	if got := nextDue(old, 24*time.Hour, now); !got.Equal(now.Add(24 * time.Hour)) {
		t.Errorf("daily over 400 years = %v, want %v", got, now.Add(24*time.Hour))
	}
}

func TestRegisterBeforeStart(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	s := New(testConfig(t, st, clk, o.owns("a"), rec))
	t.Cleanup(s.Close)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0()})
	if s.Len() != 1 || rec.calls.Load() != 0 {
		t.Fatalf("before Start: %d scheduled, %d fired; want 1 and 0", s.Len(), rec.calls.Load())
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "the firing after Start", func() bool { return rec.count() == 1 && len(stored(t, st)) == 0 })
}

// TestConcurrentUse runs Register, Unregister, Refresh, ownership moves
// between two schedulers and firings at the same time (for the race
// detector), then checks that once all is quiet the owner's schedule matches
// the store and the other node schedules nothing.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(t *testing.T) storage.Store{
		"memstore":  newMemstore,
		"boltstore": openBolt,
		"pgstore":   func(t *testing.T) storage.Store { return pgtest.Open(t, 2) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testConcurrent(t, open(t))
		})
	}
}

func testConcurrent(t *testing.T, st storage.Store) {
	clk, o := newFakeClock(), &owners{}
	nodes := []string{"a", "b"}
	var scheds []*Scheduler
	for range nodes {
		rec := &recorder{}
		var n atomic.Int64
		rec.setFail(func(storage.Reminder) error {
			if n.Add(1)%5 == 0 {
				return errors.New("every fifth delivery fails")
			}
			return nil
		})
		scheds = append(scheds, start(t, testConfig(t, st, clk, o.owns(nodes[len(scheds)]), rec)))
	}
	ctx := context.Background()
	const workers, rounds, grains = 4, 150, 7
	done := make(chan error, workers+1)
	for w := range workers {
		go func() { done <- churn(ctx, scheds[w%2], clk, w, rounds, grains) }()
	}
	go func() {
		for i := range rounds {
			o.set(fmt.Sprint("g", i%grains), nodes[i%2])
			clk.Advance(time.Second)
			for _, s := range scheds {
				if err := s.Refresh(ctx); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	for range workers + 1 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}

	// Quiet down: every grain owned by a, nothing due any more. b goes
	// first: its firings still under way may write the store after a
	// listed it, which is the overlap of owners that at-least-once allows.
	for i := range grains {
		o.set(fmt.Sprint("g", i), "a")
	}
	for _, s := range []*Scheduler{scheds[1], scheds[0]} {
		if err := s.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, wait, "no firing running or due", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.inflight == 0 && (len(s.queue) == 0 || s.queue[0].at.After(clk.Now()))
		})
	}
	if n := scheds[1].Len(); n != 0 {
		t.Errorf("b schedules %d reminders of grains it does not own", n)
	}
	// A firing of a that ended after a listed may have found its reminder
	// changed by b's last firings: its conditional write then changed
	// nothing, and the entry left a's schedule for the next listing to
	// restore, which the firing asked for in the background. Nothing runs
	// or is due any more, so one more listing sees the store as it stays.
	a := scheds[0]
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	rs := stored(t, st)
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(rs) != len(a.entries) || len(a.leaving) != 0 {
		t.Errorf("%d reminders stored, %d scheduled, %d leaving", len(rs), len(a.entries), len(a.leaving))
	}
	for _, r := range rs {
		if e, ok := a.entries[id{r.Grain, r.Name}]; !ok || !same(e.stored, r) {
			t.Errorf("stored %+v, scheduled %+v", r, e)
		}
	}
}

// churn registers and unregisters reminders on s: one-shot and periodic,
// due in the past and in the future.
func churn(ctx context.Context, s *Scheduler, clk *fakeClock, w, rounds, grains int) error {
	for i := range rounds {
		g, name := grain(fmt.Sprint("g", (w+i)%grains)), fmt.Sprint("r", i%5)
		var err error
		if i%3 == 2 {
			err = s.Unregister(ctx, g, name)
		} else {
			due := clk.Now().Add(time.Duration(i%4-1) * time.Second)
			err = s.Register(ctx, storage.Reminder{Grain: g, Name: name, Due: due, Period: time.Duration(i%2) * time.Second})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// TestPeriodicRetryResumesSchedule: a periodic reminder whose firing failed
// for several periods fires once when delivery works again, then continues
// at the first future period.
func TestPeriodicRetryResumesSchedule(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	rec.setFail(func(storage.Reminder) error { return errors.New("grain busy") })
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec)) // backoff 1s, max 4s
	due := t0().Add(time.Minute)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "tick", Due: due, Period: 3 * time.Second})
	clk.Set(due)
	for i, backoff := range []time.Duration{time.Second, 2 * time.Second} {
		retryAt := clk.Now().Add(backoff)
		waitFor(t, wait, fmt.Sprintf("failure %d", i+1), func() bool {
			return rec.calls.Load() == int64(i+1) && clk.timerAt(retryAt)
		})
		if !storedDue(t, st, due)() {
			t.Fatalf("after failure %d the store changed: %+v", i+1, stored(t, st))
		}
		if i == 1 {
			rec.setFail(nil)
		}
		clk.Advance(backoff) // 1s, then 3s after due
	}
	// Delivered 3s after due, which is the next period itself: the next
	// due time is 6s after due.
	next := due.Add(6 * time.Second)
	waitFor(t, wait, "the delivery and the next due", func() bool {
		return rec.count() == 1 && storedDue(t, st, next)() && clk.timerAt(next)
	})
	if got := rec.all()[0].Due; !got.Equal(due) {
		t.Errorf("delivered due %v, want %v", got, due)
	}
}

func TestFireContextHasTimeout(t *testing.T) {
	t.Parallel()
	st, clk, o := newMemstore(t), newFakeClock(), &owners{}
	cfg := testConfig(t, st, clk, o.owns("a"), &recorder{})
	cfg.FireTimeout = time.Hour
	deadlines := make(chan bool, 1)
	cfg.Fire = func(ctx context.Context, _ storage.Reminder) error {
		_, ok := ctx.Deadline()
		deadlines <- ok
		return nil
	}
	s := start(t, cfg)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0()})
	select {
	case ok := <-deadlines:
		if !ok {
			t.Error("Fire's context has no deadline")
		}
	case <-time.After(wait):
		t.Fatal("timed out waiting for Fire")
	}
}

// TestStopEndsFiringButKeepsStoreWrites: after Stop nothing is scheduled
// or fired, Start and Refresh return ErrClosed, while Register and
// Unregister still save to and delete from the store (a node's leaving
// grains may change their reminders for their next owners); Close then
// refuses them too.
func TestStopEndsFiringButKeepsStoreWrites(t *testing.T) {
	t.Parallel()
	st, clk, rec, o := newMemstore(t), newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	s.Stop(context.Background())
	s.Stop(context.Background()) // idempotent
	ctx := context.Background()
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0()})
	if n := s.Len(); n != 0 {
		t.Fatalf("%d reminders scheduled after Stop, want 0", n)
	}
	if len(stored(t, st)) != 1 {
		t.Fatal("Register after Stop did not save the reminder")
	}
	for name, err := range map[string]error{"Start": s.Start(), "Refresh": s.Refresh(ctx)} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Stop: %v, want ErrClosed", name, err)
		}
	}
	if err := s.Unregister(ctx, grain("g1"), "r"); err != nil {
		t.Fatalf("Unregister after Stop: %v", err)
	}
	if len(stored(t, st)) != 0 {
		t.Fatal("Unregister after Stop did not delete the reminder")
	}
	s.Close()
	if err := s.Register(ctx, storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0()}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after Close: %v, want ErrClosed", err)
	}
}
