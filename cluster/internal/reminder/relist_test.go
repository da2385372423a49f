package reminder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/internal/logrecord"
)

// otherKind is a second hosted kind, for the tests of a listing that fails
// for one kind only.
const otherKind = "test.v1.Other"

// errDamaged is what listFaults answers for a kind it fails.
var errDamaged = errors.New("list faults: a reminder record cannot be read")

// listFaults is a real store whose ListReminders fails for the kinds set
// in failing, as a store does with one damaged record of a kind (or, for
// every kind, while it is down), and counts the listings of each kind.
type listFaults struct {
	storage.Store
	mu      sync.Mutex
	failing map[string]bool
	listed  map[string]int // listings asked for, failed ones included
}

// fail makes the listings of kind fail, or succeed again.
func (f *listFaults) fail(kind string, failing bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing == nil {
		f.failing = make(map[string]bool)
	}
	f.failing[kind] = failing
}

// listings returns how many listings of kind were asked for.
func (f *listFaults) listings(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listed[kind]
}

// ListReminders counts the listing, and fails it if kind is failing.
func (f *listFaults) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	f.mu.Lock()
	if f.listed == nil {
		f.listed = make(map[string]int)
	}
	f.listed[kind]++
	failing := f.failing[kind]
	f.mu.Unlock()
	if failing {
		return nil, errDamaged
	}
	return f.Store.ListReminders(ctx, kind)
}

// logRecords keeps what a scheduler logs.
type logRecords struct{ logrecord.Recorder }

// levels returns the level of each record whose message contains msg, in
// the order they were logged.
func (l *logRecords) levels(msg string) []slog.Level {
	var out []slog.Level
	for _, r := range l.Records() {
		if strings.Contains(r.Message, msg) {
			out = append(out, r.Level)
		}
	}
	return out
}

// probing reports whether the store probe of s runs or waits for its timer.
func probing(s *Scheduler) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watch.probing
}

// pendingAt reports whether a timer of clk is pending for at.
func pendingAt(clk *fakeClock, at time.Time) bool {
	return slices.ContainsFunc(clk.pending(), at.Equal)
}

// TestStartDoesNotFailWhenListingFails: a store that cannot list
// reminders when the scheduler starts does not make Start fail; the
// listing is logged (a warning, then at debug level) and tried again with
// backoff, 1 s doubling to the 4 s cap, until it succeeds, and the
// reminders are then scheduled and fire.
func TestStartDoesNotFailWhenListingFails(t *testing.T) {
	t.Parallel()
	st := &listFaults{Store: newMemstore(t)}
	if err := st.SaveReminder(context.Background(), storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0()}); err != nil {
		t.Fatal(err)
	}
	st.fail(kind, true)
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	logs := &logRecords{}
	cfg := testConfig(t, st, clk, o.owns("a"), rec) // backoff 1s, max 4s
	cfg.Logger = slog.New(logs)
	s := start(t, cfg) // fails the test if Start fails

	for i, backoff := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		retryAt := clk.Now().Add(backoff)
		// The probe each failure asks for must have read the clock before
		// it moves: one that reads it after would be due a second later,
		// a timer beside the retry's.
		waitFor(t, wait, fmt.Sprintf("listing %d to fail, its probe to end, and a retry after %v", i+1, backoff), func() bool {
			return st.listings(kind) == i+1 && !probing(s) && clk.timerAt(retryAt)
		})
		if i < 3 {
			clk.Advance(backoff)
		}
	}
	if n := rec.calls.Load(); n != 0 || s.Len() != 0 {
		t.Fatalf("%d firings, %d scheduled while the store could not list; want none", n, s.Len())
	}
	st.fail(kind, false)
	clk.Advance(4 * time.Second)
	waitFor(t, wait, "the listing that succeeds, and the firing", func() bool {
		return rec.count() == 1 && len(stored(t, st)) == 0
	})
	const msg = "list reminders failed"
	want := []slog.Level{slog.LevelWarn, slog.LevelDebug, slog.LevelDebug, slog.LevelDebug}
	if got := logs.levels(msg); !slices.Equal(got, want) {
		t.Errorf("logged %q at levels %v, want %v", msg, got, want)
	}
	if got := logs.levels("listed reminders again"); len(got) != 1 {
		t.Errorf("logged the recovery %d times, want once", len(got))
	}
}

// TestAKindThatCannotBeListedDoesNotHoldUpTheOthers: the listing of one
// hosted kind fails, as with a damaged record; the reminders of the other
// kind are scheduled and fire all the same, and the failed kind alone is
// listed again, with backoff, until its reminders are scheduled too.
func TestAKindThatCannotBeListedDoesNotHoldUpTheOthers(t *testing.T) {
	t.Parallel()
	st := &listFaults{Store: newMemstore(t)}
	ctx := context.Background()
	other := storage.Key{Kind: otherKind, Identity: "o1"}
	for _, r := range []storage.Reminder{
		{Grain: grain("g1"), Name: "r", Due: t0()},
		{Grain: other, Name: "r", Due: t0()},
	} {
		if err := st.SaveReminder(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	st.fail(otherKind, true)
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	cfg := testConfig(t, st, clk, o.owns("a"), rec)
	cfg.Kinds = []string{kind, otherKind}
	start(t, cfg)

	waitFor(t, wait, "the reminder of the kind listed to fire, and a retry for the other", func() bool {
		return rec.count() == 1 && pendingAt(clk, t0().Add(time.Second))
	})
	if r := rec.all()[0]; r.Grain != grain("g1") {
		t.Fatalf("fired %+v, want the reminder of %s", r, grain("g1"))
	}
	st.fail(otherKind, false)
	clk.Advance(time.Second)
	waitFor(t, wait, "the other kind's reminder to fire after the retry", func() bool { return rec.count() == 2 })
	if r := rec.all()[1]; r.Grain != other {
		t.Fatalf("fired %+v, want the reminder of %s", r, other)
	}
	if n := st.listings(kind); n != 1 {
		t.Errorf("the kind listed at once was listed %d times, want once: a retry lists the kinds that failed", n)
	}
}

// TestRefreshUpdatesTheKindsItCouldList: Refresh applies what it listed of
// the kinds whose listing succeeded, leaves the others as they were, and
// returns an error naming the kind that failed.
func TestRefreshUpdatesTheKindsItCouldList(t *testing.T) {
	t.Parallel()
	st := &listFaults{Store: newMemstore(t)}
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	cfg := testConfig(t, st, clk, o.owns("a"), rec)
	cfg.Kinds = []string{kind, otherKind}
	s := start(t, cfg)
	ctx := context.Background()
	due := t0().Add(time.Hour)
	other := storage.Key{Kind: otherKind, Identity: "o1"}
	register(t, s, storage.Reminder{Grain: grain("g1"), Name: "r", Due: due})
	register(t, s, storage.Reminder{Grain: other, Name: "r", Due: due})
	// Another node deletes both; this one can list one kind only.
	for _, k := range []storage.Key{grain("g1"), other} {
		if err := st.DeleteReminder(ctx, k, "r"); err != nil {
			t.Fatal(err)
		}
	}
	st.fail(otherKind, true)
	err := s.Refresh(ctx)
	if !errors.Is(err, errDamaged) || !strings.Contains(err.Error(), otherKind) || strings.Contains(err.Error(), `"`+kind+`"`) {
		t.Fatalf("Refresh: %v, want the listing error of %s only", err, otherKind)
	}
	s.mu.Lock()
	_, kept := s.entries[id{other, "r"}]
	n := len(s.entries)
	s.mu.Unlock()
	if n != 1 || !kept {
		t.Fatalf("%d scheduled (the other kind's kept: %t); want only the reminder of the kind not listed", n, kept)
	}
}

// hangingStore blocks each ListReminders until the test lets it through
// (on grant) or the call's ctx ends, and says on entered that one began.
type hangingStore struct {
	storage.Store
	entered chan struct{}
	grant   chan struct{}
	ended   chan error // why a listing that was not let through ended
}

// newHangingStore returns a hangingStore over a memstore of the test's own.
func newHangingStore(t *testing.T) *hangingStore {
	return &hangingStore{Store: newMemstore(t), entered: make(chan struct{}, 16), grant: make(chan struct{}), ended: make(chan error, 16)}
}

// ListReminders says it began, and lists once granted, or fails with
// ctx's error. The scheduler's probe (see storeWatch), which a failed
// listing asks for, passes: the tests hang the listings, not the store.
func (h *hangingStore) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	if kind == probeKind {
		return h.Store.ListReminders(ctx, kind)
	}
	h.entered <- struct{}{}
	select {
	case <-h.grant:
		return h.Store.ListReminders(ctx, kind)
	case <-ctx.Done():
		h.ended <- ctx.Err()
		return nil, ctx.Err()
	}
}

// TestRelistDoesNotWaitAndCoalesces: Relist returns at once while a
// listing hangs; the requests made meanwhile, however many, are served by
// one more listing after it, which asks about ownership afresh.
func TestRelistDoesNotWaitAndCoalesces(t *testing.T) {
	t.Parallel()
	st := newHangingStore(t)
	if err := st.SaveReminder(context.Background(), storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	o.set("g1", "b")
	s := startNoWait(t, testConfig(t, st, clk, o.owns("a"), rec))
	receive(t, st.entered, "the listing asked for by Start")

	asked := make(chan struct{})
	go func() {
		for range 5 {
			s.Relist()
		}
		close(asked)
	}()
	receive(t, asked, "Relist to return while a listing hangs")
	st.grant <- struct{}{}
	receive(t, st.entered, "one more listing, for the requests made meanwhile")
	if n := s.Len(); n != 0 {
		t.Fatalf("%d scheduled after the first listing, want none: b owned the grain", n)
	}
	if n := len(s.relist); n != 0 {
		t.Fatalf("%d requests still waiting while the second listing runs, want none", n)
	}
	o.set("g1", "a")
	st.grant <- struct{}{}
	waitFor(t, wait, "the second listing to schedule the grain a owns now", func() bool { return s.Len() == 1 })
	s.Stop(context.Background()) // waits for the listing goroutine; a third listing would hang until Stop cancels it
	if n := len(st.entered); n != 0 {
		t.Errorf("%d more listings after the second, want none", n)
	}
}

// TestAHungListingTimesOut: a listing that hangs ends after ListTimeout
// and is tried again with backoff, so that the listings asked for meanwhile
// are not held up for longer.
func TestAHungListingTimesOut(t *testing.T) {
	t.Parallel()
	st := newHangingStore(t)
	if err := st.SaveReminder(context.Background(), storage.Reminder{Grain: grain("g1"), Name: "r", Due: t0().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	cfg := testConfig(t, st, clk, o.owns("a"), rec)
	cfg.ListTimeout = 50 * time.Millisecond
	s := startNoWait(t, cfg)
	receive(t, st.entered, "the listing asked for by Start")
	if err := receiveErr(t, st.ended, "the hung listing to end"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the hung listing ended with %v, want its deadline", err)
	}
	waitFor(t, wait, "a retry after the backoff", func() bool { return clk.timerAt(t0().Add(time.Second)) })
	clk.Advance(time.Second)
	receive(t, st.entered, "the retry")
	st.grant <- struct{}{}
	waitFor(t, wait, "the retry to schedule the reminder", func() bool { return s.Len() == 1 })
}

// TestStopCancelsAHungListing: Stop cancels a background listing that
// hangs, and waits for it.
func TestStopCancelsAHungListing(t *testing.T) {
	t.Parallel()
	st := newHangingStore(t)
	clk, rec, o := newFakeClock(), &recorder{}, &owners{}
	s := startNoWait(t, testConfig(t, st, clk, o.owns("a"), rec))
	receive(t, st.entered, "the listing asked for by Start")
	stopped := make(chan struct{})
	go func() { s.Stop(context.Background()); close(stopped) }()
	receive(t, stopped, "Stop to return while a listing hangs")
	if err := receiveErr(t, st.ended, "the hung listing to end"); !errors.Is(err, context.Canceled) {
		t.Fatalf("the listing hung at Stop ended with %v, want it cancelled", err)
	}
}

// receiveErr waits for an error on ch.
func receiveErr(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}
