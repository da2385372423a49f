package cluster

import (
	"math/rand/v2"
	"net"
	"time"

	"github.com/hashicorp/serf/serf"
)

// rejoinSeeds joins, every interval or so, the addresses of the seeds
// that are not alive members (see Config.SeedRejoinInterval), until the
// node stops.
//
// Nodes started at once from one configuration each join what listens
// when they do: with seeds that name each other (their own address
// included, or a headless service whose DNS does not list every pod yet)
// two of them could each start alone, or in two halves, and gossip alone
// never brought them together, as neither side knew of the other.
func (n *Node) rejoinSeeds(every time.Duration) {
	defer n.loops.Done()
	timer := time.NewTimer(jitter(every))
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-n.life.Done():
			return
		}
		if addrs := n.seedsToJoin(); len(addrs) > 0 {
			n.joinAgain(addrs)
		}
		timer.Reset(jitter(every))
	}
}

// jitter returns d give or take a tenth, so that nodes started together
// do not join together ever after.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

// seedsToJoin returns the addresses of the seeds, their host names
// resolved, that are not alive members. This node is one, so its own
// address is never among them.
func (n *Node) seedsToJoin() []string {
	alive := make(map[string]bool)
	for _, m := range n.serf.Members() {
		if m.Status == serf.StatusAlive {
			alive[gossipAddr(m.Addr, m.Port)] = true
		}
	}
	var addrs []string
	for _, seed := range n.cfg.Seeds {
		host, port, err := net.SplitHostPort(seed)
		if err != nil {
			addrs = append(addrs, seed) // memberlist reads it as Start's join did
			continue
		}
		ips, err := net.DefaultResolver.LookupHost(n.life, host) // ended by teardown
		if err != nil {
			n.log.Debug("cluster: resolve a seed to join it again", "seed", seed, "err", err)
			continue
		}
		for _, ip := range ips {
			if a := net.JoinHostPort(ip, port); !alive[a] {
				addrs = append(addrs, a)
			}
		}
	}
	return addrs
}

// joinAgain joins addrs, unless the node stops first (see joinThrough).
func (n *Node) joinAgain(addrs []string) {
	before := n.serf.NumNodes()
	if _, err := n.joinThrough(n.life, addrs); err != nil {
		n.log.Debug("cluster: join the seeds that are not members", "seeds", addrs, "err", err)
	} else if after := n.serf.NumNodes(); after > before {
		n.log.Info("cluster: joined seeds that were not members", "seeds", addrs, "members", after, "before", before)
	}
}
