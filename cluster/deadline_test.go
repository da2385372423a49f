package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
	"weak"
)

type ctxKey struct{}

func TestSharedDeadlineBounds(t *testing.T) {
	d := newDeadlines(time.Hour)
	now := time.Now()
	a := d.shared(now)
	if !a.at.Equal(now.Add(time.Hour + d.slack)) {
		t.Fatalf("first deadline at %v, want now+timeout+slack", a.at.Sub(now))
	}
	// Within the slack the deadline is shared; past it, a new one is made,
	// and no call ever gets a deadline earlier than its own start+timeout.
	if b := d.shared(now.Add(d.slack / 2)); b != a {
		t.Fatal("a call within the slack did not share the deadline")
	}
	later := now.Add(d.slack + time.Millisecond)
	c := d.shared(later)
	if c == a {
		t.Fatal("a call past the slack shared a deadline earlier than its own")
	}
	if c.at.Before(later.Add(time.Hour)) {
		t.Fatalf("deadline %v before start+timeout", c.at.Sub(later))
	}
	// A call that started earlier than the current deadline allows (its
	// goroutine read the clock, then was descheduled) is not stretched
	// further than the slack.
	if e := d.shared(now.Add(-time.Minute)); e == c || e.at.Sub(now.Add(-time.Minute).Add(time.Hour)) > d.slack {
		t.Fatal("an earlier start shared a deadline more than the slack away")
	}
}

func TestDeadlineCtxKeepsValuesAndEnds(t *testing.T) {
	d := newDeadlines(50 * time.Millisecond)
	parent := context.WithValue(context.Background(), ctxKey{}, "v")
	ctx, cancel := d.with(parent)
	defer cancel()
	if _, ok := ctx.(*deadlineCtx); !ok {
		t.Fatalf("a context without Done got %T, want a shared deadline", ctx)
	}
	if got := ctx.Value(ctxKey{}); got != "v" {
		t.Fatalf("Value = %v, want the caller's value", got)
	}
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > 50*time.Millisecond+d.slack {
		t.Fatalf("Deadline = %v, %v", dl, ok)
	}
	// A context a grain derives follows the shared deadline, and ending
	// it early leaves the shared one alone.
	child, stop := context.WithCancel(ctx)
	stop()
	if ctx.Err() != nil {
		t.Fatal("cancelling a child ended the shared deadline")
	}
	grand, stop2 := context.WithTimeout(ctx, time.Hour)
	defer stop2()
	select {
	case <-grand.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a derived context did not end with the shared deadline")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(grand.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err = %v / %v, want DeadlineExceeded", ctx.Err(), grand.Err())
	}
	if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		t.Fatalf("Cause = %v", context.Cause(ctx))
	}
	_ = child
}

func TestDeadlineOfCancelableContextIsItsOwn(t *testing.T) {
	d := newDeadlines(time.Hour)
	parent, cancelParent := context.WithCancel(context.Background())
	ctx, cancel := d.with(parent)
	defer cancel()
	if _, ok := ctx.(*deadlineCtx); ok {
		t.Fatal("a cancelable context got a shared deadline, which would not see its cancellation")
	}
	cancelParent()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling the caller's context did not end the call's")
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("Err = %v, want Canceled", ctx.Err())
	}
}

// Calls over context.Background within one window share one context,
// which has the shared deadline; a caller's context with values gets one
// of its own that keeps them.
func TestBackgroundCallsShareOneContext(t *testing.T) {
	d := newDeadlines(time.Hour)
	a, _ := d.with(context.Background())
	b, _ := d.with(context.Background())
	if a != b {
		t.Fatal("two calls over context.Background in one window got two contexts")
	}
	if dl, ok := a.Deadline(); !ok || time.Until(dl) > time.Hour+d.slack || time.Until(dl) < time.Hour-time.Minute {
		t.Fatalf("Deadline = %v, %v; want about an hour from now", dl, ok)
	}
	withValue := context.WithValue(context.Background(), ctxKey{}, "v")
	c, _ := d.with(withValue)
	if c == a || c.Value(ctxKey{}) != "v" {
		t.Fatalf("a context with a value got %v (value %v); want its own, keeping the value", c, c.Value(ctxKey{}))
	}
}

// Calls without a deadline share one, made without reading the clock per
// call, no earlier than start+timeout and at most the slack later; once
// the window's timer ends it, the next call opens a new window.
func TestCallDeadlineWindow(t *testing.T) {
	d := newDeadlines(time.Hour)
	start := time.Now()
	a := d.forCall()
	end := time.Now()
	if b := d.forCall(); b != a {
		t.Fatal("two calls in one window got two deadlines")
	}
	if a.at.Before(start.Add(time.Hour)) || a.at.After(end.Add(time.Hour+d.slack)) {
		t.Fatalf("deadline %v after the call, want within [1h, 1h+%v]", a.at.Sub(start), d.slack)
	}
	// A short timeout: its window (half of a hundredth) ends soon.
	short := newDeadlines(100 * time.Millisecond)
	first := short.forCall()
	waitFor(t, 10*time.Second, "the window to end", func() bool { return short.calls.Load() != first })
	before := time.Now()
	next := short.forCall()
	if next == first || next.at.Before(before.Add(100*time.Millisecond)) {
		t.Fatalf("the next window's deadline is %v after its call, want a new one at least the timeout away", next.at.Sub(before))
	}
}

// A request's own timeout gets a shared deadline no earlier than its own
// and at most a hundredth of it later; a much shorter timeout does not
// share a longer one's deadline.
func TestSharedAfterBounds(t *testing.T) {
	d := newDeadlines(0)
	now := time.Now()
	long := d.sharedAfter(now, time.Minute)
	if long.at.Before(now.Add(time.Minute)) || long.at.Sub(now.Add(time.Minute)) > time.Minute/100 {
		t.Fatalf("deadline %v after now, want within [1m, 1m0.6s]", long.at.Sub(now))
	}
	if again := d.sharedAfter(now.Add(time.Millisecond), time.Minute); again != long {
		t.Fatal("a request within the slack did not share the deadline")
	}
	short := d.sharedAfter(now, time.Second)
	if short == long || short.at.Before(now.Add(time.Second)) || short.at.Sub(now.Add(time.Second)) > time.Second/100 {
		t.Fatalf("a 1s timeout got a deadline %v after now", short.at.Sub(now))
	}
}

// Requests that carry the same absolute deadline, arriving with some jitter,
// share one shared deadline rather than making one each.
func TestSharedAfterToleratesJitter(t *testing.T) {
	d := newDeadlines(0)
	now := time.Now()
	deadline := now.Add(20 * time.Second)
	first := d.sharedAfter(now, deadline.Sub(now))
	for _, jitter := range []time.Duration{time.Millisecond, -time.Millisecond, 50 * time.Millisecond, -50 * time.Millisecond} {
		arrived := now.Add(time.Millisecond)
		// Sent with deadline-sent left; arrived jitter later or earlier
		// than the first request's transit.
		if got := d.sharedAfter(arrived, deadline.Sub(arrived)+jitter); got != first {
			t.Fatalf("a request with jitter %v made a deadline of its own", jitter)
		}
	}
}

func TestServedCtxEndsWithoutDone(t *testing.T) {
	c := &servedCtx{d: newSharedDeadline(time.Now().Add(time.Hour))}
	if err := c.Err(); err != nil {
		t.Fatalf("Err before the end = %v", err)
	}
	if dl, ok := c.Deadline(); !ok || !dl.Equal(c.d.at) {
		t.Fatalf("Deadline = %v, %v; want the shared one", dl, ok)
	}
	c.end()
	c.end() // idempotent
	// Done, asked for only now, is closed already.
	wantCanceled(t, c, "after end")
	if c.d.ctx.Err() != nil {
		t.Fatal("ending a request ended the shared deadline")
	}
}

func TestServedCtxDoneClosesOnEnd(t *testing.T) {
	c := &servedCtx{} // no deadline
	if _, ok := c.Deadline(); ok {
		t.Fatal("a request without a timeout has a deadline")
	}
	done := c.Done()
	if done != c.Done() {
		t.Fatal("Done returned a different channel the second time")
	}
	// A context a grain derives follows the request, through AfterFunc.
	child, stop := context.WithCancel(c)
	defer stop()
	c.end()
	for _, ch := range []<-chan struct{}{done, child.Done()} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("the end of the request did not close Done")
		}
	}
	if err := c.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err = %v, want context.Canceled", err)
	}
}

func TestServedCtxFollowsTheSharedDeadline(t *testing.T) {
	s := newSharedDeadline(time.Now().Add(20 * time.Millisecond))
	asked := &servedCtx{d: s}
	done := asked.Done()
	notAsked := &servedCtx{d: s}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Done did not close at the shared deadline")
	}
	for _, c := range []*servedCtx{asked, notAsked} {
		if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Err = %v, want context.DeadlineExceeded", err)
		}
	}
	if v := notAsked.Value(ctxKey{}); v != nil {
		t.Fatalf("Value = %v, want none", v)
	}
}

// wantCanceled fails t unless ctx ended with context.Canceled and its Done
// channel is closed.
func wantCanceled(t testing.TB, ctx context.Context, what string) {
	t.Helper()
	if err := ctx.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("%s: Err = %v, want context.Canceled", what, err)
	}
	select {
	case <-ctx.Done():
	default:
		t.Errorf("%s: Done is not closed", what)
	}
}

// TestOneWayContextEndsItsChildren: a context a grain derives from a
// one-way message's context ends at the message's deadline, through
// AfterFunc, and one derived without a deadline never ends by itself.
func TestOneWayContextEndsItsChildren(t *testing.T) {
	m := &oneWayCall{method: &hostedMethod{Method: &Method{Name: "/test.Recorder/Record"}},
		d: newSharedDeadline(time.Now().Add(20 * time.Millisecond))}
	wantAfterFunc(t, m, "a one-way context")
	child, cancel := context.WithTimeout(m, time.Hour)
	defer cancel()
	receive(t, child.Done(), "a derived context to end at the message's deadline")
	if !errors.Is(child.Err(), context.DeadlineExceeded) || !errors.Is(m.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err = %v and %v, want DeadlineExceeded", child.Err(), m.Err())
	}

	untimed := &oneWayCall{method: m.method}
	if _, ok := untimed.Deadline(); ok || untimed.Done() != nil || untimed.Err() != nil {
		t.Fatal("a one-way context without a DefaultCallTimeout has a deadline")
	}
	stop := untimed.AfterFunc(func() { t.Error("AfterFunc ran on a context that never ends") })
	if !stop() {
		t.Error("stopping the AfterFunc of a context that never ends reported it had run")
	}
}

// TestGrainContextEndsItsChildren: a context a grain derives from a call's
// GrainContext ends with the call's context, through AfterFunc, whether
// that context is a caller's under a shared deadline or a peer's request.
func TestGrainContextEndsItsChildren(t *testing.T) {
	d := newDeadlines(20 * time.Millisecond)
	served := &servedCtx{d: d.shared(time.Now())}
	caller, cancel := d.with(context.WithValue(context.Background(), ctxKey{}, "v"))
	defer cancel()
	for name, ctx := range map[string]context.Context{"caller's": caller, "peer's": served} {
		g := &grainContext{Context: ctx}
		wantAfterFunc(t, g, "a grainContext")
		child, stop := context.WithTimeout(g, time.Hour)
		defer stop()
		receive(t, child.Done(), "a context derived under a "+name+" context to end with it")
		if !errors.Is(child.Err(), context.DeadlineExceeded) {
			t.Fatalf("under a %s context: Err = %v, want DeadlineExceeded", name, child.Err())
		}
	}
	// Ending a peer's request early ends what the grain derived, too.
	early := &servedCtx{d: newDeadlines(time.Hour).shared(time.Now())}
	child, stop := context.WithCancel(&grainContext{Context: early})
	defer stop()
	early.end()
	receive(t, child.Done(), "a context derived under a peer's request to end when the request did")
}

// wantAfterFunc fails t unless ctx has the AfterFunc method through which
// the context package follows a parent with a callback, rather than with a
// goroutine for each context derived from it.
func wantAfterFunc(t testing.TB, ctx context.Context, what string) {
	t.Helper()
	if _, ok := ctx.(interface{ AfterFunc(func()) func() bool }); !ok {
		t.Fatalf("%s has no AfterFunc: each context derived from it would need a goroutine", what)
	}
}

// TestSharedDeadlineEndsTheCallsItWatches checks the rules conn.call relies
// on when it waits on a reply alone: a deadline that passes ends the
// watching conns' calls under it and no others, and a deadline that has
// passed takes no more watchers.
func TestSharedDeadlineEndsTheCallsItWatches(t *testing.T) {
	d := newDeadlines(time.Hour)
	later := d.shared(time.Now())
	s := newSharedDeadline(time.Now().Add(time.Millisecond))
	c := &conn{calls: make(map[uint64]pendingCall)}
	c.self = weak.Make(c) // as newConn makes it
	under, other, none := make(chan frame, 1), make(chan frame, 1), make(chan frame, 1)
	c.calls[1] = pendingCall{reply: under, d: s}
	c.calls[2] = pendingCall{reply: other, d: later}
	c.calls[3] = pendingCall{reply: none}
	c.mu.Lock()
	if !c.watch(s) {
		t.Fatal("a deadline that has not passed refused to watch a conn")
	}
	if !c.watch(s) { // the conn's second call under s: s watches it already
		t.Fatal("a conn that a deadline watches refused a second call under it")
	}
	c.mu.Unlock()

	if r := receive(t, under, "the call under the deadline to end"); r.typ != frameExpired {
		t.Fatalf("the call under the deadline got a frame of type %d, want frameExpired", r.typ)
	}
	if !s.passed.Load() {
		t.Fatal("a call ended before its deadline was marked passed")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.calls[1]; ok || len(c.calls) != 2 {
		t.Fatalf("after the deadline the conn waits for %d calls (the ended one: %t), want the 2 others", len(c.calls), ok)
	}
	select {
	case r := <-other:
		t.Fatalf("a call under another deadline got a frame of type %d", r.typ)
	case r := <-none:
		t.Fatalf("a call with no shared deadline got a frame of type %d", r.typ)
	default:
	}
	// The conn watched s already; s has passed, and a new call under it
	// must not wait for an expire that has come and gone.
	if c.watch(s) {
		t.Fatal("a conn accepted a call under a deadline that has passed")
	}
	if s.watch(&conn{}) {
		t.Fatal("a passed deadline took a new watcher")
	}
}

// TestServedCtxExpireReportsTheDeadline: a served request's context that
// its caller's cancel frame ends as the caller's deadline passed reports
// context.DeadlineExceeded, whether or not anyone asked for Done first,
// and so do contexts derived from it; one that ended already keeps
// context.Canceled. Before, there was no way to end it but as cancelled.
func TestServedCtxExpireReportsTheDeadline(t *testing.T) {
	notAsked := &servedCtx{}
	notAsked.expire()
	<-notAsked.Done()
	if err := notAsked.Err(); err != context.DeadlineExceeded {
		t.Errorf("expired before Done: Err = %v, want DeadlineExceeded", err)
	}

	asked := &servedCtx{d: newSharedDeadline(time.Now().Add(time.Hour))}
	child, cancel := context.WithCancel(asked)
	defer cancel()
	asked.expire()
	<-child.Done()
	if err, childErr := asked.Err(), child.Err(); err != context.DeadlineExceeded || childErr != context.DeadlineExceeded {
		t.Errorf("expired after Done: Err = %v, a child's %v; want DeadlineExceeded for both", err, childErr)
	}

	for _, done := range []bool{false, true} {
		answered := &servedCtx{}
		if done {
			answered.Done()
		}
		answered.end()
		answered.expire() // a cancel frame that comes after the reply
		if err := answered.Err(); err != context.Canceled {
			t.Errorf("ended, then expired (Done asked: %t): Err = %v, want Canceled", done, err)
		}
	}
}
