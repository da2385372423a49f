package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/protograin/protograin/cluster/storage"
)

// TestMaxActivationsPassivatesTheLeastRecentlyUsed: past
// Config.MaxActivations, the node passivates its least recently used idle
// grains, down to nine tenths of the limit, committing what they buffered
// as a passivation does; the others stay.
func TestMaxActivationsPassivatesTheLeastRecentlyUsed(t *testing.T) {
	store := hookedMemstore(t)
	sw := &sweeper{}
	nodes, banks := bankCluster(t, 1, store, time.Hour, func(cfg *Config) {
		sw.configure(cfg)
		cfg.MaxActivations = 10
	})
	n, b := nodes[0], banks[nodes[0].Name()]
	sw.n = n
	old, recent := depositInTwoLooks(t, n, sw, 2, 8) // the node holds its limit
	deposit(t, n, manualKind, "newest", 1)           // one over: a trim to 9

	waitFor(t, waitTimeout, "the trim", func() bool { return n.acts.count() == 9 })
	checkPassivated(t, n, b, store.Store, old)
	for _, id := range append(recent, "newest") {
		if n.acts.peek(actKey{manualKind, id}) == nil {
			t.Errorf("%s, used since, was passivated", id)
		}
	}
	if held, count := n.acts.held.Load(), n.acts.count(); held != int64(count) {
		t.Errorf("the table counts %d activations, and holds %d", held, count)
	}
}

// depositInTwoLooks deposits 1 on olds manual grains ("old-i"), has sw
// look at 1s, deposits on recents others ("recent-i"), has sw look at 2s,
// and sets its clock to 3s: the old ones are the least recently used of
// n's grains. It returns their identities.
func depositInTwoLooks(t *testing.T, n *Node, sw *sweeper, olds, recents int) (old, recent []string) {
	t.Helper()
	for i := range olds {
		old = append(old, fmt.Sprintf("old-%d", i))
		deposit(t, n, manualKind, old[i], 1)
	}
	sw.at(t, time.Second, 0) // notes their use at 1s
	for i := range recents {
		recent = append(recent, fmt.Sprintf("recent-%d", i))
		deposit(t, n, manualKind, recent[i], 1)
	}
	sw.at(t, 2*time.Second, 0)
	sw.now.Store(int64(3 * time.Second))
	return old, recent
}

// checkPassivated checks that the manual grains ids, each with an
// acknowledged deposit of 1, were passivated on n: no longer active,
// OnDeactivate run once (b, n's bank), the deposit committed to store.
func checkPassivated(t *testing.T, n *Node, b *bank, store storage.Store, ids []string) {
	t.Helper()
	for _, id := range ids {
		if n.acts.peek(actKey{manualKind, id}) != nil {
			t.Errorf("%s, used least recently, is still active", id)
		}
		if runs := b.count(id, hookDeactivate); runs != 1 {
			t.Errorf("OnDeactivate of %s ran %d times, want once", id, runs)
		}
		if got := storedBalance(t, store, manualKind, id); got != 1 {
			t.Errorf("stored balance of %s: %d, want the acknowledged 1, committed at its passivation", id, got)
		}
	}
}

// limitedSinkNode starts a node that hosts the sink kind (overflow_test.go)
// under a Config.MaxActivations of limit, and returns it with its sink and
// its log.
func limitedSinkNode(t *testing.T, limit int) (*Node, *sink, *logLines) {
	t.Helper()
	s := newSink()
	logs := map[string]*logLines{}
	nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{newSinkKind(s)} },
		withLogs(logs, false, func(cfg *Config) { cfg.MaxActivations = limit }))
	t.Cleanup(s.releaseHeld) // before the node closes, which waits for the turns
	return nodes[0], s, logs[nodes[0].Name()]
}

// holdInCalls holds the sink grains ids, each in a call to Hold(0) from its
// own goroutine, and returns a function that releases every held grain and
// waits for those calls' replies.
func holdInCalls(t *testing.T, n *Node, s *sink, ids ...string) (release func()) {
	t.Helper()
	calls := make(chan error, len(ids))
	for _, id := range ids {
		go func() {
			call := holdCall(id, 0)
			call.NewResponse = func() proto.Message { return new(emptypb.Empty) }
			_, err := n.Invoke(context.Background(), call)
			calls <- err
		}()
		receive(t, s.held, "the grain to hold")
	}
	return func() {
		t.Helper()
		s.releaseHeld()
		for range ids {
			if err := receive(t, calls, "a held call's reply"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestMaxActivationsLeavesBusyGrains: grains in a call are not passivated
// to bring the node under Config.MaxActivations; the shortfall is logged,
// and once they are idle the node's sweeps passivate them, with no
// activation to wake a trim.
func TestMaxActivationsLeavesBusyGrains(t *testing.T) {
	n, s, log := limitedSinkNode(t, 2)
	release := holdInCalls(t, n, s, "a", "b", "c")
	waitFor(t, waitTimeout, "the shortfall to be logged", func() bool {
		return log.count("more activations than Config.MaxActivations", "activations=3", "idle=0", "max=2") > 0
	})
	if got := n.acts.count(); got != 3 {
		t.Fatalf("the node holds %d activations, want the 3 busy ones", got)
	}
	// No activation comes to wake a trim (a burst of calls that ended, a
	// batch job that stopped): the node's next sweeps trim it, every 10 ms
	// here (testConfig), long before the grains' IdleTimeout.
	release()
	waitFor(t, waitTimeout, "the node to trim itself to the limit", func() bool { return n.acts.count() <= 2 })
}

// TestMaxActivationsLeavesKindsThatNeverPassivate: a kind whose
// IdleTimeout is negative keeps its grains past Config.MaxActivations.
func TestMaxActivationsLeavesKindsThatNeverPassivate(t *testing.T) {
	logs := map[string]*logLines{}
	nodes, _ := bankCluster(t, 1, nil, -1, withLogs(logs, false, func(cfg *Config) { cfg.MaxActivations = 2 }))
	n := nodes[0]
	for _, id := range []string{"a", "b", "c"} {
		deposit(t, n, accountKind, id, 1)
	}
	waitFor(t, waitTimeout, "the shortfall to be logged", func() bool {
		return logs[n.Name()].count("more activations than Config.MaxActivations", "activations=3", "idle=0") > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.acts.waitDeactivations(ctx); err != nil || n.acts.count() != 3 {
		t.Fatalf("the node holds %d activations (%v), want all 3", n.acts.count(), err)
	}
}

// TestMaxActivationsUnderLoad deposits, from several goroutines, twice on
// each of many FlushManual grains, far more than Config.MaxActivations, so
// that trims passivate grains between and during the calls: no
// acknowledged deposit may be lost, and the node's count of its
// activations must match its table.
func TestMaxActivationsUnderLoad(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, banks := bankCluster(t, 1, store, time.Hour, func(cfg *Config) { cfg.MaxActivations = 20 })
		n, b := nodes[0], banks[nodes[0].Name()]
		const callers, grains = 4, 100
		for range 2 {
			concurrently(t, callers, func(c int) error {
				for i := range grains {
					if _, err := n.Invoke(context.Background(), depositCall(manualKind, fmt.Sprintf("g-%d-%d", c, i), 1)); err != nil {
						return err
					}
				}
				return nil
			})
		}
		runs := 0
		for c := range callers {
			for i := range grains {
				runs += b.count(fmt.Sprintf("g-%d-%d", c, i), hookDeactivate)
			}
		}
		if runs == 0 {
			t.Fatal("no grain was passivated during the deposits: the test tested nothing")
		}
		for c := range callers {
			for i := range grains {
				if got := balance(t, n, manualKind, fmt.Sprintf("g-%d-%d", c, i)); got != 2 {
					t.Fatalf("balance of g-%d-%d: %d, want the 2 acknowledged deposits", c, i, got)
				}
			}
		}
		// The last activations woke a trim, which runs once the one before
		// it has paused.
		waitFor(t, waitTimeout, "the last trim", func() bool { return n.acts.count() <= 20 })
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := n.acts.waitDeactivations(ctx); err != nil {
			t.Fatal(err)
		}
		if held, count := n.acts.held.Load(), n.acts.count(); held != int64(count) {
			t.Fatalf("the table counts %d activations, and holds %d", held, count)
		}
	})
}

// TestMaxActivationsTrimsAgainAfterAGrainAskedStays: a grain a trim asked
// to passivate may be used before its actor comes to it, and stay; with
// no activation to come, the node's sweep trims again at its next tick.
func TestMaxActivationsTrimsAgainAfterAGrainAskedStays(t *testing.T) {
	n, s, _ := limitedSinkNode(t, 2)
	holdGrain(t, n, s, "asked")                         // in a one-way turn: no call counted in, so a trim may ask it
	release := holdInCalls(t, n, s, "busy-1", "busy-2") // a trim leaves them be
	a := n.acts.peek(actKey{sinkKind, "asked"})
	waitFor(t, waitTimeout, "the trim to ask the idle grain", func() bool { return a.flags.Load()&askedFlag != 0 })
	// Used before its actor takes the request, which waits behind the turn.
	if err := n.Send(context.Background(), holdCall("asked", 1)); err != nil {
		t.Fatal(err)
	}
	release()
	waitFor(t, waitTimeout, "the node to be back under Config.MaxActivations", func() bool { return n.acts.count() <= 2 })
}

// TestTrimsLeaveTheGrainsTheStoreKept: a grain whose passivation the store
// held back (it committed nothing) stays, and is asked again once it has
// been idle for another IdleTimeout (see grainActor.passivate), so that a
// store that is down gets one commit per idle grain and IdleTimeout. The
// trims that activations past Config.MaxActivations bring, one after the
// other, must keep to that: a trim that asked the kept grains again would
// give the store a commit per kept grain and activation.
func TestTrimsLeaveTheGrainsTheStoreKept(t *testing.T) {
	store := hookedMemstore(t)
	nodes, _ := bankCluster(t, 1, store, time.Hour, func(cfg *Config) { cfg.PassivationInterval = time.Hour })
	n := nodes[0]
	const grains, limit = 20, 10
	for i := range grains {
		deposit(t, n, manualKind, fmt.Sprintf("g-%d", i), 1) // acknowledged, buffered
	}
	// From here on only the trims below read the limit: no activation
	// wakes the node's own.
	n.cfg.MaxActivations = limit
	store.commitErr.Store(&errNothingCommitted)
	commits := store.commits.Load()
	// The trims of three activations past the limit, the one after the
	// other once its passivations are over.
	for range 3 {
		n.acts.trim()
		waitFor(t, waitTimeout, "the trim's passivations", func() bool { return deactivationsPending(n) == 0 })
	}
	if got := store.commits.Load() - commits; got != grains {
		t.Fatalf("three trims tried %d commits of %d grains' buffered changes while the store committed nothing, want %d: "+
			"one per grain, the others wait for their IdleTimeout", got, grains, grains)
	}
	if got := n.acts.count(); got != grains {
		t.Fatalf("the node holds %d activations, want the %d the store kept", got, grains)
	}
}

// TestATrimThatAsksAGrainDuringItsPassivationsCommitLeavesItKept: a trim
// that comes while a grain's passivation commits (the request it answers
// was taken, the grain is not marked asked any more) asks it again; the
// store then commits nothing, and the grain is kept. The second request,
// out of date once it reaches the actor, must not make the grain a
// trim's to ask again before its IdleTimeout.
func TestATrimThatAsksAGrainDuringItsPassivationsCommitLeavesItKept(t *testing.T) {
	store := hookedMemstore(t)
	nodes, _ := bankCluster(t, 1, store, time.Hour, func(cfg *Config) { cfg.PassivationInterval = time.Hour })
	n := nodes[0]
	for _, id := range []string{"g", "h"} {
		deposit(t, n, manualKind, id, 1) // acknowledged, buffered
	}
	// From here on only the trims below read the limit: no activation
	// wakes the node's own.
	n.cfg.MaxActivations = 1
	commits := store.commits.Load()
	entered, release := gateCommits(store)
	if asked := n.acts.trim(); asked != 1 {
		t.Fatalf("the first trim asked %d grains, want 1", asked)
	}
	receive(t, entered, "the passivation's commit")
	if asked := n.acts.trim(); asked != 1 {
		t.Fatalf("the trim during the commit asked %d grains, want the committing one again", asked)
	}
	store.commitErr.Store(&errNothingCommitted)
	release()
	waitFor(t, waitTimeout, "the trims' passivations", func() bool { return deactivationsPending(n) == 0 })
	// The next trims: the other grain, then none, both kept.
	for range 2 {
		n.acts.trim()
		waitFor(t, waitTimeout, "the trim's passivations", func() bool { return deactivationsPending(n) == 0 })
	}
	if got := store.commits.Load() - commits; got != 2 {
		t.Fatalf("the trims tried %d commits of 2 grains' buffered changes while the store committed nothing, want 2: "+
			"one per grain, the others wait for their IdleTimeout", got)
	}
}

// TestTrimsAskAgainTheGrainsTheStoreKeptOnceTheyAreUsed: a grain whose
// passivation the store held back is left to its IdleTimeout, not asked by
// each trim (see TestTrimsLeaveTheGrainsTheStoreKept); but once it is used
// again its IdleTimeout starts over, and it is an idle grain like any
// other. A grain kept during a short outage of the store and used after it
// must not stay out of the trims' reach until it has been idle for a whole
// IdleTimeout (never, for a grain used more often than that): the node
// would stay past Config.MaxActivations long after the load stopped.
func TestTrimsAskAgainTheGrainsTheStoreKeptOnceTheyAreUsed(t *testing.T) {
	store := hookedMemstore(t)
	const grains, limit = 20, 10
	nodes, _ := bankCluster(t, 1, store, time.Hour, func(cfg *Config) { cfg.MaxActivations = limit })
	n := nodes[0]
	store.commitErr.Store(&errNothingCommitted) // the outage
	var ids []string
	for i := range grains {
		ids = append(ids, fmt.Sprintf("g-%d", i))
		deposit(t, n, manualKind, ids[i], 1) // acknowledged, buffered
	}
	waitFor(t, waitTimeout, "the trims to find every grain kept by the store", func() bool {
		for _, id := range ids {
			if a := n.acts.peek(actKey{manualKind, id}); a == nil || a.flags.Load()&keptFlag == 0 {
				return false
			}
		}
		return true
	})
	store.commitErr.Store(nil) // the store is back
	for _, id := range ids {
		deposit(t, n, manualKind, id, 1) // used once more, then the load stops
	}
	// Sweeps run every 10 ms (testConfig): a hundred of them.
	waitFor(t, time.Second, "the node to trim itself to the limit once the load stopped", func() bool {
		return n.acts.count() <= limit
	})
	for _, id := range ids {
		if got := balance(t, n, manualKind, id); got != 2 {
			t.Errorf("balance of %s: %d, want the 2 acknowledged deposits", id, got)
		}
	}
}
