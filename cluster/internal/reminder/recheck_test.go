package reminder

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// TestAReminderMovedAwayAndBackDuringItsWriteStaysScheduled: while the
// write after a periodic reminder's firing runs, the grain moves to node b
// (a listing drops the entry), then back to this node (a listing skips the
// reminder, whose write is in flight, though it reads it owned here and the
// schedule lacks it). When the write lands, another listing schedules the
// reminder again; it was forgotten until the anti-entropy listing.
func TestAReminderMovedAwayAndBackDuringItsWriteStaysScheduled(t *testing.T) {
	t.Parallel()
	st := newGateStore(t)
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	p := storage.Reminder{Grain: grain("g1"), Name: "p", Due: t0().Add(time.Second), Period: time.Hour}
	open := fireHoldingTheWrite(t, s, st, clk, p)

	o.set("g1", "b") // b joined and owns g1
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	o.set("g1", "a") // b left: g1 is ours again
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	open()
	waitNoFiring(t, s)
	next := p
	next.Due = p.Due.Add(time.Hour)
	if rs := stored(t, st); len(rs) != 1 || !same(rs[0], next) {
		t.Fatalf("stored %+v, want %v", rs, next)
	}
	waitFor(t, wait, "g1's reminder to be scheduled again: this node owns g1 and the store holds it", func() bool { return s.Len() == 1 })
}

// preListStore holds ListReminders before it reads the store, while
// armed: a listing that starts, then reads late.
type preListStore struct {
	storage.Store
	gate    chan struct{}
	entered chan struct{}
}

// ListReminders implements storage.Store for preListStore: see the type.
func (p *preListStore) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	if p.gate != nil {
		p.entered <- struct{}{}
		<-p.gate
	}
	return p.Store.ListReminders(ctx, kind)
}

// TestAListingThatSkipsAReminderAnotherNodeDeletedListsAgain: a listing
// starts while this node's write after a firing runs; the write lands; then
// another node deletes the reminder; then the listing reads the store (no
// reminder) and applies. It skips the reminder (this node's write ended
// after it started), but asks for another listing, which drops it; the
// deleted reminder stayed scheduled, and fired again.
func TestAListingThatSkipsAReminderAnotherNodeDeletedListsAgain(t *testing.T) {
	t.Parallel()
	gs := newGateStore(t)
	st := &preListStore{Store: gs, entered: make(chan struct{}, 1)}
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	p := storage.Reminder{Grain: grain("g1"), Name: "p", Due: t0().Add(time.Second), Period: time.Hour}
	open := fireHoldingTheWrite(t, s, gs, clk, p)

	st.gate = make(chan struct{}) // set before Refresh starts its goroutine
	refreshed := make(chan error, 1)
	go func() { refreshed <- s.Refresh(context.Background()) }()
	<-st.entered // the listing started (its seq is noted), and has not read yet
	open()
	waitNoFiring(t, s)
	if err := gs.Store.DeleteReminder(context.Background(), p.Grain, p.Name); err != nil { // another node
		t.Fatal(err)
	}
	close(st.gate)
	if err := receiveErr(t, refreshed, "Refresh"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "the reminder another node deleted to leave the schedule", func() bool { return s.Len() == 0 })
	if rs := stored(t, gs); len(rs) != 0 {
		t.Errorf("stored %+v", rs)
	}
}

// TestAnOlderListingIsNotAppliedAfterANewerOne: a background listing of a
// kind reads the store, then answers late; another node deletes a
// reminder; Refresh lists the kind again and drops it. The older listing,
// which ends last, is not applied: it scheduled the deleted reminder again
// when listings were applied in the order they ended.
func TestAnOlderListingIsNotAppliedAfterANewerOne(t *testing.T) {
	t.Parallel()
	st := newGateStore(t)
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	r := storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0().Add(time.Hour)}
	register(t, s, r)

	open := st.hold(t, "list "+kind)
	before := relists(s)
	s.Relist()
	enteredGate(t, st, "list "+kind) // the background listing read {r}
	st.mu.Lock()
	delete(st.gates, "list "+kind) // later listings pass
	st.mu.Unlock()
	if err := st.Store.DeleteReminder(context.Background(), r.Grain, r.Name); err != nil { // another node
		t.Fatal(err)
	}
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("%d scheduled after Refresh, want 0", n)
	}
	open()
	waitFor(t, wait, "the older listing to end", func() bool { return relists(s) > before })
	if n := s.Len(); n != 0 {
		t.Errorf("%d scheduled after the older listing applied, want 0: the store holds nothing", n)
	}
}

// TestARegisterWhileOwnershipArrivesIsScheduled: Register saves a reminder
// of a grain another node owns and asks Owns (false); right then the grain
// moves here and a listing starts, before Register notes its write's end:
// the listing skips the reminder, and asks for another listing once the
// write ended, which schedules it. Nothing did before.
func TestARegisterWhileOwnershipArrivesIsScheduled(t *testing.T) {
	t.Parallel()
	st := &preListStore{Store: newMemstore(t), entered: make(chan struct{}, 1)}
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	o.set("g1", "b")
	var s *Scheduler
	var flip atomic.Bool
	refreshed := make(chan error, 1)
	cfg := testConfig(t, st, clk, func(k, id string) bool {
		owned := o.owns("a")(k, id)
		if id == "g1" && flip.CompareAndSwap(true, false) {
			// Register asked; now the view changes and a listing starts.
			o.set("g1", "a")
			go func() { refreshed <- s.Refresh(context.Background()) }()
			<-st.entered // the listing began, and will read after Register's save
		}
		return owned
	}, rec)
	s = start(t, cfg)
	st.gate = make(chan struct{})
	flip.Store(true)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0().Add(time.Hour)})
	close(st.gate)
	if err := receiveErr(t, refreshed, "Refresh"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "r to be scheduled: this node owns g1 and the store holds r", func() bool { return s.Len() == 1 })
}

// TestCloseMidListingLeavesNoRecords: Close while a listing waits, with a
// Register made during it, leaves no listing or write record behind.
func TestCloseMidListingLeavesNoRecords(t *testing.T) {
	t.Parallel()
	st := newGateStore(t)
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := start(t, testConfig(t, st, clk, o.owns("a"), rec))
	st.hold(t, "list "+kind)
	s.Relist()
	enteredGate(t, st, "list "+kind)
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0().Add(time.Hour)})
	s.mu.Lock()
	nw := len(s.writes)
	s.mu.Unlock()
	if nw != 1 {
		t.Fatalf("%d write records during the listing, want 1", nw)
	}
	s.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.listings) != 0 || len(s.writes) != 0 || s.inflight != 0 || len(s.leaving) != 0 {
		t.Errorf("after Close: listings %v, writes %d, inflight %d, leaving %d", s.listings, len(s.writes), s.inflight, len(s.leaving))
	}
}
