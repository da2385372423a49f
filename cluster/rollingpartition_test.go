package cluster

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/protograin/protograin/cluster/storage"
)

// TestGrainStateThroughAPartitionAndASecondFailure deposits on grains of
// both flush modes as TestGrainStateThroughARollingRestart does, on a
// gateway and three members with KeepMajority, while membership changes
// overlap with a second failure:
//
//   - a member is cut off from the others on the network (a minority of
//     one: the gateway counts, so the others are three of four) and,
//     once they see it failed, another member restarts gracefully; the
//     restarted member's new start joins while the cut member is failed
//     and, later, fenced. The others, two of the three members they
//     count (the leaver does not count), keep the majority throughout,
//     take the cut member's grains after DownAfter, and give them back
//     once the network heals.
//   - a member crashes while another one is mid-restart (its Shutdown
//     done, its new start not yet started); the two alive of the three
//     counted keep the majority; then both start again.
//   - a member is cut off and, once the others see it failed, another
//     crashes and starts again at once: its new start never saw the cut
//     member alive, and settles while the others hold the cut member's
//     grains (Node.settleForUnseen), with its own grains waiting for it.
//
// KeepMajority promises that a fenced minority runs no grain, and that
// the majority takes a failed member's grains only after DownAfter, once
// the minority had time to stand down (its default here, the time the
// design gives a lone node to see a partition): so a grain runs on one
// side only, and every acknowledged deposit must be stored exactly once,
// of both flush modes, but for those a FlushManual grain of the crashed
// start had acknowledged since its last commit ("a member that fails
// commits nothing", architecture.md, "Brief overlap"), which verify
// allows for. Deposits through the cut member fail with ErrNoQuorum once
// it fences itself, or at their deadlines before: each is tried again
// under its stamp through the gateway (rollingLoad), so a failed deposit
// counts as acknowledged only once a retry is. No hand-off wait may end
// at its bound, and the cut member must have deactivated every grain it
// ran by the time the others take them.
//
// The restarted member's new start joins through the gateway, whose
// state names the cut member failed, and memberlist takes in no failed
// member it never saw alive: its view lacked the cut member, and placed
// the grains the others held for it at once, beside the cut member, not
// yet fenced (TestAJoinerHoldsTheGrainsOfAMemberItsSeedHasFailed; such a
// start now settles for DownAfter). And the crash found that a joiner's
// wait for the release of a member that had just crashed, which ended as
// the joiner saw it failed, still reported at its bound that it went on
// without the release
// (TestAWaitThatTheMembersFailureEndedIsNotReportedAtItsBound).
//
// Each variant takes about 20 s per store under -race, DownAfter's wait
// (12.9 s) most of it: the package's run has both on the memstore only,
// and ROLLING_PARTITION=1 runs both on every store:
//
//	ROLLING_PARTITION=1 go test -race -run TestGrainStateThroughAPartitionAndASecondFailure ./cluster
func TestGrainStateThroughAPartitionAndASecondFailure(t *testing.T) {
	t.Parallel()
	t.Run("a_member_cut_off_while_another_restarts", func(t *testing.T) {
		if os.Getenv("ROLLING_PARTITION") == "" {
			onMemstore(t, cutOffDuringARestart)
			return
		}
		eachStore(t, cutOffDuringARestart)
	})
	t.Run("a_member_crashed_while_another_restarts", func(t *testing.T) {
		if os.Getenv("ROLLING_PARTITION") == "" {
			onMemstore(t, crashDuringARestart)
			return
		}
		eachStore(t, crashDuringARestart)
	})
	t.Run("a_member_crashed_and_restarted_while_another_is_cut_off", func(t *testing.T) {
		if os.Getenv("ROLLING_PARTITION") == "" {
			onMemstore(t, crashWhileCutOff)
			return
		}
		eachStore(t, crashWhileCutOff)
	})
}

// cutOffDuringARestart is TestGrainStateThroughAPartitionAndASecondFailure's
// partition over store.
func cutOffDuringARestart(t *testing.T, store storage.Store) {
	const members, grains, between = 3, 150, 300
	rc, load, p, cut, others := startCutOff(t, store)
	id := ownedInEveryView(t, rc.all(), cut, manualKind, "m")
	p.split(cut)
	// The others see it failed, and hold its grains for DownAfter; the
	// restart comes then: its new start, which settles, cannot have
	// heard of the cut member alive.
	waitConverged(t, others(), members)
	rc.stop(t, 0, false)
	rc.startAgain(t, load, 0)
	awaitNewStart(t, others(), rc.members[0])
	waitConverged(t, others(), members)
	load.progress(t, fmt.Sprintf("deposits after %s's restart, %s cut off", rc.members[0].Name(), cut.Name()), between)

	// Once the others took the cut member's grains, it must run none.
	b := rc.banks[cut.Name()][0]
	waitFor(t, 2*load.patience, "the cut member to fence itself, and the others to take its grains", func() bool {
		if !cut.Fenced() {
			return false
		}
		for _, n := range others() {
			if m, ok := n.Owner(manualKind, id); !ok || m.Name == cut.Name() {
				return false
			}
		}
		return true
	})
	for i := range grains {
		for _, id := range []string{fmt.Sprintf("a-%d", i), fmt.Sprintf("m-%d", i)} {
			if news, hooks := b.count(id, hookNew), b.count(id, hookDeactivate); news != hooks {
				t.Errorf("%s: %d activations on the cut member, %d deactivated, when the others took its grains", id, news, hooks)
			}
		}
	}
	load.reachAll(t, "deposits on every grain once the others took the cut member's")
	healAndVerify(t, store, rc, load, p, cut)
}

// startCutOff starts TestGrainStateThroughAPartitionAndASecondFailure's
// cluster over store, three members and a gateway, with its load, which
// has deposited on every grain; it returns them with the partition, the
// member it is to cut off, and the others.
func startCutOff(t *testing.T, store storage.Store) (rc *rollingCluster, load *rollingLoad, p *partition, cut *Node, others func() []*Node) {
	t.Helper()
	const members, callers, grains = 3, 2, 150
	p = newPartition()
	rc = startRollingCluster(t, store, members, false, p)
	load = newRollingLoad(t, rc.gateway, rc.members, callers, grains)
	load.reachAll(t, "deposits on every grain before the partition")
	cut = rc.members[2]
	others = func() []*Node { return slices.DeleteFunc(rc.all(), func(n *Node) bool { return n == cut }) }
	return rc, load, p, cut, others
}

// healAndVerify heals the partition that cut off cut, waits for cut to
// serve again and for the deposits to reach every grain, and checks what
// the stores hold (see rollingCluster.verify).
func healAndVerify(t *testing.T, store storage.Store, rc *rollingCluster, load *rollingLoad, p *partition, cut *Node, crashed ...*bank) {
	t.Helper()
	p.heal()
	waitFor(t, waitTimeout, "the cut member to serve again", func() bool { return !cut.Fenced() })
	waitConverged(t, rc.all(), len(rc.members)+1)
	load.reachAll(t, "deposits on every grain after the partition healed")
	load.finish()
	rc.verify(t, store, load, crashed...)
}

// crashDuringARestart is TestGrainStateThroughAPartitionAndASecondFailure's
// crash during a restart over store.
func crashDuringARestart(t *testing.T, store storage.Store) {
	const members, callers, grains, between = 3, 2, 150, 300
	rc := startRollingCluster(t, store, members, false, newPartition())
	load := newRollingLoad(t, rc.gateway, rc.members, callers, grains)
	load.reachAll(t, "deposits on every grain before the restart")

	// The second member crashes once the first one's Shutdown is done,
	// and its new start comes after the crash. The load then waits out
	// DownAfter, as the crashed member's grains are held: it is started
	// again only once the others took them.
	rc.stop(t, 0, false)
	crashed := rc.stop(t, 1, true)
	alive := func() []*Node { return []*Node{rc.gateway, rc.members[0], rc.members[2]} }
	rc.startAgain(t, load, 0)
	awaitNewStart(t, alive(), rc.members[0])
	waitConverged(t, alive(), members)
	load.progress(t, fmt.Sprintf("deposits after %s's restart, %s crashed", rc.members[0].Name(), crashed.node), between)
	rc.startAgain(t, load, 1)
	awaitNewStart(t, rc.all(), rc.members[1])
	waitConverged(t, rc.all(), members+1)
	load.reachAll(t, "deposits on every grain after the crashed member's restart")
	load.finish()
	rc.verify(t, store, load, crashed)
}

// crashWhileCutOff is TestGrainStateThroughAPartitionAndASecondFailure's
// crash during a partition over store: once the others see a cut-off
// member failed, another member crashes and its new start comes at once,
// while the others still hold the cut member's grains. The new start
// never saw the cut member alive: it asks the others what they hold, and
// settles until their holds end, while its own grains, which the others
// no longer hold for its crashed start, wait for it.
func crashWhileCutOff(t *testing.T, store storage.Store) {
	const members, between = 3, 300
	rc, load, p, cut, others := startCutOff(t, store)
	// The others may take longer to agree that the crashed start is dead
	// than the name claim waits (Lifeguard slows the probes of members
	// whose probes of the cut member fail): the new start then fails with
	// ErrNameInUse, and is started again, as a deploy would.
	rc.retryName = true
	p.split(cut)
	waitConverged(t, others(), members)
	crashed := rc.stop(t, 0, true)
	rc.startAgain(t, load, 0)
	awaitNewStart(t, others(), rc.members[0])
	waitConverged(t, others(), members)
	load.progress(t, fmt.Sprintf("deposits after %s's crash and new start, %s cut off", rc.members[0].Name(), cut.Name()), between)
	waitFor(t, 2*load.patience, "the cut member to fence itself", cut.Fenced)
	load.reachAll(t, "deposits on every grain once the others took the cut member's")
	healAndVerify(t, store, rc, load, p, cut, crashed)
}
