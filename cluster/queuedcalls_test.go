package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// stuck holds identity's grain on n in a Hold turn, which waits for
// h.releaseHeld whatever its context, until the test ends at the latest
// (echoCluster releases it before the nodes close).
func stuck(t *testing.T, n *Node, h *hooks, identity string) {
	t.Helper()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour) // its caller waits, counted in
		defer cancel()
		_, _ = n.Invoke(ctx, stringCall(methodHold, identity, ""))
	}()
	if got := receive(t, h.entered, "the stuck grain's turn"); got != identity {
		t.Fatalf("%s's turn began, want %s's", got, identity)
	}
}

// callsIn returns how many calls are counted in on identity's activation
// on owner, 0 if it has none.
func callsIn(owner *Node, identity string) int32 {
	a := owner.acts.peek(actKey{echoKind, identity})
	if a == nil {
		return 0
	}
	return a.calls.Load() &^ callsClosed
}

// mailboxFull reports whether err is a call's refusal for a full grain:
// ErrMailboxFull, with codes.ResourceExhausted.
func mailboxFull(err error) bool {
	return errors.Is(err, ErrMailboxFull) && status.Code(err) == codes.ResourceExhausted
}

// TestCallsWhoseCallersGaveUpDoNotPileUpInABusyGrain: a grain is stuck in a
// turn, and its callers use short deadlines and call again, as a front end
// does for each request it serves. Each call whose caller gave up stays in
// the grain's mailbox until the grain reaches it: before
// Config.MaxQueuedCalls, the node held 576 bytes per call (26 MB after
// 48,000 calls) until the turn ended. Past the bound, calls fail at once
// with ErrMailboxFull, and the calls that gave up cost the node the bound's
// worth at most.
func TestCallsWhoseCallersGaveUpDoNotPileUpInABusyGrain(t *testing.T) {
	const callers, perCaller, bound = 16, 3000, 1000
	nodes, hs := echoCluster(t, 1, time.Hour, func(cfg *Config) { cfg.MaxQueuedCalls = bound })
	n := nodes[0]
	h := hs[n.Name()]
	stuck(t, n, h, "stuck")
	var gaveUp, refused atomic.Int64
	concurrently(t, callers, func(int) error {
		for range perCaller {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			_, err := n.Invoke(ctx, addCall("stuck", 1))
			cancel()
			switch {
			case status.Code(err) == codes.DeadlineExceeded:
				gaveUp.Add(1)
			case mailboxFull(err):
				refused.Add(1)
			default:
				return fmt.Errorf("Add on a stuck grain: %v, want DeadlineExceeded, or ResourceExhausted and ErrMailboxFull", err)
			}
		}
		return nil
	})
	queued := callsIn(n, "stuck")
	after := heapAlloc()
	// What the node frees once the stuck turn ends and the grain gets
	// through its mailbox is what the calls that gave up held (measured
	// so rather than against before, which earlier tests' garbage in the
	// same process may inflate).
	h.releaseHeld()
	waitFor(t, waitTimeout, "the grain to take the calls that gave up", func() bool { return callsIn(n, "stuck") == 0 })
	if _, err := n.Invoke(context.Background(), addCall("stuck", 0)); err != nil { // the count went down: it is taken
		t.Fatalf("a call once the grain caught up: %v", err)
	}
	drained := heapAlloc()
	if queued > bound {
		t.Errorf("%d calls counted in on the stuck grain, over Config.MaxQueuedCalls (%d)", queued, bound)
	}
	if refused.Load() == 0 {
		t.Errorf("none of %d calls to a grain with %d calls queued was refused (ErrMailboxFull); %d gave up at their deadline",
			callers*perCaller, queued, gaveUp.Load())
	}
	const budget = 4 << 20
	if after > drained+budget {
		t.Errorf("after %d calls whose callers gave up and %d refused, the node held %d MB more than once the stuck turn ended, "+
			"%d bytes per call that gave up: the calls wait in the grain's mailbox",
			gaveUp.Load(), refused.Load(), (after-drained)>>20, (after-drained)/uint64(max(gaveUp.Load(), 1)))
	}
}

// TestCallsPastTheBoundFailAtOnce: with a grain stuck in a turn and
// Config.MaxQueuedCalls calls counted in on it (the stuck one, callers
// that wait, calls whose callers gave up), the next call fails at once
// with ErrMailboxFull (ResourceExhausted), from this node or another one,
// and Invoke does not retry it (its deadline is far). The calls under the
// bound are not affected: once the grain catches up, the callers that
// waited have their replies, the count is back to zero, and a later call
// succeeds. A caller that runs the grain's turn itself when it is idle
// (WithTurnOnCaller) waits for a busy one, and gives up, as any other.
func TestCallsPastTheBoundFailAtOnce(t *testing.T) {
	const bound = 8
	for _, tc := range []struct {
		name   string
		remote bool
		opts   []CallOption
	}{
		{name: "local"},
		{name: "local turn on caller", opts: []CallOption{WithTurnOnCaller()}},
		{name: "from another node", remote: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes, hs := echoCluster(t, 2, time.Hour, func(cfg *Config) { cfg.MaxQueuedCalls = bound })
			owner, caller := nodes[0], nodes[0]
			if tc.remote {
				caller = nodes[1]
			}
			id := echoIdentity(t, "busy", map[*Node]string{nodes[0]: owner.Name(), nodes[1]: owner.Name()})
			stuck(t, owner, hs[owner.Name()], id)
			// Half of the room goes to calls whose callers give up once
			// they are queued; the rest, but for the stuck call, to
			// callers that wait.
			gaveUp := bound / 2
			ctx, giveUp := context.WithCancel(context.Background())
			abandoned := make(chan error, gaveUp)
			for range gaveUp {
				go func() {
					_, err := caller.Invoke(ctx, addCall(id, 1000), tc.opts...)
					abandoned <- err
				}()
			}
			waitFor(t, waitTimeout, "the calls to give up to be counted in", func() bool { return callsIn(owner, id) == int32(1+gaveUp) })
			giveUp()
			for range gaveUp {
				if err := receive(t, abandoned, "a call that gave up"); status.Code(err) != codes.Canceled {
					t.Fatalf("a call whose caller cancelled: %v, want Canceled", err)
				}
			}
			if got := callsIn(owner, id); got != int32(1+gaveUp) {
				t.Fatalf("%d calls counted in once %d callers gave up on their calls in the stuck grain's mailbox, want %d: "+
					"a call whose caller gave up must stay counted until the grain takes it", got, gaveUp, 1+gaveUp)
			}
			waiting := bound - 1 - gaveUp
			replies := make(chan error, waiting)
			for range waiting {
				go func() {
					_, err := caller.Invoke(context.Background(), addCall(id, 1), tc.opts...)
					replies <- err
				}()
			}
			waitFor(t, waitTimeout, "the bound to be reached", func() bool { return callsIn(owner, id) == bound })
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			_, err := caller.Invoke(ctx, addCall(id, 1), tc.opts...)
			if !mailboxFull(err) {
				t.Errorf("a call to a grain with Config.MaxQueuedCalls (%d) calls counted in: %v, want ResourceExhausted and ErrMailboxFull "+
					"(%d calls in: the stuck one, %d that gave up, %d waiting)", bound, err, callsIn(owner, id), gaveUp, waiting)
			}
			if got := callsIn(owner, id); got != bound {
				t.Errorf("%d calls counted in after a call past the bound, want %d", got, bound)
			}
			if st := owner.Stats(); st.Refused != 1 {
				t.Errorf("Stats of the grain's node after a call past the bound: %+v, want Refused 1", st)
			}
			hs[owner.Name()].releaseHeld()
			for range waiting {
				if err := receive(t, replies, "the reply of a call under the bound"); err != nil {
					t.Errorf("a call under the bound: %v", err)
				}
			}
			waitFor(t, waitTimeout, "the grain to take the calls that gave up", func() bool { return callsIn(owner, id) == 0 })
			total, err := caller.Invoke(ctx, addCall(id, 0), tc.opts...)
			if err != nil {
				t.Fatalf("a call once the grain caught up: %v", err)
			}
			if got := total.(*wrapperspb.Int64Value).GetValue(); got != int64(waiting) {
				t.Errorf("the grain's total is %d, want %d: only the calls whose callers waited ran", got, waiting)
			}
		})
	}
}

// TestANegativeCallBoundBoundsNothing: with Config.MaxQueuedCalls
// negative, a stuck grain takes calls whose callers give up past
// DefaultMaxQueuedCalls, and refuses none.
func TestANegativeCallBoundBoundsNothing(t *testing.T) {
	const callers = 16
	nodes, hs := echoCluster(t, 1, time.Hour, func(cfg *Config) { cfg.MaxQueuedCalls = -1 })
	n := nodes[0]
	stuck(t, n, hs[n.Name()], "unbounded")
	const want = DefaultMaxQueuedCalls + callers
	past := func() bool { return callsIn(n, "unbounded") > want }
	deadline := time.Now().Add(waitTimeout)
	var refused atomic.Pointer[error]
	concurrently(t, callers, func(int) error {
		for !past() && refused.Load() == nil && time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			_, err := n.Invoke(ctx, addCall("unbounded", 1))
			cancel()
			switch {
			case mailboxFull(err):
				refused.CompareAndSwap(nil, &err)
			case status.Code(err) != codes.DeadlineExceeded:
				return fmt.Errorf("Add on a stuck grain without a bound: %v, want DeadlineExceeded", err)
			}
		}
		return nil
	})
	if err := refused.Load(); err != nil {
		t.Fatalf("a call to a grain with %d calls counted in, under a negative Config.MaxQueuedCalls: %v", callsIn(n, "unbounded"), *err)
	}
	if !past() {
		t.Fatalf("%d calls counted in on the stuck grain after %v, want over %d", callsIn(n, "unbounded"), waitTimeout, want)
	}
	hs[n.Name()].releaseHeld()
	waitFor(t, waitTimeout, "the grain to take the calls that gave up", func() bool { return callsIn(n, "unbounded") == 0 })
}

// TestCallBound: the bound of activation.calls for Config.MaxQueuedCalls
// is below the closed bit, so that the lookup's one comparison refuses a
// closed activation whatever the bound.
func TestCallBound(t *testing.T) {
	for _, tc := range []struct {
		max  int
		want int32
	}{
		{1, 1}, {DefaultMaxQueuedCalls, DefaultMaxQueuedCalls}, {-1, maxCallsIn},
		{callsClosed - 2, callsClosed - 2}, {callsClosed - 1, maxCallsIn}, {callsClosed, maxCallsIn}, {1 << 40, maxCallsIn},
	} {
		if got := callBound(tc.max); got != tc.want {
			t.Errorf("callBound(%d) = %d, want %d", tc.max, got, tc.want)
		}
		if got := callBound(tc.max); got >= callsClosed {
			t.Errorf("callBound(%d) = %d, not below callsClosed", tc.max, got)
		}
	}
}

// TestAGrainThatFailedIsActivatedAgainWhateverItsCallersGaveUp:
// a grain's actor stops after repeated panics (one-way messages that
// panic, GrainMaxRestarts) while calls whose callers gave up wait in its
// mailbox, as many as Config.MaxQueuedCalls. Those callers left their
// count to the grain (handOff), which never takes them: they become dead
// letters. The next call must get the grain activated afresh (at worst
// one ErrGrainFailed first, as the doc of ErrGrainFailed says), not
// ErrMailboxFull for calls that no longer exist, until a sweep happens to
// clear the stopped activation (sweepFailed, every PassivationInterval),
// as it did.
func TestAGrainThatFailedIsActivatedAgainWhateverItsCallersGaveUp(t *testing.T) {
	const bound = 4
	nodes, hs := echoCluster(t, 1, time.Hour, func(cfg *Config) {
		cfg.MaxQueuedCalls = bound
		cfg.PassivationInterval = time.Hour // as if the sweep were not due yet (10 s by default)
	})
	n, h := nodes[0], hs[nodes[0].Name()]
	const id = "dying"
	ctx := context.Background()
	if err := n.Send(ctx, stringCall(methodHold, id, "")); err != nil { // a one-way turn that holds the grain
		t.Fatal(err)
	}
	receive(t, h.entered, "the held turn")
	for range 3 { // GrainMaxRestarts is 2 (testConfig): the third stops the actor
		if err := n.Send(ctx, stringCall(methodFail, id, "panic:boom")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range bound {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := n.Invoke(cctx, addCall(id, 1))
		cancel()
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("call %d to the held grain: %v, want DeadlineExceeded", i, err)
		}
	}
	a := n.acts.peek(actKey{echoKind, id})
	h.releaseHeld()
	waitFor(t, waitTimeout, "the actor to stop after repeated panics", func() bool { return a.ref.Stopped() })
	var errs []error
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, waitTimeout)
		_, err := n.Invoke(cctx, addCall(id, 1))
		cancel()
		if err == nil {
			return
		}
		errs = append(errs, err)
		if !errors.Is(err, ErrGrainFailed) {
			break
		}
	}
	t.Fatalf("calls to a grain whose actor stopped after repeated panics, with %d calls whose callers gave up left in its mailbox: %v; "+
		"want the grain activated again (Stats: %+v)", bound, errs, n.Stats())
}
