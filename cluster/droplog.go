package cluster

import (
	"sync"
	"time"
)

// dropLog counts the one-way messages from peers that this node dropped
// because it could not deliver them (see Node.dropOneWay), and logs them
// at most once per dropLogEvery, as lineASecond does the drops for a full
// mailbox: a grain that cannot activate (its store is down), or an owner
// that hangs, can make a node drop thousands a second, which a line each
// would turn into a flood of the log. A drop writes a line, with its
// kind, identity, method and error, if none was written in the last
// dropLogEvery; the node's sweep (every PassivationInterval) writes one
// for the drops no line counted yet, with the first of them in full.
type dropLog struct {
	mu      sync.Mutex
	next    time.Time      // when a drop may write the next line
	dropped int            // since the last line
	first   droppedOneWays // the first of them
}

// droppedOneWays is what a line of dropLog says about one drop.
type droppedOneWays struct {
	kind, identity, method string
	err                    error
	count                  int // the message, and those dropped with it (see conn.drainLane)
}

// dropLogEvery is the shortest time between two lines of dropLog written
// by drops.
const dropLogEvery = time.Second

// dropOneWay drops a one-way message from a peer that this node cannot
// deliver, and logs it (see dropLog).
func (n *Node) dropOneWay(req *frame, err error) {
	n.dropOneWays(req, err, 1)
}

// dropOneWays drops count one-way messages from a peer for err: req, and
// those that waited behind it for the same grain.
func (n *Node) dropOneWays(req *frame, err error, count int) {
	n.dropped.Add(uint64(count))
	d := droppedOneWays{kind: req.kind, identity: req.identity, method: req.method, err: err, count: count}
	l := &n.drops
	now := time.Now()
	l.mu.Lock()
	if now.Before(l.next) {
		if l.dropped == 0 {
			l.first = d
		}
		l.dropped += count
		l.mu.Unlock()
		return
	}
	l.next = now.Add(dropLogEvery)
	l.mu.Unlock()
	n.logDropped(d, count)
}

// logDrops logs the drops that no line counted yet, if any.
func (n *Node) logDrops() {
	l := &n.drops
	l.mu.Lock()
	d, dropped := l.first, l.dropped
	l.first, l.dropped = droppedOneWays{}, 0
	l.mu.Unlock()
	if dropped > 0 {
		n.logDropped(d, dropped)
	}
}

// logDropped writes a line of dropLog: dropped messages in all, d the
// first of them. Each line says "dropped a one-way message" and names
// that message in full, so that one can look for a grain's drops.
func (n *Node) logDropped(d droppedOneWays, dropped int) {
	args := []any{"kind", d.kind, "identity", d.identity, "method", d.method, "err", d.err}
	switch {
	case dropped == 1:
		n.log.Warn("cluster: dropped a one-way message", args...)
	case dropped == d.count:
		n.log.Warn("cluster: dropped a one-way message, and those that waited behind it for the same grain",
			append(args, "dropped", dropped)...)
	default:
		n.log.Warn("cluster: dropped a one-way message, and more since the last line (a line a second at most)",
			append(args, "dropped", dropped)...)
	}
}
