package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// These tests come from an audit of restarts and leaves at once: each
// loses one-way messages through nodes that never fail without its fix.

// sendUntil sends Record(v), v = 0, 1, ..., from a to the identities in
// turn until stop is set, and returns what it sent to each (once done is
// closed) and a count of the messages sent so far.
func sendUntil(a *Node, ids []string, stop *atomic.Bool) (sent map[string][]int64, count *atomic.Int64, done chan struct{}) {
	sent, count, done = make(map[string][]int64), new(atomic.Int64), make(chan struct{})
	go func() {
		defer close(done)
		for v := int64(0); !stop.Load(); v++ {
			id := ids[int(v)%len(ids)]
			if err := a.Send(context.Background(), recordCall(id, v)); err == nil {
				sent[id] = append(sent[id], v)
				count.Add(1)
			}
		}
	}()
	return sent, count, done
}

// waitForProgress waits until got reaches want, and fails the test if got
// stays the same for waitTimeout before that: for a backlog whose size
// the machine's speed sets, which a slow machine takes longer to drain
// but drains all the same, while one that loses messages stops short.
func waitForProgress(t *testing.T, what string, want int, got func() int) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	last, since := -1, time.Now()
	for {
		n := got()
		if n >= want {
			return
		}
		if n != last {
			last, since = n, time.Now()
		}
		if time.Since(since) > waitTimeout {
			t.Fatalf("no progress for %v waiting for %s: %d of %d", waitTimeout, what, n, want)
		}
		<-tick.C
	}
}

// ranOn returns the values that identity's grain ran on the named nodes'
// recorders, sorted.
func ranOn(recs map[string]*recorder, identity string, nodes ...*Node) []int64 {
	var got []int64
	for _, n := range nodes {
		got = append(got, recs[n.Name()].values(identity)...)
	}
	slices.Sort(got)
	return got
}

// TestALeaverForwardsPastACrashedMember crashes B and at once lets C leave
// gracefully, while A sends one-way messages without pause to grains of
// C, half of which go to B once C is gone, half to D. What was sent to B
// is lost with B; but the messages to the grains that go to D never meet
// B, and C and D do not fail: each must run once. C used to dial B again
// for each message for B's grains it forwarded, one at a time, so its
// farewell ran out with thousands of messages for D still in its lanes.
func TestALeaverForwardsPastACrashedMember(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderClusterOf(t, 4, 3, -1, nil)
	b, c, d, a := nodes[0], nodes[1], nodes[2], nodes[3] // a hosts nothing
	p := a.view.Load()
	var toB, toD []string
	for i := 0; len(toB) < 4 || len(toD) < 4; i++ {
		id := fmt.Sprintf("past-%d", i)
		if o, _ := p.owner(recorderKind, id); o.Name != c.Name() {
			continue
		}
		switch o, _ := p.ownerExcept(recorderKind, id, c.Name()); {
		case o.Name == b.Name() && len(toB) < 4:
			toB = append(toB, id)
		case o.Name == d.Name() && len(toD) < 4:
			toD = append(toD, id)
		}
	}
	var stop atomic.Bool
	sent, count, done := sendUntil(a, append(slices.Clone(toB), toD...), &stop)
	waitFor(t, waitTimeout, "messages on their way", func() bool { return len(recs[c.Name()].values(toD[0])) > 50 })
	_ = b.Close()
	if err := c.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "A to see C gone", func() bool {
		st, _ := a.view.Load().status(c.Name())
		return st != StatusAlive
	})
	after := count.Load()
	waitFor(t, waitTimeout, "messages sent after the leave", func() bool { return count.Load() > after+100 })
	stop.Store(true)
	<-done
	for _, id := range toD {
		// A tally that grows with the machine's speed: the wait gives up
		// when the grain stops running them, not at a fixed time.
		waitForProgress(t, fmt.Sprintf("the messages for %s to run", id), len(sent[id]), func() int {
			return len(ranOn(recs, id, c, d))
		})
		if got := ranOn(recs, id, c, d); !slices.Equal(got, sent[id]) {
			t.Errorf("%s (C's, then D's) ran %d of the %d messages sent", id, len(got), len(sent[id]))
		}
	}
}

// TestALeaveAfterAGiveUpInTheSameView lets D's view be one in which a
// forwarded message waited in vain for D to own its grain (as when two
// members join at once: the message then goes on to its owner). In that
// view, C begins to leave and forwards to D, its grain's next owner, a
// message that still reached it: D, which hears of the leave from C before
// its view has it, must wait for the view in which it owns the grain, not
// drop the message because a wait in that view ran out before.
func TestALeaveAfterAGiveUpInTheSameView(t *testing.T) {
	t.Parallel()
	nodes, recs, logs := recorderClusterOf(t, 2, 2, -1, nil)
	c, d := nodes[0], nodes[1]
	fromC := recorderOwnedBy(t, nodes, c, "giveup")
	// C's stream to D, on which C says it leaves.
	if _, err := c.transport.conn(t.Context(), c.view.Load().byName[d.Name()]); err != nil {
		t.Fatal(err)
	}
	// D's view stays one until the test lets it hear of the leave; a
	// fresh one, so that nobody waits for the next yet.
	d.refresh()
	d.refreshMu.Lock()
	release := sync.OnceFunc(d.refreshMu.Unlock)
	// Released before the nodes close, whose membership watchers need it.
	t.Cleanup(release)
	// As if a forwarded message had waited in vain in this view.
	d.gaveUp.Store(d.view.Load())

	left := make(chan error, 1)
	go func() { left <- c.Shutdown(context.Background()) }()
	waitFor(t, waitTimeout, "C to tell D it leaves", func() bool { return d.transport.saidLeaving(c.Name()) })
	sendForwardedRecord(t, c, d, fromC, 2, oneWayForwarded) // as C forwards what still reaches it
	waitFor(t, waitTimeout, "D to wait for a view in which it owns the grain, or drop the message", func() bool {
		d.viewMu.Lock()
		waiting := d.viewNext != nil
		d.viewMu.Unlock()
		return waiting || logs[d.Name()].count("dropped a one-way message", fromC) > 0
	})
	release()
	d.membershipChanged()
	waitValues(t, recs[d.Name()], fromC, []int64{2})
	if err := receive(t, left, "C's Shutdown"); err != nil {
		t.Fatal(err)
	}
}

// TestAMessageForARestartedMembersGrainIsNotDropped gives D a message for
// a grain of B while D's view still has B's crashed process alive (the
// sender's view placed the grain on D). D's forward to B finds nothing
// listening, and the owner without B is D itself, so D waits for a view in
// which it owns the grain. The view that comes has B restarted at a new
// address, owning the grain: the message, never handed to the process that
// failed, goes there instead of being dropped.
func TestAMessageForARestartedMembersGrainIsNotDropped(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderClusterOf(t, 3, 2, -1, nil)
	b, d, s := nodes[0], nodes[1], nodes[2]
	id := recorderOwnedBy(t, nodes, b, "restarted")
	setView := holdViews(t, d) // D keeps B's old process alive in its view
	cfg := b.cfg
	_ = b.Close()
	cfg.BindAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Seeds = []string{s.GossipAddr()}
	cfg.Kinds = []*Kind{newRecorderKind(recs[b.Name()], -1)}
	again := startNode(t, cfg)
	waitFor(t, waitTimeout, "S to see B's new process", func() bool {
		m, ok := memberNamed(s, b.Name())
		return ok && m.Status == StatusAlive && m.GRPCAddr == again.GRPCAddr()
	})
	sendForwardedRecord(t, s, d, id, 7, oneWaySent) // as S would, had its view placed the grain on D
	waitFor(t, waitTimeout, "D to wait for a view in which it owns the grain", func() bool {
		d.viewMu.Lock()
		defer d.viewMu.Unlock()
		return d.viewNext != nil
	})
	restarted, _ := memberNamed(s, b.Name())
	setView(func(members []Member) []Member {
		for i := range members {
			if members[i].Name == restarted.Name {
				members[i] = restarted
			}
		}
		return members
	})
	waitValues(t, recs[b.Name()], id, []int64{7})
}

// TestAStreamThePeerDialedIsUsedAfterAFailedDial remembers a dial to b
// that did not reach it, as when b was not listening yet, and then lets b
// dial this node: the stream b opened is handed out for calls to b at
// once, not refused for the rest of the dial's memory.
func TestAStreamThePeerDialedIsUsedAfterAFailedDial(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	a, b := nodes[0], nodes[1]
	mb := *a.view.Load().byName[b.Name()]
	a.transport.mu.Lock()
	a.transport.unreachable[b.Name()] = failedDial{addr: mb.GRPCAddr, incarnation: mb.incarnation, at: time.Now(),
		err: newError(codes.Unavailable, ErrUnavailable, "cluster: connect to %s: refused", b.Name())}
	a.transport.mu.Unlock()
	if _, err := b.transport.conn(t.Context(), b.view.Load().byName[a.Name()]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "a to take b's stream", func() bool {
		for _, c := range a.transport.openConns() {
			if c.peer == b.Name() {
				return true
			}
		}
		return false
	})
	if _, err := a.transport.conn(t.Context(), &mb); err != nil {
		t.Errorf("a's stream to b, with b's own stream open: %v", err)
	}
}

// TestARefusalAsClosingMakesForwardsWorthAWaitAgain: a peer that refuses a
// stream because its farewell is over is leaving, perhaps before this
// node's view says so; like a peer's leaving hello, the refusal clears a
// give-up recorded in the view, so that what the leaver forwarded is
// waited for rather than dropped.
func TestARefusalAsClosingMakesForwardsWorthAWaitAgain(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	c, d := nodes[0], nodes[1]
	c.transport.mu.Lock()
	c.transport.refusing = true // as at the end of c's farewell
	c.transport.mu.Unlock()
	d.gaveUp.Store(d.view.Load()) // as if a forwarded message had waited in vain in this view
	if _, err := d.transport.conn(t.Context(), d.view.Load().byName[c.Name()]); err == nil {
		t.Fatal("c, refusing streams, took one")
	}
	waitFor(t, waitTimeout, "the refusal to clear D's give-up", func() bool { return d.gaveUp.Load() == nil })
}

// TestAKeptMessageGoesPastAnUnreachableOwner resends a one-way message
// that a retired activation kept, as a deactivation does, from a node
// whose view has the grain's new owner alive though nothing listens at its
// address (a crashed member whose failure the gossip has not brought yet).
// Nothing was handed to that owner: the message goes to the owner without
// it, as a forwarded message does, where it used to be dropped.
func TestAKeptMessageGoesPastAnUnreachableOwner(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderClusterOf(t, 2, 2, -1, nil)
	c, d := nodes[0], nodes[1]
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	crashed := Member{Name: "crashed", GRPCAddr: lis.Addr().String(), Kinds: []string{recorderKind}, Status: StatusAlive}
	_ = lis.Close() // nothing listens there now
	holdView(t, c, func(members []Member) []Member { return append(members, crashed) })
	id := ownedNextBy(t, c, crashed.Name, d.Name(), "kept")
	_, m, err := c.lookup(recorderKind, methodRecord)
	if err != nil {
		t.Fatal(err)
	}
	c.resendOneWay(actKey{recorderKind, id}, newOneWayCall(m, wrapperspb.Int64(4), Metadata{}))
	waitValues(t, recs[d.Name()], id, []int64{4})
}
