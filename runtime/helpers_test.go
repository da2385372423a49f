package runtime

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testTimeout bounds every wait in the tests; it is generous because the
// machine is shared and -race is slow.
const testTimeout = 10 * time.Second

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not a wait for an event
	}
}

// waitClosed waits for ch to be closed.
func waitClosed(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// recv receives one value from ch.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// testLogger discards logs unless -v is set, where it writes them prefixed
// with the test name.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// newTestSystem returns a System closed when the test ends.
func newTestSystem(t testing.TB, cfg Config) *System {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s := NewSystem(cfg)
	t.Cleanup(s.Close)
	return s
}

// spawn spawns p on s or fails the test.
func spawn(t testing.TB, s *System, p Props) *Ref {
	t.Helper()
	r, err := s.Spawn(p)
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	return r
}

// spawnFunc spawns an actor made of f.
func spawnFunc(t testing.TB, s *System, f func(c *Context)) *Ref {
	t.Helper()
	return spawn(t, s, Props{New: func() Actor { return ActorFunc(f) }})
}

// ctxTimeout returns a context bounded by testTimeout.
// goEach runs run(g) for g from 0 to n-1, each on a goroutine of its own,
// and returns a function that waits for them all.
func goEach(n int, run func(g int)) (wait func()) {
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() { run(g) })
	}
	return wg.Wait
}

func ctxTimeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// fakeClock is a Clock that moves only when Advance is called.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	asked  []time.Duration // every AfterFunc duration, in order
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, ft)
	c.asked = append(c.asked, d)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !ft.stopped
		ft.stopped = true
		return was
	}
}

// Advance moves the clock and runs the due timers in order, each in its own
// goroutine like time.AfterFunc, waiting for them to return.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	keep := c.timers[:0]
	for _, ft := range c.timers {
		switch {
		case ft.stopped:
		case !ft.at.After(c.now):
			ft.stopped = true
			due = append(due, ft)
		default:
			keep = append(keep, ft)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	sort.SliceStable(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, ft := range due {
		done := make(chan struct{})
		go func() { defer close(done); ft.f() }()
		<-done
	}
}

// Asked returns the durations passed to AfterFunc so far.
func (c *fakeClock) Asked() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.asked...)
}

// Pending returns how many timers are armed.
func (c *fakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ft := range c.timers {
		if !ft.stopped {
			n++
		}
	}
	return n
}

// blockOrCount returns a handler that, on "block", closes entered and waits
// until release is closed, and counts every "m" in handled.
func blockOrCount(entered, release chan struct{}, handled *atomic.Int32) func(c *Context) {
	return func(c *Context) {
		switch c.Message() {
		case "block":
			close(entered)
			<-release
		case "m":
			handled.Add(1)
		}
	}
}
