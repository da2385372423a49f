package cluster

import (
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
)

// A grain's one-way messages are bounded (Config.MaxQueuedOneWay): nothing
// else holds back a sender that outruns its grain. A call has a caller
// that waits for its reply, so callers can queue only as many calls as
// there are callers; a one-way message's sender returns once the message
// is queued, and a peer's stream delivers whatever it reads. Without a
// bound, a grain slower than its senders queued their messages until the
// node ran out of memory.
//
// The count is activation.oneWays. Senders count their messages in before
// they queue them (admitOneWay; a stream's reader oneWaysReserved at a
// time, see oneWayTarget), and the actor counts them out in groups of
// oneWaysCountedOut (ranOneWay). So the count errs high, never low, and a
// grain never has more messages waiting than the bound: a few fewer at
// most.

// oneWaysCountedOut is how many one-way messages an actor runs before it
// counts them out of activation.oneWays at once. The count is thus too
// high by less than this, never too low: a grain may be held to a few
// messages fewer than the bound, never more.
const oneWaysCountedOut = 64

// oneWaysReserved is how many one-way messages a stream's reader counts
// into a grain's mailbox at once: one atomic add per run of that many,
// rather than one per message, on a line that the grain writes too.
const oneWaysReserved = 64

// admitOneWay counts a one-way message into a's mailbox, and reports false,
// counting nothing, if it holds max messages already.
func (a *activation) admitOneWay(max int32) bool {
	return a.reserveOneWays(1, max) == 1
}

// reserveOneWays counts up to k one-way messages into a's mailbox, as many
// as it has room for under max, and returns how many. Two senders that
// reserve at once may both find too little room and take less than there
// is, never more.
func (a *activation) reserveOneWays(k, max int32) int32 {
	over := a.oneWays.Add(k) - max
	if over <= 0 {
		return k
	}
	over = min(over, k)
	a.oneWays.Add(-over)
	return k - over
}

// ranOneWay counts out a one-way message the actor took from its mailbox;
// only the actor calls it.
func (g *grainActor) ranOneWay() {
	if g.oneWaysRun++; g.oneWaysRun == oneWaysCountedOut {
		g.oneWays.Add(-oneWaysCountedOut)
		g.oneWaysRun = 0
	}
}

// mailboxFull is Send's error for a message that a's mailbox had no room
// for.
func (n *Node) mailboxFull(a *activation) error {
	return newError(codes.ResourceExhausted, ErrMailboxFull,
		"cluster: grain %s/%s has %d one-way messages waiting, Config.MaxQueuedOneWay: the message was not queued",
		a.hk.Name, a.identity, n.cfg.MaxQueuedOneWay)
}

// overflowLog counts the one-way messages from peers dropped for a full
// mailbox, and logs them at most once per overflowLogEvery: a grain that
// falls behind a stream drops thousands a second, which a line each would
// turn into a flood of the log. A drop writes a line if none was written
// in the last overflowLogEvery; the node's sweep (every
// PassivationInterval) writes one for the drops no line counted yet.
type overflowLog struct {
	dropped atomic.Int64 // since the last line
	next    atomic.Int64 // when the next line may be written, in Unix nanoseconds
}

// overflowLogEvery is the shortest time between two lines of overflowLog
// written by drops.
const overflowLogEvery = time.Second

// dropOverflow drops a one-way message from a peer for its grain's full
// mailbox.
func (n *Node) dropOverflow(kind, identity, method string) {
	n.dropped.Add(1)
	n.overflow.dropped.Add(1)
	now := time.Now().UnixNano()
	next := n.overflow.next.Load()
	if now < next || !n.overflow.next.CompareAndSwap(next, now+int64(overflowLogEvery)) {
		return
	}
	n.logOverflow("kind", kind, "identity", identity, "method", method)
}

// logOverflow logs the drops not logged yet, if any, with args.
func (n *Node) logOverflow(args ...any) {
	dropped := n.overflow.dropped.Swap(0)
	if dropped == 0 {
		return
	}
	n.log.Warn("cluster: dropped one-way messages from peers: their grain's mailbox was full (Config.MaxQueuedOneWay)",
		append([]any{"dropped", dropped, "max", n.cfg.MaxQueuedOneWay}, args...)...)
}

// keptLog counts the idle grains whose passivation was held back because
// the commit of their buffered state failed (see grainActor.passivate),
// and logs them as overflowLog logs drops: a line at most once per
// overflowLogEvery, written by the grain that finds none written in the
// last one, and by the node's sweep for those no line counted yet. A store
// that is down holds back the passivation of every idle grain that has
// changes buffered, once per IdleTimeout each: a line each would flood
// the log.
type keptLog struct {
	kept atomic.Int64 // since the last line
	next atomic.Int64 // when the next line may be written, in Unix nanoseconds
}

// keptIdle notes that the grain (kind, identity) stays active, its
// passivation held back by err, the failure of the commit before it.
func (n *Node) keptIdle(kind, identity string, err error) {
	n.kept.kept.Add(1)
	now := time.Now().UnixNano()
	next := n.kept.next.Load()
	if now < next || !n.kept.next.CompareAndSwap(next, now+int64(overflowLogEvery)) {
		return
	}
	n.logKept("kind", kind, "identity", identity, "err", err)
}

// logKept logs the held-back passivations not logged yet, if any, with
// args.
func (n *Node) logKept(args ...any) {
	kept := n.kept.kept.Swap(0)
	if kept == 0 {
		return
	}
	n.log.Warn("cluster: idle grains kept active: the commit of their buffered state before passivation failed; each is passivated once a commit goes through, tried again after its kind's IdleTimeout",
		append([]any{"kept", kept}, args...)...)
}
