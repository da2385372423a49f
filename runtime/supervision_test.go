package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// eventLog records events from actors for assertions.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf(format, args...))
}

func (l *eventLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func (l *eventLog) count(e string) int {
	n := 0
	for _, x := range l.snapshot() {
		if x == e {
			n++
		}
	}
	return n
}

// counterActor counts "inc" messages, answers "get" with the count, panics
// on "boom" and records its lifecycle in log under name#instance.
func counterProps(name string, log *eventLog) Props {
	var instances atomic.Int32
	return Props{New: func() Actor {
		id := fmt.Sprintf("%s#%d", name, instances.Add(1))
		n := 0
		return ActorFunc(func(c *Context) {
			switch m := c.Message().(type) {
			case *Started:
				log.add("%s started", id)
			case *Restarting:
				log.add("%s restarting", id)
			case *Stopping:
				log.add("%s stopping", id)
			case *Stopped:
				log.add("%s stopped", id)
			case string:
				switch m {
				case "inc":
					n++
				case "get":
					c.Respond(n)
				case "boom":
					panic(errors.New("boom"))
				}
			}
		})
	}}
}

func decide(d Directive) Decider { return func(*Failure) Directive { return d } }

func TestPanicInRequestReturnsPanicErrorAndActorKeepsServing(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	log := &eventLog{}
	r := spawn(t, s, counterProps("a", log))
	_, err := r.Request(ctxTimeout(t), "boom")
	var pe *PanicError
	if !errors.As(err, &pe) || !errors.Is(err, ErrPanic) {
		t.Fatalf("Request = %v, want a *PanicError wrapping ErrPanic", err)
	}
	if pe.Value.(error).Error() != "boom" || len(pe.Stack) == 0 {
		t.Fatalf("PanicError = %v with %d bytes of stack", pe.Value, len(pe.Stack))
	}
	if !errors.Is(err, pe.Value.(error)) {
		t.Fatal("PanicError does not wrap the panic's error value")
	}
	if v, err := r.Request(ctxTimeout(t), "get"); err != nil || v != 0 {
		t.Fatalf("after panic: get = %v, %v; want 0 from a restarted instance", v, err)
	}
	want := []string{"a#1 started", "a#1 restarting", "a#2 started"}
	if got := log.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
}

func TestDirectives(t *testing.T) {
	t.Parallel()
	tests := []struct {
		directive Directive
		check     func(t *testing.T, r *Ref, log *eventLog)
	}{
		{Resume, func(t *testing.T, r *Ref, log *eventLog) {
			if v, err := r.Request(ctxTimeout(t), "get"); err != nil || v != 1 {
				t.Fatalf("get = %v, %v; want 1: Resume keeps the state", v, err)
			}
			if n := log.count("a#2 started"); n != 0 {
				t.Fatal("Resume created a new instance")
			}
		}},
		{Restart, func(t *testing.T, r *Ref, log *eventLog) {
			if v, err := r.Request(ctxTimeout(t), "get"); err != nil || v != 0 {
				t.Fatalf("get = %v, %v; want 0: Restart starts afresh", v, err)
			}
			want := []string{"a#1 started", "a#1 restarting", "a#2 started"}
			if got := log.snapshot(); !slices.Equal(got, want) {
				t.Fatalf("events = %v, want %v", got, want)
			}
		}},
		{Stop, func(t *testing.T, r *Ref, log *eventLog) {
			waitClosed(t, r.Done(), "stop")
			if _, err := r.Request(ctxTimeout(t), "get"); !errors.Is(err, ErrStopped) {
				t.Fatalf("get after Stop = %v, want ErrStopped", err)
			}
			want := []string{"a#1 started", "a#1 stopping", "a#1 stopped"}
			if got := log.snapshot(); !slices.Equal(got, want) {
				t.Fatalf("events = %v, want %v", got, want)
			}
		}},
		{Escalate, func(t *testing.T, r *Ref, log *eventLog) {
			// At the root, Escalate stops the actor.
			waitClosed(t, r.Done(), "stop")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.directive.String(), func(t *testing.T) {
			t.Parallel()
			s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{Decider: decide(tt.directive)})})
			log := &eventLog{}
			r := spawn(t, s, counterProps("a", log))
			if err := r.Send("inc"); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
				t.Fatalf("boom = %v, want ErrPanic", err)
			}
			tt.check(t, r, log)
		})
	}
}

// parentProps spawns the children named in names when started and answers
// "children" with them.
func parentProps(strategy SupervisorStrategy, log *eventLog, names ...string) Props {
	return Props{Supervisor: strategy, New: func() Actor {
		var kids []*Ref
		return ActorFunc(func(c *Context) {
			switch c.Message().(type) {
			case *Started:
				log.add("parent started")
				for _, n := range names {
					k, err := c.Spawn(counterProps(n, log))
					if err != nil {
						panic(err)
					}
					kids = append(kids, k)
				}
			case *Restarting:
				log.add("parent restarting")
			case string:
				if c.Message() == "children" {
					c.Respond(kids)
				}
			}
		})
	}}
}

func children(t *testing.T, parent *Ref) []*Ref {
	t.Helper()
	v, err := parent.Request(ctxTimeout(t), "children")
	if err != nil {
		t.Fatal(err)
	}
	return v.([]*Ref)
}

func TestOneForOneVersusAllForOne(t *testing.T) {
	t.Parallel()
	for _, all := range []bool{false, true} {
		name := map[bool]string{false: "OneForOne", true: "AllForOne"}[all]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newTestSystem(t, Config{})
			log := &eventLog{}
			cfg := StrategyConfig{}
			strategy := NewOneForOne(cfg)
			if all {
				strategy = NewAllForOne(cfg)
			}
			parent := spawn(t, s, parentProps(strategy, log, "a", "b"))
			kids := children(t, parent)
			a, b := kids[0], kids[1]
			for _, k := range kids {
				if err := k.Send("inc"); err != nil {
					t.Fatal(err)
				}
				// Wait until handled: a restart, a system message, would
				// overtake a queued "inc".
				if v, err := k.Request(ctxTimeout(t), "get"); err != nil || v != 1 {
					t.Fatalf("get = %v, %v", v, err)
				}
			}
			if _, err := a.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
				t.Fatalf("boom = %v", err)
			}
			waitFor(t, testTimeout, func() bool { return log.count("a#2 started") == 1 }, "a restarted")
			bWant := 1 // OneForOne leaves b alone
			if all {
				waitFor(t, testTimeout, func() bool { return log.count("b#2 started") == 1 }, "b restarted")
				bWant = 0
			}
			if v, err := b.Request(ctxTimeout(t), "get"); err != nil || v != bWant {
				t.Fatalf("b: get = %v, %v; want %d", v, err, bWant)
			}
			if v, err := a.Request(ctxTimeout(t), "get"); err != nil || v != 0 {
				t.Fatalf("a: get = %v, %v; want 0", v, err)
			}
			if !all && log.count("b#1 restarting") != 0 {
				t.Fatal("OneForOne restarted the sibling")
			}
		})
	}
}

func TestAllForOneStop(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	log := &eventLog{}
	parent := spawn(t, s, parentProps(NewAllForOne(StrategyConfig{Decider: decide(Stop)}), log, "a", "b"))
	kids := children(t, parent)
	if _, err := kids[0].Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
		t.Fatalf("boom = %v", err)
	}
	for _, k := range kids {
		waitClosed(t, k.Done(), "child stop")
	}
	if v, err := parent.Request(ctxTimeout(t), "children"); err != nil || len(v.([]*Ref)) != 2 {
		t.Fatalf("parent must keep serving: %v, %v", v, err)
	}
}

// TestEscalateToGrandparent: the parent escalates its child's failure; the
// root decides Restart for the parent, which stops the child and starts a
// new parent instance, which spawns a new child.
func TestEscalateToGrandparent(t *testing.T) {
	t.Parallel()
	failures := make(chan *Failure, 4)
	root := NewOneForOne(StrategyConfig{Decider: func(f *Failure) Directive {
		failures <- f
		return Restart
	}})
	s := newTestSystem(t, Config{Supervisor: root})
	log := &eventLog{}
	parent := spawn(t, s, parentProps(NewOneForOne(StrategyConfig{Decider: decide(Escalate)}), log, "a"))
	old := children(t, parent)[0]
	if _, err := old.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
		t.Fatalf("boom = %v", err)
	}
	f := recv(t, failures, "escalated failure")
	if f.Who != parent || f.Cause == nil || f.Cause.Who != old {
		t.Fatalf("failure = %v (who %v); want the parent escalating the child's failure", f, f.Who)
	}
	if err := f.Unwrap(); err == nil || err.Error() != "boom" {
		t.Fatalf("Unwrap = %v, want the panic's error", err)
	}
	waitClosed(t, old.Done(), "old child stopped by the parent's restart")
	fresh := children(t, parent)[0]
	if fresh == old {
		t.Fatal("restarted parent kept the old child")
	}
	if v, err := fresh.Request(ctxTimeout(t), "get"); err != nil || v != 0 {
		t.Fatalf("new child: %v, %v", v, err)
	}
	if log.count("parent restarting") != 1 {
		t.Fatalf("events = %v", log.snapshot())
	}
}

// TestEscalateThenResume: when the grandparent resumes the escalating
// parent, the failed child resumes too, keeping its state.
func TestEscalateThenResume(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{Decider: decide(Resume)})})
	log := &eventLog{}
	parent := spawn(t, s, parentProps(NewOneForOne(StrategyConfig{Decider: decide(Escalate)}), log, "a"))
	kid := children(t, parent)[0]
	if err := kid.Send("inc"); err != nil {
		t.Fatal(err)
	}
	if _, err := kid.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
		t.Fatalf("boom = %v", err)
	}
	if v, err := kid.Request(ctxTimeout(t), "get"); err != nil || v != 1 {
		t.Fatalf("child after resume: %v, %v; want 1", v, err)
	}
}

// TestRestartLimitGivesUpAndEscalates: after MaxRestarts restarts within
// the window, the next failure stops the child and escalates to the root.
func TestRestartLimitGivesUpAndEscalates(t *testing.T) {
	t.Parallel()
	failures := make(chan *Failure, 4)
	root := NewOneForOne(StrategyConfig{Decider: func(f *Failure) Directive {
		failures <- f
		return Stop
	}})
	clock := newFakeClock()
	s := newTestSystem(t, Config{Supervisor: root, Clock: clock})
	log := &eventLog{}
	limited := NewOneForOne(StrategyConfig{MaxRestarts: 2, Backoff: Backoff{Initial: -1}})
	parent := spawn(t, s, parentProps(limited, log, "a"))
	kid := children(t, parent)[0]
	for i := range 2 {
		if _, err := kid.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
			t.Fatalf("boom %d = %v", i, err)
		}
		if _, err := kid.Request(ctxTimeout(t), "get"); err != nil {
			t.Fatalf("get after restart %d: %v", i, err)
		}
	}
	if _, err := kid.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
		t.Fatalf("last boom = %v", err)
	}
	waitClosed(t, kid.Done(), "child given up")
	f := recv(t, failures, "escalation")
	if f.Who != parent || f.Cause.Who != kid {
		t.Fatalf("escalated failure = %v", f)
	}
	waitClosed(t, parent.Done(), "parent stopped by the root")
	if n := log.count("a#3 started"); n != 1 {
		t.Fatalf("events = %v; want exactly two restarts", log.snapshot())
	}
}

// TestRestartWindowForgetsOldRestarts: restarts older than the window do
// not count towards the limit nor the backoff.
func TestRestartWindowForgetsOldRestarts(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	strategy := NewOneForOne(StrategyConfig{MaxRestarts: 1, Window: time.Minute, Backoff: Backoff{Jitter: -1}})
	s := newTestSystem(t, Config{Supervisor: strategy, Clock: clock})
	log := &eventLog{}
	r := spawn(t, s, counterProps("a", log))
	for i := range 3 {
		if _, err := r.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
			t.Fatalf("boom %d = %v", i, err)
		}
		if _, err := r.Request(ctxTimeout(t), "get"); err != nil {
			t.Fatalf("get after restart %d: %v", i, err)
		}
		clock.Advance(time.Minute)
	}
	if len(clock.Asked()) != 0 {
		t.Fatalf("restarts were delayed: %v", clock.Asked())
	}
}

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	half := func() float64 { return 0.5 }
	tests := []struct {
		name  string
		b     Backoff
		prior int
		want  time.Duration
	}{
		{"first restart is immediate", Backoff{Initial: time.Second}, 0, 0},
		{"second waits Initial", Backoff{Initial: 100 * time.Millisecond, Max: time.Hour, Jitter: -1}, 1, 100 * time.Millisecond},
		{"doubles", Backoff{Initial: 100 * time.Millisecond, Max: time.Hour, Jitter: -1}, 4, 800 * time.Millisecond},
		{"capped", Backoff{Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond, Jitter: -1}, 4, 300 * time.Millisecond},
		{"no overflow", Backoff{Initial: time.Second, Max: time.Hour, Jitter: -1}, 1000, time.Hour},
		{"jitter takes off a fraction", Backoff{Initial: 200 * time.Millisecond, Max: time.Hour, Jitter: 0.5}, 1, 150 * time.Millisecond},
		{"defaults", Backoff{}, 2, 2*DefaultBackoffInitial - time.Duration(float64(2*DefaultBackoffInitial)*DefaultBackoffJitter*0.5)},
		{"disabled", Backoff{Initial: -1}, 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.Delay(tt.prior, half); got != tt.want {
				t.Fatalf("Delay(%d) = %v, want %v", tt.prior, got, tt.want)
			}
		})
	}
}

// TestBackoffBetweenRestarts drives restarts with a fake clock and checks
// that each waits exactly the exponential, capped delay.
func TestBackoffBetweenRestarts(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	strategy := NewOneForOne(StrategyConfig{
		MaxRestarts: -1,
		Backoff:     Backoff{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond, Jitter: 0.5},
		Rand:        func() float64 { return 0 }, // deterministic: no jitter taken off
	})
	s := newTestSystem(t, Config{Supervisor: strategy, Clock: clock})
	log := &eventLog{}
	r := spawn(t, s, counterProps("a", log))
	want := []time.Duration{0, 100, 200, 400, 400}
	for i, d := range want {
		d *= time.Millisecond
		if _, err := r.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
			t.Fatalf("boom %d = %v", i, err)
		}
		got := make(chan error, 1)
		go func() { _, err := r.Request(ctxTimeout(t), "get"); got <- err }()
		if d > 0 {
			waitFor(t, testTimeout, func() bool { return clock.Pending() == 1 }, "backoff timer")
			if asked := clock.Asked(); asked[len(asked)-1] != d {
				t.Fatalf("restart %d: backoff %v, want %v", i, asked[len(asked)-1], d)
			}
			clock.Advance(d - 1)
			if clock.Pending() != 1 {
				t.Fatalf("restart %d happened before its backoff elapsed", i)
			}
			clock.Advance(1)
		}
		if err := recv(t, got, "request after restart"); err != nil {
			t.Fatalf("get after restart %d: %v", i, err)
		}
	}
}

func TestPanicInStartedIsSupervised(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	var starts atomic.Int32
	r := spawn(t, s, Props{New: func() Actor {
		return ActorFunc(func(c *Context) {
			switch c.Message().(type) {
			case *Started:
				if starts.Add(1) == 1 {
					panic("first start fails")
				}
			case string:
				c.Respond("ok")
			}
		})
	}})
	if v, err := r.Request(ctxTimeout(t), "hi"); err != nil || v != "ok" {
		t.Fatalf("Request = %v, %v", v, err)
	}
	if n := starts.Load(); n != 2 {
		t.Fatalf("Started delivered %d times, want 2", n)
	}
}

// TestChildFailureWithDefaultStrategy checks that a parent without a
// Supervisor restarts its failing child.
func TestChildFailureWithDefaultStrategy(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	log := &eventLog{}
	parent := spawn(t, s, parentProps(nil, log, "a"))
	kid := children(t, parent)[0]
	if _, err := kid.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
		t.Fatal(err)
	}
	if _, err := kid.Request(ctxTimeout(t), "get"); err != nil {
		t.Fatal(err)
	}
	if log.count("a#2 started") != 1 {
		t.Fatalf("events = %v", log.snapshot())
	}
}

// TestPanickingDeciderEscalates: a Decider that panics must not crash the
// process; the failure escalates (at the root: the actor stops).
func TestPanickingDeciderEscalates(t *testing.T) {
	t.Parallel()
	root := NewOneForOne(StrategyConfig{Decider: func(*Failure) Directive { panic("bad decider") }})
	s := newTestSystem(t, Config{Supervisor: root})
	r := spawn(t, s, counterProps("a", &eventLog{}))
	if _, err := r.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
		t.Fatal(err)
	}
	waitClosed(t, r.Done(), "stop after escalation")
}

// TestRestartWhenNewPanicsKeepsOldInstance: a New that panics on restart
// is a new failure; the supervisor's next decision (Resume here, after the
// first Restart) continues with the old instance.
func TestRestartWhenNewPanicsKeepsOldInstance(t *testing.T) {
	t.Parallel()
	var decisions atomic.Int32
	root := NewOneForOne(StrategyConfig{Decider: func(*Failure) Directive {
		if decisions.Add(1) == 1 {
			return Restart
		}
		return Resume
	}})
	s := newTestSystem(t, Config{Supervisor: root})
	var made atomic.Int32
	r := spawn(t, s, Props{New: func() Actor {
		if made.Add(1) > 1 {
			panic("cannot make another")
		}
		n := 0
		return ActorFunc(func(c *Context) {
			switch c.Message() {
			case "inc":
				n++
			case "get":
				c.Respond(n)
			case "boom":
				panic("boom")
			}
		})
	}})
	if err := r.Send("inc"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
		t.Fatal(err)
	}
	if v, err := r.Request(ctxTimeout(t), "get"); err != nil || v != 1 {
		t.Fatalf("get = %v, %v; want 1 from the old instance", v, err)
	}
	if n := decisions.Load(); n != 2 {
		t.Fatalf("%d decisions, want 2", n)
	}
}

// TestRootAllForOne: Config.Supervisor applies to top-level actors as a
// group.
func TestRootAllForOne(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{Supervisor: NewAllForOne(StrategyConfig{})})
	log := &eventLog{}
	a := spawn(t, s, counterProps("a", log))
	b := spawn(t, s, counterProps("b", log))
	for _, r := range []*Ref{a, b} {
		if _, err := r.Request(ctxTimeout(t), "get"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
		t.Fatal(err)
	}
	waitFor(t, testTimeout, func() bool { return log.count("a#2 started") == 1 && log.count("b#2 started") == 1 },
		"both top-level actors restarted")
}

// TestFailureIsLoggedOnce checks the one line a failure leaves in the log:
// at Warn, naming the directive and carrying the panic's stack, or at
// Debug for a strategy with QuietFailures, whose owner logs failures itself.
func TestFailureIsLoggedOnce(t *testing.T) {
	t.Parallel()
	for _, quiet := range []bool{false, true} {
		t.Run(fmt.Sprintf("quiet=%t", quiet), func(t *testing.T) {
			t.Parallel()
			logs := &recordLog{}
			s := newTestSystem(t, Config{
				Logger:     slog.New(logs),
				Supervisor: NewOneForOne(StrategyConfig{QuietFailures: quiet}),
			})
			r := spawn(t, s, counterProps("a", &eventLog{}))
			if _, err := r.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
				t.Fatalf("Request(boom) = %v, want ErrPanic", err)
			}
			// The root supervisor logs before it restarts the actor, so the
			// line is there once the restarted instance answers.
			if v, err := r.Request(ctxTimeout(t), "get"); err != nil || v != 0 {
				t.Fatalf("after the panic: get = %v, %v; want 0 from a restarted instance", v, err)
			}
			failed := logs.find("runtime: actor failed")
			if len(failed) != 1 {
				t.Fatalf("%d lines say the actor failed, want 1: %v", len(failed), logs.all())
			}
			line := failed[0]
			want := slog.LevelWarn
			if quiet {
				want = slog.LevelDebug
			}
			if line.level != want {
				t.Errorf("the failure was logged at %v, want %v", line.level, want)
			}
			if line.attrs["directive"] != "Restart" || !strings.Contains(line.attrs["error"], "boom") ||
				!strings.Contains(line.attrs["stack"], "counterProps") {
				t.Errorf("the failure's line lacks its directive, error or stack: %v", line.attrs)
			}
			if loud := logs.atLeast(slog.LevelWarn); quiet && len(loud) != 0 {
				t.Errorf("a quiet strategy logged at Warn or above: %v", loud)
			}
		})
	}
}

// recordLog is a slog.Handler that keeps every record, at every level. It
// drops the attributes and groups of WithAttrs and WithGroup.
type recordLog struct {
	mu      sync.Mutex
	records []logRecord
}

// logRecord is a kept record: its level, message and attributes as text.
type logRecord struct {
	level   slog.Level
	message string
	attrs   map[string]string
}

func (l *recordLog) Enabled(context.Context, slog.Level) bool { return true }

func (l *recordLog) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, message: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, rec)
	return nil
}

func (l *recordLog) WithAttrs([]slog.Attr) slog.Handler { return l }

func (l *recordLog) WithGroup(string) slog.Handler { return l }

func (l *recordLog) all() []logRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.records)
}

// find returns the records with message msg.
func (l *recordLog) find(msg string) []logRecord {
	var out []logRecord
	for _, r := range l.all() {
		if r.message == msg {
			out = append(out, r)
		}
	}
	return out
}

// atLeast returns the records at level or above.
func (l *recordLog) atLeast(level slog.Level) []logRecord {
	var out []logRecord
	for _, r := range l.all() {
		if r.level >= level {
			out = append(out, r)
		}
	}
	return out
}

// TestEscalatedFailuresOfTwoChildrenAllResume: a supervisor escalates the
// failures of two children, the second before its own supervisor decided
// about the first; the Resume that comes must resume both children, where
// it resumed only the last one escalated and left the other suspended for
// good.
func TestEscalatedFailuresOfTwoChildrenAllResume(t *testing.T) {
	s := newTestSystem(t, Config{})
	var escalations atomic.Int32
	both := make(chan struct{})
	kids := make(chan *Ref, 2)
	child := Props{New: func() Actor {
		return ActorFunc(func(c *Context) {
			switch c.Message() {
			case "boom":
				panic("boom")
			case "ping":
				c.Respond("pong")
			}
		})
	}}
	parent := Props{
		Supervisor: NewOneForOne(StrategyConfig{Decider: func(*Failure) Directive {
			if escalations.Add(1) == 2 {
				close(both)
			}
			return Escalate
		}}),
		New: func() Actor {
			return ActorFunc(func(c *Context) {
				if _, ok := c.Message().(*Started); ok {
					for range 2 {
						k, err := c.Spawn(child)
						if err != nil {
							panic(err)
						}
						kids <- k
					}
				}
			})
		},
	}
	spawn(t, s, Props{
		// Decides about the parent's first escalation only once the
		// parent has escalated the second child's failure too.
		Supervisor: NewOneForOne(StrategyConfig{Decider: func(*Failure) Directive {
			select {
			case <-both:
			case <-time.After(10 * time.Second): // the test fails below
			}
			return Resume
		}}),
		New: func() Actor {
			return ActorFunc(func(c *Context) {
				if _, ok := c.Message().(*Started); ok {
					if _, err := c.Spawn(parent); err != nil {
						panic(err)
					}
				}
			})
		},
	})
	c1, c2 := recv(t, kids, "the first child"), recv(t, kids, "the second child")
	c1.Send("boom")
	c2.Send("boom")
	for i, c := range []*Ref{c1, c2} {
		if v, err := c.Request(ctxTimeout(t), "ping"); err != nil || v != "pong" {
			t.Fatalf("child %d after its parent resumed: %v, %v; want pong", i+1, v, err)
		}
	}
}

// TestTerminatedWaitsForTheInstanceThatGoesOn: a watched actor stops while
// the watcher is suspended after a failure, waiting for a delayed restart;
// the *Terminated goes to the restarted instance, not to the failed one.
func TestTerminatedWaitsForTheInstanceThatGoesOn(t *testing.T) {
	clk := newFakeClock()
	s := newTestSystem(t, Config{Clock: clk, Supervisor: NewOneForOne(StrategyConfig{
		Backoff: Backoff{Initial: time.Hour, Jitter: -1},
	})})
	other := spawnFunc(t, s, func(*Context) {})
	var generation atomic.Int32
	type event struct {
		generation int32
		what       string
	}
	events := make(chan event, 16)
	w := spawn(t, s, Props{New: func() Actor {
		g := generation.Add(1)
		return ActorFunc(func(c *Context) {
			switch c.Message().(type) {
			case *Started:
				if g == 1 {
					c.Watch(other) // a watch outlives restarts
				}
				events <- event{g, "started"}
			case *Terminated:
				events <- event{g, "terminated"}
			case string:
				panic("boom")
			}
		})
	}})
	recv(t, events, "the first start")
	w.Send("boom") // the first restart is at once
	recv(t, events, "the second start")
	w.Send("boom") // the second waits an hour
	waitFor(t, 5*time.Second, func() bool { return clk.Pending() == 1 }, "the delayed restart")
	<-other.Stop() // *Terminated is queued for w before Done closes
	clk.Advance(time.Hour)
	if e := recv(t, events, "the next event"); e != (event{3, "started"}) {
		t.Fatalf("after the watched actor stopped: %+v, want generation 3 started (the failed instance got *Terminated)", e)
	}
	if e := recv(t, events, "the next event"); e != (event{3, "terminated"}) {
		t.Fatalf("then %+v, want generation 3 to get *Terminated", e)
	}
}

// TestRootDeciderMayAskAnActorThatFails: a root Decider asks another
// top-level actor, which panics on the question. With a deadline the turn
// runs on a worker; without one it runs on the Decider's own goroutine,
// and the asked actor's failure goes to the root supervisor on that same
// goroutine, before the Decider returns. The root held a lock around its
// Decider, and that second failure waited for it forever, as did every
// later failure of a top-level actor.
//
// Should the "caller" case fail, it leaks its System's goroutines: Close
// would wait for the deadlocked actors.
func TestRootDeciderMayAskAnActorThatFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		inline bool
	}{{"worker", false}, {"caller", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var policy *Ref
			var asked atomic.Bool
			decided := make(chan error, 1)
			s := NewSystem(Config{Logger: testLogger(t), Supervisor: NewOneForOne(StrategyConfig{
				Decider: func(f *Failure) Directive {
					if f.Who == policy || !asked.CompareAndSwap(false, true) {
						return Restart
					}
					ctx := context.Background()
					if !tc.inline {
						c, cancel := context.WithTimeout(ctx, testTimeout)
						defer cancel()
						ctx = c
					}
					_, err := policy.Request(ctx, "ask") // the policy actor panics on it
					decided <- err
					return Restart
				},
			})})
			t.Cleanup(func() {
				if !t.Failed() {
					s.Close()
				}
			})
			policy = spawnFunc(t, s, func(c *Context) {
				if c.Message() == "ask" {
					panic("policy broken")
				}
			})
			a := spawnFunc(t, s, func(c *Context) {
				if c.Message() == "boom" {
					panic("boom")
				}
			})
			waitFor(t, testTimeout, func() bool { return policy.status.Load() == idle }, "policy idle")
			if _, err := a.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
				t.Fatalf("Request = %v, want ErrPanic", err)
			}
			if err := recv(t, decided, "the Decider's request"); !errors.Is(err, ErrPanic) {
				t.Fatalf("the Decider's request = %v, want ErrPanic", err)
			}
			// Both actors were restarted and serve again.
			for _, r := range []*Ref{a, policy} {
				if _, err := r.Request(ctxTimeout(t), "ping"); !errors.Is(err, ErrNoReply) {
					t.Fatalf("%v after its restart: %v, want ErrNoReply from a live actor", r, err)
				}
			}
		})
	}
}

// TestFailureLogLinesOfEachOutcome checks the lines the package doc lists
// beyond the one a failure leaves: a Decider's panic or Goexit, the
// restart limit (at Warn even with QuietFailures), escalation past the
// root, and a panic no supervisor handles (at Error, without the stack).
func TestFailureLogLinesOfEachOutcome(t *testing.T) {
	t.Parallel()
	type line struct {
		level slog.Level
		msg   string
	}
	const (
		failed    = "runtime: actor failed"
		escalated = "runtime: failure escalated to the root; stopping the actor"
	)
	for _, tc := range []struct {
		name     string
		strategy StrategyConfig
		booms    int // failures, each waited for
		stop     bool
		want     []line
	}{
		{"decider panics", StrategyConfig{Decider: func(*Failure) Directive { panic("bad decider") }}, 1, false, []line{
			{slog.LevelError, "runtime: supervisor Decider panicked; escalating"},
			{slog.LevelWarn, failed},
			{slog.LevelError, escalated},
		}},
		{"decider calls Goexit", StrategyConfig{Decider: func(*Failure) Directive { goruntime.Goexit(); return Restart }}, 1, false, []line{
			{slog.LevelError, "runtime: supervisor Decider called runtime.Goexit; escalating"},
			{slog.LevelWarn, failed},
			{slog.LevelError, escalated},
		}},
		{"restart limit", StrategyConfig{MaxRestarts: 1, Backoff: Backoff{Initial: -1}, QuietFailures: true}, 2, false, []line{
			{slog.LevelDebug, failed},
			{slog.LevelDebug, failed},
			{slog.LevelWarn, "runtime: restart limit reached; stopping and escalating"},
			{slog.LevelError, escalated},
		}},
		{"panic in Stopping", StrategyConfig{}, 0, true, []line{
			{slog.LevelError, "runtime: actor panicked in lifecycle handler"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := &recordLog{}
			s := newTestSystem(t, Config{Logger: slog.New(logs), Supervisor: NewOneForOne(tc.strategy)})
			r := spawnFunc(t, s, func(c *Context) {
				switch c.Message().(type) {
				case *Stopping:
					if tc.stop {
						panic("stopping")
					}
				case string:
					panic("boom")
				}
			})
			for i := range tc.booms {
				if _, err := r.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
					t.Fatalf("boom %d = %v, want ErrPanic", i, err)
				}
			}
			if tc.stop {
				r.Stop()
			}
			// Every outcome here ends with the actor stopped, after its lines.
			waitClosed(t, r.Done(), "the actor to stop")
			var got []line
			for _, rec := range logs.all() {
				got = append(got, line{rec.level, rec.message})
				if rec.level == slog.LevelError && rec.attrs["stack"] != "" {
					t.Errorf("%q carries a stack", rec.message)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("logged %v, want %v", got, tc.want)
			}
		})
	}
}
