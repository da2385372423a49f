package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	goruntime "runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/runtime"
)

// Tests of grain methods and hooks that end their goroutine with
// runtime.Goexit (t.FailNow in a method, or a library's): the grain's actor
// fails as if the method had panicked, and the goroutine ends, whoever's
// it is. When the call's own goroutine ran the turn (a local call whose
// context never ends, one made WithTurnOnCaller), that is the caller's,
// and the call never returns; but the call must not stay counted on the
// activation, which then never passivated, and held a Shutdown until its
// deadline. A peer's request, which the owner runs on the goroutine that
// serves it, is answered all the same, as promptly as after a panic, and
// the other requests of its batch run on. An OnDeactivate that exits is
// deactivated as one that panics. A one-way message, or a reminder's
// firing, whose delivery exits in OnActivate leaves nothing held: the
// goroutine that drained a lane, a forward queue or the deactivations
// hands its work on, and the firing is retried.

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
// whose turn a worker ran gets ErrGrainPanic, which names the Goexit; so
// does a peer whose request the owner served on the goroutine that ran the
// turn, which the Goexit ended: another goroutine sends the reply.
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
				default:
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
// call activates the grain afresh, and a Shutdown deactivates that one. A
// local caller never returns; a peer, whose request the owner served on
// the goroutine that ended, gets ErrGrainPanic, which names the Goexit.
func TestGoexitInOnActivateFailsTheActivation(t *testing.T) {
	t.Parallel()
	for _, way := range []string{"local", "peer"} {
		t.Run(way, func(t *testing.T) {
			t.Parallel()
			exited, deactivated := make(chan string, 1), make(chan string, 4)
			exitOnActivate := make(chan struct{}, 1)
			exitOnActivate <- struct{}{} // the first activation's OnActivate exits
			size := 1
			if way == "peer" {
				size = 2
			}
			nodes := startCluster(t, size, func(string) []*Kind {
				return []*Kind{newExitKind(-1, exited, deactivated, exitOnActivate)}
			}, func(c *Config) { c.DeactivateTimeout = 2 * waitTimeout })
			n, caller := nodes[0], nodes[len(nodes)-1]
			id := ownedInEveryView(t, nodes, n, exitKind, "a")
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()

			returned := make(chan error, 1)
			ended := make(chan struct{})
			go func() {
				defer close(ended)
				_, err := caller.Invoke(ctx, exitCall(methodPing, id))
				returned <- err
			}()
			receive(t, exited, "OnActivate to call runtime.Goexit")
			if way == "local" {
				receive(t, ended, "the caller's goroutine to end")
				select {
				case err := <-returned:
					t.Fatalf("Invoke(Ping) returned %v on a goroutine that OnActivate ended", err)
				default:
				}
			} else if err := receive(t, returned, "the call to fail"); !errors.Is(err, ErrGrainPanic) || status.Code(err) != codes.Internal ||
				!strings.Contains(err.Error(), "Goexit") {
				t.Fatalf("Invoke(Ping) = %v; want ErrGrainPanic naming the Goexit", err)
			}

			// Out of the table before the goroutine ended, or the reply
			// went: left in it, without an actor, it crashed the node's
			// next sweep.
			if a := n.acts.peek(actKey{exitKind, id}); a != nil {
				t.Fatalf("the failed activation is still in the table (its actor: %v)", a.ref)
			}
			if resp, err := caller.Invoke(ctx, exitCall(methodPing, id)); err != nil || resp.(*wrapperspb.StringValue).GetValue() != id {
				t.Fatalf("Ping after the Goexit = %v, %v; want the grain activated afresh", resp, err)
			}
			if err := n.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
			if got := receive(t, deactivated, "the grain's deactivation"); got != id {
				t.Fatalf("%s deactivated; want %s", got, id)
			}
		})
	}
}

// TestGoexitInABatchOfServedRequests sends four requests to the owner in
// one gRPC message, which it serves in turn on one goroutine (see
// servedBatch): the first and the third call Exit, whose Goexit ends the
// goroutine that runs them. Every request must be answered, and promptly:
// each Exit with the ErrGrainPanic a local caller gets, and the Pings
// behind them, including one to the grain whose method exited, which
// restarted, with the grain's identity. A Shutdown then waits for nothing
// that the Goexits left counted in.
func TestGoexitInABatchOfServedRequests(t *testing.T) {
	t.Parallel()
	exited, deactivated := make(chan string, 2), make(chan string, 4)
	nodes := startCluster(t, 2, func(string) []*Kind { return []*Kind{newExitKind(-1, exited, deactivated, nil)} },
		func(c *Config) { c.DeactivateTimeout = 2 * waitTimeout })
	owner := nodes[1]
	x := ownedInEveryView(t, nodes, owner, exitKind, "x")
	y := ownedInEveryView(t, nodes, owner, exitKind, "y")
	z := ownedInEveryView(t, nodes, owner, exitKind, "z")

	request := func(id uint64, method, identity string) frame {
		payload, err := proto.Marshal(wrapperspb.String(""))
		if err != nil {
			t.Fatal(err)
		}
		return frame{typ: frameRequest, id: id, kind: exitKind, identity: identity, method: method, payload: payload}
	}
	reqs := []frame{
		request(1, methodExit, x),
		request(2, methodPing, y),
		request(3, methodExit, z),
		request(4, methodPing, x),
	}
	var batch []byte
	for i := range reqs {
		batch = appendFrame(batch, &reqs[i])
	}
	s := rawStream(t, owner)
	sendBatches(t, s, appendFrame(nil, &frame{typ: frameHello, node: "batcher"}), batch)

	replies := recvReplies(t, s, 1, 2, 3, 4)
	for _, id := range []uint64{1, 3} {
		r := replies[id]
		err := fromWire(r.code, r.message, r.reason)
		want := "cluster: grain " + exitKind + "/" + reqs[id-1].identity + " panicked in " + methodExit + ": " + runtime.ErrGoexit.Error()
		if !errors.Is(err, ErrGrainPanic) || r.code != codes.Internal || r.message != want {
			t.Errorf("reply %d: %v (%v); want ErrGrainPanic: %s", id, err, r.code, want)
		}
	}
	for id, want := range map[uint64]string{2: y, 4: x} {
		var got wrapperspb.StringValue
		if r := replies[id]; r.code != codes.OK {
			t.Errorf("reply %d: %v %s; want %s", id, r.code, r.message, want)
		} else if err := proto.Unmarshal(r.payload, &got); err != nil || got.GetValue() != want {
			t.Errorf("reply %d: %q (%v); want %q", id, got.GetValue(), err, want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := owner.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	for range 3 { // x, y and z
		receive(t, deactivated, "the grains' deactivation")
	}
}

// failingDeactivator is an account whose OnDeactivate changes the balance,
// then panics or, if exit, calls runtime.Goexit.
type failingDeactivator struct {
	account
	exit bool
}

func (d *failingDeactivator) OnDeactivate(ctx GrainContext) error {
	balanceOf(ctx).Value += 1000
	if d.exit {
		goruntime.Goexit()
	}
	panic("OnDeactivate fails")
}

// TestGoexitInOnDeactivateIsHandledAsAPanic: a FlushManual grain whose
// OnDeactivate calls runtime.Goexit is deactivated as one whose hook
// panics: the commit after the hook still runs, without the hook's own
// changes, so that what acknowledged calls left buffered reaches the
// store, though the commit before the hook (Shutdown's) committed nothing;
// and the hook's failure is logged. Passivation commits before it closes
// the grain, and keeps the grain while that commits nothing.
func TestGoexitInOnDeactivateIsHandledAsAPanic(t *testing.T) {
	t.Parallel()
	for _, hook := range []string{"panic", "goexit"} {
		for _, end := range []string{"shutdown", "passivation"} {
			t.Run(hook+"/"+end, func(t *testing.T) {
				t.Parallel()
				idle := time.Duration(-1) // stays until Shutdown
				if end == "passivation" {
					idle = 50 * time.Millisecond
				}
				store := hookedMemstore(t)
				logs := map[string]*logLines{}
				kind := newAccountKind(newBank("n"), manualKind, FlushManual, idle)
				kind.New = func(string) any { return &failingDeactivator{exit: hook == "goexit"} }
				n := startCluster(t, 1, func(string) []*Kind { return []*Kind{kind} }, withLogs(logs, false, func(cfg *Config) {
					cfg.Store = store
				}))[0]
				// The first commit, Shutdown's before the hook or the
				// passivation's, commits nothing; the next ones go through.
				var commits atomic.Int32
				failFirst := func() {
					if commits.Add(1) == 1 {
						store.commitErr.Store(&errNothingCommitted)
					} else {
						store.commitErr.Store(nil)
					}
				}
				store.beforeCommit.Store(&failFirst)
				const id = "d"
				deposit(t, n, manualKind, id, 5)

				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				if end == "shutdown" {
					if err := n.Shutdown(ctx); err != nil {
						t.Fatalf("Shutdown = %v", err)
					}
				} else {
					waitFor(t, waitTimeout, "the passivation", func() bool { return n.acts.count() == 0 })
				}
				if got := storedBalance(t, store.Store, manualKind, id); got != 5 {
					t.Fatalf("stored balance %d after the %s, want the acknowledged deposit of 5 alone", got, end)
				}
				if got := logs[n.Name()].count("in OnDeactivate", "identity="+id); got != 1 {
					t.Fatalf("the hook's failure was logged %d times, want once", got)
				}
			})
		}
	}
}

// methodNote is a method that the tests of one-way messages add to the
// exit kind, since a one-way message has no caller to answer: it tells
// noted the grain's identity (see withNote).
const methodNote = "/test.Exit/Note"

// withNote adds methodNote to kind, an exit kind, telling noted.
func withNote(kind *Kind, noted chan<- string) *Kind {
	kind.Methods = append(kind.Methods, Method{Name: methodNote, NewRequest: newString,
		Handle: func(_ any, ctx GrainContext, _ proto.Message) (proto.Message, error) {
			noted <- ctx.Identity()
			return wrapperspb.String(ctx.Identity()), nil
		}})
	return kind
}

// lanesLetGo reports whether n holds nothing for one-way messages from
// peer that wait for their grains: no request in a lane, no lane, no
// goroutine draining one, and nothing counted against a grain's bound or
// in the transport's busy lanes, which a farewell waits for.
func lanesLetGo(n *Node, peer string) bool {
	drainers, undrained := laneDrainers(n, peer)
	n.laned.mu.Lock()
	laned := len(n.laned.count)
	n.laned.mu.Unlock()
	n.transport.mu.Lock()
	busy := n.transport.busyLanes
	n.transport.mu.Unlock()
	return laneWaiting(n, peer) == 0 && drainers == 0 && undrained == 0 && laned == 0 && busy == 0
}

// TestGoexitInOnActivateOnAPeersOneWayLane: a peer's one-way message to a
// grain that is not active waits in the grain's lane on the owner, and a
// goroutine that drains lanes activates the grain (see conn.drainLane). A
// Goexit in OnActivate ends that goroutine; the activation fails as after
// a panic, and the message is dropped with those that waited behind it
// for the same activation, and logged. The lane goes, and what it counted,
// and the lanes that waited for a drainer are drained all the same: here
// one more than maxLaneDrainers grains, so that one waits for a drainer,
// which the Goexits must hand on. Later messages to the grains that
// exited, and to another, run; the owner shuts down in time.
//
// Before, the lane stayed with nobody to drain it: every later message
// from the peer to the grain joined it and never ran, the lanes that
// waited for a drainer waited for good, and the owner's farewell waited
// for the busy lanes.
func TestGoexitInOnActivateOnAPeersOneWayLane(t *testing.T) {
	t.Parallel()
	const grains = maxLaneDrainers + 1
	// exited has no room: each OnActivate waits until the test takes its
	// Goexit, so that all the lanes are open, and one waits for a drainer.
	exited, deactivated, noted := make(chan string), make(chan string, grains+1), make(chan string, grains+1)
	exitOnActivate := make(chan struct{}, grains)
	for range grains {
		exitOnActivate <- struct{}{} // each grain's first activation exits
	}
	logs := map[string]*logLines{}
	nodes := startCluster(t, 2, func(name string) []*Kind {
		if strings.HasSuffix(name, "-n0") {
			return []*Kind{withNote(newExitKind(-1, exited, deactivated, exitOnActivate), noted)}
		}
		return nil
	}, withLogs(logs, false, func(c *Config) { c.DeactivateTimeout = 2 * waitTimeout }))
	owner, sender := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	send := func(identity string) {
		t.Helper()
		if err := sender.Send(ctx, exitCall(methodNote, identity)); err != nil {
			t.Fatalf("Send(Note to %s) = %v", identity, err)
		}
	}
	id := func(i int) string { return fmt.Sprintf("lane-%d", i) }
	for i := range grains {
		send(id(i))
	}
	send(id(0)) // behind the first, in its lane
	waitFor(t, waitTimeout, "every message in a lane, and a lane waiting for a drainer", func() bool {
		drainers, undrained := laneDrainers(owner, sender.Name())
		return laneWaiting(owner, sender.Name()) == grains+1 && drainers == maxLaneDrainers && undrained == 1
	})
	for range grains {
		receive(t, exited, "an OnActivate to call runtime.Goexit")
	}
	waitFor(t, waitTimeout, "the owner to let go of the lanes", func() bool { return lanesLetGo(owner, sender.Name()) })
	l := logs[owner.Name()]
	waitFor(t, waitTimeout, "the owner to log the messages it dropped", func() bool { return undeliveredLogged(l) >= grains+1 })
	if got := undeliveredLogged(l); got != grains+1 {
		t.Errorf("the owner logged %d messages dropped, want %d:\n%s", got, grains+1, logText(l))
	}
	if got := l.count("dropped a one-way message", "panicked in "+methodNote, runtime.ErrGoexit.Error()); got == 0 {
		t.Errorf("no line says a message was dropped for a Goexit:\n%s", logText(l))
	}
	if got := l.count("called runtime.Goexit while activating"); got != grains {
		t.Errorf("the owner logged %d Goexits while activating, want %d", got, grains)
	}

	// Later messages run: to each grain, activated afresh, and to another.
	for i := range grains + 1 {
		send(id(i))
	}
	ran := map[string]bool{}
	for range grains + 1 {
		ran[receive(t, noted, "a later message to run")] = true
	}
	if len(ran) != grains+1 {
		t.Fatalf("later messages ran on %d grains, want %d", len(ran), grains+1)
	}
	waitFor(t, waitTimeout, "the owner to let go of the lanes", func() bool { return lanesLetGo(owner, sender.Name()) })
	if err := owner.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	for range grains + 1 {
		receive(t, deactivated, "the grains' deactivation")
	}
}

// TestGoexitInOnActivateOnALocalSend: Send to a grain of this node that is
// not active activates it on the sender's goroutine (see Node.sendLocal),
// as a call does, and a Goexit in OnActivate ends that goroutine: Send
// never returns. It holds nothing: the activation fails as after a panic
// (logged), the next message activates the grain afresh and runs, as do
// messages to other grains, and Shutdown waits for nothing the Goexit left.
func TestGoexitInOnActivateOnALocalSend(t *testing.T) {
	t.Parallel()
	exited, deactivated, noted := make(chan string, 1), make(chan string, 2), make(chan string, 2)
	exitOnActivate := make(chan struct{}, 1)
	exitOnActivate <- struct{}{} // the first activation exits
	logs := map[string]*logLines{}
	n := startCluster(t, 1, func(string) []*Kind {
		return []*Kind{withNote(newExitKind(-1, exited, deactivated, exitOnActivate), noted)}
	}, withLogs(logs, false, func(c *Config) { c.DeactivateTimeout = 2 * waitTimeout }))[0]
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	returned := make(chan error, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		returned <- n.Send(ctx, exitCall(methodNote, "a"))
	}()
	receive(t, exited, "OnActivate to call runtime.Goexit")
	receive(t, ended, "the sender's goroutine to end")
	select {
	case err := <-returned:
		t.Fatalf("Send returned %v on a goroutine that OnActivate ended", err)
	default:
	}
	if got := logs[n.Name()].count("called runtime.Goexit while activating", "identity=a"); got != 1 {
		t.Errorf("the Goexit was logged %d times, want once", got)
	}

	for _, id := range []string{"a", "b"} {
		if err := n.Send(ctx, exitCall(methodNote, id)); err != nil {
			t.Fatalf("Send(Note to %s) after the Goexit = %v", id, err)
		}
		if got := receive(t, noted, "the message to "+id+" to run"); got != id {
			t.Fatalf("the message to %s ran on %s", id, got)
		}
	}
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	for range 2 {
		receive(t, deactivated, "the grains' deactivation")
	}
}

// exitingAccount is an account whose OnActivate and OnReminder call
// runtime.Goexit once for each token in theirs.
type exitingAccount struct {
	account
	onActivate, onReminder <-chan struct{}
}

// exitIfAsked calls runtime.Goexit if tokens holds one, taking it.
func exitIfAsked(tokens <-chan struct{}) {
	select {
	case <-tokens:
		goruntime.Goexit()
	default:
	}
}

func (a *exitingAccount) OnActivate(GrainContext) error {
	exitIfAsked(a.onActivate)
	return nil
}

func (a *exitingAccount) OnReminder(ctx GrainContext, name string) error {
	exitIfAsked(a.onReminder)
	return a.account.OnReminder(ctx, name)
}

// TestGoexitWhileARemindersFiringIsRetried: a reminder's firing activates
// its grain on the scheduler's goroutine that fires it (see
// Node.fireReminder), and a Goexit in OnActivate ends that goroutine; the
// scheduler takes it for a failed firing (see reminder.Scheduler.exited)
// and fires the reminder again after its backoff, when it reaches the
// grain, activated afresh. OnReminder runs on a worker, whose Goexit fails
// the firing as a panic does, with the same outcome. Either is logged, a
// reminder of another grain fires all the same, and Shutdown waits for
// nothing the Goexit left. Before, a Goexit in OnActivate left the firing
// marked running for good: the reminder never fired again on the node.
func TestGoexitWhileARemindersFiringIsRetried(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"OnActivate", "OnReminder"} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			store := hookedMemstore(t)
			onActivate, onReminder := make(chan struct{}, 1), make(chan struct{}, 1)
			if in == "OnActivate" {
				onActivate <- struct{}{}
			} else {
				onReminder <- struct{}{}
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			// Due before the node starts: its first listing fires them.
			for _, id := range []string{"x", "y"} {
				if err := store.SaveReminder(ctx, storage.Reminder{Grain: storage.Key{Kind: accountKind, Identity: id},
					Name: "wake", Due: time.Now()}); err != nil {
					t.Fatal(err)
				}
			}
			b := newBank("n")
			kind := newAccountKind(b, accountKind, FlushAfterCall, -1)
			kind.New = func(identity string) any {
				if identity == "x" {
					return &exitingAccount{account: account{b: b}, onActivate: onActivate, onReminder: onReminder}
				}
				return &account{b: b}
			}
			logs := map[string]*logLines{}
			n := startCluster(t, 1, func(string) []*Kind { return []*Kind{kind} }, withLogs(logs, false, func(c *Config) {
				c.Store = store
				c.reminderRetryBackoff = 10 * time.Millisecond
			}))[0]

			fired := map[string]bool{}
			for range 2 {
				fired[receive(t, b.reminded, "a reminder to fire")] = true
			}
			if !fired["n x wake"] || !fired["n y wake"] {
				t.Fatalf("fired %v; want wake of x, retried after the Goexit, and of y", fired)
			}
			waitFor(t, waitTimeout, "the one-shot reminders to leave the store", func() bool {
				rs, err := store.ListReminders(ctx, accountKind)
				return err == nil && len(rs) == 0
			})
			l := logs[n.Name()]
			want := "called runtime.Goexit while activating"
			if in == "OnReminder" {
				want = runtime.ErrGoexit.Error()
			}
			if got := l.count(want, "identity=x"); got != 1 {
				t.Errorf("the Goexit in %s was logged %d times, want once:\n%s", in, got, logText(l))
			}
			if got := l.count("reminder: fire failed; retrying", "Goexit"); got != 1 {
				t.Errorf("the failed firing was logged %d times, want once:\n%s", got, logText(l))
			}
			if err := n.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
		})
	}
}

// TestGoexitInOnActivateOnAForwardQueue: a node forwards a peer's one-way
// messages for a grain its view places on another member, through that
// member's forward queue; a message whose grain the node's view places on
// the node itself by the time it leaves the queue is delivered here, on
// the queue's goroutine, which activates the grain (see
// forwardQueues.drain). A Goexit in OnActivate ends that goroutine: the
// message is dropped and logged, and the rest of the queue goes on, on a
// new goroutine; the queue then goes, and the node shuts down in time.
// Before, the queue stayed, drained by nobody: the messages behind, and
// every later one forwarded to that member, waited there for good, and
// the farewell waited for them.
func TestGoexitInOnActivateOnAForwardQueue(t *testing.T) {
	t.Parallel()
	exited, deactivated, noted := make(chan string, 1), make(chan string, 1), make(chan string, 1)
	exitOnActivate := make(chan struct{}, 1)
	exitOnActivate <- struct{}{} // the first activation exits
	forwarding, forward := make(chan struct{}), make(chan struct{})
	logs := map[string]*logLines{}
	nodes := startCluster(t, 2, func(name string) []*Kind {
		if strings.HasSuffix(name, "-n0") {
			return []*Kind{withNote(newExitKind(-1, exited, deactivated, exitOnActivate), noted)}
		}
		return nil
	}, withLogs(logs, false, func(c *Config) {
		c.DeactivateTimeout = 2 * waitTimeout
		if strings.HasSuffix(c.NodeName, "-n0") {
			// The first forward waits until the view no longer has the
			// member it goes to.
			c.forwarding = pauseFirst(forwarding, forward)
		}
	}))
	receiver, sender := nodes[0], nodes[1]
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	// The receiver's view has a member, ghost, that owns the grain; the
	// sender's does not, and sends the messages to the receiver. The
	// views stay until the test gives them back (or ends).
	receiver.refreshMu.Lock()
	held := true
	t.Cleanup(func() {
		if held {
			receiver.refreshMu.Unlock()
		}
	})
	setView := func(edit func([]Member) []Member) { receiver.replaceView(receiver.viewOf(edit(receiver.Members()))) }
	setView(func(members []Member) []Member {
		return append(members, Member{Name: "ghost", GRPCAddr: unreachable, Kinds: []string{exitKind}, Status: StatusAlive})
	})
	id := placedWithout(t, receiver, exitKind, "fwd", "ghost", receiver.Name())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for range 2 {
		if err := sender.Send(ctx, exitCall(methodNote, id)); err != nil {
			t.Fatalf("Send = %v", err)
		}
	}
	receive(t, forwarding, "the forward of the first message")
	waitFor(t, waitTimeout, "the second message in the forward queue", func() bool {
		msgs, _ := forwardQueued(receiver, "ghost")
		return msgs == 1
	})
	setView(func(members []Member) []Member {
		return slices.DeleteFunc(members, func(m Member) bool { return m.Name == "ghost" })
	})
	receiver.refreshMu.Unlock()
	held = false
	close(forward)

	receive(t, exited, "OnActivate to call runtime.Goexit")
	if got := receive(t, noted, "the second message to run"); got != id {
		t.Fatalf("the second message ran on %s, want %s", got, id)
	}
	waitFor(t, waitTimeout, "the forward queue to go", func() bool {
		receiver.forwards.mu.Lock()
		_, queued := receiver.forwards.queues["ghost"]
		receiver.forwards.mu.Unlock()
		return !queued && lanesLetGo(receiver, sender.Name())
	})
	l := logs[receiver.Name()]
	waitFor(t, waitTimeout, "the receiver to log the message it dropped", func() bool {
		return l.count("dropped a one-way message", "identity="+id, runtime.ErrGoexit.Error()) == 1
	})
	if got := l.count("called runtime.Goexit while activating", "identity="+id); got != 1 {
		t.Errorf("the Goexit was logged %d times, want once", got)
	}
	if err := receiver.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	receive(t, deactivated, "the grain's deactivation")
}

// TestGoexitInOnActivateOfALeftoverMessage: one-way messages that reach a
// grain's actor after its OnDeactivate are sent on to its next activation
// by the goroutine that deactivated it, a deactivator, once the actor has
// stopped (see activations.sendLeftovers); here the grain stays on this
// node, and the first of them activates it on that goroutine. A Goexit in
// OnActivate ends the deactivator: the message is dropped and logged, and
// a new deactivator sends the second on, which runs, and counts the
// deactivation out, so that Shutdown is prompt. Before, the second was
// lost, and Shutdown waited for the deactivation until its deadline.
func TestGoexitInOnActivateOfALeftoverMessage(t *testing.T) {
	t.Parallel()
	// deactivated has no room: OnDeactivate waits until the test takes it.
	exited, deactivated, noted := make(chan string, 1), make(chan string), make(chan string, 2)
	exitOnActivate := make(chan struct{}, 1)
	logs := map[string]*logLines{}
	n := startCluster(t, 1, func(string) []*Kind {
		return []*Kind{withNote(newExitKind(-1, exited, deactivated, exitOnActivate), noted)}
	}, withLogs(logs, false, func(c *Config) {
		c.DeactivateTimeout = 2 * waitTimeout
		c.PassivationInterval = time.Hour // only the test deactivates
	}))[0]
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	const id = "left"
	if err := n.Send(ctx, exitCall(methodNote, id)); err != nil {
		t.Fatal(err)
	}
	receive(t, noted, "the first activation's message")
	hk, m, err := n.lookup(exitKind, methodNote)
	if err != nil {
		t.Fatal(err)
	}
	a := n.readyActivation(hk, id) // counted in, as a stream's reader is
	if a == nil {
		t.Fatal("no ready activation after its message ran")
	}
	n.acts.retire(a)
	waitFor(t, waitTimeout, "the deactivation's turn to begin", func() bool { return a.flags.Load()&deactivatedFlag != 0 })
	var batch runtime.Batch
	for range 2 { // behind the deactivation: kept for the next activation
		if err := batch.Add(a.ref, newOneWayCall(m, wrapperspb.String(""), Metadata{})); err != nil {
			t.Fatal(err)
		}
	}
	batch.Flush()
	n.acts.release(a)
	exitOnActivate <- struct{}{} // the next activation exits
	if got := receive(t, deactivated, "OnDeactivate"); got != id {
		t.Fatalf("%s deactivated, want %s", got, id)
	}

	receive(t, exited, "the next activation's OnActivate to call runtime.Goexit")
	if got := receive(t, noted, "the second message to run"); got != id {
		t.Fatalf("the second message ran on %s, want %s", got, id)
	}
	l := logs[n.Name()]
	waitFor(t, waitTimeout, "the message dropped to be logged", func() bool {
		return l.count("dropped a one-way message", "identity="+id, runtime.ErrGoexit.Error()) == 1
	})
	if got := l.count("called runtime.Goexit while activating", "identity="+id); got != 1 {
		t.Errorf("the Goexit was logged %d times, want once", got)
	}
	shut := make(chan error, 1)
	go func() { shut <- n.Shutdown(ctx) }()
	if got := receive(t, deactivated, "the grain's deactivation"); got != id {
		t.Fatalf("%s deactivated, want %s", got, id)
	}
	if err := receive(t, shut, "Shutdown"); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
}
