package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// withoutMembers returns an edit for holdView that drops the named members
// from a view, as in a node that has not heard of them yet.
func withoutMembers(names ...string) func([]Member) []Member {
	return func(members []Member) []Member {
		return slices.DeleteFunc(members, func(m Member) bool { return slices.Contains(names, m.Name) })
	}
}

// TestAForwardedMessageGoesOnWhenTwoMembersJoinAtOnce: with two hosts
// joining at once, a node that knows of one joiner forwards a message to
// it, and that joiner, which knows of both, finds that the other one owns
// the grain. Its view is ahead of the forwarder's, not behind, so waiting
// for a view in which it owns the grain is in vain: once the wait runs out,
// it forwards the message on, once, to the owner it sees, and the message
// runs there, once. Nobody failed, so nothing may be lost.
func TestAForwardedMessageGoesOnWhenTwoMembersJoinAtOnce(t *testing.T) {
	t.Parallel()
	nodes, recs, logs := recorderClusterOf(t, 4, 3, -1, func(cfg *Config) {
		cfg.forwardedPatience = 100 * time.Millisecond // the 2 s default, shortened
	})
	sender := nodes[3] // hosts nothing
	// An identity the hosts rank y, x, f: y owns it, x would without y,
	// and f without both.
	p := sender.view.Load()
	id := "twojoins"
	y, _ := p.owner(recorderKind, id)
	x, _ := p.ownerExcept(recorderKind, id, y.Name)
	f, _ := p.ownerExcept(recorderKind, id, y.Name, x.Name)
	holdView(t, sender, withoutMembers(x.Name, y.Name))            // neither joiner yet: sends to f
	holdView(t, nodeByName(nodes, f.Name), withoutMembers(y.Name)) // x only: forwards to x
	// x knows of both: y owns the grain.
	for _, hop := range []struct{ at, want string }{{sender.Name(), f.Name}, {f.Name, x.Name}, {x.Name, y.Name}} {
		if o, _ := nodeByName(nodes, hop.at).Owner(recorderKind, id); o.Name != hop.want {
			t.Fatalf("%s places %s on %s, want %s", hop.at, id, o.Name, hop.want)
		}
	}

	if err := sender.Send(context.Background(), recordCall(id, 7)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, fmt.Sprintf("the message to run on %s", y.Name), func() bool { return len(recs[y.Name].values(id)) == 1 })
	for name, r := range recs {
		if name != y.Name && len(r.values(id)) != 0 {
			t.Errorf("the message ran on %s too", name)
		}
	}
	if n := logs[x.Name].count("dropped a one-way message"); n != 0 {
		t.Errorf("%s logged %d drops", x.Name, n)
	}
}

// TestAStayingNodeBehindALeaveRunsWhatItCouldNotForward: a member that
// joined just before another left still has the leaver alive in its view
// when a sender that knows of the leave sends it a message for a grain it
// now owns. It forwards the message to the leaver, which takes no stream
// any more; the owner without the leaver is itself. A node that stays is
// behind the leave, not ahead of it: it waits for the view that drops the
// leaver, and then runs the messages, rather than drop them though no node
// failed. It waits as long as the failure detector may take to bring that
// view (a member that joined as the other left misses the leave's
// broadcast, and hears of it so), not the patience of a forwarded message:
// it waited two seconds, then dropped them.
func TestAStayingNodeBehindALeaveRunsWhatItCouldNotForward(t *testing.T) {
	t.Parallel()
	nodes, recs, logs := recorderClusterOf(t, 3, 2, -1, func(cfg *Config) {
		// The wait is the failure detector's, not a forwarded message's:
		// with the latter's, the messages were dropped at once.
		cfg.forwardedPatience = time.Nanosecond
	})
	leaver, stayer, sender := nodes[0], nodes[1], nodes[2]
	id := recorderOwnedBy(t, nodes, leaver, "behind")
	setView := holdViews(t, stayer) // the leave does not reach the stayer's view yet

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := leaver.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the sender to place the grain on the stayer", func() bool {
		o, ok := sender.Owner(recorderKind, id)
		return ok && o.Name == stayer.Name()
	})
	for v := range int64(3) {
		if err := sender.Send(context.Background(), recordCall(id, v)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, waitTimeout, "the stayer to wait for a newer view, or drop a message", func() bool {
		stayer.viewMu.Lock()
		defer stayer.viewMu.Unlock()
		return stayer.viewNext != nil || logs[stayer.Name()].count("cluster: dropped a one-way message", id) > 0
	})
	setView(withStatus(leaver.Name(), StatusLeft))
	waitValues(t, recs[stayer.Name()], id, []int64{0, 1, 2})
	if n := logs[stayer.Name()].count("cluster: dropped a one-way message", id); n != 0 {
		t.Errorf("%s logged %d drops", stayer.Name(), n)
	}
}

// TestAForwardFromALeaverThatSaidSoRuns: J's gossip still has L alive (J
// joined as L left and missed the leave's broadcast: it hears of it from a
// push-pull or the failure detector, seconds later), but L said on its
// stream to J that it leaves, and forwards to J, its grain's next owner,
// what still reaches it. J's view takes L for a leaver from then on, as
// the refresh that L's word asks for makes it, and runs the messages. It
// checked ownership by the gossip alone, waited forwardedPatience for a
// view without L, then dropped them, though no node failed.
func TestAForwardFromALeaverThatSaidSoRuns(t *testing.T) {
	nodes, recs, logs := recorderClusterOf(t, 2, 2, -1, nil)
	l, j := nodes[0], nodes[1]
	id := recorderOwnedBy(t, nodes, l, "saidso")
	if _, err := l.transport.conn(t.Context(), l.view.Load().byName[j.Name()]); err != nil {
		t.Fatal(err)
	}
	setView := holdViews(t, j) // J's gossip keeps L alive for now
	left := make(chan error, 1)
	go func() { left <- l.Shutdown(context.Background()) }()
	waitFor(t, waitTimeout, "L to tell J it leaves", func() bool { return j.transport.saidLeaving(l.Name()) })
	setView(func(ms []Member) []Member { return ms }) // the refresh L's word asks for; the gossip has L alive
	if st, _ := j.view.Load().status(l.Name()); st != StatusLeaving {
		t.Fatalf("L is %v in J's view, want leaving: it said so", st)
	}
	for v := range int64(3) {
		sendForwardedRecord(t, l, j, id, v, oneWayForwarded) // as L forwards what still reaches it
	}
	waitValues(t, recs[j.Name()], id, []int64{0, 1, 2})
	setView(withStatus(l.Name(), StatusLeft)) // the gossip brings the leave at last
	receive(t, left, "L's Shutdown")
	if n := logs[j.Name()].count("dropped a one-way message", id); n > 0 {
		t.Errorf("J dropped %d messages L forwarded", n)
	}
}

// TestAForwardedMessageWhoseGrainMovesWhileItActivatesGoesOn: B receives
// from A a message forwarded once, for a grain B owns in its view, and
// starts activating the grain; meanwhile B's view takes in J, a member
// that joined, which owns the grain now. The message goes on to J (neither
// B nor the forwarder A), as one that finds its grain elsewhere as it
// arrives does (mayForwardAfterWaiting). It was dropped after B's wait.
func TestAForwardedMessageWhoseGrainMovesWhileItActivatesGoesOn(t *testing.T) {
	block := make(chan struct{})
	entered := make(chan struct{}, 16)
	var armed atomic.Bool
	nodes, recs, logs := recorderClusterOf(t, 4, 3, -1, func(cfg *Config) {
		cfg.forwardedPatience = 10 * time.Millisecond // B's view is ahead of A's: the wait is in vain
		cfg.activating = func() {
			if armed.Load() {
				entered <- struct{}{}
				<-block
			}
		}
	})
	b, j, a := nodes[0], nodes[2], nodes[3]
	id := placedWithout(t, a, recorderKind, "moves", j.Name(), b.Name())
	jm, _ := memberNamed(b, j.Name())
	setView := holdViews(t, b)
	setView(withoutMembers(j.Name())) // B has not heard of J yet
	armed.Store(true)
	sendForwardedRecord(t, a, b, id, 5, oneWayForwarded) // A's view placed the grain on B
	receive(t, entered, "B to start activating the grain")
	armed.Store(false)
	setView(func(ms []Member) []Member { return append(ms, jm) }) // J joins B's view: the grain moves to J
	close(block)
	waitValues(t, recs[j.Name()], id, []int64{5})
	if n := logs[b.Name()].count("dropped a one-way message", id); n > 0 {
		t.Errorf("B dropped the message, though J, its owner in B's view, is neither B nor the forwarder")
	}
}
