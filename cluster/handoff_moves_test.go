package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// rankedIdentity returns an identity of kind whose rendezvous scores rank
// the named members in the order given, the first the highest: the grain's
// owner in a view of all of them, and each next one's once those before it
// are gone from the view.
func rankedIdentity(t *testing.T, kind string, names ...string) string {
	t.Helper()
	for i := range 100000 {
		id := fmt.Sprintf("ranked-%d", i)
		key := keyHash(kind, id)
		ranked := true
		for j := 1; j < len(names) && ranked; j++ {
			ranked = score(hashString(fnvOffset, names[j-1]), key) > score(hashString(fnvOffset, names[j]), key)
		}
		if ranked {
			return id
		}
	}
	t.Fatalf("no identity of %s ranks %v", kind, names)
	return ""
}

// waitsOn reports whether an activation on n waits for the release of
// peer's start, which has not come.
func waitsOn(n, peer *Node) bool { return awaitsRelease(n, peer, false) }

// awaitsRelease reports whether an activation on n waits for a release of
// peer's start that has not come: of the grains n took from it, or, if
// leave, of all its grains, a leaver's (see peerRelease.wait).
func awaitsRelease(n, peer *Node, leave bool) bool {
	n.handoffs.mu.Lock()
	defer n.handoffs.mu.Unlock()
	e := n.handoffs.peers[peerKey(peer.name, peer.incarnation)]
	if e == nil {
		return false
	}
	w := e.wait(leave)
	return w.waited && !w.done
}

// TestASecondJoinerWaitsForTheOwnerStillMovingTheGrain: a FlushManual
// grain on a holds deposits it acknowledged and has not committed. c joins
// and wins the grain, and a's move of it to c commits them, slowly (the
// store holds the commit). Meanwhile b joins, and wins the grain over c
// and a. b's activation of the grain must wait for a, which holds it, and
// not only for c, its owner in b's view without b, which never held it.
func TestASecondJoinerWaitsForTheOwnerStillMovingTheGrain(t *testing.T) {
	eachStore(t, func(t *testing.T, shared storage.Store) {
		held := newHookedStore(shared) // a's: its commits can be held
		a := startNode(t, handoffConfig(t, "-a", held))
		bCfg := handoffConfig(t, "-b", shared)
		bCfg.Seeds = []string{a.GossipAddr()}
		cCfg := handoffConfig(t, "-c", shared)
		cCfg.Seeds = []string{a.GossipAddr()}
		id := rankedIdentity(t, manualKind, bCfg.NodeName, cCfg.NodeName, a.Name())

		const onA = 5
		for range onA {
			deposit(t, a, manualKind, id, 1) // acknowledged, buffered on a
		}
		held.holdKey.Store(&storage.Key{Kind: manualKind, Identity: id})
		c := startNode(t, cCfg)
		receive(t, held.holding, "a's commit of the grain it moves to c")
		b := startNode(t, bCfg)
		waitConverged(t, []*Node{b}, 3)

		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		// b's view has a, b and c: the call activates the grain on b.
		if got := depositWhileHeld(t, ctx, b, id, held, "b's activation to wait for a", func() bool { return waitsOn(b, a) }); got != onA+1 {
			t.Errorf("the first deposit on b returned balance %d, want %d: its activation did not wait for a, which held the grain", got, onA+1)
		}
		for _, n := range []*Node{b, c, a} {
			if err := n.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := storedBalance(t, shared, manualKind, id), int64(onA+1); got != want {
			t.Errorf("stored balance %d, want the %d deposits acknowledged", got, want)
		}
	})
}

// awaitedGone reports whether something waits for n's activation of the
// grain (kind, identity) to leave the table: a call, or an answer to an
// ask for a release (see awaitGone).
func awaitedGone(n *Node, kind, identity string) bool {
	act := n.acts.peek(actKey{kind, identity})
	if act == nil {
		return false
	}
	sh, _ := n.acts.shardOfActivation(act)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return act.gone != nil
}

// TestAnOldOwnerReleasesOnceItsMovesToOthersCommitted: a FlushManual grain
// on a holds deposits it acknowledged and has not committed. c joins and
// wins it, and a's move of it to c commits them, slowly (the store holds
// the commit). b joins too, and its view does not have c yet: b owns the
// grain in it, with a as its predecessor. a, whose view has b and c, must
// not tell b that it released b's grains while it still moves this one,
// which b takes for its own: b's activation would load the state before
// a's commit.
func TestAnOldOwnerReleasesOnceItsMovesToOthersCommitted(t *testing.T) {
	held := hookedMemstore(t) // a's: its commits can be held
	a := startNode(t, handoffConfig(t, "-a", held))
	bCfg := handoffConfig(t, "-b", held.Store)
	bCfg.Seeds = []string{a.GossipAddr()}
	cCfg := handoffConfig(t, "-c", held.Store)
	cCfg.Seeds = []string{a.GossipAddr()}
	id := rankedIdentity(t, manualKind, cCfg.NodeName, bCfg.NodeName, a.Name())

	const onA = 5
	for range onA {
		deposit(t, a, manualKind, id, 1) // acknowledged, buffered on a
	}
	held.holdKey.Store(&storage.Key{Kind: manualKind, Identity: id})
	c := startNode(t, cCfg)
	receive(t, held.holding, "a's commit of the grain it moves to c")
	b := startNode(t, bCfg)
	waitConverged(t, []*Node{a, c}, 3)
	holdViews(t, b)(func(members []Member) []Member {
		return slices.DeleteFunc(members, func(m Member) bool { return m.Name == c.Name() })
	})
	if o, _ := b.Owner(manualKind, id); o.Name != b.Name() {
		t.Fatalf("b's view places the grain on %s, want b", o.Name)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if got := depositWhileHeld(t, ctx, b, id, held, "a to wait for its move of the grain before it answers b", func() bool { return awaitedGone(a, manualKind, id) }); got != onA+1 {
		t.Errorf("the first deposit on b returned balance %d, want %d: a said it released b's grains while it still moved this one", got, onA+1)
	}
}

// leavesOn reports whether an activation on n waits for the leaver
// peer's release of all its grains, which has not come.
func leavesOn(n, peer *Node) bool { return awaitsRelease(n, peer, true) }

// TestAJoinerWaitsForAnOldOwnerThatLeavesWhileItMovesTheGrain: a
// FlushManual grain on l holds deposits it acknowledged and has not
// committed. b joins and wins it, and l's move of it to b commits them,
// slowly (the store holds the commit); meanwhile l shuts down, as a rolling
// replacement does once the new member is in. b's view has l leaving, and
// l ranks below b for the grain: b's activation must still wait for l,
// which holds it, and not only for a, its owner in b's view without b.
func TestAJoinerWaitsForAnOldOwnerThatLeavesWhileItMovesTheGrain(t *testing.T) {
	store := hookedMemstore(t) // a's and b's
	aCfg := handoffConfig(t, "-a", store)
	held := newHookedStore(store.Store) // l's: its commits can be held
	lCfg := handoffConfig(t, "-l", held)
	bCfg := handoffConfig(t, "-b", store)
	id := rankedIdentity(t, manualKind, bCfg.NodeName, lCfg.NodeName, aCfg.NodeName)
	a := startNode(t, aCfg)
	lCfg.Seeds = []string{a.GossipAddr()}
	l := startNode(t, lCfg)
	waitConverged(t, []*Node{a, l}, 2)

	const onL = 5
	for range onL {
		deposit(t, a, manualKind, id, 1) // acknowledged, buffered on l
	}
	held.holdKey.Store(&storage.Key{Kind: manualKind, Identity: id})
	bCfg.Seeds = []string{a.GossipAddr()}
	b := startNode(t, bCfg)
	receive(t, held.holding, "l's commit of the grain it moves to b")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	left := make(chan error, 1)
	go func() { left <- l.Shutdown(ctx) }()
	waitFor(t, waitTimeout, "b to see l leave", func() bool {
		st, _ := b.view.Load().status(l.Name())
		return st == StatusLeaving || st == StatusLeft
	})

	if got := depositWhileHeld(t, ctx, b, id, held, "b's activation to wait for l", func() bool { return leavesOn(b, l) }); got != onL+1 {
		t.Errorf("the first deposit on b returned balance %d, want %d: its activation did not wait for l, which held the grain", got, onL+1)
	}
	if err := receive(t, left, "l's shutdown"); err != nil {
		t.Fatal(err)
	}
}

// TestAWaitThatReadAViewBeforeAMemberLeftItEndsAtOnce: an activation on b
// reads b's view, which has a alive and unreleased, and looks for the
// members it waits for only once a newer view has taken a out (a failed,
// say): the wait must not begin again for a, which no view has any more,
// until its bound, nor keep a's record for good.
func TestAWaitThatReadAViewBeforeAMemberLeftItEndsAtOnce(t *testing.T) {
	store := hookedMemstore(t)
	a := startNode(t, handoffConfig(t, "-a", store))
	bCfg := handoffConfig(t, "-b", store)
	bCfg.Seeds = []string{a.GossipAddr()}
	bCfg.DeactivateTimeout = time.Minute // the wait for a lasts the test
	b := startNode(t, bCfg)
	waitConverged(t, []*Node{a, b}, 2)
	setView := holdViews(t, b)
	setView(func(m []Member) []Member { return m })
	if b.kinds[manualKind].handedOver.Load() {
		t.Fatal("b waits for nobody: a released already")
	}
	read := b.view.Load() // as awaitRelease reads it
	setView(func(members []Member) []Member {
		return slices.DeleteFunc(members, func(m Member) bool { return m.Name == a.Name() })
	})

	if wake := b.handoffs.waitingFor(read, manualKind); wake != nil {
		select {
		case <-wake:
		default:
			t.Error("an activation that read the view before a left it waits for a, which b's view no longer has, until its bound")
		}
	}
	b.handoffs.mu.Lock()
	_, kept := b.handoffs.peers[peerKey(a.name, a.incarnation)]
	b.handoffs.mu.Unlock()
	if kept {
		t.Error("b keeps a record of a's start, which its view no longer has")
	}
}

// TestAnActivationThatWaitsGivesUpOnceItsGrainMovesOn: b's activation of
// a grain waits for a's release, which a, whose view is held without b,
// never gives. Then c joins and wins the grain. The activation on b, whose
// grain is c's now, must end (its call places the grain again, on c)
// rather than wait out its bound, load the state and run OnActivate on a
// node that no longer owns the grain; meanwhile it also held up b's
// answer to c, whose activation of the grain waited for it.
func TestAnActivationThatWaitsGivesUpOnceItsGrainMovesOn(t *testing.T) {
	store := hookedMemstore(t)
	a := startNode(t, handoffConfig(t, "-a", store))
	holdView(t, a, func(m []Member) []Member { return m }) // a never sees b or c join
	bCfg, waits := joinerConfig(t, "-b", a, store)
	bCfg.DeactivateTimeout = time.Minute // longer than the test waits
	cCfg := handoffConfig(t, "-c", store)
	cCfg.Seeds = []string{a.GossipAddr()}
	cCfg.DeactivateTimeout = 200 * time.Millisecond // c gives up on a soon
	id := rankedIdentity(t, manualKind, cCfg.NodeName, bCfg.NodeName, a.Name())
	b := startNode(t, bCfg)

	done := make(chan error, 1)
	go func() {
		_, err := b.Invoke(context.Background(), depositCall(manualKind, id, 1))
		done <- err
	}()
	receive(t, waits, "b's activation to wait for a's release")
	c := startNode(t, cCfg)
	waitFor(t, waitTimeout, "b to see c", func() bool {
		st, _ := b.view.Load().status(c.Name())
		return st == StatusAlive
	})
	waitFor(t, waitTimeout, "b's activation of the grain c owns now to end", func() bool {
		return b.acts.peek(actKey{manualKind, id}) == nil
	})
	if err := receive(t, done, "the deposit"); err != nil {
		t.Fatal(err)
	}
}

// TestAnAskWhoseStreamEndsIsAskedAgain: b's activation waits for a's
// release, and a, whose view does not have b yet, has yet to answer. The
// stream the ask went on ends (a network blip), and a's view then has b:
// a's answer goes nowhere, and b must ask again, on a new stream, rather
// than wait out its bound.
func TestAnAskWhoseStreamEndsIsAskedAgain(t *testing.T) {
	store := hookedMemstore(t)
	a := startNode(t, handoffConfig(t, "-a", store))
	bCfg, waits := joinerConfig(t, "-b", a, store)
	bCfg.DeactivateTimeout = time.Minute // longer than the test waits
	setA := holdViews(t, a)
	b := startNode(t, bCfg)
	setA(func(members []Member) []Member { // a has yet to see b
		return slices.DeleteFunc(members, func(m Member) bool { return m.Name == b.Name() })
	})
	id := rankedIdentity(t, manualKind, b.Name(), a.Name())

	done := make(chan error, 1)
	go func() {
		_, err := b.Invoke(context.Background(), depositCall(manualKind, id, 1))
		done <- err
	}()
	receive(t, waits, "b's activation to wait for a's release")
	// Both ends of the stream the ask goes on: a has it once it read b's
	// hello, b only once it read a's answer, and b's dropPeer below would
	// miss a stream it has yet to track, which then stayed open.
	waitFor(t, waitTimeout, "b to ask a", func() bool {
		return slices.ContainsFunc(a.transport.openConns(), func(c *conn) bool { return c.peer == b.Name() }) &&
			slices.ContainsFunc(b.transport.openConns(), func(c *conn) bool { return c.peer == a.Name() })
	})
	var asked []*conn // a's streams with b, the ask's among them
	for _, c := range a.transport.openConns() {
		if c.peer == b.Name() {
			asked = append(asked, c)
		}
	}
	b.transport.dropPeer(a.Name(), "")
	for _, c := range asked {
		receive(t, c.done, "a's stream with b to end")
	}
	setA(func([]Member) []Member { // a sees b: the gossip's members, not its view's
		var members []Member
		for _, sm := range a.serf.Members() {
			if m, ok := memberFromSerf(sm); ok {
				members = append(members, m)
			}
		}
		return members
	})
	if err := receive(t, done, "the deposit"); err != nil {
		t.Fatal(err)
	}
}

// asked reports whether n asked peer's start for its release of the
// grains n took from it.
func asked(n, peer *Node) bool {
	n.handoffs.mu.Lock()
	defer n.handoffs.mu.Unlock()
	e := n.handoffs.peers[peerKey(peer.name, peer.incarnation)]
	return e != nil && e.join.asked
}

// TestAJoinerAsksEveryMemberAtOnce: b joins a and c, neither of which sees
// b yet, so neither answers. The first activation of a FlushManual grain on
// b asks both at once, rather than c only once a has answered: with many
// members, it waits for the slowest answer, not for their sum.
func TestAJoinerAsksEveryMemberAtOnce(t *testing.T) {
	store := hookedMemstore(t)
	a := startNode(t, handoffConfig(t, "-a", store))
	cCfg := handoffConfig(t, "-c", store)
	cCfg.Seeds = []string{a.GossipAddr()}
	c := startNode(t, cCfg)
	waitConverged(t, []*Node{a, c}, 2)
	for _, n := range []*Node{a, c} {
		holdView(t, n, func(m []Member) []Member { return m }) // neither sees b join
	}
	bCfg := handoffConfig(t, "-b", store)
	bCfg.Seeds = []string{a.GossipAddr()}
	bCfg.DeactivateTimeout = time.Minute // the waits last the test
	b := startNode(t, bCfg)
	waitConverged(t, []*Node{b}, 3)
	id := accountOwnedBy(t, b, manualKind, "asks")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := b.Invoke(ctx, depositCall(manualKind, id, 1))
		done <- err
	}()
	waitFor(t, waitTimeout, "b to ask both a and c for their release", func() bool { return asked(b, a) && asked(b, c) })
	cancel()
	if err := receive(t, done, "the deposit, cancelled"); err == nil {
		t.Fatal("the deposit went through, though neither a nor c has released")
	}
}
