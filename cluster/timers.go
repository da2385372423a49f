package cluster

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
)

// Timer is a grain timer: StartTimer's.
type Timer struct {
	a         *activation
	fn        func(ctx GrainContext) error
	dueIn     time.Duration
	period    time.Duration // zero for a timer that fires once
	keepAlive bool          // TimerKeepsActive

	mu      sync.Mutex
	clock   *time.Timer // guarded by mu
	stopped atomic.Bool
	// queued is set while a tick waits in the grain's mailbox: a tick due
	// meanwhile is skipped, so that a grain slower than its timer is not
	// buried under ticks.
	queued atomic.Bool
}

// timerTick is the message that runs a timer's turn on its grain's actor.
type timerTick struct{ t *Timer }

// TimerOption configures a timer that StartTimer starts.
type TimerOption interface{ applyTimer(*Timer) }

type timerKeepsActive struct{}

func (timerKeepsActive) applyTimer(t *Timer) { t.keepAlive = true }

// TimerKeepsActive makes each of the timer's ticks count as a use of its
// grain, as a call does, so that the grain does not passivate while the
// timer ticks more often than its kind's IdleTimeout (a game loop, a
// poller that must not stop). Deactivate, a move and the node's close
// still end it.
func TimerKeepsActive() TimerOption { return timerKeepsActive{} }

// StartTimer has fn run on the grain whose call, one-way message, reminder
// or OnActivate ctx is: once dueIn has passed, then every period (only
// once for a zero period), one turn at a time with the grain's calls, for
// as long as this activation lives. Unlike a reminder, a timer is kept in
// memory only: it ends with the activation (an idle passivation, a
// Deactivate, a move, repeated panics, the node's close), and its turns do
// not count as calls, so a grain that only ticks still passivates after
// its IdleTimeout (unless the timer has TimerKeepsActive). What fn
// changes in the grain's state is committed after its turn as after a
// call's (in FlushAfterCall mode). An error fn returns is logged, as is a
// panic, which the grain's actor then handles as a panicking call's; the
// timer goes on. A tick due while the one before still waits for the grain
// is skipped.
//
// It returns ErrBadRequest for a negative dueIn or period, in OnDeactivate,
// and for a context no node passed to a grain.
func StartTimer(ctx GrainContext, dueIn, period time.Duration, fn func(ctx GrainContext) error, opts ...TimerOption) (*Timer, error) {
	if dueIn < 0 || period < 0 || fn == nil {
		return nil, newError(codes.InvalidArgument, ErrBadRequest, "cluster: StartTimer needs a function, and a due time and a period of zero or more (not %v and %v)", dueIn, period)
	}
	if h, ok := innerContext(ctx).(*hookContext); ok && h.deactivating && !h.over.Load() {
		return nil, newError(codes.InvalidArgument, ErrBadRequest, "cluster: StartTimer in OnDeactivate of grain %s/%s: the activation is going", h.Kind(), h.Identity())
	}
	n, a, err := grainOf(ctx, "StartTimer")
	if err != nil {
		return nil, err
	}
	t := &Timer{a: a, fn: fn, dueIn: dueIn, period: period}
	for _, o := range opts {
		o.applyTimer(t)
	}
	if !n.acts.addTimer(a, t) {
		return nil, newError(codes.InvalidArgument, ErrBadRequest, "cluster: StartTimer on grain %s/%s, whose activation is going", a.hk.Name, a.identity)
	}
	if a.pending.Load() != nil {
		// Still activating (OnActivate's timer): the grain's actor does
		// not exist yet. armTimers arms it once the activation is done;
		// it runs after the load above saw the activation pending, and
		// after addTimer, so it sees the timer.
		return t, nil
	}
	t.arm()
	return t, nil
}

// arm starts the timer's clock, unless it runs already or the timer was
// stopped (the node's close may have stopped it already).
func (t *Timer) arm() {
	t.mu.Lock()
	if t.clock == nil && !t.stopped.Load() {
		t.clock = time.AfterFunc(t.dueIn, t.fire)
	}
	t.mu.Unlock()
}

// armTimers arms the timers that a's OnActivate started, once a's actor
// is spawned: a tick needs it.
func (acts *activations) armTimers(a *activation) {
	acts.timersMu.Lock()
	ts := slices.Clone(acts.timers[a])
	acts.timersMu.Unlock()
	for _, t := range ts {
		t.arm()
	}
}

// Stop stops the timer, and reports whether it was running. In a turn of
// the grain, no tick runs after it; from another goroutine, a tick may be
// running already.
func (t *Timer) Stop() bool {
	if t.stopped.Swap(true) {
		return false
	}
	t.mu.Lock()
	if t.clock != nil {
		t.clock.Stop()
	}
	t.mu.Unlock()
	t.a.hk.n.acts.dropTimer(t.a, t)
	return true
}

// fire sends the grain a tick, unless one still waits, and arms the next.
func (t *Timer) fire() {
	if t.stopped.Load() {
		return
	}
	if t.queued.CompareAndSwap(false, true) {
		if err := t.a.ref.Send(timerTick{t}); err != nil {
			t.queued.Store(false) // the actor stopped: the activation's end stops the timer
		}
	}
	if t.period == 0 {
		return
	}
	t.mu.Lock()
	if !t.stopped.Load() {
		t.clock.Reset(t.period)
	}
	t.mu.Unlock()
}

// addTimer records t as a timer of a, so that the activation's end stops
// it (see remove), unless a is going already.
func (acts *activations) addTimer(a *activation, t *Timer) bool {
	sh, _ := acts.shardOfActivation(a)
	sh.mu.Lock() // a's flags; remove takes the timers under it too
	defer sh.mu.Unlock()
	acts.timersMu.Lock()
	defer acts.timersMu.Unlock()
	if a.removed || a.deactivating || a.failed || acts.timersClosed {
		return false
	}
	if acts.timers == nil {
		acts.timers = make(map[*activation][]*Timer)
	}
	acts.timers[a] = append(acts.timers[a], t)
	a.flags.Or(timersFlag) // under the shard's lock, which remove holds
	return true
}

// dropTimer forgets t, a stopped timer of a.
func (acts *activations) dropTimer(a *activation, t *Timer) {
	acts.timersMu.Lock()
	defer acts.timersMu.Unlock()
	ts := slices.DeleteFunc(acts.timers[a], func(x *Timer) bool { return x == t })
	if len(ts) == 0 {
		delete(acts.timers, a)
	} else {
		acts.timers[a] = ts
	}
}

// stopTimers stops the timers of a, whose activation ended; with a nil,
// every timer, for good (the node closes).
func (acts *activations) stopTimers(a *activation) {
	acts.timersMu.Lock()
	var ended []*Timer
	if a == nil {
		for _, ts := range acts.timers {
			ended = append(ended, ts...)
		}
		acts.timers, acts.timersClosed = nil, true
	} else {
		ended = acts.timers[a]
		delete(acts.timers, a)
	}
	acts.timersMu.Unlock()
	for _, t := range ended {
		t.stopped.Store(true)
		t.mu.Lock()
		if t.clock != nil { // nil until armed (StartTimer, armTimers), which then sees stopped
			t.clock.Stop()
		}
		t.mu.Unlock()
	}
}

// tick runs a timer's turn: fn, then the commit of what it changed as
// after a call.
func (g *grainActor) tick(m timerTick) {
	t := m.t
	t.queued.Store(false)
	if t.stopped.Load() || g.unusable() {
		return
	}
	n := g.node()
	if t.keepAlive {
		g.act().markUsed()
	}
	if t.period == 0 { // its one tick: done
		t.stopped.Store(true)
		n.acts.dropTimer(g.act(), t)
	}
	ctx := n.life // a tick ends with the node, at the latest
	if timeout := n.cfg.DefaultCallTimeout; timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	g.state.begin(stamp{})
	done := false
	defer func() {
		if !done {
			g.state.rollback()
			if p := recover(); p != nil {
				n.log.Error("cluster: grain panicked in a timer's turn", "kind", g.hk.Name, "identity", g.identity,
					"panic", p, "stack", string(debug.Stack()))
				panic(p) // for the actor's supervisor, as for a call
			}
		}
	}()
	err := t.fn(n.grainContext(ctx, g.act(), nil, stamp{}))
	done = true
	if err = g.endTurn(ctx, err); err != nil {
		n.log.Warn("cluster: a grain timer's turn failed", "kind", g.hk.Name, "identity", g.identity,
			"err", fmt.Errorf("cluster: timer of grain %s/%s: %w", g.hk.Name, g.identity, err))
	}
}
