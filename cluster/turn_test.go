package cluster

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// These tests come from an audit of calls under cancellation: a turn run
// on the caller's goroutine (a peer's request on the goroutine that serves
// it, a call whose context never ends, WithTurnOnCaller) went on with the
// calls queued behind the caller's, holding the caller, and its reply,
// past its method; and deadlocking it when one of those calls waited on
// the caller's own grain.

// The turn kind: Slow holds until its node's gate lets one call through;
// the Call methods call Slow on the grain their request names (with the
// caller's context, WithTurnOnCaller, or context.Background); Ask calls
// Peek on the grain its request names, and Peek answers at once.
const (
	turnKind       = "test.Turn"
	methodSlow     = "/test.Turn/Slow"
	methodCallSlow = "/test.Turn/CallSlow"
	methodCallOn   = "/test.Turn/CallSlowOnCaller"
	methodCallBg   = "/test.Turn/CallSlowBackground"
	methodAsk      = "/test.Turn/Ask"
	methodPeek     = "/test.Turn/Peek"
)

// turnGate lets Slow calls through, one per send on pass.
type turnGate struct {
	entered chan string   // the identities whose Slow began
	pass    chan struct{} // a send lets one Slow return
}

func newTurnKind(g *turnGate) *Kind {
	method := func(name string, h func(ctx GrainContext, req string) (proto.Message, error)) Method {
		return Method{Name: name, NewRequest: newString, Handle: func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
			return h(ctx, req.(*wrapperspb.StringValue).GetValue())
		}}
	}
	slowOn := func(ctx context.Context, caller Caller, target string, opts ...CallOption) (proto.Message, error) {
		return caller.Invoke(ctx, turnCall(methodSlow, target, ""), opts...)
	}
	return &Kind{
		Name: turnKind,
		New:  func(string) any { return struct{}{} },
		Methods: []Method{
			method(methodSlow, func(ctx GrainContext, _ string) (proto.Message, error) {
				g.entered <- ctx.Identity()
				<-g.pass
				return wrapperspb.String(ctx.Identity()), nil
			}),
			method(methodCallSlow, func(ctx GrainContext, target string) (proto.Message, error) {
				return slowOn(ctx, ctx, target)
			}),
			method(methodCallOn, func(ctx GrainContext, target string) (proto.Message, error) {
				return slowOn(ctx, ctx, target, WithTurnOnCaller())
			}),
			method(methodCallBg, func(ctx GrainContext, target string) (proto.Message, error) {
				return slowOn(context.Background(), ctx, target)
			}),
			method(methodAsk, func(ctx GrainContext, target string) (proto.Message, error) {
				return ctx.Invoke(ctx, turnCall(methodPeek, target, ""))
			}),
			method(methodPeek, func(ctx GrainContext, _ string) (proto.Message, error) {
				return wrapperspb.String(ctx.Identity()), nil
			}),
		},
	}
}

// turnCall is a call of the turn kind's method on identity, with arg as
// its StringValue request.
func turnCall(method, identity, arg string) Call {
	return Call{Kind: turnKind, Identity: identity, Method: method, Request: wrapperspb.String(arg), NewResponse: newString}
}

// turnCluster starts size nodes hosting the turn kind, with one gate.
func turnCluster(t *testing.T, size int) ([]*Node, *turnGate) {
	g := &turnGate{entered: make(chan string, 16), pass: make(chan struct{})}
	nodes := startCluster(t, size, func(string) []*Kind { return []*Kind{newTurnKind(g)} }, nil)
	t.Cleanup(func() { close(g.pass) }) // before the nodes close: every Slow returns
	return nodes, g
}

// callAsync makes call through c on a goroutine of its own, and sends its
// error on the returned channel.
func callAsync(ctx context.Context, c Caller, call Call, opts ...CallOption) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Invoke(ctx, call, opts...)
		done <- err
	}()
	return done
}

// waitQueued waits until the grain kind/identity on n has want calls
// counted in: the one running and those queued behind it.
func waitQueued(t *testing.T, n *Node, kind, identity string, want int32) {
	t.Helper()
	waitFor(t, waitTimeout, fmt.Sprintf("%d calls on %s/%s", want, kind, identity), func() bool {
		a := n.acts.peek(actKey{kind, identity})
		return a != nil && a.calls.Load() >= want
	})
}

// turnIdentity returns an identity of the turn kind that owner owns.
func turnIdentity(t *testing.T, owner *Node, prefix string) string {
	t.Helper()
	for i := range 10000 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if m, ok := owner.Owner(turnKind, id); ok && m.Name == owner.Name() {
			return id
		}
	}
	t.Fatalf("no identity of %s owned by %s", turnKind, owner.Name())
	return ""
}

// activate activates the turn grains ids through n, so that the next calls
// find them idle.
func activate(t *testing.T, n *Node, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := n.Invoke(t.Context(), turnCall(methodPeek, id, "")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAPeersRequestIsAnsweredBeforeTheCallsQueuedBehindIt: grain A, on
// node 0, calls C.Slow on node 1, whose serving goroutine runs C's turn;
// meanwhile X calls C.Ask(A), which queues behind Slow and calls A. Once
// Slow returns, its reply must go out: the serving goroutine went on with
// Ask, which waited on A, which waited for the reply, until both calls'
// deadlines passed.
func TestAPeersRequestIsAnsweredBeforeTheCallsQueuedBehindIt(t *testing.T) {
	t.Parallel()
	nodes, g := turnCluster(t, 2)
	a, c := turnIdentity(t, nodes[0], "a"), turnIdentity(t, nodes[1], "c")
	activate(t, nodes[0], a, c)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	top := callAsync(ctx, nodes[0], turnCall(methodCallSlow, a, c))
	receive(t, g.entered, "C.Slow to begin")
	x := callAsync(ctx, nodes[1], turnCall(methodAsk, c, a))
	waitQueued(t, nodes[1], turnKind, c, 2)
	g.pass <- struct{}{}
	if err := receive(t, top, "A.CallSlow(C)"); err != nil {
		t.Errorf("A.CallSlow(C): %v", err)
	}
	if err := receive(t, x, "C.Ask(A)"); err != nil {
		t.Errorf("C.Ask(A): %v", err)
	}
}

// TestANestedTurnEndsWithItsCall: grain A calls B.Slow on the same node in
// a way that runs B's turn on A's goroutine (WithTurnOnCaller, or a
// context that never ends); meanwhile X calls B.Ask(A), which queues
// behind Slow and calls A. Once Slow returns, A must go on: B's nested
// turn went on with Ask, which waited on A, until the deadlines.
func TestANestedTurnEndsWithItsCall(t *testing.T) {
	t.Parallel()
	for _, method := range []string{methodCallOn, methodCallBg} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			nodes, g := turnCluster(t, 1)
			n := nodes[0]
			activate(t, n, "A", "B")
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			top := callAsync(ctx, n, turnCall(method, "A", "B"))
			receive(t, g.entered, "B.Slow to begin")
			x := callAsync(ctx, n, turnCall(methodAsk, "B", "A"))
			waitQueued(t, n, turnKind, "B", 2)
			g.pass <- struct{}{}
			if err := receive(t, top, "A's call of B.Slow"); err != nil {
				t.Errorf("A's call of B.Slow: %v", err)
			}
			if err := receive(t, x, "B.Ask(A)"); err != nil {
				t.Errorf("B.Ask(A): %v", err)
			}
		})
	}
}

// TestATurnOnTheCallerReturnsWhenItsMethodDoes: a call that runs its
// grain's turn on the caller's goroutine returns when its method does, as
// Invoke and WithTurnOnCaller say, and not after the calls that queued
// behind it meanwhile: here the next one holds until the first returned.
func TestATurnOnTheCallerReturnsWhenItsMethodDoes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ctx  func(t *testing.T) context.Context
		opts []CallOption
	}{
		{"WithTurnOnCaller", func(t *testing.T) context.Context { return t.Context() }, []CallOption{WithTurnOnCaller()}},
		{"context that never ends", func(*testing.T) context.Context { return context.Background() }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes, g := turnCluster(t, 1)
			n := nodes[0]
			activate(t, n, "g")
			mine := callAsync(tc.ctx(t), n, turnCall(methodSlow, "g", ""), tc.opts...)
			receive(t, g.entered, "my call's method to begin")
			other := callAsync(t.Context(), n, turnCall(methodSlow, "g", ""))
			waitQueued(t, n, turnKind, "g", 2)
			g.pass <- struct{}{} // my method returns; the other's begins and holds
			receive(t, g.entered, "the other call's method to begin")
			if err := receive(t, mine, "my call to return while the next one holds"); err != nil {
				t.Errorf("my call: %v", err)
			}
			g.pass <- struct{}{}
			if err := receive(t, other, "the other call"); err != nil {
				t.Errorf("the other call: %v", err)
			}
		})
	}
}
