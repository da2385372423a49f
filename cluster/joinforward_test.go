package cluster

import (
	"context"
	"fmt"
	"slices"
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
// leaver, and then runs the message, rather than drop it though no node
// failed.
func TestAStayingNodeBehindALeaveRunsWhatItCouldNotForward(t *testing.T) {
	t.Parallel()
	nodes, recs, logs := recorderClusterOf(t, 3, 2, -1, func(cfg *Config) {
		cfg.forwardedPatience = time.Hour // a message dropped after the wait fails the test
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
	if err := sender.Send(context.Background(), recordCall(id, 7)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the stayer to wait for a newer view, or drop the message", func() bool {
		stayer.viewMu.Lock()
		defer stayer.viewMu.Unlock()
		return stayer.viewNext != nil || logs[stayer.Name()].count("cluster: dropped a one-way message", id) > 0
	})
	setView(withStatus(leaver.Name(), StatusLeft))
	waitValues(t, recs[stayer.Name()], id, []int64{7})
	if n := logs[stayer.Name()].count("cluster: dropped a one-way message", id); n != 0 {
		t.Errorf("%s logged %d drops", stayer.Name(), n)
	}
}
