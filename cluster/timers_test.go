package cluster

import (
	"context"
	"errors"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The kind of TestGrainTimers. Start starts the timer its request names
// ("name period", "name period panic" for one whose first tick panics);
// Stop stops the one named and answers whether it ran; Ticks answers the
// ticks the activation counted and, after a slash, those its state holds;
// Done deactivates the grain.
const (
	tickingKind  = "test.Ticking"
	tickingStart = "/test.Ticking/Start"
	tickingStop  = "/test.Ticking/Stop"
	// tickingStopQueued stops the timer named once one of its ticks
	// waits behind this turn, and answers the ticks it counted then.
	tickingStopQueued = "/test.Ticking/StopQueued"
	tickingTicks      = "/test.Ticking/Ticks"
	tickingDone       = "/test.Ticking/Done"
	// tickingOverlaps answers how many turns of the kind's grains ran
	// while another turn of theirs ran.
	tickingOverlaps = "/test.Ticking/Overlaps"
	// tickingWait answers the ticks the timer named had counted when it
	// began, once the test sends on the kind's release channel.
	tickingWait   = "/test.Ticking/Wait"
	tickingStored = "ticks"
)

type tickingGrain struct {
	timers map[string]*Timer
	ticks  map[string]int64
	// inTurn checks that ticks run one turn at a time with calls, counting
	// in overlaps those that did not.
	inTurn   atomic.Int32
	overlaps *atomic.Int32
	// hooks' answers to StartTimer: in OnActivate, then OnDeactivate.
	inHooks chan error
}

func (g *tickingGrain) enter() func() {
	if g.inTurn.Add(1) > 1 {
		g.overlaps.Add(1)
	}
	return func() { g.inTurn.Add(-1) }
}

func (g *tickingGrain) OnActivate(ctx GrainContext) error {
	// Due at once, before the grain's actor exists: it ticks once the
	// activation is done.
	_, err := StartTimer(ctx, 0, time.Millisecond, func(GrainContext) error {
		g.ticks["activate"]++
		return nil
	})
	g.inHooks <- err
	return nil
}

func (g *tickingGrain) OnDeactivate(ctx GrainContext) error {
	_, err := StartTimer(ctx, 0, 0, func(GrainContext) error { return nil })
	g.inHooks <- err
	return nil
}

func newTickingKind(inHooks chan error, waiting chan string, release chan struct{}) *Kind {
	overlaps := new(atomic.Int32)
	method := func(name string, h func(*tickingGrain, GrainContext, string) (string, error)) Method {
		return grainMethod(name, newString, func(g *tickingGrain, ctx GrainContext, req proto.Message) (proto.Message, error) {
			defer g.enter()()
			resp, err := h(g, ctx, req.(*wrapperspb.StringValue).GetValue())
			if err != nil {
				return nil, err
			}
			return wrapperspb.String(resp), nil
		})
	}
	return &Kind{
		Name:        tickingKind,
		IdleTimeout: -1,
		New: func(string) any {
			return &tickingGrain{timers: map[string]*Timer{}, ticks: map[string]int64{}, overlaps: overlaps, inHooks: inHooks}
		},
		Methods: []Method{
			method(tickingStart, func(g *tickingGrain, ctx GrainContext, req string) (string, error) {
				args := strings.Fields(req)
				name := args[0]
				period, err := time.ParseDuration(args[1])
				if err != nil {
					return "", err
				}
				panics := len(args) > 2
				t, err := StartTimer(ctx, 0, period, func(ctx GrainContext) error {
					defer g.enter()()
					g.ticks[name]++
					if panics && g.ticks[name] == 1 {
						panic("the first tick of " + name)
					}
					var total int64
					for _, n := range g.ticks {
						total += n
					}
					return ctx.State().Set(tickingStored, []byte(strconv.FormatInt(total, 10)))
				})
				g.timers[name] = t
				return "", err
			}),
			method(tickingStop, func(g *tickingGrain, _ GrainContext, name string) (string, error) {
				return strconv.FormatBool(g.timers[name].Stop()), nil
			}),
			method(tickingStopQueued, func(g *tickingGrain, _ GrainContext, name string) (string, error) {
				timer, deadline := g.timers[name], time.Now().Add(waitTimeout)
				for !timer.queued.Load() {
					if time.Now().After(deadline) {
						return "", errors.New("no tick queued behind the turn")
					}
					goruntime.Gosched()
				}
				timer.Stop()
				return strconv.FormatInt(g.ticks[name], 10), nil
			}),
			method(tickingTicks, func(g *tickingGrain, ctx GrainContext, name string) (string, error) {
				stored, _ := ctx.State().TryGet(tickingStored)
				return strconv.FormatInt(g.ticks[name], 10) + "/" + string(stored), nil
			}),
			method(tickingDone, func(_ *tickingGrain, ctx GrainContext, _ string) (string, error) {
				return "", Deactivate(ctx)
			}),
			method(tickingWait, func(g *tickingGrain, _ GrainContext, name string) (string, error) {
				began := g.ticks[name]
				waiting <- name
				<-release
				return strconv.FormatInt(began, 10), nil
			}),
			method(tickingOverlaps, func(g *tickingGrain, _ GrainContext, _ string) (string, error) {
				return strconv.Itoa(int(g.overlaps.Load())), nil
			}),
		},
	}
}

// TestGrainTimers: a timer's ticks run on its grain one turn at a time with
// the calls, commit what they change, go on after a tick that panicked, and
// end with Stop (in a turn, none after it) or with the activation; a timer
// fires once for a zero period. StartTimer is refused in OnDeactivate, for
// bad arguments, and for a context no node made.
func TestGrainTimers(t *testing.T) {
	t.Parallel()
	inHooks := make(chan error, 16)
	cfg := testConfig(t)
	waiting, release := make(chan string, 1), make(chan struct{})
	cfg.Kinds = []*Kind{newTickingKind(inHooks, waiting, release)}
	n := startNode(t, cfg)
	t.Cleanup(func() { close(release) }) // before the node closes
	call := func(method, id, req string) string {
		t.Helper()
		resp, err := n.Invoke(t.Context(), Call{Kind: tickingKind, Identity: id, Method: method, Request: wrapperspb.String(req), NewResponse: newString})
		if err != nil {
			t.Fatalf("%s(%q) on %s: %v", method, req, id, err)
		}
		return resp.(*wrapperspb.StringValue).GetValue()
	}
	ticks := func(id, name string) (counted, stored int64) {
		t.Helper()
		got := call(tickingTicks, id, name)
		c, s, _ := strings.Cut(got, "/")
		counted, _ = strconv.ParseInt(c, 10, 64)
		stored, _ = strconv.ParseInt(s, 10, 64)
		return counted, stored
	}
	ticked := func(id, name string, atLeast int64) {
		t.Helper()
		waitFor(t, waitTimeout, name+" ticking on "+id, func() bool {
			counted, _ := ticks(id, name)
			return counted >= atLeast
		})
	}
	timersOf := func() int {
		n.acts.timersMu.Lock()
		defer n.acts.timersMu.Unlock()
		var all int
		for _, ts := range n.acts.timers {
			all += len(ts)
		}
		return all
	}

	id := "g"
	call(tickingStart, id, "fast 1ms")
	if err := receive(t, inHooks, "StartTimer's answer in OnActivate"); err != nil {
		t.Errorf("StartTimer in OnActivate: %v; want a timer", err)
	}
	ticked(id, "activate", 3)
	ticked(id, "fast", 5)
	if _, stored := ticks(id, "fast"); stored < 5 {
		t.Errorf("ticks committed: %d; want at least fast's 5", stored)
	}
	if got := call(tickingStop, id, "fast"); got != "true" {
		t.Errorf("Stop of a running timer: %s; want true", got)
	}
	stoppedAt, _ := ticks(id, "fast")
	// Another timer of the grain ticks five times more, while the stopped
	// one does not tick again.
	call(tickingStart, id, "clock 1ms")
	ticked(id, "clock", 5)
	if counted, _ := ticks(id, "fast"); counted != stoppedAt {
		t.Errorf("the stopped timer ticked %d times after Stop", counted-stoppedAt)
	}
	if got := call(tickingStop, id, "fast"); got != "false" {
		t.Errorf("Stop again: %s; want false", got)
	}
	// A tick already queued when Stop runs does not run either.
	call(tickingStart, id, "queued 1ms")
	ticked(id, "queued", 1)
	stoppedAt, _ = strconv.ParseInt(call(tickingStopQueued, id, "queued"), 10, 64)
	// The next call's turn comes after the queued tick's: the mailbox keeps
	// their order.
	if counted, _ := ticks(id, "queued"); counted != stoppedAt {
		t.Errorf("a tick queued before Stop ran after it (%d ticks, %d at Stop)", counted, stoppedAt)
	}

	// Ticks due while one waits for the grain are skipped: while Wait holds
	// the grain, one tick is queued, and the Ticks call queued after
	// another grain's timer ticked twenty times finds one tick more.
	beating := "beating"
	call(tickingStart, beating, "beat 1ms")
	receive(t, inHooks, "StartTimer's answer in OnActivate of "+beating)
	ticked(beating, "beat", 1)
	before := n.Stats().Calls
	began, counted := make(chan string, 1), make(chan string, 1)
	go func() { began <- call(tickingWait, beating, "beat") }()
	receive(t, waiting, beating+" in Wait")
	clockAt, _ := ticks(id, "clock")
	ticked(id, "clock", clockAt+20) // the other grain: time passes
	go func() { counted <- call(tickingTicks, beating, "beat") }()
	waitFor(t, waitTimeout, "the Ticks call queued behind Wait", func() bool { return n.Stats().Calls == before+2 })
	release <- struct{}{}
	b, _ := strconv.ParseInt(receive(t, began, "Wait's answer"), 10, 64)
	c, _ := strconv.ParseInt(strings.SplitN(receive(t, counted, "Ticks' answer"), "/", 2)[0], 10, 64)
	if c != b+1 {
		t.Errorf("ticks run between a turn that held the grain and the call queued behind it: %d; want 1, the others skipped", c-b)
	}
	call(tickingDone, beating, "")
	receive(t, inHooks, "StartTimer's answer in OnDeactivate of "+beating)
	waitFor(t, waitTimeout, beating+"'s timers stopped", func() bool { return timersOf() == 2 }) // id's activate and clock

	// A tick that panics: the actor restarts, the timer goes on.
	call(tickingStart, id, "panicky 1ms panic")
	ticked(id, "panicky", 3)

	// Once, for a zero period; then nothing is left of it.
	call(tickingStart, id, "once 0s")
	ticked(id, "once", 1)
	if got := call(tickingStop, id, "once"); got != "false" {
		t.Errorf("Stop of a timer that fired once: %s; want false", got)
	}

	// The activation's end stops its timers: clock and panicky, and the
	// one OnActivate started.
	if got := timersOf(); got != 3 {
		t.Errorf("%d timers recorded; want 3", got)
	}
	call(tickingDone, id, "")
	if err := receive(t, inHooks, "StartTimer's answer in OnDeactivate"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("StartTimer in OnDeactivate: %v; want ErrBadRequest", err)
	}
	waitFor(t, waitTimeout, "the grain's timers stopped with its activation", func() bool { return timersOf() == 0 })
	_, stored := ticks(id, "") // a new activation, which loads the state
	receive(t, inHooks, "StartTimer's answer in OnActivate, again")
	if stored < 10 {
		t.Errorf("after the deactivation, the state holds %d ticks; want what the ticks committed, 10 or more", stored)
	}
	if got := call(tickingOverlaps, id, ""); got != "0" {
		t.Errorf("%s turns of the first activation overlapped; want none", got)
	}

	_, err := n.Invoke(t.Context(), Call{Kind: tickingKind, Identity: id, Method: tickingStart, Request: wrapperspb.String("bad -1ms"), NewResponse: newString})
	if !errors.Is(err, ErrBadRequest) {
		t.Errorf("StartTimer with a negative period: %v; want ErrBadRequest", err)
	}
	for _, ctx := range []GrainContext{fakeGrainContext{context.Background()}, WithContext(fakeGrainContext{context.Background()}, context.Background())} {
		if _, err := StartTimer(ctx, 0, 0, func(GrainContext) error { return nil }); !errors.Is(err, ErrBadRequest) {
			t.Errorf("StartTimer(%T): %v; want ErrBadRequest", ctx, err)
		}
	}
	if _, err := StartTimer(fakeGrainContext{context.Background()}, 0, 0, nil); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "needs a function") {
		t.Errorf("StartTimer without a function: %v; want ErrBadRequest saying so", err)
	}
}

// keeper is the grain of TestATimerKeepsItsGrainActive: Start starts a
// timer, one that keeps the grain active when its request says "keep".
type keeper struct {
	gone  chan string
	ticks atomic.Int64
}

func (k *keeper) OnDeactivate(ctx GrainContext) error {
	k.gone <- ctx.Identity()
	return nil
}

// TestATimerKeepsItsGrainActive: a grain whose only turns are its timer's
// ticks passivates after its IdleTimeout, unless the timer has
// TimerKeepsActive.
func TestATimerKeepsItsGrainActive(t *testing.T) {
	t.Parallel()
	gone := make(chan string, 16)
	grains := make(chan *keeper, 16)
	const start = "/test.Keeper/Start"
	cfg := testConfig(t)
	cfg.Kinds = []*Kind{{
		Name:        "test.Keeper",
		IdleTimeout: 30 * time.Millisecond, // sweeps every 10 ms (testConfig)
		New: func(string) any {
			k := &keeper{gone: gone}
			grains <- k
			return k
		},
		Methods: []Method{grainMethod(start, newString, func(k *keeper, ctx GrainContext, req proto.Message) (proto.Message, error) {
			var opts []TimerOption
			if req.(*wrapperspb.StringValue).GetValue() == "keep" {
				opts = append(opts, TimerKeepsActive())
			}
			_, err := StartTimer(ctx, 0, time.Millisecond, func(GrainContext) error {
				k.ticks.Add(1)
				return nil
			}, opts...)
			return req, err
		})},
	}}
	n := startNode(t, cfg)
	startOn := func(id, how string) *keeper {
		t.Helper()
		if _, err := n.Invoke(t.Context(), Call{Kind: "test.Keeper", Identity: id, Method: start, Request: wrapperspb.String(how), NewResponse: newString}); err != nil {
			t.Fatalf("Start on %s: %v", id, err)
		}
		return receive(t, grains, "the activation of "+id)
	}
	kept := startOn("kept", "keep")
	startOn("ticking", "")
	if got := receive(t, gone, "the grain whose timer does not keep it to passivate"); got != "ticking" {
		t.Fatalf("%s passivated; want ticking", got)
	}
	// A grain activated only now passivates too: an IdleTimeout and more
	// has passed since, which the kept grain spent ticking.
	startOn("later", "")
	if got := receive(t, gone, "the later grain to passivate"); got != "later" {
		t.Fatalf("%s passivated; want later, and not kept while its timer keeps it", got)
	}
	before := kept.ticks.Load()
	waitFor(t, waitTimeout, "the kept grain ticking on", func() bool { return kept.ticks.Load() > before+5 })
	if n.Stats().Activations != 1 {
		t.Errorf("%d activations; want 1, the kept grain", n.Stats().Activations)
	}
}
