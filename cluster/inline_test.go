package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestLocalCallWithoutDeadlineReturnsWithItsMethod pins the price of the
// caller-runs path (Node.deliver, runtime.Ref.RequestInline): a local call
// whose context can never end may run the grain's method on the caller's
// goroutine, so a method that ignores its context makes it return late, with
// the method's answer, instead of at DefaultCallTimeout. Everything else
// still ends at its deadline: a call to that grain while it is busy, and a
// call with a deadline of its own.
func TestLocalCallWithoutDeadlineReturnsWithItsMethod(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	nodes, hs := echoCluster(t, 1, 0, func(c *Config) { c.DefaultCallTimeout = timeout })
	n, h := nodes[0], hs[nodes[0].Name()]

	// The grain idles (activated by a first call), so the next call to it
	// may run on the caller.
	add(t, n, "slow", 1)
	type result struct {
		resp  string
		err   error
		spent time.Duration
	}
	late := make(chan result, 1)
	go func() {
		start := time.Now()
		resp, err := n.Invoke(context.Background(), stringCall(methodHold, "slow", ""))
		r := result{err: err, spent: time.Since(start)}
		if err == nil {
			r.resp = resp.(*wrapperspb.StringValue).GetValue()
		}
		late <- r
	}()
	receive(t, h.entered, "the held call to enter the method")

	// The grain is busy: a second caller waits under the default deadline.
	start := time.Now()
	_, err := n.Invoke(context.Background(), addCall("slow", 1))
	if got := status.Code(err); got != codes.DeadlineExceeded {
		t.Fatalf("call to the busy grain: code = %v (%v), want DeadlineExceeded", got, err)
	}
	// It waited for the deadline rather than failing at once. Not the
	// whole timeout: calls share default deadlines, and one may come early
	// by as much as the timer that ends a deadline's window fires late
	// (see deadlines), which under -race on a busy machine is milliseconds
	// against this test's 0.5 ms of slack.
	if spent := time.Since(start); spent < timeout/2 {
		t.Fatalf("call to the busy grain failed after %v, long before DefaultCallTimeout (%v)", spent, timeout)
	}

	// A call with a deadline of its own to another idle grain whose
	// method ignores its context: handed to a worker, it ends at its
	// deadline (the method holds until released, if a worker started it
	// before the deadline).
	add(t, n, "other", 1)
	ctx, cancel := context.WithTimeout(context.Background(), timeout/2)
	defer cancel()
	if _, err := n.Invoke(ctx, stringCall(methodHold, "other", "")); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call with its own deadline: code = %v (%v), want DeadlineExceeded", status.Code(err), err)
	}

	// Released, the held method answers its caller, past the default
	// deadline, and saw that deadline in its context.
	h.releaseHeld()
	r := receive(t, late, "the held call to return")
	if r.err != nil || r.resp != "deadline:true" {
		t.Fatalf("held call = %q, %v; want deadline:true and no error", r.resp, r.err)
	}
	if r.spent < timeout {
		t.Fatalf("held call returned after %v; the test expects it past DefaultCallTimeout (%v)", r.spent, timeout)
	}
	if got := add(t, n, "slow", 1); got != 2 {
		t.Fatalf("total after the held call = %d, want 2 (the call to the busy grain must not have run)", got)
	}
}

// TestWithTurnOnCallerReturnsWithItsMethod checks WithTurnOnCaller: a
// local call under a deadline to an idle grain runs the method on the
// caller, so a method that ignores its context holds the call past its
// deadline and the call returns the method's answer; a call with the
// option to the grain while it is busy still ends at its deadline.
func TestWithTurnOnCallerReturnsWithItsMethod(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	nodes, hs := echoCluster(t, 1, 0, nil)
	n, h := nodes[0], hs[nodes[0].Name()]
	add(t, n, "held", 1) // activated, and idle again

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	type result struct {
		resp string
		err  error
	}
	held := make(chan result, 1)
	go func() {
		resp, err := n.Invoke(ctx, stringCall(methodHold, "held", ""), WithTurnOnCaller())
		r := result{err: err}
		if err == nil {
			r.resp = resp.(*wrapperspb.StringValue).GetValue()
		}
		held <- r
	}()
	receive(t, h.entered, "the held call to enter the method")

	busy, cancelBusy := context.WithTimeout(context.Background(), timeout/2)
	defer cancelBusy()
	if _, err := n.Invoke(busy, addCall("held", 1), WithTurnOnCaller()); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call to the busy grain: code = %v (%v), want DeadlineExceeded", status.Code(err), err)
	}

	// Released only after its deadline, the held method answers its
	// caller. A call handed to the worker would have returned
	// DeadlineExceeded at the deadline, with no reply yet to take.
	<-ctx.Done()
	h.releaseHeld()
	r := receive(t, held, "the held call to return")
	if r.err != nil || r.resp != "deadline:true" {
		t.Fatalf("held call = %q, %v; want the method's deadline:true and no error", r.resp, r.err)
	}
	if got := add(t, n, "held", 1); got != 2 {
		t.Fatalf("total = %d, want 2 (the call to the busy grain must not have run)", got)
	}
}

// TestPeerCallEndsAtItsDeadlineWhileTheMethodRuns checks the other side of
// a served request running its grain's turn on the goroutine that serves
// it: the caller, on another node, still returns at its deadline while a
// method that ignores its context holds, and a local call with a deadline
// of its own that activates a grain is not held by its method either.
func TestPeerCallEndsAtItsDeadlineWhileTheMethodRuns(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	nodes, hs := echoCluster(t, 2, 0, nil)
	owner, caller := nodes[0], nodes[1]
	h := hs[owner.Name()]

	id := identityOwnedBy(t, nodes, owner)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := caller.Invoke(ctx, stringCall(methodHold, id, "")); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("peer call to a held method: code = %v (%v), want DeadlineExceeded", status.Code(err), err)
	}

	// A local first call with its own deadline: the activation runs on
	// the caller, the method on the grain's worker.
	fresh := ""
	for i := 0; fresh == ""; i++ {
		if m, ok := owner.Owner(echoKind, fmt.Sprintf("fresh-%d", i)); ok && m.Name == owner.Name() {
			fresh = fmt.Sprintf("fresh-%d", i)
		}
	}
	local, cancelLocal := context.WithTimeout(context.Background(), timeout)
	defer cancelLocal()
	if _, err := owner.Invoke(local, stringCall(methodHold, fresh, "")); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("local first call to a held method: code = %v (%v), want DeadlineExceeded", status.Code(err), err)
	}
	h.releaseHeld()
}

// TestPeerCallWithoutDeadlineEndsAtTheDefault checks that calls to a peer
// made without a deadline, which wait on their reply alone while the conn
// watches their shared deadline (see conn.call), still end at
// DefaultCallTimeout when the peer never answers: several at once, with a
// context of the caller's and without, then again under a later window's
// deadline on the same conn. The conn serves on afterwards.
func TestPeerCallWithoutDeadlineEndsAtTheDefault(t *testing.T) {
	t.Parallel()
	// Long enough for a call to reach its grain on a machine busy with
	// other tests under -race (100 ms was not, once in a loop of runs).
	const timeout = 300 * time.Millisecond
	nodes, hs := echoCluster(t, 2, 0, func(c *Config) { c.DefaultCallTimeout = timeout })
	owner, caller := nodes[0], nodes[1]
	// A grain each, so that every call is held by its method rather than
	// queued behind another, and only the caller can end it.
	var ids []string
	for i := 0; len(ids) < 8; i++ {
		id := fmt.Sprintf("held-%d", i)
		if m, ok := owner.Owner(echoKind, id); ok && m.Name == owner.Name() {
			ids = append(ids, id)
		}
	}
	// Activated first, each under a deadline of its own: a held call must
	// reach its grain within the timeout, which an activation on a busy
	// machine under -race can take by itself (the check below that every
	// call started timed out once so).
	for _, id := range ids {
		addWithin(t, caller, id, 1)
	}
	// Should the caller not end the calls, releasing them makes them
	// answer, and the test fail, instead of hang.
	h := hs[owner.Name()]
	watchdog := time.AfterFunc(waitTimeout, h.releaseHeld)
	defer watchdog.Stop()
	ctxs := []context.Context{context.Background(), context.WithValue(context.Background(), ctxKey{}, 1)}
	for round, ids := range [][]string{ids[:4], ids[4:]} {
		concurrently(t, len(ids), func(c int) error {
			start := time.Now()
			_, err := caller.Invoke(ctxs[c%2], stringCall(methodHold, ids[c], ""))
			spent := time.Since(start)
			if status.Code(err) != codes.DeadlineExceeded {
				return fmt.Errorf("round %d, call %d: code = %v (%v), want DeadlineExceeded", round, c, status.Code(err), err)
			}
			// Shared deadlines may come early by as much as the timer that
			// ends their window fires late (see deadlines): a bound of half
			// the timeout still tells a deadline from an early failure.
			if spent < timeout/2 {
				return fmt.Errorf("round %d, call %d: failed after %v, before DefaultCallTimeout (%v)", round, c, spent, timeout)
			}
			return nil
		})
		for range ids {
			receive(t, h.entered, "a held call to start")
		}
	}
	if got := addWithin(t, caller, identityOwnedBy(t, nodes, owner), 1); got != 1 {
		t.Fatalf("a call after the expired ones answered %d, want 1", got)
	}
}
