package reminder

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// gateStore is a real store whose reminder calls can be held at a gate, as
// a store that is slow rather than down: a call that meets a gate says so
// on entered, then waits until the test opens the gate or its ctx ends. A
// listing meets its gate after it read the store (it answers late), the
// writes before they write. Gates are named "list KIND", "save NAME",
// "delete NAME" and "complete NAME".
type gateStore struct {
	storage.Store
	mu      sync.Mutex
	gates   map[string]chan struct{}
	entered chan string
}

func newGateStore(t *testing.T) *gateStore {
	return &gateStore{Store: newMemstore(t), gates: make(map[string]chan struct{}), entered: make(chan string, 256)}
}

// hold sets a gate for the calls named what, and returns its opening,
// which the test's end does too.
func (g *gateStore) hold(t *testing.T, what string) (open func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gate := make(chan struct{})
	g.gates[what] = gate
	var once sync.Once
	open = func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.gates[what] == gate {
				delete(g.gates, what)
			}
			close(gate)
		})
	}
	t.Cleanup(open)
	return open
}

// pass waits at the gate of what, if there is one.
func (g *gateStore) pass(ctx context.Context, what string) error {
	g.mu.Lock()
	gate := g.gates[what]
	g.mu.Unlock()
	if gate == nil {
		return nil
	}
	select {
	case g.entered <- what:
	default: // nobody looks at that many
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ListReminders implements storage.Store for gateStore: see the type.
func (g *gateStore) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	rs, err := g.Store.ListReminders(ctx, kind)
	if err != nil {
		return nil, err
	}
	if err := g.pass(ctx, "list "+kind); err != nil {
		return nil, err
	}
	return rs, nil
}

// SaveReminder implements storage.Store for gateStore: see the type.
func (g *gateStore) SaveReminder(ctx context.Context, r storage.Reminder) error {
	if err := g.pass(ctx, "save "+r.Name); err != nil {
		return err
	}
	return g.Store.SaveReminder(ctx, r)
}

// DeleteReminder implements storage.Store for gateStore: see the type.
func (g *gateStore) DeleteReminder(ctx context.Context, k storage.Key, name string) error {
	if err := g.pass(ctx, "delete "+name); err != nil {
		return err
	}
	return g.Store.DeleteReminder(ctx, k, name)
}

// CompleteReminder implements storage.Store for gateStore: see the type.
func (g *gateStore) CompleteReminder(ctx context.Context, fired storage.Reminder, next *storage.Reminder) (bool, error) {
	if err := g.pass(ctx, "complete "+fired.Name); err != nil {
		return false, err
	}
	return g.Store.CompleteReminder(ctx, fired, next)
}

// enteredGate waits until a call meets the gate named what.
func enteredGate(t *testing.T, g *gateStore, what string) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case got := <-g.entered:
			if got == what {
				return
			}
		case <-deadline:
			t.Fatalf("timed out waiting for a call to meet gate %q", what)
		}
	}
}

// waitNoFiring waits until no firing of s is under way, the write after
// it included.
func waitNoFiring(t *testing.T, s *Scheduler) {
	t.Helper()
	waitFor(t, wait, "the firings and their writes to end", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.inflight == 0
	})
}

// fireHoldingTheWrite registers r, which must be due a second after t0,
// fires it by advancing clk a second, and holds the write after the firing
// at st's gate until the returned open is called: the firing is then over
// but for its write.
func fireHoldingTheWrite(t *testing.T, s *Scheduler, st *gateStore, clk *fakeClock, r storage.Reminder) (open func()) {
	t.Helper()
	register(t, s, r)
	open = st.hold(t, "complete "+r.Name)
	clk.Advance(time.Second)
	enteredGate(t, st, "complete "+r.Name)
	return open
}

// relists returns how many rounds of background listings s finished.
func relists(s *Scheduler) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.relists
}

// returnsWithin fails the test unless f returns within wait.
func returnsWithin(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(wait):
		t.Fatalf("%s did not return within %v", what, wait)
		return nil
	}
}

// TestAHungKindDoesNotStarveTheOthers: the listing of the first hosted
// kind hangs (up to ListTimeout, a minute); the reminders of the other
// kind are listed and fire all the same, since each kind is listed on its
// own, with a ListTimeout of its own.
func TestAHungKindDoesNotStarveTheOthers(t *testing.T) {
	t.Parallel()
	st := newGateStore(t)
	other := storage.Key{Kind: otherKind, Identity: "o1"}
	if err := st.Store.SaveReminder(context.Background(), storage.Reminder{Grain: other, Name: "r", Due: t0()}); err != nil {
		t.Fatal(err)
	}
	st.hold(t, "list "+kind)
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	cfg := testConfig(t, st, clk, o.owns("a"), rec)
	cfg.Kinds = []string{kind, otherKind}
	startNoWait(t, cfg)
	enteredGate(t, st, "list "+kind)
	waitFor(t, wait, "the other kind's reminder to fire while the first kind's listing hangs", func() bool { return rec.count() == 1 })
}

// TestASlowListingHoldsUpNoWriteAndNoFiring: while a listing waits for a
// slow store, Register and Unregister go through, and a due reminder
// fires: no lock is held across the listing's store call.
func TestASlowListingHoldsUpNoWriteAndNoFiring(t *testing.T) {
	t.Parallel()
	st := newGateStore(t)
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	cfg := testConfig(t, st, clk, o.owns("a"), rec)
	cfg.Kinds = []string{kind, otherKind}
	s := start(t, cfg)
	due := t0().Add(time.Minute)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: due})

	open := st.hold(t, "list "+otherKind)
	s.Relist()
	enteredGate(t, st, "list "+otherKind)
	ctx := context.Background()
	if err := returnsWithin(t, "Register during a slow listing", func() error {
		return s.Register(ctx, storage.Reminder{Grain: grain("g2"), Name: "x", Due: t0().Add(time.Hour)})
	}); err != nil {
		t.Fatal(err)
	}
	if err := returnsWithin(t, "Unregister during a slow listing", func() error { return s.Unregister(ctx, grain("g2"), "x") }); err != nil {
		t.Fatal(err)
	}
	clk.Set(due)
	waitFor(t, wait, "the due reminder to fire during a slow listing", func() bool { return rec.count() == 1 })
	open()
}

// TestASlowWriteAfterAFiringHoldsUpNothing: the store write after one
// reminder's firing is slow; a listing asked for meanwhile runs and ends,
// Register of another reminder returns, and another reminder fires. When
// the write lands, the reminder's next due time is stored.
func TestASlowWriteAfterAFiringHoldsUpNothing(t *testing.T) {
	t.Parallel()
	st := newGateStore(t)
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	slow := storage.Reminder{Grain: grain("g1"), Name: "slow", Due: t0().Add(time.Second), Period: time.Hour}
	open := fireHoldingTheWrite(t, s, st, clk, slow)

	before := relists(s)
	s.Relist()
	waitFor(t, wait, "a listing during the slow write", func() bool { return relists(s) > before })
	if err := returnsWithin(t, "Register during a slow write after a firing", func() error {
		return s.Register(context.Background(), storage.Reminder{Grain: grain("g2"), Name: "now", Due: clk.Now()})
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "the other reminder to fire during the slow write", func() bool { return rec.count() == 2 })
	open()
	next := slow
	next.Due = slow.Due.Add(time.Hour)
	waitFor(t, wait, "the slow write to land, and the schedule to follow", func() bool {
		rs := stored(t, st)
		s.mu.Lock()
		e := s.entries[id{slow.Grain, slow.Name}]
		ok := e != nil && !e.running && same(e.stored, next)
		s.mu.Unlock()
		return ok && len(rs) == 1 && same(rs[0], next)
	})
}

// TestAListingDoesNotUndoAWriteMadeWhileItListed: a listing reads the
// store, then answers late; a Register (or Unregister) of this node lands
// meanwhile. The listing must not drop the registered reminder (or put
// back the unregistered one): it leaves alone what this node wrote while
// it listed.
func TestAListingDoesNotUndoAWriteMadeWhileItListed(t *testing.T) {
	t.Parallel()
	r := storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0().Add(time.Hour)}
	for _, tc := range []struct {
		name    string
		before  bool // r is registered before the listing
		write   func(s *Scheduler) error
		wantLen int
	}{
		{"register", false, func(s *Scheduler) error { return s.Register(context.Background(), r) }, 1},
		{"unregister", true, func(s *Scheduler) error { return s.Unregister(context.Background(), r.Grain, r.Name) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newGateStore(t)
			clk, rec, o := newFakeClock(), &recorder{}, &owners{}
			s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
			if tc.before {
				register(t, s, r)
			}
			open := st.hold(t, "list "+kind)
			before := relists(s)
			s.Relist()
			enteredGate(t, st, "list "+kind) // it read the store as it was
			if err := tc.write(s); err != nil {
				t.Fatal(err)
			}
			open()
			waitFor(t, wait, "the listing to end", func() bool { return relists(s) > before })
			if n := s.Len(); n != tc.wantLen {
				t.Fatalf("%d reminders scheduled after the listing, want %d: it undid the %s made while it listed", n, tc.wantLen, tc.name)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if n := len(s.writes); n != 0 {
				t.Errorf("%d write records left once no listing runs, want none", n)
			}
		})
	}
}

// TestAFiringDoesNotWriteOverAChangeMadeWhileItFired: another node
// deletes or replaces a periodic reminder while this one fires it; the
// firing's write must not put the fired reminder back, and the schedule
// ends up with what the store holds.
func TestAFiringDoesNotWriteOverAChangeMadeWhileItFired(t *testing.T) {
	t.Parallel()
	r := storage.Reminder{Grain: grain("g1"), Name: "p", Due: t0().Add(time.Second), Period: time.Minute}
	replaced := storage.Reminder{Grain: r.Grain, Name: r.Name, Due: t0().Add(time.Hour), Period: time.Hour}
	for _, tc := range []struct {
		name   string
		change func(st storage.Store) error
		want   []storage.Reminder
	}{
		{"deleted", func(st storage.Store) error { return st.DeleteReminder(context.Background(), r.Grain, r.Name) }, nil},
		{"replaced", func(st storage.Store) error { return st.SaveReminder(context.Background(), replaced) }, []storage.Reminder{replaced}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newMemstore(t)
			clk, o := newFakeClock(), &owners{}
			firing, release := make(chan struct{}, 1), make(chan struct{})
			cfg := testConfig(t, st, clk, o.owns("a"), &recorder{})
			cfg.Fire = func(context.Context, storage.Reminder) error {
				firing <- struct{}{}
				<-release
				return nil
			}
			s := start(t, cfg)
			register(t, s, r)
			clk.Advance(time.Second)
			receive(t, firing, "the firing")
			if err := tc.change(st); err != nil { // by another node
				t.Fatal(err)
			}
			close(release)
			waitFor(t, wait, "the store and the schedule to hold the other node's change", func() bool {
				rs := stored(t, st)
				s.mu.Lock()
				defer s.mu.Unlock()
				if len(rs) != len(tc.want) || len(s.entries) != len(tc.want) || s.inflight != 0 {
					return false
				}
				for i, w := range tc.want {
					if e := s.entries[id{w.Grain, w.Name}]; !same(rs[i], w) || e == nil || !same(e.stored, w) {
						return false
					}
				}
				return true
			})
		})
	}
}

// lostReplyStore deletes a reminder, then reports the caller's deadline
// as if the reply had been lost: the delete happened, the caller is told
// it failed.
type lostReplyStore struct{ storage.Store }

// DeleteReminder implements storage.Store for lostReplyStore: see the type.
func (s *lostReplyStore) DeleteReminder(ctx context.Context, k storage.Key, name string) error {
	if err := s.Store.DeleteReminder(ctx, k, name); err != nil {
		return err
	}
	return context.DeadlineExceeded
}

// TestALateDeleteIsNotUndoneByTheNextFiring: an Unregister whose delete
// landed but reported a failure leaves the reminder scheduled; its next
// firing must not write it back to the store, and it leaves the schedule.
func TestALateDeleteIsNotUndoneByTheNextFiring(t *testing.T) {
	t.Parallel()
	st := &lostReplyStore{Store: newMemstore(t)}
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "p", Due: t0().Add(time.Second), Period: time.Second})
	if err := s.Unregister(context.Background(), grain("g1"), "p"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Unregister: %v, want the lost reply's error", err)
	}
	if n := s.Len(); n != 1 {
		t.Fatalf("%d scheduled after a failed Unregister, want the reminder still", n)
	}
	clk.Advance(time.Second)
	waitFor(t, wait, "the firing, and the reminder to leave the schedule", func() bool {
		s.mu.Lock()
		idle := s.inflight == 0
		s.mu.Unlock()
		return rec.count() == 1 && idle && s.Len() == 0
	})
	if rs := stored(t, st); len(rs) != 0 {
		t.Fatalf("the firing wrote back the deleted reminder: %+v", rs)
	}
}

// TestAChangeCancelsTheFiringUnderWay: a firing under way whose reminder
// is unregistered, replaced, or found deleted by a listing has its context
// cancelled, so that the grain does not run it after the change; it is not
// retried, nor logged as a failure.
func TestAChangeCancelsTheFiringUnderWay(t *testing.T) {
	t.Parallel()
	r := storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0()}
	for _, tc := range []struct {
		name    string
		change  func(s *Scheduler, st storage.Store) error
		wantLen int
	}{
		{"unregistered", func(s *Scheduler, _ storage.Store) error {
			return s.Unregister(context.Background(), r.Grain, r.Name)
		}, 0},
		{"replaced", func(s *Scheduler, _ storage.Store) error {
			return s.Register(context.Background(), storage.Reminder{Grain: r.Grain, Name: r.Name, Due: t0().Add(time.Hour)})
		}, 1},
		{"changed by another node", func(s *Scheduler, st storage.Store) error {
			if err := st.SaveReminder(context.Background(), storage.Reminder{Grain: r.Grain, Name: r.Name, Due: t0().Add(time.Hour)}); err != nil {
				return err
			}
			return s.Refresh(context.Background())
		}, 1},
		{"deleted by another node", func(s *Scheduler, st storage.Store) error {
			if err := st.DeleteReminder(context.Background(), r.Grain, r.Name); err != nil {
				return err
			}
			return s.Refresh(context.Background())
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, clk, o := newMemstore(t), newFakeClock(), &owners{}
			logs := &logRecords{}
			cfg := testConfig(t, st, clk, o.owns("a"), &recorder{})
			cfg.Logger = slog.New(logs)
			started, ended := make(chan struct{}, 4), make(chan error, 4)
			cfg.Fire = func(ctx context.Context, _ storage.Reminder) error {
				started <- struct{}{}
				<-ctx.Done()
				ended <- ctx.Err()
				return ctx.Err()
			}
			s := start(t, cfg)
			register(t, s, r)
			receive(t, started, "the firing")
			if err := tc.change(s, st); err != nil {
				t.Fatal(err)
			}
			if err := receiveErr(t, ended, "the firing to be cancelled"); !errors.Is(err, context.Canceled) {
				t.Fatalf("the firing ended with %v, want it cancelled", err)
			}
			waitFor(t, wait, "the firing to be over", func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.inflight == 0
			})
			clk.Advance(time.Minute) // past any retry
			if n := s.Len(); n != tc.wantLen {
				t.Errorf("%d scheduled, want %d", n, tc.wantLen)
			}
			if len(started) != 0 {
				t.Errorf("the cancelled firing was retried")
			}
			if got := logs.levels("fire failed"); len(got) != 0 {
				t.Errorf("the cancelled firing was logged as failed: %v", got)
			}
		})
	}
}

// TestStopWaitsForAWriteAfterAFiringUntilItsContextEnds: Stop waits for
// the store write after a firing while its ctx lasts, then cancels it and
// returns; Close does not wait for it at all.
func TestStopWaitsForAWriteAfterAFiringUntilItsContextEnds(t *testing.T) {
	t.Parallel()
	for _, closing := range []bool{false, true} {
		name := map[bool]string{false: "Stop", true: "Close"}[closing]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := newGateStore(t)
			clk, rec, o := newFakeClock(), &recorder{}, &owners{}
			cfg := testConfig(t, st, clk, o.owns("a"), rec) // FireTimeout: a minute
			s := start(t, cfg)
			st.hold(t, "complete r")
			register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0()})
			enteredGate(t, st, "complete r")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stopped := make(chan struct{})
			go func() {
				if closing {
					s.Close()
				} else {
					s.Stop(ctx)
				}
				stopped <- struct{}{}
			}()
			if !closing {
				select {
				case <-stopped:
					t.Fatal("Stop returned while the write after a firing ran and its ctx lasted")
				default:
				}
				cancel()
			}
			receive(t, stopped, name+" to return")
			if len(stored(t, st)) != 1 {
				t.Errorf("the cancelled write deleted the reminder")
			}
		})
	}
}

// TestRelistAfter: RelistAfter lists once its time comes, with one timer
// at most: a later request moves it, an earlier one is served by it.
func TestRelistAfter(t *testing.T) {
	t.Parallel()
	st := &listFaults{Store: newMemstore(t)}
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	listed := st.listings(kind)
	s.RelistAfter(10 * time.Second)
	if !clk.timerAt(t0().Add(10 * time.Second)) {
		t.Fatalf("timers %v, want one at t0+10s", clk.pending())
	}
	clk.Advance(5 * time.Second)
	s.RelistAfter(10 * time.Second)
	s.RelistAfter(time.Second)
	if !clk.timerAt(t0().Add(15 * time.Second)) {
		t.Fatalf("timers %v, want one at t0+15s", clk.pending())
	}
	// Another node saves a reminder that no listing has seen.
	if err := st.SaveReminder(context.Background(), storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(9 * time.Second)
	if n := st.listings(kind); n != listed {
		t.Fatalf("%d listings before the time asked for, want %d", n, listed)
	}
	clk.Advance(time.Second)
	waitFor(t, wait, "the listing asked for, which schedules the reminder", func() bool { return s.Len() == 1 })
	if n := st.listings(kind); n != listed+1 {
		t.Errorf("%d listings, want %d: one for the three requests", n, listed+1)
	}
	s.Stop(context.Background())
	s.RelistAfter(time.Second)
	if p := clk.pending(); len(p) != 0 {
		t.Errorf("timers %v after Stop and RelistAfter, want none", p)
	}
}

// TestRelistEvery: the scheduler lists by itself RelistEvery after the
// last listing asked for, and so takes over a change no listing saw.
func TestRelistEvery(t *testing.T) {
	t.Parallel()
	st := &listFaults{Store: newMemstore(t)}
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	cfg := testConfig(t, st, clk, o.owns("a"), rec)
	cfg.RelistEvery = 5 * time.Minute
	s := start(t, cfg)
	waitFor(t, wait, "the anti-entropy timer", func() bool { return clk.timerAt(t0().Add(5 * time.Minute)) })
	clk.Advance(2 * time.Minute)
	s.Relist() // a membership change: the period starts again
	waitFor(t, wait, "the anti-entropy timer to move", func() bool { return clk.timerAt(t0().Add(7 * time.Minute)) })
	listed := st.listings(kind)
	if err := st.SaveReminder(context.Background(), storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(5 * time.Minute)
	waitFor(t, wait, "the anti-entropy listing to schedule the reminder", func() bool { return s.Len() == 1 })
	if n := st.listings(kind); n != listed+1 {
		t.Errorf("%d listings, want %d", n, listed+1)
	}
	waitFor(t, wait, "the next anti-entropy timer", func() bool { return pendingAt(clk, t0().Add(12*time.Minute)) })
}

// TestAListingDropsAMovedReminderWhoseWriteRuns: the grain of a reminder
// whose write after a firing is slow moves to another node; a listing
// meanwhile leaves the reminder's record alone (the write is newer than
// what it read) but drops it from the schedule all the same, since this
// node no longer owns the grain. The write still records the firing.
func TestAListingDropsAMovedReminderWhoseWriteRuns(t *testing.T) {
	t.Parallel()
	st := newGateStore(t)
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	p := storage.Reminder{Grain: grain("g1"), Name: "p", Due: t0().Add(time.Second), Period: time.Hour}
	open := fireHoldingTheWrite(t, s, st, clk, p)
	o.set("g1", "b")
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	open()
	waitNoFiring(t, s)
	if n := s.Len(); n != 0 {
		t.Errorf("%d scheduled after the grain moved, want none", n)
	}
	next := p
	next.Due = p.Due.Add(time.Hour)
	if rs := stored(t, st); len(rs) != 1 || !same(rs[0], next) {
		t.Errorf("stored %+v, want the next due time %v", rs, next.Due)
	}
}

// TestCloseStopsEveryTimer: Close, with a listing hung, a write after a
// firing hung, a listing retry, a RelistAfter and the anti-entropy listing
// pending, returns and leaves no timer behind.
func TestCloseStopsEveryTimer(t *testing.T) {
	t.Parallel()
	st := newGateStore(t)
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	faults := &listFaults{Store: st}
	faults.fail(kind, true)
	cfg := testConfig(t, faults, clk, o.owns("a"), rec)
	cfg.Kinds = []string{kind, otherKind}
	cfg.RelistEvery = time.Hour
	s := startNoWait(t, cfg)
	waitFor(t, wait, "a retry of the failed kind", func() bool { return pendingAt(clk, t0().Add(time.Second)) })
	faults.fail(kind, false)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "p", Due: t0(), Period: time.Minute})
	st.hold(t, "complete p")
	enteredGate(t, st, "complete p")
	st.hold(t, "list "+otherKind)
	s.RelistAfter(time.Minute)
	s.Relist()
	enteredGate(t, st, "list "+otherKind)
	if err := returnsWithin(t, "Close", func() error { s.Close(); return nil }); err != nil {
		t.Fatal(err)
	}
	if p := clk.pending(); len(p) != 0 {
		t.Errorf("timers pending after Close: %v", p)
	}
}
