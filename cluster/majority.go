package cluster

import (
	"time"
)

// Split-brain protection (Config.KeepMajority). A network partition splits
// the cluster into sides that each see the other's members failed. Without
// protection every side places the other's grains on itself, and a grain
// called on two sides runs on both until the partition heals (durable
// state refuses the second commit, but calls and in-memory state are
// doubled).
//
// With it, each node votes on its own view: the members it sees alive or
// leaving are reachable, the members it sees failed are unreachable, until
// they are counted out (downed, below), and members that left gracefully
// do not count. A node whose reachable members are a majority of those
// counted serves; on an even split, the side with the member whose name
// sorts first does. Every other node fences itself: it owns no grain, so
// its activations are deactivated, calls made through it fail with
// ErrNoQuorum, and the calls other members send it are refused as for a
// grain it does not own. A side that has the majority waits before it
// takes the grains of the members it sees failed: they keep their grains
// (calls to them fail and are retried) for DownAfter, long enough for the
// failure detector on the other side, which has fewer members to confirm a
// suspicion, to see the partition too and fence itself. Then it downs
// them: they no longer count, and their grains move. A fenced node downs
// nobody, so it stays fenced until it sees a majority again (the partition
// heals) or is shut down; a member that was downed and comes back alive
// counts again.
//
// The vote has the usual price: a cluster that loses half of its members
// or more at once (two of three crash within DownAfter, or one of two whose
// name sorts first) stops serving until they come back, and every failure
// keeps the failed member's grains unavailable for DownAfter.

// majority is a node's split-brain vote (see above). Its fields are used
// only by the view's refresh, under Node.refreshMu.
type majority struct {
	// downAfter is Config.DownAfter; if zero, patience gives it for a
	// view of that many members.
	downAfter time.Duration
	patience  func(members int) time.Duration
	// failedSince is when each member counted as unreachable was first
	// seen failed, by incarnation: a restart under the name is a new
	// member.
	failedSince map[memberIncarnation]time.Time
	// downed are the members counted out after DownAfter.
	downed map[memberIncarnation]bool
}

func newMajority(downAfter time.Duration, patience func(members int) time.Duration) *majority {
	return &majority{
		downAfter:   downAfter,
		patience:    patience,
		failedSince: make(map[memberIncarnation]time.Time),
		downed:      make(map[memberIncarnation]bool),
	}
}

// verdict is the outcome of a vote on one view.
type verdict struct {
	fenced bool
	// held are the failed members that still count and keep their grains.
	held []string
	// recheck is when the next held member is due to be downed; zero if
	// none is.
	recheck time.Duration
}

// vote judges view members at now, downs the members due if the node is
// not fenced, and reports the verdict. saidLeaving reports whether a
// member said it is leaving gracefully, which a view may not show yet (a
// leaver can be seen failed before its leave arrives): such a member does
// not count.
func (v *majority) vote(members []Member, now time.Time, saidLeaving func(name string) bool) verdict {
	byID := make(map[memberIncarnation]*Member, len(members))
	reachable, first, firstReachable := 0, "", false
	var unreachable []*Member
	for i := range members {
		m := &members[i]
		id := memberIncarnation{m.Name, m.incarnation}
		byID[id] = m
		up := m.Status == StatusAlive || m.Status == StatusLeaving
		switch {
		case up:
			reachable++
		case m.Status == StatusFailed && !v.downed[id] && !saidLeaving(m.Name):
			if _, ok := v.failedSince[id]; !ok {
				v.failedSince[id] = now
			}
			unreachable = append(unreachable, m)
		default:
			continue // left, downed, or leaving: it does not count
		}
		if first == "" || m.Name < first {
			first, firstReachable = m.Name, up
		}
	}
	// Forget the members the view no longer has failed: back alive (they
	// count again), or gone from it.
	for id := range v.failedSince {
		if m := byID[id]; m == nil || m.Status != StatusFailed {
			delete(v.failedSince, id)
		}
	}
	for id := range v.downed {
		if m := byID[id]; m == nil || m.Status != StatusFailed {
			delete(v.downed, id)
		}
	}
	var out verdict
	out.fenced = reachable < len(unreachable) || reachable == len(unreachable) && !firstReachable
	downAfter := v.downAfter
	if downAfter == 0 {
		downAfter = v.patience(len(members))
	}
	for _, m := range unreachable {
		id := memberIncarnation{m.Name, m.incarnation}
		left := v.failedSince[id].Add(downAfter).Sub(now)
		if !out.fenced && left <= 0 {
			v.downed[id] = true
			delete(v.failedSince, id)
			continue
		}
		out.held = append(out.held, m.Name)
		if !out.fenced && (out.recheck == 0 || left < out.recheck) {
			out.recheck = left
		}
	}
	return out
}
