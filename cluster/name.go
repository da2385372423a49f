package cluster

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// A node that restarts under its old name (a fixed NodeName, as a
// StatefulSet's pod name) comes back on an address of its own while the
// cluster still knows the name at its old incarnation's. Memberlist refuses
// the new address as long as the old incarnation counts as alive, and gives
// the name to it once the old one is declared dead (newSerfConfig sets
// DeadNodeReclaimTime for that). Until then the node is not a member for
// the others. nameClaim finds that out when the node joins, and Start then
// offers the node's state to a peer every probe interval until the peer's
// state has the name at this node's address (await): a restarted node's
// Start returns once it is a member, and that of a second node started
// under the name of a live member fails with ErrNameInUse.
//
// The signal is serf's merge delegate. A join's push-pull exchange hands
// it the member list of the peer this node contacted, in which this node's
// name is missing (it is free), at this node's gossip address, or at
// another one; an alive message comes through the same delegate, one
// member at a time. held only matters while Start waits in await: a member
// that a second node under its name joins through sees its name elsewhere
// in the joiner's list, and nothing follows from it.
type nameClaim struct {
	n    *Node
	self atomic.Pointer[string] // this node's gossip address, once serf runs
	held atomic.Bool            // the last list or alive message had the name at another address
	// rounds counts the exchanges await made, for tests and debugging.
	rounds atomic.Uint32

	mu    sync.Mutex
	other string // the address the name was last seen held at
	// replaced is the incarnation of the entry last seen under this
	// node's name at another address: an earlier start, since the cluster
	// knew it before this one had the name (or another node's, and then
	// Start fails with ErrNameInUse). "" if there was none, or it was too
	// old to have the tag.
	replaced string
	// heard are the names of the other members, not left, in the lists
	// and alive messages the node merged while it started (see
	// Node.settleForUnseen).
	heard map[string]bool
}

// NotifyMerge implements serf.MergeDelegate. It refuses only what a fenced
// node refuses from strangers (see Node.refuseStrangers). It also hands
// every other member's entry to Node.tellIfSuperseded, since serf takes
// one merge delegate.
func (c *nameClaim) NotifyMerge(members []*serf.Member) error {
	self := c.self.Load()
	if self == nil {
		return nil // serf is starting: its own alive message
	}
	if c.n.cfg.merging != nil {
		c.n.cfg.merging()
	}
	if err := c.n.refuseStrangers(members); err != nil {
		return err
	}
	if !c.n.joined.Load() {
		c.hear(members)
	}
	for _, m := range members {
		if m.Name == c.n.name {
			c.observe(m, *self)
		} else {
			c.n.tellIfSuperseded(m)
		}
	}
	return nil
}

// hear records the names of members, but this node's and those that
// left, in c.heard.
func (c *nameClaim) hear(members []*serf.Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range members {
		if m.Name == c.n.name || m.Status == serf.StatusLeft {
			continue
		}
		if c.heard == nil {
			c.heard = make(map[string]bool)
		}
		c.heard[m.Name] = true
	}
}

// heardNames returns the names hear recorded.
func (c *nameClaim) heardNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Keys(c.heard))
}

// observe records whether the entry under this node's name, whose own
// gossip address is self, has the name held at another address.
func (c *nameClaim) observe(m *serf.Member, self string) {
	addr := gossipAddr(m.Addr, m.Port)
	if addr == self {
		c.held.Store(false) // the name is this node's
		return
	}
	c.mu.Lock()
	if inc := m.Tags[tagIncarnation]; inc != "" {
		c.replaced = inc
	}
	if m.Status == serf.StatusLeft {
		c.mu.Unlock()
		c.held.Store(false) // the name is free
		return
	}
	c.other = addr
	c.mu.Unlock()
	c.held.Store(true)
}

// replacedIncarnation returns the incarnation of the start this node
// replaced under its name, if its join saw one (see replaced).
func (c *nameClaim) replacedIncarnation() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replaced
}

// await returns once the name is this node's: at once, unless the join
// found it held at another address. Then, every probe interval of mc, it
// joins a random alive peer: the exchange offers the peer this node's
// alive entry, which the peer takes once the old incarnation is declared
// dead, and brings back the peer's list, from which NotifyMerge learns
// whether it did. (Memberlist's own push-pull would offer the entry too,
// but only every 30 s in the LAN profile, and serf's merge delegate sees
// the lists of joins alone.) It gives up with ErrNameInUse once the
// failure detector would have declared a dead incarnation failed at its
// slowest (claimPatience), and with ctx's error if ctx ends first.
func (c *nameClaim) await(ctx context.Context, mc *memberlist.Config) error {
	if !c.held.Load() {
		return nil
	}
	n := c.n
	patience := claimPatience(mc, n.serf.NumNodes())
	c.mu.Lock()
	other := c.other
	c.mu.Unlock()
	n.log.Warn("cluster: the cluster knows this node's name at another address (an earlier incarnation not yet declared failed, or another node under the same name); waiting for the name",
		"other", other, "patience", patience)
	giveUp := time.NewTimer(patience)
	defer giveUp.Stop()
	tick := time.NewTicker(mc.ProbeInterval)
	defer tick.Stop()
	for c.held.Load() {
		select {
		case <-tick.C:
		case <-giveUp.C:
			return fmt.Errorf("%w: the cluster knows node name %q at %s, and did not give it to this node within %v: another node runs under this name, or its old incarnation is still answering",
				ErrNameInUse, n.name, other, patience)
		case <-ctx.Done():
			return fmt.Errorf("%w: the cluster knows node name %q at %s, and did not give it to this node before the start's context ended: %w",
				ErrNameInUse, n.name, other, ctx.Err())
		}
		if peer := c.somePeer(); peer != "" {
			if _, err := n.serf.Join([]string{peer}, true); err != nil {
				n.log.Debug("cluster: push the node's state to a peer", "peer", peer, "err", err)
			}
			c.rounds.Add(1)
		}
	}
	n.log.Info("cluster: the cluster knows this node's name at its address now")
	return nil
}

// claimPatience bounds await: the time for a member to probe the old
// incarnation and time its ack out, both at the slowest rate memberlist's
// Lifeguard drops to when a member's own probes keep failing
// (AwarenessMaxMultiplier times the probe interval and timeout), the
// failure detector's suspicion at its longest (see suspicionRounds), and a
// claim round, each counted in probe intervals: 41 of them in a small
// cluster (12.3 s in the GossipLocal profile, 41 s in LAN).
//
// The slow probes are those of a partition: the members' probes of a
// member cut off fail, so they probe everyone more slowly, the crashed
// incarnation a restart waits for among them. A soak that crashed a member
// and started it again at once while another was cut off saw its start
// give up in one run of five at the 27 intervals this bound had before;
// the debug log of one such run: the others probed every 0.6 s (Lifeguard
// had doubled the interval), first suspected the crashed start 0.8 s after
// the crash, and, with no confirmation counted, declared it failed at the
// suspicion's longest, 7.2 s later: 8.4 s with the claim round, 0.3 s over.
func claimPatience(mc *memberlist.Config, members int) time.Duration {
	slowest := float64(max(1, mc.AwarenessMaxMultiplier))
	rounds := 2*slowest + suspicionRounds(mc, members) + 1
	return time.Duration(rounds * float64(mc.ProbeInterval))
}

// suspicionRounds is the failure detector's suspicion at its longest, in
// probe intervals: SuspicionMaxTimeoutMult times the shortest, which
// scales with the log of the member count (24 in a small cluster).
func suspicionRounds(mc *memberlist.Config, members int) float64 {
	scale := math.Max(1, math.Log10(float64(members)))
	return float64(mc.SuspicionMult*mc.SuspicionMaxTimeoutMult) * scale
}

// somePeer returns the gossip address of a random alive member other than
// this node, or "" if there is none.
func (c *nameClaim) somePeer() string {
	var peers []string
	for _, m := range c.n.serf.Members() {
		if m.Name != c.n.name && m.Status == serf.StatusAlive {
			peers = append(peers, gossipAddr(m.Addr, m.Port))
		}
	}
	if len(peers) == 0 {
		return ""
	}
	return peers[rand.IntN(len(peers))]
}
