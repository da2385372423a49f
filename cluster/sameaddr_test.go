package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"
)

// TestAPeerServesANewStartAtTheAddressOfAStartItHasLeft: b shuts down and
// starts again at its old gossip and transport addresses (fixed ports), as
// a restarted member nearly always does, while a's view still has b's old
// start leaving, then left: a hears of the new start a moment after it
// joined, and here a's views are the test's. b's new start dials a, whose
// view it has alive. a took every stream from b's address for the old
// start's and said bye on it at once, as to a leaver, and on every stream
// under b's name once its view had the old start left: the new start's
// ask for a's release (the hand-off) went on a stream that ended before
// a could answer, and its activations of FlushManual grains waited out
// their bound, 10 s, then went on without the release
// (TestGrainStateThroughARollingRestart, restarting at the same
// addresses, found it). A stream's hello names its start: one of a start
// the view does not have leaving is not the leaver's.
func TestAPeerServesANewStartAtTheAddressOfAStartItHasLeft(t *testing.T) {
	store := hookedMemstore(t)
	a := startNode(t, handoffConfig(t, "-a", store))
	bCfg, waiting := joinerConfig(t, "-b", a, store)
	// Only a's answer ends the new start's wait for a's release.
	bCfg.DeactivateTimeout = time.Hour
	b := startNode(t, bCfg)
	waitConverged(t, []*Node{a, b}, 2)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of b: %v", err)
	}
	waitFor(t, waitTimeout, "a to see b's old start left", func() bool {
		st, _ := a.view.Load().status(b.Name())
		return st == StatusLeft
	})
	set := holdViews(t, a)
	// As when a heard of the leave on a stream before the gossip's word.
	set(withStatus(b.Name(), StatusLeaving))

	bCfg.BindAddr, bCfg.GRPCAddr = b.GossipAddr(), b.GRPCAddr()
	again := startNode(t, bCfg)
	// a owns the grain in the new start's view, and serves it in its own.
	onA := movingIdentity(accountKind, again.Name(), a.Name())
	if got := deposit(t, again, accountKind, onA, 1); got != 1 {
		t.Errorf("a deposit through b's new start on a's grain returned balance %d, want 1", got)
	}
	set(withStatus(b.Name(), StatusLeft)) // the gossip's word that the old start left
	// The call went on a stream the new start dialed, which a serves as
	// any member's: it stays open, and a says no bye on it.
	served := false
	for _, c := range a.transport.openConns() {
		if c.peer != again.Name() {
			continue
		}
		if c.saidBye() {
			t.Errorf("a said bye on a stream of b's new start (%s), as to the old start that left", c.inc)
		}
		served = served || c.inc == again.incarnation
	}
	if !served {
		t.Error("a holds no stream of b's new start: the one it dialed ended")
	}

	// The new start's activation of a FlushManual grain waits for a's
	// release, which a gives once its view has the new start alive: on
	// the stream the ask came on.
	onB := movingIdentity(manualKind, a.Name(), again.Name())
	deposited := make(chan error, 1)
	go func() {
		_, err := again.Invoke(ctx, depositCall(manualKind, onB, 1))
		deposited <- err
	}()
	receive(t, waiting, "the new start's activation to wait for a's release")
	waitFor(t, waitTimeout, "a's gossip to have b's new start alive", func() bool {
		st, _ := serfStatus(a, again.Name())
		return st == serf.StatusAlive && gossipMember(a, again.Name()).incarnation == again.incarnation
	})
	set(func([]Member) []Member { return []Member{gossipMember(a, a.Name()), gossipMember(a, again.Name())} })
	if err := receive(t, deposited, "the deposit through b's new start on its grain"); err != nil {
		t.Errorf("the deposit through b's new start on its grain: %v", err)
	}
}

// gossipMember returns what n's gossip has of the member named name, as a
// refresh of n's view takes it.
func gossipMember(n *Node, name string) Member {
	for _, sm := range n.serf.Members() {
		if m, ok := memberFromSerf(sm); ok && m.Name == name {
			return m
		}
	}
	return Member{}
}

// TestAStreamDialedToAnOldStartsAddressIsTheNewStarts: b crashes and
// starts again at its old addresses while a's view still has the old
// start alive, and a dials b there: the new start answers. Once a's view
// has the new start, and then has it leave, a says bye on that stream as
// on the new start's others, so that the leaver's farewell ends it. The
// stream took the old start's incarnation from a's view, and a's bye,
// which goes to the leaving start's streams alone (byeTo), passed it by:
// the new start's farewell waited for it in vain, and cut it after its
// patience (the rolling-restart test at the same addresses logged "peers
// did not end their streams in time" as its crashed member shut down). The
// acceptor's answer to the hello now names its start.
func TestAStreamDialedToAnOldStartsAddressIsTheNewStarts(t *testing.T) {
	store := hookedMemstore(t)
	a := startNode(t, handoffConfig(t, "-a", store))
	bCfg := handoffConfig(t, "-b", store)
	bCfg.Seeds = []string{a.GossipAddr()}
	b := startNode(t, bCfg)
	waitConverged(t, []*Node{a, b}, 2)
	set := holdViews(t, a) // a's view keeps b's old start alive
	_ = b.Close()
	bCfg.BindAddr, bCfg.GRPCAddr = b.GossipAddr(), b.GRPCAddr()
	again := startNode(t, bCfg)

	old, _ := a.view.Load().member(b.Name())
	if old.incarnation != b.incarnation {
		t.Fatalf("a's view has b's start %s, want the old one, %s", old.incarnation, b.incarnation)
	}
	c, err := a.transport.open(old) // as a call placed on b by a's view dials it
	if err != nil {
		t.Fatalf("a's dial of b's old start's address: %v", err)
	}
	if c.inc != again.incarnation {
		t.Errorf("a's stream to b's address has start %s, want the new start that answered, %s", c.inc, again.incarnation)
	}
	waitFor(t, waitTimeout, "a's gossip to have b's new start alive", func() bool {
		st, _ := serfStatus(a, again.Name())
		return st == serf.StatusAlive && gossipMember(a, again.Name()).incarnation == again.incarnation
	})
	set(func([]Member) []Member { return []Member{gossipMember(a, a.Name()), gossipMember(a, again.Name())} })
	set(withStatus(again.Name(), StatusLeaving)) // as when the new start begins to leave
	if !c.saidBye() {
		t.Error("a said no bye on its stream to b's new start, which leaves")
	}
}
