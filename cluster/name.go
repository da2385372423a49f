package cluster

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/serf/serf"
	"google.golang.org/grpc/codes"
)

// A node that restarts under its old name (a fixed NodeName, as a
// StatefulSet's pod name) comes back on an address of its own while the
// cluster still knows the name at its old incarnation's. Memberlist refuses
// the new address as long as the old incarnation counts as alive, and gives
// the name to it once the old one is declared dead (newSerfConfig sets
// DeadNodeReclaimTime for that). Until then the node is not a member for
// the others: they do not route to it, and it must not act as the owner of
// grains they place elsewhere. nameClaim keeps it out of its own view for
// that time, and offers its state to a peer every probe interval until the
// peer's state has the name at this node's address.
//
// The signal is serf's merge delegate. A join's push-pull exchange hands
// it the member list of the peer this node contacted, in which this node's
// name is missing (it is free), at this node's gossip address, or at
// another one. Only the lists of the exchanges this node starts (its join,
// and claim's) count: the list a joiner sends along is that node's own
// belief, and a second node under a member's name, joining through it,
// must not take the name from the member the cluster knows. An alive
// message comes through the same delegate, one member at a time; one at
// this node's address (a peer relaying it) says the name is this node's.
type nameClaim struct {
	n    *Node
	self atomic.Pointer[net.TCPAddr] // this node's gossip address, once serf runs
	held atomic.Bool                 // the peer this node asked has the name at another address
	// asking counts this node's joins in progress: the lists merged
	// meanwhile are those of the peers it asked (a joiner's list that
	// comes in at the same moment is taken for one too; the next round
	// corrects it).
	asking atomic.Int32
	// rounds counts the exchanges claim made, for tests and debugging.
	rounds atomic.Uint32
	wake   chan struct{} // held was set; capacity 1, coalescing
}

// errIfHeld returns ErrUnavailable while the name is held elsewhere: the
// node is not a member for the others yet, and a stream it opened now
// would carry the name of the incarnation its peers may still be cutting
// off. Invoke retries until the name is this node's, or the call's
// deadline; Send fails. Only calls and messages to other members ask:
// while the name is held, the node's view has no member it could place a
// grain on locally.
func (c *nameClaim) errIfHeld() error {
	if !c.held.Load() {
		return nil
	}
	return newError(codes.Unavailable, ErrUnavailable, "cluster: node %s is not a member yet: the cluster knows its name at another address", c.n.name)
}

// NotifyMerge implements serf.MergeDelegate. It never refuses a merge.
func (c *nameClaim) NotifyMerge(members []*serf.Member) error {
	self := c.self.Load()
	if self == nil {
		return nil // serf is starting: its own alive message
	}
	for _, m := range members {
		if m.Name != c.n.name {
			continue
		}
		switch {
		case m.Status == serf.StatusLeft || int(m.Port) == self.Port && m.Addr.Equal(self.IP):
			c.set(false, m) // the name is free, or this node's
		case c.asking.Load() > 0:
			c.set(true, m)
		}
		return nil
	}
	return nil
}

// join joins the cluster through addrs, as the node that asks (see
// asking).
func (c *nameClaim) join(addrs []string) (int, error) {
	c.asking.Add(1)
	defer c.asking.Add(-1)
	return c.n.serf.Join(addrs, true)
}

// set records whether a peer holds the name at another address, and acts on
// a change: the view is rebuilt with or without this node, and the claim
// loop wakes.
func (c *nameClaim) set(held bool, m *serf.Member) {
	if c.held.Swap(held) == held {
		return
	}
	addr := net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
	if held {
		c.n.log.Warn("cluster: the cluster knows this node's name at another address (an earlier incarnation not yet declared failed, or another node with the same name); this node stays out of placement until the name is its own",
			"node", c.n.name, "other", addr)
		select {
		case c.wake <- struct{}{}:
		default:
		}
	} else {
		c.n.log.Info("cluster: the cluster knows this node's name at its address again", "node", c.n.name)
	}
	select {
	case c.n.changed <- struct{}{}:
	default: // a refresh is pending and will see this change too
	}
}

// claim runs for the node's life: while the name is held elsewhere, it
// pushes this node's state to a random alive peer every interval. The
// exchange offers the peer this node's alive entry, which it takes once the
// old incarnation is dead, and brings back the peer's list, from which
// NotifyMerge learns whether it did. Memberlist's own push-pull would
// offer the entry too, but only every 30 s in the LAN profile, and serf's
// merge delegate sees the lists of joins alone.
func (c *nameClaim) claim(interval time.Duration) {
	n := c.n
	defer n.loops.Done()
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-c.wake:
		case <-n.stop:
			return
		}
		for c.held.Load() {
			timer.Reset(interval)
			select {
			case <-timer.C:
			case <-n.stop:
				return
			}
			if peer := c.somePeer(); peer != "" {
				if _, err := c.join([]string{peer}); err != nil {
					n.log.Debug("cluster: push the node's state to a peer", "peer", peer, "err", err)
				}
				c.rounds.Add(1)
			}
		}
	}
}

// somePeer returns the gossip address of a random alive member other than
// this node, or "" if there is none.
func (c *nameClaim) somePeer() string {
	var peers []string
	for _, m := range c.n.serf.Members() {
		if m.Name != c.n.name && m.Status == serf.StatusAlive {
			peers = append(peers, net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))))
		}
	}
	if len(peers) == 0 {
		return ""
	}
	return peers[rand.IntN(len(peers))]
}
