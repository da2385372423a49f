package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// Split-brain protection (Config.KeepMajority). A network partition splits
// the cluster into sides that each see the other's members failed. Without
// protection every side places the other's grains on itself, and a grain
// called on two sides runs on both until the partition heals (durable
// state refuses the second commit, but calls and in-memory state are
// doubled).
//
// With it, each node votes on its own view: the members it sees alive or
// leaving are reachable, the members it sees failed are unreachable, and
// members that left gracefully, or said on a stream that they are leaving
// (a leaver may be seen failed before its leave arrives), do not count. A
// node whose reachable members are a majority of those counted serves; on
// an even split, the side with the member whose name sorts first does.
// Every other node fences itself: it owns no grain, so its activations are
// deactivated, calls made through it fail with ErrNoQuorum, and the calls
// other members send it are refused as for a grain it does not own.
//
// A side that has the majority waits before it takes the grains of the
// members it sees failed: they keep their grains (calls to them fail and
// are retried) for DownAfter, long enough for the failure detector on the
// other side, which has fewer members to confirm a suspicion and probes
// more slowly when its probes fail, to see the partition too and fence
// itself. Then it downs them: their grains move. A downed member still
// counts against the majority while the view has it failed: the nodes do
// not agree on whom they downed, so a vote that left downed members out
// could give two sides a majority once a partition changes shape (a node
// cut off, downed by the others, then reaching one of them but not the
// rest). It stops counting when it comes back (a restart under its name is
// a new member, and its old start is gone from the view) or when the
// gossip forgets it. A fenced node downs nobody, and when it regains a
// majority it waits DownAfter afresh before it downs anyone.
//
// Nor does it serve at once when it regains a majority while members it
// did not down are failed: it stays fenced for DownAfter (it settles),
// unless they all come back first. The members it sees failed
// may have downed it meanwhile, and serve its grains until their own
// failure detectors find that they lost their majority: a partition
// that changes shape, {a,b | c} becoming {a | b,c}, gives c a majority as
// soon as it sees b again, while a, which took c's grains, serves them
// until it sees b failed, seconds later. A test of that ran c's grain on
// both a and c. DownAfter is the time the design gives a side to see a
// partition, and a began to see it before c saw b again.
//
// A node that starts while its seeds have members failed settles too, for
// as long as the others still hold their grains (see Node.settleForUnseen
// and holdTimes): its gossip does not take them in, so its view, without
// them, would place their grains at once.
//
// The vote has the usual price: a cluster that loses half of its members
// or more (two of three, one after the other included, until one comes
// back), or one of two whose name sorts first, stops serving, every
// failure keeps the failed member's grains unavailable for DownAfter, and
// a node that settles serves none of its grains for as long. And
// it is not agreement. A node that joins the cluster through a fenced node
// during a partition hears only of the members that node sees alive
// (memberlist takes in no failed member it never saw alive), and would
// count a majority of its own: so a fenced node refuses members it never
// saw (refuseStrangers), and says in its tags that it is fenced
// (advertiseFence), and a joiner that reached fenced members only fails to
// start (awaitMajoritySide). A seed that has not fenced itself yet (its
// failure detector has yet to declare the others failed, and memberlist
// does not pass on its suspicions to a joiner either) passes on the other
// side as alive: so a joiner connects to the members it heard of, and
// fails to start unless it reaches a strict majority of them, itself
// included (reachMajority). What is left: a joiner whose seeds are all on
// the minority side cannot start until the partition heals; one that
// starts just before a partition, before the other side heard of it, may
// count a majority of its own; and a node restarted under a name the
// fenced side knows is taken back, as a member, and starts if that gives
// the side a majority, while one under a new name is refused (so nodes
// with KeepMajority need fixed names).

// majority is a node's split-brain vote (see above). Its fields are used
// only by the view's refresh, under Node.refreshMu.
type majority struct {
	// downAfter is Config.DownAfter; if zero, patience gives it for a
	// view of that many members.
	downAfter time.Duration
	patience  func(members int) time.Duration
	// failedSince is when each member counted as unreachable was first
	// seen failed while this node was not fenced, by incarnation: a
	// restart under the name is a new member.
	failedSince map[memberIncarnation]time.Time
	// downed are the failed members whose grains moved after DownAfter.
	downed map[memberIncarnation]bool
	// leavers are the members seen failed that said they are leaving:
	// remembered, as their streams, which said so, end before the gossip
	// may bring the leave.
	leavers map[memberIncarnation]bool
	// fenced is whether the last vote found no majority.
	fenced bool
	// settled is when a node that regained a majority while members it
	// did not down were failed may serve again (see above); zero if it is
	// not settling.
	settled time.Time
	// unseen are the members that the lists a starting node merged had,
	// and its gossip did not take in (see Node.settleForUnseen): the
	// node settles until unseenUntil, unless they all come into its view
	// first. nil once they did, or the time passed.
	unseen      map[string]bool
	unseenUntil time.Time
	// unlisted is when a starting node stops settling for the holds the
	// answers to its question bounded without naming them (see
	// holdAnswer.rest): no view tells when those members come back. Zero
	// if there were none.
	unlisted time.Time
	// holds is what the last vote held, for the queries of starting nodes
	// (see holdTimes), which read it without Node.refreshMu.
	holds atomic.Pointer[holdTimes]
}

func newMajority(downAfter time.Duration, patience func(members int) time.Duration) *majority {
	return &majority{
		downAfter:   downAfter,
		patience:    patience,
		failedSince: make(map[memberIncarnation]time.Time),
		downed:      make(map[memberIncarnation]bool),
		leavers:     make(map[memberIncarnation]bool),
	}
}

// verdict is the outcome of a vote on one view.
type verdict struct {
	// fenced is whether the node owns no grain: it has no majority, or
	// it is settling.
	fenced bool
	// settling is whether the node has a majority, but is fenced while it
	// settles; regained, whether this vote gave it the majority back.
	settling, regained bool
	// against are the failed members that count against the majority,
	// downed or not.
	against []string
	// held are the failed members that are not downed: they keep their
	// grains.
	held []string
	// recheck is when the next held member is due to be downed, or the
	// node to have settled; zero if none is.
	recheck time.Duration
}

// settleFor has the node settle: fenced for left more, at least, with a
// recheck then.
func (out *verdict) settleFor(left time.Duration) {
	out.fenced, out.settling = true, true
	if out.recheck == 0 || left < out.recheck {
		out.recheck = left
	}
}

// vote judges view members at now, downs the members due if the node is
// not fenced, and reports the verdict. saidLeaving reports whether a
// member said on a stream that it is leaving gracefully.
func (v *majority) vote(members []Member, now time.Time, saidLeaving func(name string) bool) verdict {
	var out verdict
	byID := make(map[memberIncarnation]*Member, len(members))
	reachable, against, first, firstReachable := 0, 0, "", false
	var held []*Member
	for i := range members {
		m := &members[i]
		id := memberIncarnation{m.Name, m.incarnation}
		byID[id] = m
		delete(v.unseen, m.Name) // in the view: the vote judges it now
		failed := m.Status == StatusFailed
		if failed && !v.leavers[id] && saidLeaving(m.Name) {
			v.leavers[id] = true
		}
		up := m.Status == StatusAlive || m.Status == StatusLeaving
		switch {
		case up:
			reachable++
		case failed && !v.leavers[id]:
			against++
			out.against = append(out.against, m.Name)
			if !v.downed[id] {
				held = append(held, m)
			}
		default:
			continue // left, or a leaver: it does not count
		}
		if first == "" || m.Name < first {
			first, firstReachable = m.Name, up
		}
	}
	// Forget the members the view no longer has failed: back alive (they
	// count as reachable again), or gone from it.
	for _, set := range []map[memberIncarnation]bool{v.downed, v.leavers} {
		for id := range set {
			if m := byID[id]; m == nil || m.Status != StatusFailed {
				delete(set, id)
			}
		}
	}
	for id := range v.failedSince {
		if m := byID[id]; m == nil || m.Status != StatusFailed {
			delete(v.failedSince, id)
		}
	}
	// Nobody counts when this node has left and the others too: nothing
	// to serve, and nothing to fence against.
	noMajority := reachable+against > 0 && (reachable < against || reachable == against && !firstReachable)
	wasFenced := v.fenced
	v.fenced = noMajority
	out.regained = wasFenced && !noMajority
	downAfter := v.downAfter
	if downAfter == 0 {
		downAfter = v.patience(len(members))
	}
	switch {
	case noMajority || len(held) == 0:
		// Fenced anyway, or nobody is left to fear: the members this node
		// downed while it had a majority were fenced then, and could take
		// a majority again only with members it sees failed and did not
		// down, which it would fear.
		v.settled = time.Time{}
	case out.regained:
		v.settled = now.Add(downAfter)
	}
	out.fenced = noMajority
	if left := v.settled.Sub(now); !noMajority && left > 0 {
		out.settleFor(left)
	}
	if left := v.unseenUntil.Sub(now); len(v.unseen) == 0 || left <= 0 {
		v.unseen = nil
	} else if !noMajority {
		out.settleFor(left)
	}
	if left := v.unlisted.Sub(now); left <= 0 {
		v.unlisted = time.Time{}
	} else if !noMajority {
		out.settleFor(left)
	}
	for _, m := range held {
		out.held = append(out.held, m.Name)
		if noMajority {
			continue // a fenced node downs nobody, and its clocks stand still
		}
		id := memberIncarnation{m.Name, m.incarnation}
		since, ok := v.failedSince[id]
		if !ok || wasFenced {
			since = now // first seen failed, or a majority regained: DownAfter afresh
			v.failedSince[id] = since
		}
		left := since.Add(downAfter).Sub(now)
		if left <= 0 {
			v.downed[id] = true
			delete(v.failedSince, id)
			out.held = out.held[:len(out.held)-1]
			continue
		}
		if out.recheck == 0 || left < out.recheck {
			out.recheck = left
		}
	}
	v.publish(noMajority, downAfter)
	return out
}

// publish stores what the vote just made holds (see holdTimes): when this
// node downs each failed member that counts against its majority, and
// when it stops settling for the members its start did not take in.
func (v *majority) publish(fenced bool, downAfter time.Duration) {
	h := &holdTimes{fenced: fenced}
	if !fenced {
		h.until = make(map[string]time.Time, len(v.failedSince)+len(v.downed)+len(v.unseen))
		later := func(name string, t time.Time) { // the latest per name: a restart is a new member
			if was, ok := h.until[name]; !ok || t.After(was) {
				h.until[name] = t
			}
		}
		for id := range v.downed {
			later(id.name, time.Time{})
		}
		for id, since := range v.failedSince {
			later(id.name, since.Add(downAfter))
		}
		for name := range v.unseen {
			later(name, v.unseenUntil)
		}
		h.unlisted = v.unlisted
	}
	v.holds.Store(h)
}

// settleForUnseen has a node that starts with KeepMajority settle (see
// majority.unseen) while the others hold the grains of members its view
// lacks: memberlist takes in no member that a peer has failed (or
// suspects) unless it saw it alive itself. Without them, its view would
// place at once the grains that the members who saw them fail hold for
// them for DownAfter, and take those it wins from them itself, while a
// member cut off by a partition, which has yet to see it and never hears
// of this node, still serves them
// (TestAJoinerHoldsTheGrainsOfAMemberItsSeedHasFailed: a member restarted
// during a partition). The node asks the others what they hold (see
// askHeld) and settles until the last of those holds ends, or for
// DownAfter if the lists it merged as it joined named failed members and
// not every member said what it holds (long enough for a member that
// failed before it to have stood down); unless they all come into its
// view first (back alive, as a partition heals). The holds an answer
// bounded without naming them (holdAnswer.rest) it settles for whoever
// comes back. Its vote does not count them: its view does not have them.
// Called from Start, before the node's first view.
func (n *Node) settleForUnseen() {
	known := make(map[string]bool)
	for _, m := range n.serf.Members() {
		known[m.Name] = true
	}
	var named []string // by the lists it merged
	for _, name := range n.claim.heardNames() {
		if !known[name] {
			named = append(named, name)
		}
	}
	slices.Sort(named)
	holds, rest, err := n.askHeld(named)
	answered := time.Now()
	n.refreshMu.Lock()
	defer n.refreshMu.Unlock()
	v := n.majority
	downAfter := v.downAfter
	if downAfter == 0 {
		downAfter = v.patience(len(known) + len(named))
	}
	unseen := make(map[string]bool, len(named)+len(holds))
	var wait time.Duration
	for _, name := range named {
		unseen[name] = true
	}
	for name, left := range holds {
		// Its own name is an earlier start of this node, which is gone;
		// a member it knows is its own vote's.
		if name != n.name && !known[name] {
			unseen[name] = true
			wait = max(wait, left)
		}
	}
	var why error
	if err != nil && len(named) > 0 {
		wait, why = downAfter, err
	}
	wait, rest = min(wait, downAfter), min(rest, downAfter)
	if wait <= 0 && rest <= 0 {
		return // nobody holds them: their grains moved
	}
	attrs := []any{"failed", slices.Sorted(maps.Keys(unseen)), "in", wait}
	if rest > 0 {
		// Holds the answers had no room to name: the node settles for
		// their bound whoever comes back (see holdAnswer.rest).
		attrs = append(attrs, "unnamedIn", rest)
	}
	if why != nil {
		attrs = append(attrs, "why", why) // it settles for DownAfter
	}
	n.log.Info("cluster: the others hold the grains of failed members this node never saw alive: it serves once the holds end, unless they come back first (Config.KeepMajority)", attrs...)
	// From the answers, which are older than that by their way here:
	// the node settles a little longer than they hold, never shorter.
	if wait > 0 {
		v.unseen = unseen
		v.unseenUntil = answered.Add(wait)
	}
	if rest > 0 {
		v.unlisted = answered.Add(rest)
	}
}

// defaultDownAfter is DownAfter's default for a view of the given number
// of members under the gossip timings mc: three probe intervals and the
// failure detector's longest suspicion (see suspicionRounds), plus the
// time a node cut off from the others takes to probe half of them at the
// slowest rate memberlist's Lifeguard drops to when its own probes keep
// failing (AwarenessMaxMultiplier times the probe interval). Probes go to
// one member at a time, and a lone node has nobody to confirm its
// suspicions, so it sees a partition last: an audit that cut one node of
// seven off saw the others take its grains before it fenced itself when
// the second term was missing. (The name claim's patience counts the slow
// probes differently, for a member probing a crashed one: see
// claimPatience. This default was set before, and the majority's wait for a
// failed member's grains is not made longer with it.)
func defaultDownAfter(mc *memberlist.Config, members int) time.Duration {
	half := (members + 1) / 2
	slowest := time.Duration(max(1, mc.AwarenessMaxMultiplier)) * mc.ProbeInterval
	rounds := 3 + suspicionRounds(mc, members)
	return time.Duration(rounds*float64(mc.ProbeInterval)) + time.Duration(half)*slowest
}

// refuseStrangers refuses, while this node is fenced for want of a
// majority (see placement.minority), a merge of members that are all
// unknown to it (serf's merge delegate, see nameClaim).
// Memberlist asks that delegate before it merges the state of a join's
// push-pull, on both sides, and before it takes an alive message (one
// member, whether gossiped or from a periodic push-pull). A new node that
// joins through a fenced node during a partition would otherwise be taken
// in by that side alone, and could tip its vote: on an even split, the
// new node's name may sort first. A state or an alive message that names
// any member this node's view has, whatever its status, or this node, is
// taken as before: a restart under a known name, and the healing of the
// partition (serf's reconnects to failed members are joins, and the other
// side's state names the members it knows; a member that joined the other
// side meanwhile is taken once this node is no longer fenced, from the
// member lists it then exchanges, see syncAfterFence).
//
// The refusal does not reach the joiner: memberlist sends the seed's state
// before it merges the joiner's, and only logs the seed's failure to
// merge, so the joiner merges the seed's state and its join succeeds. It
// learns that the seed is fenced from the seed's tags instead (see
// advertiseFence and awaitMajoritySide).
func (n *Node) refuseStrangers(members []*serf.Member) error {
	p := n.view.Load()
	if !p.minority() {
		return nil // a settling node has a majority: the stranger tips no vote
	}
	if len(members) == 0 {
		return nil
	}
	names := make([]string, 0, len(members))
	for _, m := range members {
		if _, known := p.member(m.Name); known || m.Name == n.name {
			return nil
		}
		names = append(names, m.Name)
	}
	n.refusedStrangers.Store(true) // see syncAfterFence
	n.log.Warn("cluster: refused members this node never saw: it has no majority of the members it knows (Config.KeepMajority); they must join through a member of the majority",
		"members", names)
	return fmt.Errorf("cluster: node %s has no majority of the members it knows (KeepMajority): join through a member of the majority", n.name)
}

// advertiseFence keeps tagFenced in the node's serf tags while its view is
// fenced for want of a majority (not while it settles, see
// placement.minority), and out of them otherwise, so that a node that joins
// through it learns that it has no majority (see awaitMajoritySide):
// memberlist sends a seed's state, tags included, to a joiner whatever the
// seed's merge delegate says of the joiner's (see refuseStrangers). A leaving
// node's side is no news (see judge). Once the node is no longer fenced, it
// also exchanges member lists with the others if it refused strangers
// meanwhile (see syncAfterFence). Serf's SetTags waits for the update's
// broadcast (up to its BroadcastTimeout), and a join for its push-pull, so
// both run here rather than on the view's goroutine.
func (n *Node) advertiseFence() {
	defer n.loops.Done()
	advertised := false
	for {
		select {
		case <-n.fenceChanged:
		case <-n.stop:
			return
		}
		fenced := n.view.Load().minority()
		if n.transport.leaving.Load() || n.serf.State() != serf.SerfAlive {
			continue // the node is going: SetTags would wait out its broadcast
		}
		if !fenced && n.refusedStrangers.Swap(false) {
			n.syncAfterFence()
		}
		if fenced != advertised && n.advertiseVote(fenced) {
			advertised = fenced
		}
	}
}

// advertiseVote sets the node's tags to say whether it is fenced (see
// advertiseFence), unless its Shutdown began: then the tags say it leaves
// (see advertiseLeave), which they must go on saying. It reports whether
// it set them.
func (n *Node) advertiseVote(fenced bool) bool {
	n.tagsMu.Lock()
	defer n.tagsMu.Unlock()
	if n.transport.leaving.Load() {
		return false
	}
	tags := n.tags
	if fenced {
		tags = fencedTags(n.tags)
	}
	// An error is a broadcast that timed out: the update is queued, and
	// gossip carries it once a member answers.
	if err := n.serf.SetTags(tags); err != nil {
		n.log.Debug("cluster: advertise the split-brain vote in the node's tags", "fenced", fenced, "err", err)
	}
	return true
}

// syncAfterFence exchanges the member lists with a few alive members (a
// push-pull, as a join makes) once this node is no longer fenced, if it
// refused the gossip of members it never saw while it was (see
// refuseStrangers): such as a node that joined the majority meanwhile,
// whose alive messages are retransmitted a few times only; without the
// exchange, this node would place that node's grains on itself until the
// next periodic push-pull (2 s in GossipLocal, 30 s in LAN), while the
// others place them on the newcomer.
func (n *Node) syncAfterFence() {
	var addrs []string
	for _, m := range n.serf.Members() {
		if m.Name != n.name && m.Status == serf.StatusAlive && len(addrs) < syncAfterFenceMembers {
			addrs = append(addrs, gossipAddr(m.Addr, m.Port))
		}
	}
	if len(addrs) == 0 {
		return
	}
	if _, err := n.serf.Join(addrs, true); err != nil {
		n.log.Warn("cluster: exchange member lists after regaining a majority", "members", addrs, "err", err)
		return
	}
	n.log.Info("cluster: exchanged member lists after regaining a majority, having refused members it never saw", "with", addrs)
}

// syncAfterFenceMembers is how many alive members syncAfterFence asks:
// one that answers is enough, three ride out one that is slow.
const syncAfterFenceMembers = 3

// awaitMajoritySide returns once a member that this node, joining with
// KeepMajority, found alive says it is not fenced (it has no tagFenced),
// or at once if it found none. A joiner that reached only fenced members,
// on the minority side of a partition, would otherwise count a majority
// of its own: those members and itself, without the failed members it
// never heard of (memberlist takes in no failed member it has not seen
// alive). A fenced seed may take the joiner in all the same, when the
// joiner comes back under a name it knows (see refuseStrangers), and may
// have a majority with it; so the joiner waits fenceNewsPatience for the
// news that a seed is no longer fenced before it gives up with
// ErrNoQuorum. A seed that has not yet seen the partition, or has not yet
// said so in its tags, is not fenced for the joiner either.
func (n *Node) awaitMajoritySide(ctx context.Context) error {
	fenced := n.fencedPeers()
	if fenced == nil {
		return nil
	}
	mc := n.cfg.memberlistConfig()
	patience := fenceNewsPatience(mc)
	giveUp := time.NewTimer(patience)
	defer giveUp.Stop()
	tick := time.NewTicker(mc.GossipInterval)
	defer tick.Stop()
	for ; fenced != nil; fenced = n.fencedPeers() {
		select {
		case <-tick.C:
		case <-giveUp.C:
			return fmt.Errorf("%w: every member this node reached through %v (%s) has no majority of the members it knows (Config.KeepMajority), as on the minority side of a partition: join through a member of the majority, or once the partition heals",
				ErrNoQuorum, n.cfg.Seeds, strings.Join(fenced, ", "))
		case <-ctx.Done():
			return fmt.Errorf("%w: every member this node reached through %v (%s) has no majority of the members it knows (Config.KeepMajority), and the start's context ended: %w",
				ErrNoQuorum, n.cfg.Seeds, strings.Join(fenced, ", "), ctx.Err())
		}
	}
	return nil
}

// reachMajority returns once this node, joining with KeepMajority, has
// connected to the transports of a strict majority of the alive members
// it heard of through its seeds, itself included, and fails with
// ErrNoQuorum if it cannot. A seed that has yet to see a partition (its
// failure detector takes seconds to declare the other side failed) is
// not fenced, and passes the other side's members on as alive; a joiner
// that counted on them would, with its seed, count the vote its own,
// while the other side, which never heard of it, counts its own too: on
// an even split when its name sorts first, on any split with enough
// joiners. A test on the network ran the seed's grain on both sides so.
// The joiner cannot connect to the other side, and learns so here. An
// even split does not do: the name that sorts first may be the joiner's.
// A joiner that starts before the partition begins is left to the gossip:
// the other side has likely heard of it by then.
func (n *Node) reachMajority(ctx context.Context) error {
	if n.cfg.reachingMajority != nil {
		n.cfg.reachingMajority(n)
	}
	peers := n.alivePeers()
	members := len(peers) + 1
	ctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
	defer cancel() // once a majority answered: the other dials go on alone
	type dial struct {
		name string
		err  error
	}
	dials := make(chan dial, len(peers))
	for i := range peers {
		go func() {
			_, err := n.transport.conn(ctx, &peers[i])
			dials <- dial{peers[i].Name, err}
		}()
	}
	reached := 1
	var unreached []string
	for range peers {
		if 2*reached > members {
			return nil
		}
		d := <-dials
		if d.err != nil {
			unreached = append(unreached, d.name)
			continue
		}
		reached++
	}
	if 2*reached > members {
		return nil
	}
	slices.Sort(unreached)
	return fmt.Errorf("%w: this node reached %d of the %d members it heard of through %v, itself included, and not %s, as on the minority side of a partition its seeds have yet to see (Config.KeepMajority): join through a member of the majority, or once the partition heals",
		ErrNoQuorum, reached, members, n.cfg.Seeds, strings.Join(unreached, ", "))
}

// alivePeers returns the members alive in serf's list, but this node,
// as a start sees them before its view has them.
func (n *Node) alivePeers() []Member {
	var peers []Member
	for _, sm := range n.serf.Members() {
		if m, ok := memberFromSerf(sm); ok && m.Name != n.name && m.Status == StatusAlive {
			peers = append(peers, m)
		}
	}
	return peers
}

// fencedPeers returns the names of the alive members other than this
// node, sorted, if each of them has tagFenced; nil if one has not, or
// there are none.
func (n *Node) fencedPeers() []string {
	var fenced []string
	for _, m := range n.serf.Members() {
		if m.Name == n.name || m.Status != serf.StatusAlive {
			continue
		}
		if _, ok := m.Tags[tagFenced]; !ok {
			return nil
		}
		fenced = append(fenced, m.Name)
	}
	slices.Sort(fenced)
	return fenced
}

// fenceNewsPatience is how long a joiner whose peers are all fenced waits
// for one of them to say it is no longer (see awaitMajoritySide): ten
// gossip rounds for the seed's new tags to arrive, and a probe interval to
// spare for the seed to merge the joiner and vote again. 0.5 s in the
// GossipLocal profile, 3 s in LAN.
func fenceNewsPatience(mc *memberlist.Config) time.Duration {
	return mc.ProbeInterval + 10*mc.GossipInterval
}
