package cluster

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// TestAStaleGossipLeaveDoesNotMoveAMembersGrains: x's gossip has m
// leaving while m runs and has not begun to leave, as serf does when it
// gives a leave it kept for a name to a start that came after it (see
// memberFromSerf); here x's gossip is told, by a forced leave that m
// never hears of and so cannot refute. x must go on placing m's grains on
// m: one placed elsewhere would be activated beside m's, and a
// FlushManual grain's acknowledged changes lost.
func TestAStaleGossipLeaveDoesNotMoveAMembersGrains(t *testing.T) {
	t.Parallel()
	var cutTo atomic.Pointer[string] // the gossip address x's packets no longer reach
	nodes, _ := echoCluster(t, 2, 0, func(cfg *Config) {
		// The LAN profile's failure detector takes seconds to find m
		// silent, long after the view below is built.
		cfg.Gossip = GossipLAN
		cfg.gossipTransport = func(nt *memberlist.NetTransport) memberlist.NodeAwareTransport {
			return &cutGossip{NetTransport: nt, cut: func(addr string) bool {
				to := cutTo.Load()
				return to != nil && *to == addr
			}}
		}
	})
	x, m := nodes[0], nodes[1]
	id := identityOwnedBy(t, nodes, m)
	to := m.GossipAddr()
	cutTo.Store(&to) // x's leave never reaches m, which would refute it
	go func() { _ = x.serf.RemoveFailedNode(m.Name()) }()
	waitFor(t, waitTimeout, "x's gossip to have m leaving", func() bool {
		st, _ := serfStatus(x, m.Name())
		return st == serf.StatusLeaving
	})

	// The view x builds from what its gossip says now; a refresh would
	// build the same, but the failure detector, finding m silent, may
	// change the gossip's word first.
	var members []Member
	for _, sm := range x.serf.Members() {
		if mm, ok := memberFromSerf(sm); ok {
			members = append(members, mm)
		}
	}
	if st, _ := serfStatus(x, m.Name()); st != serf.StatusLeaving {
		t.Fatalf("x's gossip changed its word on m to %v while the view was built", st)
	}
	x.refreshMu.Lock()
	p := x.viewOf(members)
	x.refreshMu.Unlock()
	if st, _ := p.status(m.Name()); st != StatusAlive {
		t.Errorf("x's view has m %v on its gossip's stale leave, want alive: m's tags do not say it leaves", st)
	}
	if owner, ok := p.owner(echoKind, id); !ok || owner.Name != m.Name() {
		t.Errorf("x's view places m's grain %s on %v, want m", id, owner)
	}
}

// TestALeaversTagsSayItLeavesBeforeItsGossipLeave: a member that has no
// stream to a leaver, and so hears nothing of it there (a gateway hosting
// no kind, which the leaver does not dial), learns that it leaves from its
// tags, set before its gossip leave: here the gossip leave is held, and the
// gateway's view must have the leaver leaving all the same.
func TestALeaversTagsSayItLeavesBeforeItsGossipLeave(t *testing.T) {
	t.Parallel()
	gCfg := testConfig(t)
	gCfg.NodeName += "-gateway"
	g := startNode(t, gCfg)
	lCfg := testConfig(t)
	lCfg.NodeName += "-l"
	lCfg.Kinds = []*Kind{newEchoKind(newHooks(lCfg.NodeName), 0)}
	lCfg.Seeds = []string{g.GossipAddr()}
	leaveHeld, releaseLeave := holdGossipLeave(t, &lCfg)
	l := startNode(t, lCfg)
	waitConverged(t, []*Node{g, l}, 2)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	left := make(chan error, 1)
	go func() { left <- l.Shutdown(ctx) }()
	receive(t, leaveHeld, "l's gossip leave to begin")
	waitFor(t, waitTimeout, "the gateway to see l leaving", func() bool {
		st, _ := g.view.Load().status(l.Name())
		return st == StatusLeaving
	})
	if st, _ := serfStatus(g, l.Name()); st != serf.StatusAlive {
		t.Fatalf("the gateway's gossip has l %v, want alive: l's gossip leave is held", st)
	}
	if g.transport.saidLeaving(l.Name()) {
		t.Fatalf("l said on a stream to the gateway that it leaves; the test needs its tags alone to say it")
	}
	releaseLeave()
	if err := receive(t, left, "l's Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestAFailedMemberWhoseTagsSaidItLeavesIsAwaitedAsALeaver: the gossip
// reports a graceful leaver failed when memberlist's notice that it left
// comes before serf's leave; a member whose tags said it leaves is then
// still a leaver for the hand-off, whose activations wait for its release
// (it commits its grains), even if it never said so on a stream here.
func TestAFailedMemberWhoseTagsSaidItLeavesIsAwaitedAsALeaver(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	s, l := nodes[0], nodes[1]
	for _, tagged := range []bool{false, true} {
		members := s.Members()
		for i := range members {
			if members[i].Name == l.Name() {
				members[i].Status, members[i].leavingTag = StatusFailed, tagged
			}
		}
		s.refreshMu.Lock()
		p := s.viewOf(members)
		s.refreshMu.Unlock()
		m, _ := p.member(l.Name())
		if leave, ok := leaves(m); ok != tagged || ok && !leave {
			t.Errorf("a failed member whose tags say leaving=%t: awaited %t (for its leave %t), want %t", tagged, ok, leave, tagged)
		}
	}
}

// TestAMemberTheGossipFailsWhileItsStreamIsOpenIsHeldAlive: x's gossip
// fails m, which runs and keeps its stream with x open, as memberlist
// does when another member's stale record of m's old start dies (see
// holdFailed); here the gossip between them is cut, the transport not. x
// must go on placing m's grains on m while the stream is open, within its
// grace (an hour here), and have m failed once m is gone.
func TestAMemberTheGossipFailsWhileItsStreamIsOpenIsHeldAlive(t *testing.T) {
	t.Parallel()
	nodes, cut := heldPair(t)
	x, m := nodes[0], nodes[1]
	id := identityOwnedBy(t, nodes, m)
	if got := add(t, x, id, 1); got != 1 { // a stream from x to m
		t.Fatalf("total %d, want 1", got)
	}
	cut.Store(true)
	awaitGossipFailed(t, x, m)
	wantStatus(t, x, m, StatusAlive, "while its stream with m is open")
	if got := add(t, x, id, 1); got != 2 {
		t.Fatalf("total %d, want 2: the grain was activated beside m's", got)
	}
	awaitFailedOnceGone(t, x, m)
}

// TestAMemberTheGossipFailsWithNoStreamIsHeldAliveWhileItAnswers: x's
// gossip fails m, which runs, and x has no stream with m, as when a
// member's stale record of m's old start dies and x never called m (see
// holdFailed); here the gossip between them is cut, the transport not. x
// must dial m, keep it alive in its view while the dial is under way and
// then while the stream it opened is, within its grace (an hour here),
// and place m's grains on m; and have m failed once m is gone.
func TestAMemberTheGossipFailsWithNoStreamIsHeldAliveWhileItAnswers(t *testing.T) {
	t.Parallel()
	nodes, cut := heldPair(t)
	x, m := nodes[0], nodes[1]
	mv, _ := x.view.Load().member(m.Name())
	if x.transport.streamWith(mv) {
		t.Fatal("x has a stream with m before any call: the test needs none")
	}
	cut.Store(true)
	awaitGossipFailed(t, x, m)
	wantStatus(t, x, m, StatusAlive, "while x dials it")
	waitFor(t, waitTimeout, "x's dial to open a stream with m", func() bool {
		return x.transport.streamWith(mv)
	})
	wantStatus(t, x, m, StatusAlive, "while the stream x dialed is open")
	id := identityOwnedBy(t, nodes, m)
	if got := where(t, x, id); got != m.Name() {
		t.Fatalf("x's call to %s ran on %s, want m, which runs", id, got)
	}
	awaitFailedOnceGone(t, x, m)
}

// TestACrashedMemberWithNoStreamIsFailedWhenItsDialFails: m crashes, x has
// no stream with it, and its grace is an hour: x's dial to m fails, and
// x's view must have m failed then, not an hour later.
func TestACrashedMemberWithNoStreamIsFailedWhenItsDialFails(t *testing.T) {
	t.Parallel()
	nodes, _ := heldPair(t)
	x, m := nodes[0], nodes[1]
	_ = m.Close()
	awaitGossipFailed(t, x, m)
	awaitFailedOnceGone(t, x, m)
}

// heldPair starts two nodes whose failed grace is an hour, and returns
// them and a switch that cuts the gossip between them.
func heldPair(t *testing.T) ([]*Node, *atomic.Bool) {
	t.Helper()
	cut := new(atomic.Bool)
	nodes, _ := echoCluster(t, 2, 0, func(cfg *Config) {
		cfg.failedGrace = time.Hour
		cfg.gossipTransport = func(nt *memberlist.NetTransport) memberlist.NodeAwareTransport {
			return &cutGossip{NetTransport: nt, cut: func(string) bool { return cut.Load() }}
		}
	})
	return nodes, cut
}

// awaitGossipFailed waits until x's gossip has m failed.
func awaitGossipFailed(t *testing.T, x, m *Node) {
	t.Helper()
	waitFor(t, waitTimeout, "x's gossip to fail m", func() bool {
		st, _ := serfStatus(x, m.Name())
		return st == serf.StatusFailed
	})
}

// wantStatus refreshes x's view and fails the test unless it has m at st.
func wantStatus(t *testing.T, x, m *Node, want MemberStatus, when string) {
	t.Helper()
	x.refresh()
	if st, _ := x.view.Load().status(m.Name()); st != want {
		t.Fatalf("x's view has m %v %s, want %v", st, when, want)
	}
}

// awaitFailedOnceGone waits until x's view has m failed, m gone.
func awaitFailedOnceGone(t *testing.T, x, m *Node) {
	t.Helper()
	_ = m.Close()
	waitFor(t, waitTimeout, "x to have m failed once m is gone", func() bool {
		x.refresh()
		st, _ := x.view.Load().status(m.Name())
		return st == StatusFailed
	})
}

// TestOnlyAStartTheViewHadAliveIsDialedWhenTheGossipFailsIt: a node whose
// gossip fails a member dials it, and holds it alive meanwhile, only if
// its view had that start alive: a joiner learns of members that failed
// long ago, whose hosts may be gone, and would hold each for the dial's
// time. The member's address here accepts connections and never answers,
// as a hung host's may, so a dial would be under way for the whole test.
func TestOnlyAStartTheViewHadAliveIsDialedWhenTheGossipFailsIt(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 1, 0, func(cfg *Config) { cfg.failedGrace = time.Hour })
	x := nodes[0]
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	start := func(incarnation string, st MemberStatus) Member {
		return Member{Name: "hung", GRPCAddr: lis.Addr().String(), Status: st, incarnation: incarnation}
	}
	holdView(t, x, func(members []Member) []Member { return members }) // without hung; refreshes wait
	if got := x.holdFailed([]Member{start("1", StatusFailed)}); got[0].Status != StatusFailed {
		t.Fatalf("a start failed before x's view had it is %v in x's next view, want failed", got[0].Status)
	}
	x.view.Store(newPlacement(append(x.Members(), start("2", StatusAlive))))
	if got := x.holdFailed([]Member{start("2", StatusFailed)}); got[0].Status != StatusAlive {
		t.Fatalf("a start x's view had alive is %v in x's next view while x dials it, want alive", got[0].Status)
	}
}
