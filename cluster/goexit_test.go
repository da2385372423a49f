package cluster

import (
	"context"
	"errors"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Tests of grain methods that end their goroutine with runtime.Goexit
// (t.FailNow in a method, or a library's): the grain's actor fails as if
// the method had panicked, and the goroutine ends, whoever's it is. When
// the call's own goroutine ran the turn (a local call whose context never
// ends, one made WithTurnOnCaller, a peer's request on the goroutine that
// serves it), that is the caller's, and the call never returns; but the
// call must not stay counted on the activation, which then never
// passivated, and held a Shutdown until its deadline.

// The exit kind: Exit tells exited and calls runtime.Goexit; Ping answers
// the grain's identity.
const (
	exitKind   = "test.Exit"
	methodExit = "/test.Exit/Exit"
	methodPing = "/test.Exit/Ping"
)

// exitGrain tells its deactivations on deactivated. Its OnActivate calls
// runtime.Goexit once for each token in exitOnActivate, after telling
// exited.
type exitGrain struct {
	exited         chan<- string
	exitOnActivate <-chan struct{}
	deactivated    chan<- string
}

func (g *exitGrain) OnActivate(ctx GrainContext) error {
	select {
	case <-g.exitOnActivate:
		g.exited <- ctx.Identity()
		goruntime.Goexit()
	default:
	}
	return nil
}

func (g *exitGrain) OnDeactivate(ctx GrainContext) error {
	g.deactivated <- ctx.Identity()
	return nil
}

// newExitKind returns the exit kind, whose activations stay idle for
// idle, and whose grains tell exited and deactivated (see exitGrain).
// exitOnActivate may be nil.
func newExitKind(idle time.Duration, exited, deactivated chan<- string, exitOnActivate <-chan struct{}) *Kind {
	method := func(name string, h func(ctx GrainContext) proto.Message) Method {
		return Method{Name: name, NewRequest: newString, Handle: func(_ any, ctx GrainContext, _ proto.Message) (proto.Message, error) {
			return h(ctx), nil
		}}
	}
	return &Kind{
		Name:        exitKind,
		IdleTimeout: idle,
		New: func(string) any {
			return &exitGrain{exited: exited, exitOnActivate: exitOnActivate, deactivated: deactivated}
		},
		Methods: []Method{
			method(methodExit, func(ctx GrainContext) proto.Message {
				exited <- ctx.Identity()
				goruntime.Goexit()
				return nil
			}),
			method(methodPing, func(ctx GrainContext) proto.Message { return wrapperspb.String(ctx.Identity()) }),
		},
	}
}

// exitCall is a call of the exit kind's method on identity.
func exitCall(method, identity string) Call {
	return Call{Kind: exitKind, Identity: identity, Method: method, Request: wrapperspb.String(""), NewResponse: newString}
}

// TestGoexitInAGrainMethodLetsTheGrainGo: after a method's Goexit, in a
// turn its caller ran or a worker did, the grain serves the next call (it
// restarted, as after a panic), passivates once idle, and a Shutdown
// deactivates it in time. A caller that ran the turn never returns; one
// whose turn a worker ran gets ErrGrainPanic, which names the Goexit; a
// peer whose request the owner served on the goroutine that ran the turn
// gets no reply, and fails at its deadline.
func TestGoexitInAGrainMethodLetsTheGrainGo(t *testing.T) {
	t.Parallel()
	type way struct {
		name     string
		peer     bool // the call comes from another node
		onCaller bool // the turn runs on the call's goroutine, which it ends
		ctx      func(t *testing.T) context.Context
		opts     []CallOption
	}
	withTimeout := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		t.Cleanup(cancel)
		return ctx
	}
	background := func(*testing.T) context.Context { return context.Background() }
	for _, w := range []way{
		{name: "context that never ends", onCaller: true, ctx: background},
		{name: "WithTurnOnCaller", onCaller: true, ctx: withTimeout, opts: []CallOption{WithTurnOnCaller()}},
		{name: "worker", ctx: withTimeout},
		{name: "peer", peer: true, ctx: withTimeout},
	} {
		for _, end := range []string{"passivation", "shutdown"} {
			t.Run(w.name+"/"+end, func(t *testing.T) {
				t.Parallel()
				idle := time.Duration(-1) // stays until Shutdown
				if end == "passivation" {
					idle = 50 * time.Millisecond
				}
				exited, deactivated := make(chan string, 1), make(chan string, 4)
				size := 1
				if w.peer {
					size = 2
				}
				nodes := startCluster(t, size, func(string) []*Kind { return []*Kind{newExitKind(idle, exited, deactivated, nil)} }, func(c *Config) {
					// A deactivation that waits for a call still counted in
					// gives up at DeactivateTimeout: past Shutdown's
					// deadline, so that Shutdown fails if it waits.
					c.DeactivateTimeout = 2 * waitTimeout
				})
				owner, caller := nodes[0], nodes[len(nodes)-1]
				id := ownedInEveryView(t, nodes, owner, exitKind, "exit")

				returned := make(chan error, 1)
				ended := make(chan struct{})
				go func() {
					defer close(ended)
					_, err := caller.Invoke(w.ctx(t), exitCall(methodExit, id), w.opts...)
					returned <- err
				}()
				receive(t, exited, "the method to call runtime.Goexit")
				switch {
				case w.onCaller:
					receive(t, ended, "the caller's goroutine to end")
					select {
					case err := <-returned:
						t.Fatalf("Invoke(Exit) returned %v on a goroutine that the method ended", err)
					default:
					}
				case !w.peer:
					err := receive(t, returned, "the call to fail")
					if !errors.Is(err, ErrGrainPanic) || status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "Goexit") {
						t.Fatalf("Invoke(Exit) = %v; want ErrGrainPanic naming the Goexit", err)
					}
				}

				// The grain restarted and serves, from either node.
				for _, n := range nodes {
					if resp, err := n.Invoke(withTimeout(t), exitCall(methodPing, id)); err != nil || resp.(*wrapperspb.StringValue).GetValue() != id {
						t.Fatalf("Ping through %s after the Goexit = %v, %v", n.Name(), resp, err)
					}
				}
				if end == "shutdown" {
					if err := owner.Shutdown(withTimeout(t)); err != nil {
						t.Fatalf("Shutdown = %v", err)
					}
				}
				if got := receive(t, deactivated, "the grain's "+end); got != id {
					t.Fatalf("%s deactivated; want %s", got, id)
				}
			})
		}
	}
}

// TestGoexitInOnActivateFailsTheActivation: OnActivate runs on the
// goroutine of the call that activates the grain, and a Goexit there ends
// it; the activation fails as if OnActivate had panicked, so that the next
// call activates the grain afresh, and a Shutdown deactivates that one.
func TestGoexitInOnActivateFailsTheActivation(t *testing.T) {
	t.Parallel()
	exited, deactivated := make(chan string, 1), make(chan string, 4)
	exitOnActivate := make(chan struct{}, 1)
	exitOnActivate <- struct{}{} // the first activation's OnActivate exits
	nodes := startCluster(t, 1, func(string) []*Kind {
		return []*Kind{newExitKind(-1, exited, deactivated, exitOnActivate)}
	}, func(c *Config) { c.DeactivateTimeout = 2 * waitTimeout })
	n := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	returned := make(chan error, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_, err := n.Invoke(ctx, exitCall(methodPing, "a"))
		returned <- err
	}()
	receive(t, exited, "OnActivate to call runtime.Goexit")
	receive(t, ended, "the caller's goroutine to end")
	select {
	case err := <-returned:
		t.Fatalf("Invoke(Ping) returned %v on a goroutine that OnActivate ended", err)
	default:
	}

	// Out of the table before the goroutine ended: left in it, without
	// an actor, it crashed the node's next sweep.
	if a := n.acts.peek(actKey{exitKind, "a"}); a != nil {
		t.Fatalf("the failed activation is still in the table (its actor: %v)", a.ref)
	}
	if resp, err := n.Invoke(ctx, exitCall(methodPing, "a")); err != nil || resp.(*wrapperspb.StringValue).GetValue() != "a" {
		t.Fatalf("Ping after the Goexit = %v, %v; want the grain activated afresh", resp, err)
	}
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if got := receive(t, deactivated, "the grain's deactivation"); got != "a" {
		t.Fatalf("%s deactivated; want a", got)
	}
}
