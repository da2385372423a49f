package cluster

import (
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"
)

// An old process can come back after the cluster replaced it: a paused VM
// that wakes up, a machine back from a partition after its pod was
// restarted elsewhere under the same NodeName. The failure detector
// declared it dead, and its successor took the name (see nameClaim).
// Memberlist refuses the old process's gossip, so nobody routes to it, but
// nothing in the gossip tells the old process, and it would go on serving
// its own callers from activations that also exist on the cluster's
// members: two activations of one grain.
//
// Each start of a node draws a random incarnation (Node.incarnation), in
// its tags and in the first hello of the streams it dials. A member whose
// view saw a member's incarnation replaced by another under the same name
// keeps the old one (retiredIncarnations). When such an old incarnation
// dials it, it answers with a hello that says superseded, naming the
// incarnation, and serves none of the stream's requests; the old process
// then stops as a crash would (Node.replaced): it does not commit its
// grains' buffered state, which is its successor's now, and does not say
// it leaves, which would be about the successor's name. Node.Err says
// why it stopped.
//
// An old process that dials nobody (its stale view places every grain its
// callers ask for on itself) still gossips: its push-pull exchanges bring
// its alive entry, with its tags, to a member's merge delegate, which
// memberlist calls before it refuses the entry. A member that has the
// entry's incarnation retired dials it at the entry's transport address
// and says the same (transport.tellSuperseded), at most once per
// tellSpacing.
//
// Only a member that saw the replacement says so: a member whose view
// lags (it still has the old incarnation, or never heard of it) does not,
// so a new start is never told it was superseded. The order goes the other
// way too: a new start names, in the first hello of its streams, the
// incarnation its join saw under its name (nameClaim.replaced), and a
// member whose view still has that one keeps the stream for the member's
// (see transport.conn).

// incarnationBytes is the size of a node's incarnation: random bytes, so
// that two starts under one name differ with overwhelming probability.
const incarnationBytes = 8

// maxRetired bounds retiredIncarnations: replacements are rare, and one
// forgotten only means an old process that dials after that many more is
// not told it was replaced.
const maxRetired = 64

// tellSpacing is how long a member waits before it tells an old process
// again that it was replaced, if its entry still comes through the
// gossip: a process from before the superseded hello ignores it.
const tellSpacing = 30 * time.Second

// retiredIncarnations are the incarnations of members that a later start
// under their name replaced in this node's view, oldest first.
type retiredIncarnations struct {
	mu  sync.Mutex
	ids []retiredIncarnation
}

// memberIncarnation is one start of a named member.
type memberIncarnation struct{ name, incarnation string }

// retiredIncarnation is a replaced start, and when this node last told it
// so after seeing its entry in the gossip (see tell).
type retiredIncarnation struct {
	memberIncarnation
	told time.Time
}

// find returns the index of id in r.ids, or -1. r.mu is held.
func (r *retiredIncarnations) find(id memberIncarnation) int {
	return slices.IndexFunc(r.ids, func(e retiredIncarnation) bool { return e.memberIncarnation == id })
}

// update records the incarnations the view p replaced since old, and
// forgets those p has again (the old process took the name back after its
// successor died). Members older than the incarnation tag have none and
// are never recorded.
func (r *retiredIncarnations) update(old, p *placement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range p.members {
		m := &p.members[i]
		if m.incarnation == "" {
			continue
		}
		if j := r.find(memberIncarnation{m.Name, m.incarnation}); j >= 0 {
			r.ids = slices.Delete(r.ids, j, j+1)
		}
		if was, ok := old.member(m.Name); ok && was.incarnation != "" && was.incarnation != m.incarnation {
			if len(r.ids) == maxRetired {
				r.ids = slices.Delete(r.ids, 0, 1)
			}
			r.ids = append(r.ids, retiredIncarnation{memberIncarnation: memberIncarnation{m.Name, was.incarnation}})
		}
	}
}

// has reports whether a later start of the named member replaced
// incarnation in this node's view.
func (r *retiredIncarnations) has(name, incarnation string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.find(memberIncarnation{name, incarnation}) >= 0
}

// tell reports whether the named member's incarnation is retired and was
// not told so within tellSpacing before now; if so, it counts it told.
func (r *retiredIncarnations) tell(name, incarnation string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.find(memberIncarnation{name, incarnation})
	if i < 0 || !r.ids[i].told.IsZero() && now.Sub(r.ids[i].told) < tellSpacing {
		return false
	}
	r.ids[i].told = now
	return true
}

// tellIfSuperseded tells the process behind a member's alive entry from
// the gossip that it was replaced, if its incarnation is retired here
// (see retiredIncarnations). The merge delegate calls it under
// memberlist's lock: the dial runs on a goroutine of its own.
func (n *Node) tellIfSuperseded(m *serf.Member) {
	inc, addr := m.Tags[tagIncarnation], m.Tags[tagGRPC]
	if inc == "" || addr == "" || !n.retiredIDs.tell(m.Name, inc, time.Now()) {
		return
	}
	n.transport.goTell(m.Name, addr, inc)
}

// retired implements requestHandler.
func (n *Node) retired(name, incarnation string) bool {
	return n.retiredIDs.has(name, incarnation)
}

// replaced implements requestHandler: peer says that a later start under
// this node's name replaced incarnation. If that is this node's, it stops
// as Close does, and Err returns ErrSuperseded.
func (n *Node) replaced(incarnation, peer string) {
	if incarnation != n.incarnation {
		return // about an earlier process that had this node's address
	}
	n.mu.Lock()
	first := n.stopErr == nil
	if first {
		n.stopErr = ErrSuperseded
	}
	n.mu.Unlock()
	if !first {
		return
	}
	n.log.Error("cluster: a later start under this node's name replaced it in the cluster; stopping this one as a crash would, without committing its grains' state",
		"peer", peer, "incarnation", n.incarnation)
	go n.Close() // not on the stream's reader, which Close waits for
}

// Err returns why the node stopped by itself: ErrSuperseded once a member
// told it that a later start under its name replaced it (see
// Config.NodeName). It returns nil while the node runs, and after a
// Shutdown or Close of the node's owner.
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopErr
}
