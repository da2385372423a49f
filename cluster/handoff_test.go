package cluster

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
)

// handoffConfig returns the config of a node named after the test and
// suffix that hosts the bank's kinds (accountKind, and manualKind in
// FlushManual mode) over store, and passivates nothing by itself.
func handoffConfig(t *testing.T, suffix string, store storage.Store) Config {
	cfg := testConfig(t)
	cfg.NodeName += suffix
	b := newBank(cfg.NodeName)
	cfg.Kinds = []*Kind{newAccountKind(b, accountKind, FlushAfterCall, time.Hour), newAccountKind(b, manualKind, FlushManual, time.Hour)}
	cfg.Store = store
	return cfg
}

// joinerConfig returns handoffConfig's for a node that joins through a,
// and the channel its activations signal on as they begin to wait for a
// member's release.
func joinerConfig(t *testing.T, suffix string, a *Node, store storage.Store) (Config, chan struct{}) {
	cfg := handoffConfig(t, suffix, store)
	cfg.Seeds = []string{a.GossipAddr()}
	waits := make(chan struct{}, 16)
	cfg.awaitingRelease = func() { waits <- struct{}{} }
	return cfg, waits
}

// TestAJoinerActivatesAMovingManualGrainOnceItsOldOwnerCommitted: a
// FlushManual grain on a holds deposits it acknowledged and has not
// committed; b joins, and wins the grain. a's move of the grain commits
// them, slowly (the store holds the commit), and meanwhile a call through
// b, whose view has b, activates the grain on b. That activation waits for
// a's release, loads what a committed, and no acknowledged deposit is
// lost. Without the wait it loaded the state before a's commit, and lost
// every deposit it acknowledged, at its own commit, as stale. The same
// when b is a new start under the name of a member that crashed, whose
// grains a took meanwhile.
func TestAJoinerActivatesAMovingManualGrainOnceItsOldOwnerCommitted(t *testing.T) {
	for _, restart := range []bool{false, true} {
		name := "join"
		if restart {
			name = "restart_after_a_crash"
		}
		t.Run(name, func(t *testing.T) {
			eachStore(t, func(t *testing.T, shared storage.Store) { joinerWaitsForTheOldOwner(t, shared, restart) })
		})
	}
}

// joinerWaitsForTheOldOwner is TestAJoinerActivatesAMovingManualGrainOnceItsOldOwnerCommitted
// over shared, with b's first start crashed before, if restart.
func joinerWaitsForTheOldOwner(t *testing.T, shared storage.Store, restart bool) {
	held := newHookedStore(shared) // a's: its commits can be held
	a := startNode(t, handoffConfig(t, "-a", held))
	bCfg, waiting := joinerConfig(t, "-b", a, shared)
	id := movingIdentity(manualKind, a.Name(), bCfg.NodeName)
	if restart {
		crashed := startNode(t, bCfg)
		waitConverged(t, []*Node{a, crashed}, 2)
		_ = crashed.Close()
		waitFor(t, waitTimeout, "a to see b's first start failed", func() bool {
			st, _ := a.view.Load().status(bCfg.NodeName)
			return st == StatusFailed
		})
	}

	const onA = 5
	for range onA {
		deposit(t, a, manualKind, id, 1) // acknowledged, buffered on a
	}
	held.holdKey.Store(&storage.Key{Kind: manualKind, Identity: id})
	b := startNode(t, bCfg)
	receive(t, held.holding, "a's commit of the grain it moves to b")

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	// b's view has b: the call activates the grain there.
	if got := depositWhileHeld(t, ctx, b, id, held, "b's activation to wait for a's release", func() bool { return isDone(waiting) }); got != onA+1 {
		t.Errorf("the first deposit on b returned balance %d, want %d: its activation did not load what a acknowledged", got, onA+1)
	}
	// a's answer covers every grain b took from it: b's activations of
	// the kind wait for nobody now.
	if !b.kinds[manualKind].handedOver.Load() {
		t.Errorf("b's activations of %s still wait for a release after a's answer", manualKind)
	}
	const more = 4
	for i := range more {
		deposit(t, []*Node{a, b}[i%2], manualKind, id, 1) // a's view has b: it sends them there
	}
	for _, n := range []*Node{b, a} {
		if err := n.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := storedBalance(t, shared, manualKind, id), int64(onA+1+more); got != want {
		t.Errorf("stored balance %d, want the %d deposits acknowledged", got, want)
	}
}

// TestAJoinerServesNoGrainBeforeItsStartKnowsTheCluster: a holds a
// FlushManual grain with deposits it acknowledged and has not committed;
// b starts, and its join is held as it merges a's list of members, once a
// has b alive and sends it the grain's calls. b's view then had b alone,
// or some members only: b took the grain for its own, activated it
// without waiting for a's release (it knew of no a) from the state a had
// yet to commit, and acknowledged a deposit on a balance without a's. Its
// activation then lived on as the grain's owner, stale, and lost what it
// acknowledged at its commit (TestGrainStateThroughARollingRestart found
// it: a restarted member's start served its peers' calls). Now b owns no
// grain until its start has the cluster's members: the call is refused
// as not the owner's, and once b has started, the deposit lands on a's.
func TestAJoinerServesNoGrainBeforeItsStartKnowsTheCluster(t *testing.T) {
	shared := hookedMemstore(t)
	held := newHookedStore(shared) // a's: its commits can be held
	a := startNode(t, handoffConfig(t, "-a", held))
	bCfg := handoffConfig(t, "-b", shared)
	bCfg.Seeds = []string{a.GossipAddr()}
	merging, merge := make(chan struct{}), make(chan struct{})
	letMerge := sync.OnceFunc(func() { close(merge) })
	t.Cleanup(letMerge) // a test that failed does not hold b's start
	bCfg.merging = pauseFirst(merging, merge)
	id := movingIdentity(manualKind, a.Name(), bCfg.NodeName)
	const onA = 5
	for range onA {
		deposit(t, a, manualKind, id, 1) // acknowledged, buffered on a
	}
	held.holdKey.Store(&storage.Key{Kind: manualKind, Identity: id}) // a's move cannot commit them yet

	type start struct {
		n   *Node
		err error
	}
	started := make(chan start, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		b, err := Start(ctx, bCfg)
		started <- start{b, err}
	}()
	receive(t, merging, "b's join to merge a's members")
	waitFor(t, waitTimeout, "a to place the grain on b", func() bool {
		m, ok := a.Owner(manualKind, id)
		return ok && m.Name == bCfg.NodeName
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if resp, err := a.Invoke(ctx, depositCall(manualKind, id, 1), WithoutRetry()); err == nil {
		t.Fatalf("b, before its start knew a, acknowledged a deposit on balance %d, without the %d a acknowledged", resp.(*wrapperspb.Int64Value).GetValue(), onA)
	} else if !errors.Is(err, ErrNotOwner) {
		t.Fatalf("a deposit on b before its start knew a failed with %v, want %v", err, ErrNotOwner)
	}

	letMerge()
	st := receive(t, started, "b's start")
	if st.err != nil {
		t.Fatalf("Start(%s): %v", bCfg.NodeName, st.err)
	}
	b := st.n
	t.Cleanup(func() { _ = b.Close() })
	close(held.release)
	if got := deposit(t, a, manualKind, id, 1); got != onA+1 {
		t.Errorf("the deposit once b started returned balance %d, want %d", got, onA+1)
	}
	for _, n := range []*Node{b, a} {
		if err := n.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := storedBalance(t, shared, manualKind, id), int64(onA+1); got != want {
		t.Errorf("stored balance %d, want the %d deposits acknowledged", got, want)
	}
}

// TestAJoinersWaitForAReleaseIsBounded: b joins a, whose view is held
// without b, so that a never releases the grains b takes from it. b's
// activations of those grains of a FlushManual kind wait for a's release,
// within DeactivateTimeout of b seeing a, then go on: the calls succeed,
// and later activations wait no more. Those of a FlushAfterCall kind do
// not wait at all.
func TestAJoinersWaitForAReleaseIsBounded(t *testing.T) {
	store := hookedMemstore(t)
	a := startNode(t, handoffConfig(t, "-a", store))
	holdView(t, a, func(m []Member) []Member { return m }) // a never sees b join
	bCfg, waits := joinerConfig(t, "-b", a, store)
	bCfg.DeactivateTimeout = 200 * time.Millisecond
	b := startNode(t, bCfg)

	// A FlushAfterCall grain has committed every call it acknowledged:
	// its activation waits for nobody.
	deposit(t, b, accountKind, accountOwnedBy(t, b, accountKind, "after-call"), 1)
	select {
	case <-waits:
		t.Fatal("an activation of a FlushAfterCall kind waited for a's release")
	default:
	}
	// Each with a as its predecessor: the only other member.
	first, second := accountOwnedBy(t, b, manualKind, "first"), accountOwnedBy(t, b, manualKind, "second")
	if got := deposit(t, b, manualKind, first, 1); got != 1 {
		t.Fatalf("deposit returned balance %d, want 1", got)
	}
	receive(t, waits, "the activation to wait for a's release")
	if !b.kinds[manualKind].handedOver.Load() {
		t.Error("b still waits for a release after it gave up on a")
	}
	deposit(t, b, manualKind, second, 1)
	select {
	case <-waits:
		t.Error("a later activation waited again for the member given up on")
	default:
	}
}

// TestAWaitThatTheMembersFailureEndedIsNotReportedAtItsBound: b joins
// a, whose view is held without b, so that a never releases the grains b
// takes from it, as a member that crashed while b joined does not. b's
// activation of a FlushManual grain it took from a waits for a's release,
// and goes on as b's view has a failed: nobody waits for a member that
// fails. The wait's bound, DeactivateTimeout after b saw a, then passes:
// it ended no wait, and must not say that it did. It warned that b
// activated a's grains without its release, and told releaseGaveUp,
// seconds after the failure had ended the wait: the rolling test with a
// crash during a restart took it for a hand-off that ran to its bound.
func TestAWaitThatTheMembersFailureEndedIsNotReportedAtItsBound(t *testing.T) {
	store := hookedMemstore(t)
	a := startNode(t, handoffConfig(t, "-a", store))
	holdView(t, a, func(m []Member) []Member { return m }) // a never sees b join
	bCfg, waits := joinerConfig(t, "-b", a, store)
	bCfg.DeactivateTimeout = 300 * time.Millisecond
	gaveUp := make(chan string, 1)
	bCfg.releaseGaveUp = func(start string) { gaveUp <- start }
	b := startNode(t, bCfg)
	waitConverged(t, []*Node{b}, 2)
	setView := holdViews(t, b) // the test gives b its views from here on

	id := accountOwnedBy(t, b, manualKind, "taken")
	deposited := make(chan error, 1)
	go func() {
		_, err := b.Invoke(t.Context(), depositCall(manualKind, id, 1))
		deposited <- err
	}()
	receive(t, waits, "b's activation to wait for a's release")
	setView(withStatus(a.Name(), StatusFailed))
	if err := receive(t, deposited, "the deposit once b sees a failed"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the bound of b's wait for a to pass", func() bool {
		b.handoffs.mu.Lock()
		defer b.handoffs.mu.Unlock()
		e := b.handoffs.peers[peerKey(a.Name(), a.incarnation)]
		return e == nil || e.join.done
	})
	select {
	case start := <-gaveUp:
		t.Errorf("b reported that its wait for %s ended at its bound, after the member's failure had ended it", start)
	default:
	}
}

// TestALateBoundDoesNotEndTheWaitThatReplacedItsOwn: b's wait for a's
// release begins afresh when a comes back from a failure (a partition that
// heals, say). The bound timer of the wait it replaced may have fired just
// before, and waited for the hand-off's lock meanwhile: it must not end
// the new wait, whose activations would then load what a may have yet to
// commit. The test plays that timer: its expiry comes after the new wait
// began.
func TestALateBoundDoesNotEndTheWaitThatReplacedItsOwn(t *testing.T) {
	t.Parallel()
	store := hookedMemstore(t)
	a := startNode(t, handoffConfig(t, "-a", store))
	bCfg, _ := joinerConfig(t, "-b", a, store)
	bCfg.DeactivateTimeout = time.Hour // only the test ends the waits
	b := startNode(t, bCfg)
	waitConverged(t, []*Node{a, b}, 2)
	setView := holdViews(t, b) // the test gives b its views from here on
	key := peerKey(a.Name(), a.incarnation)
	wait := func() releaseWait {
		b.handoffs.mu.Lock()
		defer b.handoffs.mu.Unlock()
		e := b.handoffs.peers[key]
		if e == nil {
			t.Fatalf("b does not wait for %s", key)
		}
		return e.join
	}
	first := wait()
	if first.done || first.timer == nil {
		t.Fatalf("b's wait for a is not under way (done %t)", first.done)
	}
	setView(withStatus(a.Name(), StatusFailed))
	setView(withStatus(a.Name(), StatusAlive))
	if wait().bound == first.bound {
		t.Fatal("a's return from its failure did not begin a new wait")
	}
	b.handoffs.expire(key, false, bCfg.DeactivateTimeout, first.bound) // the first wait's timer, late
	if wait().done {
		t.Error("the bound of the wait that a's return replaced ended the new wait")
	}
	if b.kinds[manualKind].handedOver.Load() {
		t.Errorf("b's activations of %s no longer wait for a", manualKind)
	}
}

// leaverWithHeldGrain starts s and l over the shared store, l through a
// store that can hold its commits, and makes onL deposits through s on a
// FlushManual grain that l owns while it is there and s once l leaves:
// acknowledged, buffered on l. l's commits of the grain are held from
// then on. It returns the nodes, l's store, the channel s's activations
// signal on as they wait for a release, and the grain's identity.
func leaverWithHeldGrain(t *testing.T, shared storage.Store, onL int) (s, l *Node, held *hookedStore, waiting chan struct{}, id string) {
	t.Helper()
	sCfg := handoffConfig(t, "-s", shared)
	waiting = make(chan struct{}, 16)
	sCfg.awaitingRelease = func() { waiting <- struct{}{} }
	s = startNode(t, sCfg)
	held = newHookedStore(shared)
	lCfg := handoffConfig(t, "-l", held)
	lCfg.Seeds = []string{s.GossipAddr()}
	l = startNode(t, lCfg)
	waitConverged(t, []*Node{s, l}, 2)
	id = movingIdentity(manualKind, s.Name(), l.Name())
	for range onL {
		deposit(t, s, manualKind, id, 1)
	}
	held.holdKey.Store(&storage.Key{Kind: manualKind, Identity: id})
	return s, l, held, waiting, id
}

// TestASuccessorActivatesALeaversManualGrainOnceTheLeaverCommitted: a
// FlushManual grain on l holds deposits it acknowledged and has not
// committed; l shuts down gracefully, and its move of the grain commits
// them, slowly (the store holds the commit). Meanwhile a call through s,
// whose view has l leaving, activates the grain on s. That activation
// waits for l's release, loads what l committed, and no acknowledged
// deposit is lost.
func TestASuccessorActivatesALeaversManualGrainOnceTheLeaverCommitted(t *testing.T) {
	eachStore(t, func(t *testing.T, shared storage.Store) {
		const onL = 5
		s, l, held, waiting, id := leaverWithHeldGrain(t, shared, onL)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		left := make(chan error, 1)
		go func() { left <- l.Shutdown(ctx) }()
		receive(t, held.holding, "l's commit of the grain it moves as it leaves")

		// s's view has l leaving: the call activates the grain on s.
		if got := depositWhileHeld(t, ctx, s, id, held, "s's activation to wait for l's release", func() bool { return isDone(waiting) }); got != onL+1 {
			t.Errorf("the first deposit on s returned balance %d, want %d: its activation did not load what l acknowledged", got, onL+1)
		}
		if err := receive(t, left, "l's shutdown"); err != nil {
			t.Fatal(err)
		}
		deposit(t, s, manualKind, id, 1)
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if got, want := storedBalance(t, shared, manualKind, id), int64(onL+2); got != want {
			t.Errorf("stored balance %d, want the %d deposits acknowledged", got, want)
		}
	})
}

// TestASuccessorWaitsForALeaverTheGossipReportsFailed: l leaves
// gracefully, with a FlushManual grain whose deposits it acknowledged and
// commits slowly (the store holds the commit); it said on its stream to s
// that it leaves, and s's activation of the grain waits for its release.
// Then the gossip reports l failed, as it does when memberlist's notice
// that l left arrives before serf's leave intent (see Node.dropFailed).
// s's wait used to end there, as for a member that fails: the activation
// loaded the state l had yet to commit, and lost what it acknowledged
// (TestGrainStateThroughARollingRestart lost up to 15 deposits of a grain
// so). l commits its grains all the same, so s waits on for its answer,
// or for the end of the stream it asked on, within the leaver's grace.
func TestASuccessorWaitsForALeaverTheGossipReportsFailed(t *testing.T) {
	for _, failedFirst := range []bool{false, true} {
		name := "failed_while_waiting"
		if failedFirst {
			name = "failed_before_the_ask"
		}
		t.Run(name, func(t *testing.T) { successorWaitsForAFailedLeaver(t, failedFirst) })
	}
}

// successorWaitsForAFailedLeaver is TestASuccessorWaitsForALeaverTheGossipReportsFailed,
// with s's view having l failed before its activation asks l for its
// release if failedFirst: the ask then goes on a stream dialed to a
// member the view has failed, which says bye at once (see transport.dial),
// and the wait must still end only with l's release.
func successorWaitsForAFailedLeaver(t *testing.T, failedFirst bool) {
	const onL = 5
	shared := hookedMemstore(t)
	s, l, held, waiting, id := leaverWithHeldGrain(t, shared, onL)
	setView := holdViews(t, s) // the test gives s its views from here on
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	left := make(chan error, 1)
	go func() { left <- l.Shutdown(ctx) }()
	receive(t, held.holding, "l's commit of the grain it moves as it leaves")
	lm, _ := memberNamed(s, l.Name())
	waitFor(t, waitTimeout, "l to say on its stream to s that it leaves", func() bool { return s.transport.leaves(&lm) })
	if failedFirst {
		setView(withStatus(l.Name(), StatusFailed))
	} else {
		setView(func(m []Member) []Member { return m }) // l leaving, as it said
	}

	deposited := make(chan error, 1)
	var resp proto.Message
	go func() {
		var err error
		resp, err = s.Invoke(ctx, depositCall(manualKind, id, 1))
		deposited <- err
	}()
	receive(t, waiting, "s's activation to wait for l's release")
	if !failedFirst {
		setView(withStatus(l.Name(), StatusFailed))
	}
	if s.kinds[manualKind].handedOver.Load() {
		t.Errorf("s's activations of %s no longer wait for l once the gossip reports l failed, while l commits its grains", manualKind)
	}
	close(held.release)
	if err := receive(t, deposited, "the deposit on s"); err != nil {
		t.Fatal(err)
	}
	if got := resp.(*wrapperspb.Int64Value).GetValue(); got != onL+1 {
		t.Errorf("the first deposit on s returned balance %d, want %d: its activation did not load what l acknowledged", got, onL+1)
	}
	if err := receive(t, left, "l's shutdown"); err != nil {
		t.Fatal(err)
	}
	// s's activation is not stale: it commits on the version l left.
	if _, err := s.Invoke(ctx, accountCall(manualKind, methodFlush, id, "")); err != nil {
		t.Fatalf("s's flush of the grain: %v", err)
	}
	if got, want := storedBalance(t, shared, manualKind, id), int64(onL+1); got != want {
		t.Errorf("stored balance %d, want the %d deposits acknowledged", got, want)
	}
}

// depositWhileHeld deposits 1 on the manual grain id through n while held
// holds the old owner's commit of the grain, until waits reports that the
// wait under test has begun (what) or the deposit ended, then releases
// that commit and returns the balance the deposit answered. The commit is
// released either way, so that a test of the mutation without the wait
// fails on the balance, not on a hang.
func depositWhileHeld(t *testing.T, ctx context.Context, n *Node, id string, held *hookedStore, what string, waits func() bool) int64 {
	t.Helper()
	first := make(chan error, 1)
	var resp proto.Message
	go func() {
		var err error
		resp, err = n.Invoke(ctx, depositCall(manualKind, id, 1))
		first <- err
	}()
	var err error
	ended := false
	waitFor(t, waitTimeout, what+", or the deposit to end", func() bool {
		select {
		case err = <-first: // it did not wait
			ended = true
			return true
		default:
			return waits()
		}
	})
	close(held.release)
	if !ended {
		err = receive(t, first, "the first deposit on "+n.Name())
	}
	if err != nil {
		t.Fatal(err)
	}
	return resp.(*wrapperspb.Int64Value).GetValue()
}

// TestAnAskForAReleaseThatDoesNotReachTheMemberIsMadeAgain: b joins a,
// and its first dial to a fails, as a dial may while the network or a
// busy peer hiccups; b's activation of a FlushManual grain it took from
// a waits for a's release, and the ask that failed to reach a is made
// again, so that the wait ends with a's answer. It ran to its bound
// (DeactivateTimeout, ten seconds by default) without an answer.
func TestAnAskForAReleaseThatDoesNotReachTheMemberIsMadeAgain(t *testing.T) {
	store := hookedMemstore(t)
	a := startNode(t, handoffConfig(t, "-a", store))
	bCfg, waits := joinerConfig(t, "-b", a, store)
	bCfg.DeactivateTimeout = time.Hour // only a's answer ends the wait in time
	gaveUp := make(chan string, 1)
	bCfg.releaseGaveUp = func(start string) { gaveUp <- start }
	var failed atomic.Bool
	bCfg.dialer = func(ctx context.Context, addr string) (net.Conn, error) {
		if addr == a.GRPCAddr() && failed.CompareAndSwap(false, true) {
			return nil, errors.New("test: the first dial to a fails")
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	b := startNode(t, bCfg)
	waitConverged(t, []*Node{a, b}, 2)

	id := accountOwnedBy(t, b, manualKind, "taken")
	if got := deposit(t, b, manualKind, id, 1); got != 1 {
		t.Fatalf("deposit returned balance %d, want 1", got)
	}
	receive(t, waits, "the activation to wait for a's release")
	if !failed.Load() {
		t.Fatal("b's ask reached a on its first dial; the test needs it to fail")
	}
	select {
	case start := <-gaveUp:
		t.Fatalf("b's wait for %s ended at its bound", start)
	default:
	}
}

// TestAOneWayMessageToAStartingNodeWaitsForItsView: b starts, and its
// join is held as it merges a's members, once a has b alive and sends it
// a one-way message for a grain b owns in a's view. b's view is empty
// until its start has the cluster's members (see the test above), so it
// owned nothing, found no owner to pass the message on to, and dropped
// it ("no alive member that is not leaving hosts grain kind", met in
// TestMaxActivationsWhileMembersComeAndGo in CI). Now b waits for the
// view its start brings, and the message lands.
func TestAOneWayMessageToAStartingNodeWaitsForItsView(t *testing.T) {
	t.Parallel()
	shared := hookedMemstore(t)
	a := startNode(t, handoffConfig(t, "-a", shared))
	bCfg := handoffConfig(t, "-b", shared)
	bCfg.Seeds = []string{a.GossipAddr()}
	logs := map[string]*logLines{}
	withLogs(logs, true, nil)(&bCfg)
	merging, merge := make(chan struct{}), make(chan struct{})
	letMerge := sync.OnceFunc(func() { close(merge) })
	t.Cleanup(letMerge) // a test that failed does not hold b's start
	bCfg.merging = pauseFirst(merging, merge)
	id := movingIdentity(accountKind, a.Name(), bCfg.NodeName)

	started := make(chan *Node, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		b, err := Start(ctx, bCfg)
		if err != nil {
			t.Errorf("Start(%s): %v", bCfg.NodeName, err)
		}
		started <- b
	}()
	receive(t, merging, "b's join to merge a's members")
	waitFor(t, waitTimeout, "a to place the grain on b", func() bool {
		m, ok := a.Owner(accountKind, id)
		return ok && m.Name == bCfg.NodeName
	})
	if err := a.Send(context.Background(), depositCall(accountKind, id, 1)); err != nil {
		t.Fatal(err)
	}
	// The message reaches b while its start is held.
	bLog := logs[bCfg.NodeName]
	waitFor(t, waitTimeout, "b to receive the message", func() bool {
		return bLog.count("a one-way message waits for the view of this node's start") > 0 || bLog.count("dropped a one-way message") > 0
	})

	letMerge()
	b := receive(t, started, "b's start")
	if b == nil {
		t.FailNow()
	}
	t.Cleanup(func() { _ = b.Close() })
	waitFor(t, waitTimeout, "the one-way deposit", func() bool { return balance(t, a, accountKind, id) == 1 })
}
