package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// deadlines gives calls made without a deadline the node's
// DefaultCallTimeout.
//
// The trick: context.WithTimeout costs every call a timer, a context and a
// done channel (about 400 B in three allocations) plus two trips through
// the runtime's timer heap, although the timer almost never fires. Calls
// that start within the same short window share one deadline context
// instead, and each call wraps it in a small deadlineCtx that keeps the
// caller's values. A shared deadline is rounded up: a call may end up to
// 1/100 of DefaultCallTimeout later than it would alone, never earlier.
//
// A second trick keeps the clock off the call path: reading it costs 90 ns
// here (time.Now in a VM), about a tenth of a local grain call. The
// deadline of calls made without one (calls) is current for a window of
// half the slack, and a timer, not each call, ends the window: a call
// takes the current deadline with one atomic load. A deadline is made at
// start+timeout+slack, so a call in its window gets between timeout+slack/2
// and timeout+slack; a call gets less than timeout only if the timer that
// ends the window fires more than slack/2 late (150 ms with the default
// 30 s timeout).
type deadlines struct {
	timeout time.Duration
	slack   time.Duration // how much later than timeout a deadline may be
	cur     atomic.Pointer[sharedDeadline]
	calls   atomic.Pointer[sharedDeadline] // for calls starting now (see with); nil between windows
}

// sharedDeadline is one deadline shared by the calls of a window.
type sharedDeadline struct {
	ctx context.Context // ends at `at`, with context.DeadlineExceeded
	at  time.Time
	// cancel releases the context's timer; nothing calls it, since the
	// timer fires at `at` anyway and calls may still be using it.
	cancel context.CancelFunc
	// background is the deadline over context.Background, the context of
	// most calls without a deadline: it holds no values of a caller, so
	// all of them share it instead of allocating a deadlineCtx each (7% of
	// the bytes of bench/grains LocalCalls).
	background *deadlineCtx

	// The conns with calls waiting under this deadline that end when it
	// passes (see watch and conn.call), held weakly: the deadline's
	// context lives until it passes, DefaultCallTimeout after the calls
	// began, and a conn held strongly here kept its closed node as long.
	mu       sync.Mutex
	watchers []weak.Pointer[conn]
	watching bool        // a callback on ctx runs expire
	passed   atomic.Bool // set by expire before it ends any call
}

// watch asks that the calls of c that wait under s end when s passes (see
// conn.expire). It reports false if s has passed already; then nothing
// will end them. The first watch sets a callback on s's context, so a
// deadline no remote call waits under costs nothing more.
func (s *sharedDeadline) watch(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.passed.Load() {
		return false
	}
	if !s.watching {
		s.watching = true
		context.AfterFunc(s.ctx, s.expire)
	}
	if n := len(s.watchers); n == 0 || s.watchers[n-1] != c.self {
		s.watchers = append(s.watchers, c.self) // a conn twice is swept twice, to no effect
	}
	return true
}

// expire ends the waiting calls of the conns that watch s, once s has
// passed.
func (s *sharedDeadline) expire() {
	s.mu.Lock()
	s.passed.Store(true)
	watchers := s.watchers
	s.watchers = nil
	s.mu.Unlock()
	for _, w := range watchers {
		if c := w.Value(); c != nil {
			c.expire(s)
		}
	}
}

// onlySharedDeadline returns the shared deadline that is all there is to
// ctx's end, or nil: ctx is a deadlineCtx, which deadlines.with makes only
// over a context that can never be cancelled.
func onlySharedDeadline(ctx context.Context) *sharedDeadline {
	if c, ok := ctx.(*deadlineCtx); ok {
		return c.d
	}
	return nil
}

func newDeadlines(timeout time.Duration) *deadlines {
	return &deadlines{timeout: timeout, slack: timeout / 100}
}

// with returns ctx bounded by the default timeout. ctx must have no
// deadline. A ctx that can be cancelled gets a context of its own (sharing
// would need a goroutine or a callback per call to watch ctx); the others
// share a deadline. The returned cancel must be called when the call ends.
func (d *deadlines) with(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Done() != nil {
		return context.WithTimeout(ctx, d.timeout)
	}
	s := d.forCall()
	if ctx == context.Background() {
		return s.background, noCancel
	}
	return &deadlineCtx{Context: ctx, d: s}, noCancel
}

// forCall returns the deadline of a call that starts now without one: the
// current window's, or a new one that opens a window.
func (d *deadlines) forCall() *sharedDeadline {
	if s := d.calls.Load(); s != nil {
		return s
	}
	s := newSharedDeadline(time.Now().Add(d.timeout + d.slack))
	// Concurrent callers may each make one; the last stored wins, which
	// costs nothing but the allocation. Each closes its own window only.
	d.calls.Store(s)
	time.AfterFunc(d.slack/2, func() { d.calls.CompareAndSwap(s, nil) })
	return s
}

// shared returns a deadline between now+timeout and now+timeout+slack,
// making a new one when the current one is outside that range. Concurrent
// callers may each make one; the last stored wins, which costs nothing but
// the allocation.
func (d *deadlines) shared(now time.Time) *sharedDeadline {
	// Calls made later want later deadlines: a new one is made at the end
	// of the slack, so that it serves the calls of the whole window.
	return d.sharedNear(now.Add(d.timeout), d.slack, d.slack)
}

// sharedAfter is shared for a timeout of the call's own: a deadline between
// now+timeout and 1/100 of timeout later. A node serves a peer's requests
// under deadlines from this (see conn.serve).
func (d *deadlines) sharedAfter(now time.Time, timeout time.Duration) *sharedDeadline {
	// The requests of one window of a peer carry about the same deadline,
	// give or take how long each took to arrive, earlier or later: a new
	// deadline is made in the middle of the slack. At its end, every
	// request a little earlier than the first made one of its own.
	slack := timeout / 100
	return d.sharedNear(now.Add(timeout), slack, slack/2)
}

// sharedNear returns the current deadline if it is between want and slack
// later, or makes and shares one at want+ahead.
func (d *deadlines) sharedNear(want time.Time, slack, ahead time.Duration) *sharedDeadline {
	if s := d.cur.Load(); s != nil && !s.at.Before(want) && s.at.Sub(want) <= slack {
		return s
	}
	s := newSharedDeadline(want.Add(ahead))
	d.cur.Store(s)
	return s
}

// newSharedDeadline makes a deadline at `at`, ready to be shared.
func newSharedDeadline(at time.Time) *sharedDeadline {
	s := &sharedDeadline{at: at}
	s.ctx, s.cancel = context.WithDeadline(context.Background(), s.at)
	// A context makes its done channel on the first Done, under its
	// mutex; made here, before the deadline is shared, the calls' Done is
	// a plain atomic load. Otherwise 64 callers on a fresh deadline all
	// queued on that mutex: it was the whole mutex profile of
	// BenchmarkLocalCalls with 64 callers.
	s.ctx.Done()
	s.background = &deadlineCtx{Context: context.Background(), d: s}
	return s
}

func noCancel() {}

// deadlineCtx is a caller's context, which never ends by itself, under a
// shared deadline: values come from the caller's context, the deadline, Done
// and Err from the shared one.
type deadlineCtx struct {
	context.Context
	d *sharedDeadline
}

// Deadline implements context.Context.
func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.d.at, true }

// Done implements context.Context.
func (c *deadlineCtx) Done() <-chan struct{} { return c.d.ctx.Done() }

// Err implements context.Context.
func (c *deadlineCtx) Err() error { return c.d.ctx.Err() }

// AfterFunc lets contexts derived from c (context.WithTimeout and the like,
// in a grain) follow it with a callback instead of a goroutine each: the
// context package uses this method when a parent has it.
func (c *deadlineCtx) AfterFunc(f func()) func() bool { return context.AfterFunc(c.d.ctx, f) }

// String names the context in debugging output.
func (c *deadlineCtx) String() string {
	return "cluster.deadlineCtx(" + c.d.at.String() + ")"
}

// servedCtx is the context of a request a peer sent: it ends at the
// request's shared deadline (d; none when nil), when the caller cancels or
// its deadline passes (a cancel frame), when the conn closes, or when the
// request has been answered. Err reports context.DeadlineExceeded when it
// ended at either deadline, context.Canceled otherwise, as the caller's own
// context would on the caller's node.
//
// The trick: most requests never wait on Done. A grain that is idle runs
// the request's turn on the goroutine that serves it, and neither the
// runtime nor most grains select on the context then. So until someone
// asks for Done the context is the shared deadline and a flag that end
// sets: only then does it make a cancelable context, under the shared
// deadline, and delegate to it.
//
// context.WithCancel on every request registered a child with the shared
// deadline and removed it again, each under the deadline's one mutex:
// 36% of the lock waits of the host in bench/grains RemoteCalls, and 14%
// of its bytes.
type servedCtx struct {
	d *sharedDeadline

	mu      sync.Mutex
	ended   bool               // end came before anyone asked for Done
	expired bool               // it ended as the caller's deadline passed (see expire)
	inner   context.Context    // made by the first Done, then the source of truth
	cancel  context.CancelFunc // inner's
}

// end cancels the context: the request was answered, cancelled by the
// caller, or its conn closed. It is idempotent.
func (c *servedCtx) end() { c.finish(false) }

// expire ends the context because the caller's deadline passed (its cancel
// frame says so), before the request's own deadline here, which is a
// little later (see deadlines.sharedAfter): Err then reports
// context.DeadlineExceeded. A context that ended already keeps its error.
func (c *servedCtx) expire() { c.finish(true) }

// finish implements end and expire.
func (c *servedCtx) finish(deadline bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner != nil {
		c.expired = c.expired || deadline && c.inner.Err() == nil
		c.cancel()
	} else {
		c.expired = c.expired || deadline && !c.ended
		c.ended = true
	}
}

// materialize returns the cancelable context Done and AfterFunc delegate
// to, making it on the first call.
func (c *servedCtx) materialize() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil {
		parent := context.Background()
		if c.d != nil {
			parent = c.d.ctx
		}
		c.inner, c.cancel = context.WithCancel(parent)
		if c.ended {
			c.cancel()
		}
	}
	return c.inner
}

// Deadline implements context.Context.
func (c *servedCtx) Deadline() (time.Time, bool) {
	if c.d == nil {
		return time.Time{}, false
	}
	return c.d.at, true
}

// Done implements context.Context.
func (c *servedCtx) Done() <-chan struct{} { return c.materialize().Done() }

// Err implements context.Context.
func (c *servedCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.inner != nil:
		if err := c.inner.Err(); err == nil || !c.expired {
			return err
		}
		return context.DeadlineExceeded
	case c.ended && c.expired:
		return context.DeadlineExceeded
	case c.ended:
		return context.Canceled
	case c.d != nil:
		return c.d.ctx.Err()
	}
	return nil
}

// Value implements context.Context: a peer's request carries no values.
func (c *servedCtx) Value(any) any { return nil }

// AfterFunc lets contexts derived from c follow it with a callback instead
// of a goroutine each (see deadlineCtx.AfterFunc).
func (c *servedCtx) AfterFunc(f func()) func() bool { return context.AfterFunc(c.materialize(), f) }

// String names the context in debugging output.
func (c *servedCtx) String() string { return "cluster.servedCtx" }
