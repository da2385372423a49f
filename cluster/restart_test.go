package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage/memstore"
)

// TestANodeRestartedUnderItsNameRejoins restarts a member under its name
// (a fixed NodeName, as a StatefulSet's): after a crash, on new addresses
// at once or once the others saw it failed, or on its old ones; after a
// hang; and after a graceful leave, on new addresses or its old ones.
// Start returns once the node is a member again.
//
// Serf's vote on the name conflict used to shut the restarted node's
// gossip down when it came back before its old incarnation was declared
// failed, and memberlist would not give a failed member's name to a new
// address until it forgot the old one.
func TestANodeRestartedUnderItsNameRejoins(t *testing.T) {
	t.Parallel()
	leave := func(t *testing.T, victim *Node, _ []*Node) {
		if err := victim.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		stop func(t *testing.T, victim *Node, others []*Node)
		// claim is whether the restarted node had to claim its name (see
		// nameClaim): "needed" while the old incarnation is alive in the
		// others' views (it takes them over a second to declare it
		// failed, the restart milliseconds), "never" after a leave, and
		// "either" once it is failed, as the join itself may hand the
		// name over.
		claim string
		// sameAddrs restarts the node on its old ports: the others then
		// see the same member, with a higher incarnation.
		sameAddrs bool
	}{
		{"crashed", func(t *testing.T, victim *Node, _ []*Node) { _ = victim.Close() }, "needed", false},
		{"crashed, back at its addresses", func(t *testing.T, victim *Node, _ []*Node) { _ = victim.Close() }, "never", true},
		{"crashed and seen failed", func(t *testing.T, victim *Node, others []*Node) {
			_ = victim.Close()
			waitFor(t, waitTimeout, "the others to see the crashed member failed", func() bool {
				for _, n := range others {
					if st, _ := n.view.Load().status(victim.Name()); st != StatusFailed {
						return false
					}
				}
				return true
			})
		}, "either", false},
		{"hung", func(t *testing.T, victim *Node, _ []*Node) {
			// Its gossip stops, its transport goes on answering: the
			// streams to it stay open, and only its new address tells
			// them from the new incarnation's (see Node.dropMoved).
			if err := victim.serf.Shutdown(); err != nil {
				t.Fatal(err)
			}
		}, "needed", false},
		{"left", leave, "never", false},
		{"left, back at its addresses", leave, "never", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes, _ := echoCluster(t, 3, 0, nil)
			victim, others := nodes[1], []*Node{nodes[0], nodes[2]}
			id := identityOwnedBy(t, nodes, victim)
			add(t, nodes[0], id, 3)
			oldAddr, oldGossip := victim.GRPCAddr(), victim.GossipAddr()
			cfg := victim.cfg
			tc.stop(t, victim, others)

			cfg.BindAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
			if tc.sameAddrs {
				cfg.BindAddr, cfg.GRPCAddr = oldGossip, oldAddr
			}
			cfg.Seeds = []string{nodes[0].GossipAddr()}
			again := startNode(t, cfg)
			if (again.GRPCAddr() == oldAddr) != tc.sameAddrs {
				t.Fatalf("the restarted node listens at %s, its old address %s", again.GRPCAddr(), oldAddr)
			}
			waitFor(t, waitTimeout, "every node to see the restarted one at its new address", func() bool {
				for _, n := range append(others, again) {
					if m, ok := memberNamed(n, cfg.NodeName); !ok || m.Status != StatusAlive || m.GRPCAddr != again.GRPCAddr() {
						return false
					}
				}
				return true
			})
			switch rounds := again.claim.rounds.Load(); {
			case tc.claim == "needed" && rounds == 0:
				t.Error("the restarted node joined without claiming its name from the old incarnation")
			case tc.claim == "never" && rounds > 0:
				t.Errorf("the restarted node made %d claim rounds for a name that was free", rounds)
			}
			// The grain lived in the old incarnation's memory: the restarted
			// node serves it anew, for callers anywhere.
			if got := add(t, nodes[0], id, 1); got != 1 {
				t.Errorf("total = %d from a peer, want 1 (a fresh activation)", got)
			}
			if got := where(t, nodes[2], id); got != cfg.NodeName {
				t.Errorf("%s answered from %s, want the restarted %s", id, got, cfg.NodeName)
			}
			if got := add(t, again, id, 1); got != 2 {
				t.Errorf("total = %d from the restarted node, want 2", got)
			}
			if got := add(t, again, identityOwnedBy(t, nodes, nodes[2]), 5); got != 5 {
				t.Errorf("call from the restarted node to a peer's grain: total = %d, want 5", got)
			}
		})
	}
}

// TestASecondNodeUnderANameInUseIsNotAdmitted starts a node under the name
// of a member that is alive, joining through another member, through that
// one, or through both: its Start fails with ErrNameInUse, and the cluster
// keeps the member it knows, with its grains.
func TestASecondNodeUnderANameInUseIsNotAdmitted(t *testing.T) {
	t.Parallel()
	for _, seeds := range [][]int{{0}, {1}, {0, 1}} {
		t.Run(fmt.Sprint("through ", seeds), func(t *testing.T) {
			t.Parallel()
			nodes, _ := echoCluster(t, 3, 0, nil)
			original := nodes[1]
			id := identityOwnedBy(t, nodes, original)
			add(t, nodes[0], id, 3)

			cfg := original.cfg
			cfg.BindAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
			cfg.Seeds = nil
			for _, i := range seeds {
				cfg.Seeds = append(cfg.Seeds, nodes[i].GossipAddr())
			}
			// The start's context outlasts the claim's patience (12.3 s
			// in the GossipLocal profile): Start gives up by itself.
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if err := startFails(t, ctx, cfg); !errors.Is(err, ErrNameInUse) || ctx.Err() != nil {
				t.Fatalf("Start: %v, want ErrNameInUse before the context ended", err)
			}
			for _, n := range nodes {
				if m, ok := memberNamed(n, cfg.NodeName); !ok || m.Status != StatusAlive || m.GRPCAddr != original.GRPCAddr() {
					t.Errorf("%s sees %s as %+v, want alive at the original's %s", n.Name(), cfg.NodeName, m, original.GRPCAddr())
				}
			}
			if got := add(t, nodes[0], id, 1); got != 4 {
				t.Errorf("total = %d, want 4: the original keeps its grains", got)
			}
		})
	}
	t.Run("the start's context ends first", func(t *testing.T) {
		t.Parallel()
		nodes, _ := echoCluster(t, 2, 0, nil)
		cfg := nodes[1].cfg
		cfg.BindAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Seeds = []string{nodes[0].GossipAddr()}
		// Shorter than the claim's patience, and long enough for the join.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := startFails(t, ctx, cfg); !errors.Is(err, ErrNameInUse) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Start: %v, want ErrNameInUse and the context's error", err)
		}
	})
}

// memberNamed returns the member named name in n's view.
func memberNamed(n *Node, name string) (Member, bool) {
	for _, m := range n.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// TestSerfConfigLetsARestartedNodeTakeItsName checks the two settings the
// restart test above cannot tell from timing alone: without the reclaim
// time a restarted node is still admitted, once memberlist forgets the old
// incarnation (15 s later in the GossipLocal profile).
func TestSerfConfigLetsARestartedNodeTakeItsName(t *testing.T) {
	t.Parallel()
	for _, profile := range []GossipProfile{GossipLAN, GossipWAN, GossipLocal} {
		cfg := testConfig(t)
		cfg.Gossip = profile
		n := &Node{name: cfg.NodeName}
		sc, err := newSerfConfig(&cfg, nil, nil, nil, &n.claim)
		if err != nil {
			t.Fatal(err)
		}
		if sc.EnableNameConflictResolution {
			t.Errorf("%v: serf's vote on name conflicts is on: the loser's gossip shuts down under a running node", profile)
		}
		if d := sc.MemberlistConfig.DeadNodeReclaimTime; d <= 0 || d >= sc.MemberlistConfig.ProbeInterval {
			t.Errorf("%v: DeadNodeReclaimTime = %v, want a failed member's name free at once", profile, d)
		}
		if sc.Merge != &n.claim {
			t.Errorf("%v: serf's merge delegate is %v, want the node's name claim", profile, sc.Merge)
		}
	}
}

// TestAStreamToAnEarlierIncarnationIsNotHandedOut gives a node views in
// which a member it has a stream to restarted at a new address (the third
// node's, which stands in for the new incarnation). The old incarnation
// may hang with its sockets open: the stream to it must not take calls
// placed on the new one.
func TestAStreamToAnEarlierIncarnationIsNotHandedOut(t *testing.T) {
	t.Parallel()
	// within bounds a subtest's waits for a stream. Each subtest makes its
	// own: the parallel subtests run after this function returns, once a
	// slot is free, which may be long after it began.
	within := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		t.Cleanup(cancel)
		return ctx
	}
	moved := func(name, addr string) func([]Member) []Member {
		return func(members []Member) []Member {
			for i := range members {
				if members[i].Name == name {
					members[i].GRPCAddr = addr
				}
			}
			return members
		}
	}
	// streamTo returns a's stream to member m as a's view has it.
	streamTo := func(t *testing.T, a *Node, m Member) *conn {
		t.Helper()
		c, err := a.transport.conn(within(t), &m)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// setup starts three nodes, a, b and c, and returns them with a's
	// view of b and a's stream to it.
	setup := func(t *testing.T) (a, b, c *Node, before Member, old *conn) {
		t.Helper()
		nodes, _ := echoCluster(t, 3, 0, nil)
		a, b, c = nodes[0], nodes[1], nodes[2]
		before = *a.view.Load().byName[b.Name()]
		return a, b, c, before, streamTo(t, a, before)
	}
	t.Run("the view changes", func(t *testing.T) {
		t.Parallel()
		a, b, c, before, old := setup(t)
		if old.addr != b.GRPCAddr() {
			t.Fatalf("a dialed stream is at %q, want %s", old.addr, b.GRPCAddr())
		}
		holdViews(t, a)(moved(b.Name(), c.GRPCAddr()))
		receive(t, old.done, "the stream to the earlier incarnation to close")
		fresh := streamTo(t, a, *a.view.Load().byName[b.Name()])
		if fresh.addr != c.GRPCAddr() {
			t.Errorf("the stream handed out is at %q, want the new address %s", fresh.addr, c.GRPCAddr())
		}
		if _, err := a.transport.conn(within(t), &before); !errors.Is(err, ErrUnavailable) {
			t.Errorf("a stream for the member as an older view has it: %v, want ErrUnavailable", err)
		}
		if isDone(fresh.done) {
			t.Error("a caller with an older view closed the stream to the new incarnation")
		}
	})
	t.Run("a call comes first", func(t *testing.T) {
		// The view is stored without acting on the change (a caller that
		// reads it before dropMoved runs): the transport itself must not
		// hand out the old stream.
		t.Parallel()
		a, b, c, _, old := setup(t)
		holdView(t, a, moved(b.Name(), c.GRPCAddr()))
		fresh := streamTo(t, a, *a.view.Load().byName[b.Name()])
		if fresh == old || fresh.addr != c.GRPCAddr() {
			t.Errorf("the stream handed out is at %q, want a new one at %s", fresh.addr, c.GRPCAddr())
		}
		receive(t, old.done, "the stream to the earlier incarnation to close")
	})
	t.Run("the acceptor learns the address", func(t *testing.T) {
		t.Parallel()
		nodes, _ := echoCluster(t, 2, 0, nil)
		a, b := nodes[0], nodes[1]
		if _, err := a.transport.conn(within(t), a.view.Load().byName[b.Name()]); err != nil {
			t.Fatal(err)
		}
		var accepted *conn
		waitFor(t, waitTimeout, "the acceptor's stream from a", func() bool {
			for _, c := range b.transport.openConns() {
				if c.peer == a.Name() && c.cc == nil {
					accepted = c
				}
			}
			return accepted != nil
		})
		if accepted.addr != a.GRPCAddr() {
			t.Errorf("the acceptor has a's stream at %q, want %s", accepted.addr, a.GRPCAddr())
		}
	})
	t.Run("a peer too old to say its address", func(t *testing.T) {
		// Its stream counts as at any address, as every stream did
		// before: handed out for the member wherever the view has it,
		// and closed with the member at any address.
		t.Parallel()
		nodes, _ := echoCluster(t, 1, 0, nil)
		b := nodes[0]
		sendBatches(t, rawStream(t, b), appendFrame(nil, &frame{typ: frameHello, node: "old-peer"}))
		var accepted *conn
		waitFor(t, waitTimeout, "the acceptor's stream from the old peer", func() bool {
			for _, c := range b.transport.openConns() {
				if c.peer == "old-peer" {
					accepted = c
				}
			}
			return accepted != nil
		})
		if accepted.addr != "" || !accepted.at("10.0.0.7:7947") {
			t.Errorf("the old peer's stream is at %q, want no address, which matches any", accepted.addr)
		}
		b.transport.dropPeer("old-peer", "10.0.0.7:7947")
		receive(t, accepted.done, "the old peer's stream to close with the member")
	})
}

// TestARestartedNodeIsANewClient restarts a caller under its name (its
// config without a ClientID, as a user's would be): its calls, numbered
// from 1 again, must run rather than be taken for retries of the old
// process's calls, whose replies the grain recorded.
func TestARestartedNodeIsANewClient(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	var configs []Config
	nodes, _ := bankCluster(t, 2, store, -1, func(cfg *Config) { configs = append(configs, *cfg) })
	owner, caller := nodes[0], nodes[1]
	id := accountOwnedBy(t, owner, accountKind, "restarted-client")
	for i := range 3 {
		if got := deposit(t, caller, accountKind, id, 5); got != int64(5*(i+1)) {
			t.Fatalf("deposit %d: balance %d, want %d", i+1, got, 5*(i+1))
		}
	}
	_ = caller.Close()

	cfg := configs[1]
	cfg.BindAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Seeds = []string{owner.GossipAddr()}
	again := startNode(t, cfg)
	if again.clientID == caller.clientID {
		t.Fatalf("the restarted node stamps its calls as %q, as before", again.clientID)
	}
	if got := deposit(t, again, accountKind, id, 5); got != 20 {
		t.Errorf("the restarted node's first deposit: balance %d, want 20", got)
	}
}

// TestALaggingViewKeepsTheStreamOfARestartedMember restarts a member under
// its name while another member's view still has its first start, alive at
// its old address. The restarted member's stream to that peer says in its
// hello which start it replaced: the peer hands it out for calls to the
// member, where it used to take it for the old start's and close it, which
// failed the calls in flight on it both ways (a call from the restarted
// member ran twice when retried).
func TestALaggingViewKeepsTheStreamOfARestartedMember(t *testing.T) {
	t.Parallel()
	nodes, hooks := echoCluster(t, 3, 0, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]
	first := *a.view.Load().byName[b.Name()]
	// a's view keeps b's first start until the test ends.
	holdView(t, a, func(members []Member) []Member { return members })
	cfg := b.cfg
	_ = b.Close()
	waitFor(t, waitTimeout, "a's streams to b's first start to close", func() bool {
		for _, s := range a.transport.openConns() {
			if s.peer == b.Name() {
				return false
			}
		}
		return true
	})
	cfg.BindAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Seeds = []string{c.GossipAddr()}
	// The restarted member's activation of "owned" below waits for a's
	// release of the grains it took, which a's held view never gives:
	// the wait ends at this bound (see handoffs), sooner than the
	// default's 10 s.
	cfg.DeactivateTimeout = time.Second
	again := startNode(t, cfg)
	if m := *a.view.Load().byName[b.Name()]; m.GRPCAddr != first.GRPCAddr || m.Status != StatusAlive {
		t.Fatalf("a's view has %s at %s, %v; want its first start's view of it", m.Name, m.GRPCAddr, m.Status)
	}

	// A call from the restarted member to a's grain, held there: it is
	// in flight on the restarted member's stream to a.
	held := ownedInEveryView(t, []*Node{a, c, again}, a, echoKind, "held")
	heldDone := make(chan error, 1)
	go func() {
		_, err := again.Invoke(context.Background(), stringCall(methodHold, held, ""))
		heldDone <- err
	}()
	if got := receive(t, hooks[a.Name()].entered, "the held call to start on a"); got != held {
		t.Fatalf("%s entered Hold, want %s", got, held)
	}
	var accepted *conn
	for _, s := range a.transport.openConns() {
		if s.peer == b.Name() && s.addr == again.GRPCAddr() {
			accepted = s
		}
	}
	if accepted == nil || accepted.replaced != first.incarnation {
		t.Fatalf("a's stream from the restarted member: %+v, want one whose hello says it replaced %q", accepted, first.incarnation)
	}

	// a calls a grain of b's, placed by its lagging view: on the
	// restarted member's stream.
	owned := ownedInEveryView(t, []*Node{a, c, again}, again, echoKind, "owned")
	if got := where(t, a, owned); got != b.Name() {
		t.Errorf("%s answered from %s, want %s", owned, got, b.Name())
	}
	if isDone(accepted.done) {
		t.Error("a closed the restarted member's stream")
	}
	hooks[a.Name()].releaseHeld()
	if err := receive(t, heldDone, "the held call to return"); err != nil {
		t.Errorf("the held call: %v", err)
	}
	select {
	case id := <-hooks[a.Name()].entered:
		t.Errorf("Hold ran again on %s: the call was retried", id)
	default:
	}
}

// TestANewStartAtItsOldAddressIsNotTakenForItsOldStartsLeave: a member
// restarted under its name at its old address (a fixed port) may come
// alive in a peer's view while a stream of its old start, which said it
// leaves, is still open there. The peer took the new start for a leaver,
// in that view and, remembering its leavers, in every view after it for
// as long as the new start lived: it owned nothing there, and its grains
// went to others beside it. What a stream says is its own start's.
func TestANewStartAtItsOldAddressIsNotTakenForItsOldStartsLeave(t *testing.T) {
	n := startCluster(t, 1, nil, nil)[0]
	const addr = "127.0.0.1:7001"
	old := newConn(n.transport, "b", addr, &brokenStream{}, func() {}, nil)
	old.inc = "old-start"
	old.peerLeaving.Store(true) // its hello said it leaves
	if !n.transport.track(old) {
		t.Fatal("the transport took no stream")
	}
	defer n.transport.forget(old)
	b := Member{Name: "b", GRPCAddr: addr, Status: StatusAlive, Kinds: []string{echoKind}, incarnation: "new-start"}
	if n.transport.leaves(&b) {
		t.Fatal("b's new start is taken for a leaver by what its old start's stream said")
	}
	n.refreshMu.Lock()
	view := n.viewOf([]Member{b})
	leavers := n.leavers
	n.refreshMu.Unlock()
	if st, _ := view.status("b"); st != StatusAlive || len(leavers) != 0 {
		t.Fatalf("b's new start is %v in the view, the leavers %v; want it alive, and no leaver", st, leavers)
	}
	was := b
	was.incarnation = "old-start"
	if !n.transport.leaves(&was) {
		t.Fatal("b's old start, which said it leaves, is not taken for a leaver")
	}
}
