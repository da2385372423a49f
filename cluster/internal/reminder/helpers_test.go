package reminder

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// kind is the grain kind the tests' schedulers host.
const kind = "test.v1.Timer"

// t0 returns the fake clock's start.
func t0() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// waitFor fails the test unless cond becomes true within timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitForState(t, timeout, what, cond, nil)
}

// waitForState is waitFor that, if it times out, says what state
// returns then (if not nil): what a test needs to tell a stuck scheduler
// from a slow one.
func waitForState(t *testing.T, timeout time.Duration, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			if state != nil {
				t.Fatalf("timed out after %v waiting for %s; %s", timeout, what, state())
			}
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond) // poll interval, not a wait for an event
	}
}

// fakeClock is a Clock whose time moves only when the test advances it.
type fakeClock struct {
	mu        sync.Mutex
	now       time.Time
	timers    map[*fakeTimer]bool
	maxActive int // most timers pending at once
}

type fakeTimer struct {
	c  *fakeClock
	at time.Time
	f  func()
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: t0(), timers: make(map[*fakeTimer]bool)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(at time.Time, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: at, f: f}
	if !at.After(c.now) { // already due, as time.AfterFunc with d <= 0
		go f()
		return t
	}
	c.timers[t] = true
	c.maxActive = max(c.maxActive, len(c.timers))
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	ok := t.c.timers[t]
	delete(t.c.timers, t)
	return ok
}

// Advance moves the time forward by d and runs the timers that are due, each
// in its own goroutine as time.AfterFunc does.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for t := range c.timers {
		if !t.at.After(c.now) {
			due = append(due, t.f)
			delete(c.timers, t)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		go f()
	}
}

// Set moves the time forward to at.
func (c *fakeClock) Set(at time.Time) { c.Advance(at.Sub(c.Now())) }

// pending returns the due times of the pending timers, sorted.
func (c *fakeClock) pending() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ats []time.Time
	for t := range c.timers {
		ats = append(ats, t.at)
	}
	slices.SortFunc(ats, time.Time.Compare)
	return ats
}

// timerAt reports whether exactly one timer is pending, due at at.
func (c *fakeClock) timerAt(at time.Time) bool {
	p := c.pending()
	return len(p) == 1 && p[0].Equal(at)
}

// owners says which node owns each grain; the zero value gives every grain to
// node "a".
type owners struct {
	mu    sync.Mutex
	owner map[string]string // identity → node
}

func (o *owners) set(identity, node string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.owner == nil {
		o.owner = make(map[string]string)
	}
	o.owner[identity] = node
}

// owns returns Config.Owns for node.
func (o *owners) owns(node string) func(kind, identity string) bool {
	return func(_, identity string) bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		owner, ok := o.owner[identity]
		if !ok {
			owner = "a"
		}
		return owner == node
	}
}

// recorder is a Config.Fire that records each firing and fails while fail
// says so.
type recorder struct {
	mu    sync.Mutex
	fired []storage.Reminder
	calls atomic.Int64 // every call, failed ones included
	fail  func(r storage.Reminder) error
}

func (r *recorder) Fire(_ context.Context, rem storage.Reminder) error {
	r.calls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(rem); err != nil {
			return err
		}
	}
	r.fired = append(r.fired, rem)
	return nil
}

func (r *recorder) setFail(f func(storage.Reminder) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = f
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.fired)
}

func (r *recorder) all() []storage.Reminder {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.fired)
}

// testLogger logs to stderr when REMINDER_TEST_LOG is set, else nowhere.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("REMINDER_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// testConfig returns a Config for node over store with the fake clock.
func testConfig(t *testing.T, store storage.Store, clock Clock, own func(string, string) bool, rec *recorder) Config {
	return Config{
		Store:           store,
		Kinds:           []string{kind},
		Owns:            own,
		Fire:            rec.Fire,
		Clock:           clock,
		RetryBackoff:    time.Second,
		RetryBackoffMax: 4 * time.Second,
		RelistEvery:     -1, // no anti-entropy timer among those the tests count
		Logger:          testLogger(t),
	}
}

// start starts a scheduler with cfg, waits for the listing Start asks for
// to end (in success or not), and closes the scheduler at the end of the
// test.
func start(t *testing.T, cfg Config) *Scheduler {
	t.Helper()
	s := startNoWait(t, cfg)
	waitFor(t, wait, "the listing asked for by Start", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.relists > 0
	})
	return s
}

// startNoWait starts a scheduler with cfg and closes it at the end of the
// test. It does not wait for the listing Start asks for.
func startNoWait(t *testing.T, cfg Config) *Scheduler {
	t.Helper()
	s := New(cfg)
	t.Cleanup(s.Close)
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return s
}

// newMemstore returns a memstore closed at the end of the test.
func newMemstore(t *testing.T) storage.Store {
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	return st
}

// grain returns the key of the test grain id.
func grain(id string) storage.Key { return storage.Key{Kind: kind, Identity: id} }

// stored returns the reminders of the test kind in store.
func stored(t *testing.T, store storage.Store) []storage.Reminder {
	t.Helper()
	rs, err := store.ListReminders(context.Background(), kind)
	if err != nil {
		t.Fatalf("ListReminders: %v", err)
	}
	return rs
}

// storedDue reports whether store holds exactly one reminder, due at due.
func storedDue(t *testing.T, store storage.Store, due time.Time) func() bool {
	return func() bool {
		rs := stored(t, store)
		return len(rs) == 1 && rs[0].Due.Equal(due)
	}
}

// register registers r on s, failing the test on error.
func register(t *testing.T, s *Scheduler, r storage.Reminder) {
	t.Helper()
	if err := s.Register(context.Background(), r); err != nil {
		t.Fatalf("Register(%q of %s): %v", r.Name, r.Grain, err)
	}
}

// faultyStore is a real store whose SaveReminder and DeleteReminder fail
// while broken is set, to test what happens when a write after a firing is
// lost.
type faultyStore struct {
	storage.Store
	broken atomic.Bool
}

var errBroken = errors.New("faulty store: write refused")

func (f *faultyStore) SaveReminder(ctx context.Context, r storage.Reminder) error {
	if f.broken.Load() {
		return errBroken
	}
	return f.Store.SaveReminder(ctx, r)
}

func (f *faultyStore) CompleteReminder(ctx context.Context, fired storage.Reminder, next *storage.Reminder) (bool, error) {
	if f.broken.Load() {
		return false, errBroken
	}
	return f.Store.CompleteReminder(ctx, fired, next)
}

func (f *faultyStore) DeleteReminder(ctx context.Context, k storage.Key, name string) error {
	if f.broken.Load() {
		return errBroken
	}
	return f.Store.DeleteReminder(ctx, k, name)
}
