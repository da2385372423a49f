package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// waitTimeout bounds every wait for the cluster to reach a state. It is
// generous because the machine running the tests may be busy; a passing
// test waits only as long as it needs.
const waitTimeout = 20 * time.Second

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// concurrently runs run(c) for c from 0 to callers-1, each on a goroutine
// of its own, all at once, and reports the error of each run that failed.
func concurrently(t testing.TB, callers int, run func(c int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			if err := run(c); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testLogger logs to stderr, prefixed with the test's name: warnings and
// errors, or down to the level CLUSTER_TEST_LOG names ("debug", "info"). It
// does not use t.Log: gossip goroutines may log after the test.
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if v := os.Getenv("CLUSTER_TEST_LOG"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			t.Fatalf("CLUSTER_TEST_LOG: %v", err)
		}
	}
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	return slog.New(h).With("test", t.Name())
}

// testConfig returns a node config for loopback with fast gossip timings.
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.NodeName = strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()) + "-" + cfg.NodeName[strings.LastIndex(cfg.NodeName, "-")+1:]
	cfg.BindAddr = "127.0.0.1:0"
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.Gossip = GossipLocal
	// Each test's cluster apart: tests run in parallel on loopback ports
	// that the kernel hands out again, and the members of one test try to
	// reach a member they saw fail at its address, where another test's
	// node may listen by then (see Config.ClusterName).
	cfg.ClusterName = clusterName(t)
	cfg.Logger = testLogger(t)
	cfg.PassivationInterval = 10 * time.Millisecond
	cfg.DefaultCallTimeout = waitTimeout
	cfg.GrainMaxRestarts = 2
	return cfg
}

// clusterName names the cluster of the nodes of test t: its name, cut to
// what gossip carries.
func clusterName(t testing.TB) string {
	name := t.Name()
	if len(name) > memberlist.LabelMaxSize {
		name = name[len(name)-memberlist.LabelMaxSize:]
	}
	return name
}

// startNode starts a node and closes it when the test ends.
func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.NodeName, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// startFails starts a node that must not start, and returns Start's error.
func startFails(t testing.TB, ctx context.Context, cfg Config) error {
	t.Helper()
	n, err := Start(ctx, cfg)
	if err == nil {
		_ = n.Close()
		t.Fatalf("Start(%s) succeeded", cfg.NodeName)
	}
	return err
}

// startCluster starts size nodes hosting the kinds kindsFor returns for each
// node's name, joined through the first, and waits until every node sees
// all of them alive. configure, if not nil, adjusts each config.
func startCluster(t testing.TB, size int, kindsFor func(name string) []*Kind, configure func(*Config)) []*Node {
	t.Helper()
	nodes := make([]*Node, 0, size)
	for i := range size {
		cfg := testConfig(t)
		cfg.NodeName = fmt.Sprintf("%s-n%d", cfg.NodeName, i)
		if kindsFor != nil {
			cfg.Kinds = kindsFor(cfg.NodeName)
		}
		if configure != nil {
			configure(&cfg)
		}
		if i > 0 {
			cfg.Seeds = []string{nodes[0].GossipAddr()}
		}
		nodes = append(nodes, startNode(t, cfg))
	}
	waitConverged(t, nodes, size)
	return nodes
}

// waitConverged waits until every node sees want alive members.
func waitConverged(t testing.TB, nodes []*Node, want int) {
	t.Helper()
	converged := func() bool {
		for _, n := range nodes {
			if aliveCount(n) != want {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !converged() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %d nodes to see %d alive members; their views:\n%s",
				waitTimeout, len(nodes), want, describeViews(nodes))
		}
		<-tick.C
	}
}

// describeViews writes what each node's view has of each member, for a
// test that timed out waiting for them to agree.
func describeViews(nodes []*Node) string {
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, "%s:", n.Name())
		for _, m := range n.Members() {
			// What says so: serf's status, the member's tags, a stream's
			// (transport.leaves).
			st, leaving := serfStatus(n, m.Name)
			fmt.Fprintf(&b, " %s=%v@%s(serf %v, tag %q, streams %v)", m.Name, m.Status, m.GRPCAddr, st, leaving, n.transport.leaves(&m))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// serfStatus returns what n's serf says of the member named name, and
// its tagLeaving; "none" if serf does not know it.
func serfStatus(n *Node, name string) (serf.MemberStatus, string) {
	for _, sm := range n.serf.Members() {
		if sm.Name == name {
			return sm.Status, sm.Tags[tagLeaving]
		}
	}
	return serf.StatusNone, ""
}

func aliveCount(n *Node) int {
	alive := 0
	for _, m := range n.Members() {
		if m.Status == StatusAlive {
			alive++
		}
	}
	return alive
}

// The test kind: a grain with a running total, methods that fail in every
// way a grain can, and hooks the tests observe.
const (
	echoKind     = "test.Echo"
	methodAdd    = "/test.Echo/Add"    // Int64Value delta → Int64Value total
	methodWhere  = "/test.Echo/Where"  // StringValue → StringValue node name
	methodFail   = "/test.Echo/Fail"   // StringValue "how:msg" → error
	methodBlock  = "/test.Echo/Block"  // StringValue → blocks until released or ctx ends
	methodHold   = "/test.Echo/Hold"   // StringValue → blocks until released, whatever ctx; answers whether ctx had a deadline
	methodString = "/test.Echo/String" // StringValue → StringValue, same value
	methodRelay  = "/test.Echo/Relay"  // StringValue identity → StringValue "kind/identity added: total", via Add on identity
	methodChain  = "/test.Echo/Chain"  // StringValue "b,c" → calls Chain on b with "c"; "" → own identity
	methodKeep   = "/test.Echo/Keep"   // StringValue → same value, after handing its context to hooks.kept
)

// hooks observes one node's grains.
type hooks struct {
	node        string
	news        atomic.Int64      // calls of Kind.New
	deactivated chan string       // identities whose OnDeactivate ran
	entered     chan string       // identities that entered Block
	canceled    chan error        // why Block calls saw their context end
	kept        chan GrainContext // the contexts of Keep calls, kept past them
	release     chan struct{}     // closed by releaseHeld: releases Block and Hold calls
	releaseOnce sync.Once         // releaseHeld's
	activateErr error             // returned by OnActivate when set
}

// releaseHeld releases the Block and Hold calls, now and from now on. It
// may be called more than once: echoCluster calls it again before its
// nodes close, so that a test that fails while a Hold call (which ignores
// its context) runs does not leave the nodes' shutdown waiting for it.
func (h *hooks) releaseHeld() { h.releaseOnce.Do(func() { close(h.release) }) }

func newHooks(node string) *hooks {
	return &hooks{node: node, deactivated: make(chan string, 1024), entered: make(chan string, 1024), canceled: make(chan error, 1024), kept: make(chan GrainContext, 1024), release: make(chan struct{})}
}

type echoGrain struct {
	h        *hooks
	identity string
	total    int64
}

func (g *echoGrain) OnActivate(GrainContext) error { return g.h.activateErr }

func (g *echoGrain) OnDeactivate(ctx GrainContext) error {
	g.h.deactivated <- ctx.Identity()
	return nil
}

func newEchoKind(h *hooks, idle time.Duration) *Kind {
	return &Kind{
		Name:        echoKind,
		IdleTimeout: idle,
		New: func(identity string) any {
			h.news.Add(1)
			return &echoGrain{h: h, identity: identity}
		},
		Methods: []Method{
			echoMethod(methodAdd, newInt64, func(g *echoGrain, _ GrainContext, req proto.Message) (proto.Message, error) {
				g.total += req.(*wrapperspb.Int64Value).GetValue()
				return wrapperspb.Int64(g.total), nil
			}),
			echoMethod(methodWhere, newString, func(g *echoGrain, _ GrainContext, _ proto.Message) (proto.Message, error) {
				return wrapperspb.String(g.h.node), nil
			}),
			echoMethod(methodString, newString, func(_ *echoGrain, _ GrainContext, req proto.Message) (proto.Message, error) {
				return req, nil
			}),
			echoMethod(methodKeep, newString, func(g *echoGrain, ctx GrainContext, req proto.Message) (proto.Message, error) {
				g.h.kept <- ctx
				return req, nil
			}),
			echoMethod(methodFail, newString, func(_ *echoGrain, _ GrainContext, req proto.Message) (proto.Message, error) {
				return fail(req.(*wrapperspb.StringValue).GetValue())
			}),
			echoMethod(methodRelay, newString, func(_ *echoGrain, ctx GrainContext, req proto.Message) (proto.Message, error) {
				resp, err := ctx.Invoke(ctx, addCall(req.(*wrapperspb.StringValue).GetValue(), 1))
				if err != nil {
					return nil, err
				}
				return wrapperspb.String(fmt.Sprintf("%s/%s added: %d", ctx.Kind(), ctx.Identity(), resp.(*wrapperspb.Int64Value).GetValue())), nil
			}),
			echoMethod(methodChain, newString, func(_ *echoGrain, ctx GrainContext, req proto.Message) (proto.Message, error) {
				next, rest, _ := strings.Cut(req.(*wrapperspb.StringValue).GetValue(), ",")
				if next == "" {
					return wrapperspb.String(ctx.Identity()), nil
				}
				return ctx.Invoke(ctx, stringCall(methodChain, next, rest))
			}),
			echoMethod(methodHold, newString, func(g *echoGrain, ctx GrainContext, _ proto.Message) (proto.Message, error) {
				g.h.entered <- ctx.Identity()
				<-g.h.release
				_, ok := ctx.Deadline()
				return wrapperspb.String(fmt.Sprintf("deadline:%t", ok)), nil
			}),
			echoMethod(methodBlock, newString, func(g *echoGrain, ctx GrainContext, _ proto.Message) (proto.Message, error) {
				g.h.entered <- ctx.Identity()
				select {
				case <-g.h.release:
					return wrapperspb.String(g.h.node), nil
				case <-ctx.Done():
					g.h.canceled <- ctx.Err()
					return nil, ctx.Err()
				}
			}),
		},
	}
}

// fail fails the way how says: "status:<code>:<msg>", "plain:<msg>",
// "panic:<msg>", "nil" or "typednil" (a nil *StringValue).
func fail(how string) (proto.Message, error) {
	kind, msg, _ := strings.Cut(how, ":")
	switch kind {
	case "status":
		code, msg, _ := strings.Cut(msg, ":")
		var c codes.Code
		if err := c.UnmarshalJSON([]byte(`"` + code + `"`)); err != nil {
			return nil, err
		}
		return nil, status.Error(c, msg)
	case "plain":
		return nil, errors.New(msg)
	case "panic":
		panic(msg)
	case "nil":
		return nil, nil
	case "typednil":
		return (*wrapperspb.StringValue)(nil), nil
	}
	return wrapperspb.String(how), nil
}

func echoMethod(name string, newReq func() proto.Message, h func(*echoGrain, GrainContext, proto.Message) (proto.Message, error)) Method {
	return grainMethod(name, newReq, h)
}

// grainMethod returns the method name of a test kind whose grains are Gs.
func grainMethod[G any](name string, newReq func() proto.Message, h func(G, GrainContext, proto.Message) (proto.Message, error)) Method {
	return Method{
		Name:       name,
		NewRequest: newReq,
		Handle: func(grain any, ctx GrainContext, req proto.Message) (proto.Message, error) {
			return h(grain.(G), ctx, req)
		},
	}
}

func newInt64() proto.Message  { return new(wrapperspb.Int64Value) }
func newString() proto.Message { return new(wrapperspb.StringValue) }

// call builders for the test kind.
func addCall(identity string, delta int64) Call {
	return Call{Kind: echoKind, Identity: identity, Method: methodAdd, Request: wrapperspb.Int64(delta), NewResponse: newInt64}
}

func stringCall(method, identity, value string) Call {
	return Call{Kind: echoKind, Identity: identity, Method: method, Request: wrapperspb.String(value), NewResponse: newString}
}

// where returns the name of the node that runs identity's grain.
func where(t testing.TB, c Caller, identity string) string {
	t.Helper()
	resp, err := c.Invoke(context.Background(), stringCall(methodWhere, identity, ""))
	if err != nil {
		t.Fatalf("Where(%s): %v", identity, err)
	}
	return resp.(*wrapperspb.StringValue).GetValue()
}

// add adds delta to identity's total and returns the total.
func add(t testing.TB, c Caller, identity string, delta int64) int64 {
	t.Helper()
	return addIn(t, context.Background(), c, identity, delta)
}

// addWithin is add under a deadline of its own, waitTimeout, for tests
// whose DefaultCallTimeout is short: an activation and a call across nodes
// overran 100 ms once in .ci/run (2 cores, -race, every package at once).
func addWithin(t testing.TB, c Caller, identity string, delta int64) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return addIn(t, ctx, c, identity, delta)
}

// addIn is add under ctx.
func addIn(t testing.TB, ctx context.Context, c Caller, identity string, delta int64) int64 {
	t.Helper()
	resp, err := c.Invoke(ctx, addCall(identity, delta))
	if err != nil {
		t.Fatalf("Add(%s, %d): %v", identity, delta, err)
	}
	return resp.(*wrapperspb.Int64Value).GetValue()
}

// echoCluster starts size nodes hosting the test kind and returns them with
// their hooks, by node name.
func echoCluster(t testing.TB, size int, idle time.Duration, configure func(*Config)) ([]*Node, map[string]*hooks) {
	hs := make(map[string]*hooks)
	nodes := startCluster(t, size, func(name string) []*Kind {
		h := newHooks(name)
		hs[name] = h
		return []*Kind{newEchoKind(h, idle)}
	}, configure)
	// Cleanups run last in, first out: this one before the nodes close.
	t.Cleanup(func() {
		for _, h := range hs {
			h.releaseHeld()
		}
	})
	return nodes, hs
}

// identityOwnedBy returns an identity that node owns in every node's view.
func identityOwnedBy(t testing.TB, nodes []*Node, owner *Node) string {
	t.Helper()
	for i := range 10000 {
		id := fmt.Sprintf("grain-%d", i)
		if m, ok := owner.Owner(echoKind, id); ok && m.Name == owner.Name() {
			return id
		}
	}
	t.Fatalf("no identity owned by %s", owner.Name())
	return ""
}

// ownedInEveryView returns an identity of kind, prefix-N, that owner owns
// in every node's view.
func ownedInEveryView(t testing.TB, nodes []*Node, owner *Node, kind, prefix string) string {
	t.Helper()
	owners := make(map[*Node]string, len(nodes))
	for _, n := range nodes {
		owners[n] = owner.Name()
	}
	return placedOn(t, kind, prefix, owners)
}

// placedOn returns an identity of kind, prefix-N, that each node's view
// places on the member named with it.
func placedOn(t testing.TB, kind, prefix string, owners map[*Node]string) string {
	t.Helper()
	for i := range 10000 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		all := true
		for n, owner := range owners {
			m, ok := n.Owner(kind, id)
			all = all && ok && m.Name == owner
		}
		if all {
			return id
		}
	}
	t.Fatalf("no %s identity placed as %v", kind, owners)
	return ""
}

// nodeByName returns the node named name.
func nodeByName(nodes []*Node, name string) *Node {
	for _, n := range nodes {
		if n.Name() == name {
			return n
		}
	}
	return nil
}

// receive waits for a value on ch.
func receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// movingIdentity returns an identity of kind that node a owns while it is
// the only member, and node b once it joins a.
func movingIdentity(kind, a, b string) string {
	both := newPlacement([]Member{
		{Name: a, Kinds: []string{kind}, Status: StatusAlive},
		{Name: b, Kinds: []string{kind}, Status: StatusAlive},
	})
	for i := 0; ; i++ {
		id := fmt.Sprintf("moving-%d", i)
		if m, _ := both.owner(kind, id); m.Name == b {
			return id
		}
	}
}

// holdViews holds n's refreshes until the test ends, as holdView does, and
// returns a function that gives n the view edit makes of its members, as
// a gossip event would: n acts on what changed (see Node.replaceView).
func holdViews(t *testing.T, n *Node) func(edit func([]Member) []Member) {
	t.Helper()
	n.refreshMu.Lock()
	t.Cleanup(n.refreshMu.Unlock)
	return func(edit func([]Member) []Member) {
		n.replaceView(n.viewOf(edit(n.Members())))
	}
}

// withStatus returns an edit for holdViews that gives the named member
// status st.
func withStatus(name string, st MemberStatus) func([]Member) []Member {
	return func(members []Member) []Member {
		for i := range members {
			if members[i].Name == name {
				members[i].Status = st
			}
		}
		return members
	}
}

// holdView stores in n a view of the members edit makes of n's, and keeps
// it until the test ends: n's refreshes wait, so that a late gossip event
// does not replace it.
func holdView(t *testing.T, n *Node, edit func([]Member) []Member) {
	t.Helper()
	n.refreshMu.Lock()
	t.Cleanup(n.refreshMu.Unlock)
	n.view.Store(newPlacement(edit(n.Members())))
}

// ownedNextBy returns an identity of the recorder kind that the member
// named owner owns in view's view of the members, and the one named next
// once owner is gone from it.
func ownedNextBy(t *testing.T, view *Node, owner, next, prefix string) string {
	t.Helper()
	return placedWithout(t, view, recorderKind, prefix, owner, next)
}

// placedWithout returns an identity of kind, prefix-N, that view's view
// places on the member named with, and on the one named without once with
// is gone from it.
func placedWithout(t *testing.T, view *Node, kind, prefix, with, without string) string {
	t.Helper()
	p := view.view.Load()
	for i := range 10000 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if o, _ := p.owner(kind, id); o == nil || o.Name != with {
			continue
		}
		if o, _ := p.ownerExcept(kind, id, with); o != nil && o.Name == without {
			return id
		}
	}
	t.Fatalf("no %s identity placed on %s, and on %s without it", kind, with, without)
	return ""
}

// pauseFirst returns a test hook that, the first time it runs, closes
// reached and waits until resume is closed; it passes through after.
func pauseFirst(reached, resume chan struct{}) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			close(reached)
			<-resume
		})
	}
}
