package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"time"
)

// Failure describes a panic recovered from an actor, or a handler's
// runtime.Goexit (its Reason is ErrGoexit then). A Decider sees it; it is
// also an error.
type Failure struct {
	// Who is the actor that failed. For an escalated failure it is the
	// supervisor that escalated, and Cause is the child's failure.
	Who *Ref
	// Reason is the value passed to panic, or ErrGoexit.
	Reason any
	// Stack is the stack of the panicking (or exiting) goroutine.
	Stack []byte
	// Message is the message being handled when the panic happened.
	Message any
	// Cause is the failure a supervisor escalated, or nil.
	Cause *Failure
}

func newFailure(who *Ref, reason any, msg any) *Failure {
	return &Failure{Who: who, Reason: reason, Stack: debug.Stack(), Message: msg}
}

// Error describes the failure.
func (f *Failure) Error() string {
	if f.Cause != nil {
		return fmt.Sprintf("runtime: actor %s escalated: %v", f.Who, f.Cause)
	}
	if f.Reason == ErrGoexit {
		return fmt.Sprintf("runtime: actor %s called runtime.Goexit handling %s", f.Who, typeName(f.Message))
	}
	return fmt.Sprintf("runtime: actor %s panicked handling %s: %v", f.Who, typeName(f.Message), f.Reason)
}

// Unwrap returns the panic value if it is an error.
func (f *Failure) Unwrap() error {
	err, _ := f.Reason.(error)
	return err
}

// Directive is a supervisor's decision about a failed actor.
type Directive int

const (
	// Restart replaces the actor's instance with a new one from Props.New,
	// after a backoff if it restarted recently. It is the zero value.
	Restart Directive = iota
	// Resume keeps the instance and continues with the next message.
	Resume
	// Stop stops the actor.
	Stop
	// Escalate fails the supervisor itself with the failure, for its own
	// supervisor to decide. At the root it stops the actor.
	Escalate
)

// String returns the directive's name.
func (d Directive) String() string {
	switch d {
	case Restart:
		return "Restart"
	case Resume:
		return "Resume"
	case Stop:
		return "Stop"
	case Escalate:
		return "Escalate"
	}
	return "Directive(" + fmt.Sprint(int(d)) + ")"
}

// Decider chooses the directive for a failure. It runs on the supervisor's
// goroutine: the parent's for a child; for a top-level actor, the failing
// actor's own, which may be a Request's caller running the actor's turn
// (see Ref.Request). No lock is held around it, so it may make requests,
// even without a deadline. It must be safe for concurrent use: the root
// strategy (Config.Supervisor) decides for top-level actors that fail at
// the same time, each on its own goroutine, as does a strategy shared by
// several parents. It may be called again before it returns, on the same
// goroutine, if the turn of an actor it asks runs there and fails.
//
// A Decider that panics, or calls runtime.Goexit, escalates the failure.
// A Goexit ends the goroutine it runs on, as anywhere: a worker, or the
// caller of a Request that was running the turn (that Request never
// returns); a new goroutine escalates and carries on with the supervising
// actor.
type Decider func(f *Failure) Directive

// DefaultDecider restarts on every failure.
func DefaultDecider(*Failure) Directive { return Restart }

// Defaults of StrategyConfig and Backoff.
const (
	// DefaultMaxRestarts is StrategyConfig.MaxRestarts when zero.
	DefaultMaxRestarts = 10
	// DefaultRestartWindow is StrategyConfig.Window when zero.
	DefaultRestartWindow = time.Minute
	// DefaultBackoffInitial is Backoff.Initial when zero.
	DefaultBackoffInitial = 10 * time.Millisecond
	// DefaultBackoffMax is Backoff.Max when zero.
	DefaultBackoffMax = time.Second
	// DefaultBackoffJitter is Backoff.Jitter when zero.
	DefaultBackoffJitter = 0.2
)

// StrategyConfig configures a SupervisorStrategy.
type StrategyConfig struct {
	// Decider chooses the directive. Nil means DefaultDecider.
	Decider Decider
	// MaxRestarts is how many restarts an actor may have within Window.
	// When a failure would need one more, the supervisor gives up: the
	// actor (for AllForOne, every child) is stopped and the failure is
	// escalated. Zero means DefaultMaxRestarts; negative means no limit.
	MaxRestarts int
	// Window is the period MaxRestarts counts over. Zero means
	// DefaultRestartWindow.
	Window time.Duration
	// Backoff spaces restarts that follow each other within Window.
	Backoff Backoff
	// Rand returns a number in [0, 1) for the backoff jitter. Nil means
	// math/rand/v2's Float64; tests inject a fixed source. Like Decider, it
	// must be safe for concurrent use, and one that panics or calls
	// runtime.Goexit escalates the failure.
	Rand func() float64
	// QuietFailures logs the children's failures at Debug instead of Warn,
	// for a supervisor whose owner reports them better itself: the cluster
	// logs a grain's panic once, with its kind, identity and method. A
	// failure that exhausts MaxRestarts is logged at Warn either way.
	QuietFailures bool
}

// Backoff is exponential backoff with jitter between restarts. The first
// restart within the window is immediate; the n-th following one waits
// Initial·2^(n-1), capped at Max, minus up to Jitter of that delay at
// random.
type Backoff struct {
	// Initial is the delay before the second restart within the window.
	// Zero means DefaultBackoffInitial; negative means restarts are never
	// delayed.
	Initial time.Duration
	// Max caps the delay. Zero means DefaultBackoffMax.
	Max time.Duration
	// Jitter is the fraction of the delay, in [0, 1], taken off at random
	// so that actors failing together do not restart together. Zero means
	// DefaultBackoffJitter; negative means no jitter.
	Jitter float64
}

// Delay returns the delay before a restart when prior restarts happened
// within the window. rnd returns a number in [0, 1).
func (b Backoff) Delay(prior int, rnd func() float64) time.Duration {
	b = b.withDefaults()
	if prior <= 0 || b.Initial < 0 {
		return 0
	}
	d := b.Initial
	for i := 1; i < prior && d < b.Max; i++ {
		d *= 2 // stops doubling at the cap, so it cannot overflow
	}
	d = min(d, b.Max)
	if b.Jitter > 0 {
		d -= time.Duration(float64(d) * b.Jitter * rnd())
	}
	return d
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial == 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max == 0 {
		b.Max = DefaultBackoffMax
	}
	b.Max = max(b.Max, b.Initial)
	switch {
	case b.Jitter == 0:
		b.Jitter = DefaultBackoffJitter
	case b.Jitter > 1:
		b.Jitter = 1
	}
	return b
}

// SupervisorStrategy handles the failures of an actor's children. Build one
// with NewOneForOne or NewAllForOne.
type SupervisorStrategy interface {
	handleFailure(sup supervisor, f *Failure)
	// logFailure logs f and what happens to the actor: the one line a
	// failure leaves, whether or not the strategy decides it.
	logFailure(sys *System, f *Failure, outcome string)
}

// supervisor is the side of supervision that differs between an actor and
// the root of the System.
type supervisor interface {
	system() *System
	// siblings returns the supervised actors that are not stopping.
	siblings() []*Ref
	// escalate hands a failure to the supervisor's own supervisor.
	escalate(f *Failure)
	// runner returns the actor whose turn the decision about f runs in:
	// the supervisor's own for a child, the failing actor's for a
	// top-level one.
	runner(f *Failure) *Ref
}

// NewOneForOne returns a strategy that applies the directive to the failed
// child only.
func NewOneForOne(cfg StrategyConfig) SupervisorStrategy {
	return &strategy{cfg: cfg.withDefaults()}
}

// NewAllForOne returns a strategy that applies Restart and Stop to all
// children when one fails (Resume applies to the failed child only).
func NewAllForOne(cfg StrategyConfig) SupervisorStrategy {
	return &strategy{cfg: cfg.withDefaults(), allForOne: true}
}

// DefaultStrategy returns the strategy used when none is configured:
// OneForOne, restart on every failure, at most DefaultMaxRestarts within
// DefaultRestartWindow, default backoff.
func DefaultStrategy() SupervisorStrategy { return NewOneForOne(StrategyConfig{}) }

func (c StrategyConfig) withDefaults() StrategyConfig {
	if c.Decider == nil {
		c.Decider = DefaultDecider
	}
	if c.MaxRestarts == 0 {
		c.MaxRestarts = DefaultMaxRestarts
	}
	if c.Window <= 0 {
		c.Window = DefaultRestartWindow
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	c.Backoff = c.Backoff.withDefaults()
	return c
}

type strategy struct {
	cfg       StrategyConfig
	allForOne bool
}

func (s *strategy) handleFailure(sup supervisor, f *Failure) {
	d, delay, ok := s.decide(sup, f)
	s.apply(sup, f, d, delay, ok)
}

// apply carries out d, the directive for f: with Restart, after delay, or,
// if ok is false (the restart limit is reached), by stopping the actor and
// escalating instead.
func (s *strategy) apply(sup supervisor, f *Failure, d Directive, delay time.Duration, ok bool) {
	child := f.Who
	sys := sup.system()
	s.logFailure(sys, f, d.String())
	targets := []*Ref{child}
	if s.allForOne && (d == Restart || d == Stop) {
		targets = withRef(sup.siblings(), child)
	}
	switch d {
	case Resume:
		child.sendSystem(sysResume{})
	case Restart:
		if !ok {
			sys.logger.Warn("runtime: restart limit reached; stopping and escalating",
				"actor", child.String(), "max_restarts", s.cfg.MaxRestarts, "window", s.cfg.Window)
			stopAll(targets)
			sup.escalate(f)
			return
		}
		for _, t := range targets {
			t.restartAfter(delay)
		}
	case Stop:
		stopAll(targets)
	default: // Escalate
		sup.escalate(f)
	}
}

func (s *strategy) logFailure(sys *System, f *Failure, outcome string) {
	level := slog.LevelWarn
	if s.cfg.QuietFailures {
		level = slog.LevelDebug
	}
	sys.logger.Log(context.Background(), level, "runtime: actor failed", "actor", f.Who.String(), "directive", outcome,
		"error", f.Error(), "stack", string(f.Stack))
}

// decide runs the strategy's user code for f: the Decider and, for a
// Restart, the backoff's Rand and the System's Clock (see nextRestart). It
// returns the directive and, for a Restart, its delay, or ok false when
// the restart limit is reached.
//
// User code that panics escalates the failure: the supervisor could not
// handle it. So does user code that calls runtime.Goexit, which ends the
// goroutine it runs on: the goroutine running the turn of the supervising
// actor (the parent, or the failing top-level actor itself; see
// supervisor.runner). The deferred call tells a Goexit as invoke does (see
// Ref.invoke), and a new goroutine escalates and then carries on with that
// actor (see decideExited). Left to end, the goroutine left the actor
// running for good, and the System's Close waiting for it.
func (s *strategy) decide(sup supervisor, f *Failure) (d Directive, delay time.Duration, ok bool) {
	sys := sup.system()
	in, returned := "Decider", false
	defer func() {
		if returned {
			return
		}
		if v := recover(); v != nil {
			sys.logger.Error("runtime: supervisor "+in+" panicked; escalating", "actor", f.Who.String(), "panic", v)
			d = Escalate
			return
		}
		sys.logger.Error("runtime: supervisor "+in+" called runtime.Goexit; escalating", "actor", f.Who.String())
		s.decideExited(sup, f)
	}()
	d = s.cfg.Decider(f)
	if d == Restart {
		in = "restart backoff" // Rand, or the Clock's Now
		delay, ok = s.nextRestart(sys, f.Who)
	}
	returned = true
	return d, delay, ok
}

// decideExited takes over from a goroutine that runtime.Goexit is ending
// in the strategy's user code, deciding about f. It runs among that
// goroutine's deferred calls, after which nothing runs on it: neither the
// rest of the turn of the supervising actor nor, if a Request's caller was
// running that turn, the caller. So a new goroutine takes the actor, still
// running, escalates f as a panic there would have, and then runs the
// actor's turns as a worker does (see Ref.exited, the same for a handler).
func (s *strategy) decideExited(sup supervisor, f *Failure) {
	r := sup.runner(f)
	go func() {
		s.apply(sup, f, Escalate, 0, false)
		r.sys.workers.loop(r)
	}()
	// Under GODEBUG=panicnil=1 a panic(nil) recovers as nil too, and its
	// goroutine would go on with the turn beside the new one: it ends
	// here, as if the Decider had called Goexit.
	goruntime.Goexit()
}

// nextRestart records a restart of child and returns its backoff delay, or
// false when the restart limit is reached.
func (s *strategy) nextRestart(sys *System, child *Ref) (time.Duration, bool) {
	now := sys.clock.Now()
	e := child.side()
	recent := e.restarts[:0]
	for _, t := range e.restarts {
		if now.Sub(t) < s.cfg.Window {
			recent = append(recent, t)
		}
	}
	e.restarts = recent
	if s.cfg.MaxRestarts > 0 && len(recent) >= s.cfg.MaxRestarts {
		return 0, false
	}
	delay := s.cfg.Backoff.Delay(len(recent), s.cfg.Rand)
	e.restarts = append(e.restarts, now)
	return delay, true
}

// withRef returns refs with r added unless it is in already.
func withRef(refs []*Ref, r *Ref) []*Ref {
	if slices.Contains(refs, r) {
		return refs
	}
	return append(refs, r)
}

func stopAll(refs []*Ref) {
	for _, r := range refs {
		r.Stop()
	}
}

// restartAfter restarts the actor after delay.
func (r *Ref) restartAfter(delay time.Duration) {
	if delay <= 0 {
		r.sendSystem(sysRestart{})
		return
	}
	r.sys.clock.AfterFunc(delay, func() { r.sendSystem(sysRestart{}) })
}

// fail suspends the actor and hands f to its supervisor.
func (r *Ref) fail(f *Failure) {
	if r.inStop {
		r.sys.logger.Error("runtime: stopping actor panicked", "actor", r.String(), "panic", f.Reason)
		return
	}
	r.suspended = true
	if r.parent != nil {
		r.parent.sendSystem(sysFailure{f})
		return
	}
	// The root supervisor runs here, on the failing actor's goroutine, and
	// holds no lock: the Decider may make a request whose turn runs on this
	// goroutine (see Ref.runInline), and a failure in that turn comes back
	// here. Under a lock it waited for itself (see
	// TestRootDeciderMayAskAnActorThatFails).
	r.sys.root.handleFailure(r.sys, f)
}

// superviseChild applies this actor's strategy to a child's failure.
//
// A child that is being stopped abruptly needs no decision. Nor does any
// child of a stopping actor, but it must not wait suspended for a decision
// that never comes: a graceful stop queued behind its failure would never
// be reached, so it is stopped abruptly. A child that was asked to stop
// gracefully by someone else is supervised as usual, so that its queued
// messages are still handled after a Restart or Resume.
func (r *Ref) superviseChild(f *Failure) {
	strategy := r.side().strategy // made already: this actor has children
	if strategy == nil {
		strategy = DefaultStrategy()
	}
	if _, ok := r.children()[f.Who]; !ok {
		strategy.logFailure(r.sys, f, "none: it has stopped")
		return
	}
	if r.inStop || f.Who.stopReq.Load()&stopAbrupt != 0 {
		strategy.logFailure(r.sys, f, "Stop: it or its supervisor is stopping")
		f.Who.Stop()
		return
	}
	strategy.handleFailure(r, f)
}

// resume continues after a failure; the children whose failures this actor
// had escalated resume too.
func (r *Ref) resume() {
	if !r.suspended || r.inStop {
		return
	}
	r.suspended = false
	if e := r.ext.Load(); e != nil {
		for _, c := range e.escalated {
			c.sendSystem(sysResume{})
		}
		e.escalated = nil
	}
	r.deliverHeldTerminated()
}

// restart replaces the instance: Restarting to the old one, timers
// cancelled, children stopped, New, Started to the new one. If New panics
// the old instance is kept and the panic is a new failure.
func (r *Ref) restart() {
	if r.inStop {
		return
	}
	r.deliverOrLog(&Restarting{}, afterRestarting)
	r.renew()
}

// renew is the end of restart, after *Restarting.
func (r *Ref) renew() {
	r.cancelTimers()
	r.side().restarted++ // and those that fired already: see refExt.restarted
	for c := range r.children() {
		c.Stop() // they leave the children when they report that they stopped
	}
	if e := r.ext.Load(); e != nil {
		e.escalated = nil
	}
	a, f := r.newInstance()
	if f != nil {
		r.fail(f)
		return
	}
	r.actor = a
	r.suspended = false
	if f := r.deliver(&Started{}); f != nil {
		r.fail(f)
		return
	}
	r.deliverHeldTerminated()
}

// newInstance calls Props.New for a restart, turning a panic into a
// Failure, and a Goexit into one too, as invoke does.
func (r *Ref) newInstance() (a Actor, f *Failure) {
	returned := false
	defer func() {
		if returned {
			return
		}
		if v := recover(); v != nil {
			f = newFailure(r, v, &Restarting{})
			return
		}
		r.exited(&Restarting{})
	}()
	a = r.newActor()
	if a == nil {
		panic(fmt.Errorf("%w: New returned nil", ErrInvalidProps))
	}
	returned = true
	return a, nil
}

// Supervisor side of an actor.

func (r *Ref) system() *System { return r.sys }

func (r *Ref) runner(*Failure) *Ref { return r }

// siblings returns r's children that were not asked to stop: those a
// supervisor's decision about one of them applies to, and what
// Context.Children reports.
func (r *Ref) siblings() []*Ref {
	children := r.children()
	out := make([]*Ref, 0, len(children))
	for c := range children {
		if c.stopReq.Load() == 0 {
			out = append(out, c)
		}
	}
	return out
}

func (r *Ref) escalate(f *Failure) {
	e := r.side()
	if !slices.Contains(e.escalated, f.Who) {
		e.escalated = append(e.escalated, f.Who)
	}
	r.fail(&Failure{Who: r, Reason: f.Reason, Stack: f.Stack, Message: f.Message, Cause: f})
}

// Supervisor side of the System, for top-level actors.

func (s *System) system() *System { return s }

func (s *System) siblings() []*Ref { return s.topChildren() }

// runner returns f.Who: the root supervisor decides on the goroutine
// running the failing actor's turn (see Ref.fail).
func (s *System) runner(f *Failure) *Ref { return f.Who }

func (s *System) escalate(f *Failure) {
	s.logger.Error("runtime: failure escalated to the root; stopping the actor", "actor", f.Who.String(), "error", f.Error())
	f.Who.Stop()
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
