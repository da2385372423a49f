package cluster

import (
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
)

// A grain's one-way messages are bounded (Config.MaxQueuedOneWay): nothing
// else holds back a sender that outruns its grain. A one-way message's
// sender returns once the message is queued, and a peer's stream delivers
// whatever it reads. Without a bound, a grain slower than its senders
// queued their messages until the node ran out of memory. Calls have a
// bound of their own (Config.MaxQueuedCalls, see queuedcalls.go): a caller
// waits for its reply, but only until its deadline, and its call stays
// queued.
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

// mailboxFull is the error for a message that a's mailbox had no room
// for: Send's (see sendLocal), or the reason a peer's message is dropped.
func (n *Node) mailboxFull(a *activation) error {
	return newError(codes.ResourceExhausted, ErrMailboxFull,
		"cluster: grain %s/%s has %d one-way messages waiting, Config.MaxQueuedOneWay: the message was not queued",
		a.hk.Name, a.identity, n.cfg.MaxQueuedOneWay)
}

// lineASecond counts events of one sort, and has them logged a line a
// second at most: a grain that falls behind a stream drops thousands of
// messages a second, and a store that is down holds back the passivation
// of every idle grain with changes, which a line each would turn into a
// flood of the log. An event writes a line if none was written in the
// last second (note); the node's sweep (every PassivationInterval) writes
// one for the events no line counted yet (take).
type lineASecond struct {
	count atomic.Int64 // since the last line
	next  atomic.Int64 // when the next line may be written, in Unix nanoseconds
}

// note counts an event, and reports whether it writes a line now.
func (l *lineASecond) note() bool {
	l.count.Add(1)
	now := time.Now().UnixNano()
	next := l.next.Load()
	return now >= next && l.next.CompareAndSwap(next, now+int64(time.Second))
}

// take returns the events counted since the last line, and counts afresh.
func (l *lineASecond) take() int64 { return l.count.Swap(0) }

// dropOverflow drops a one-way message from a peer for its grain's full
// mailbox, counted in Node.overflow.
func (n *Node) dropOverflow(kind, identity, method string) {
	n.dropped.Add(1)
	if n.overflow.note() {
		n.logOverflow("kind", kind, "identity", identity, "method", method)
	}
}

// logOverflow logs the drops not logged yet, if any, with args.
func (n *Node) logOverflow(args ...any) {
	n.logTaken(&n.overflow, "cluster: dropped one-way messages from peers: Config.MaxQueuedOneWay messages waited for their grain already, in its mailbox or lanes",
		"dropped", append([]any{"max", n.cfg.MaxQueuedOneWay}, args...)...)
}

// logTaken writes msg, if l counted events since its last line: their
// count under key, then args.
func (n *Node) logTaken(l *lineASecond, msg, key string, args ...any) {
	if count := l.take(); count > 0 {
		n.log.Warn(msg, append([]any{key, count}, args...)...)
	}
}

// crowdedNode notes a trim that found too few idle grains to bring the
// node's activations (held) under Config.MaxActivations, or under
// ActivationLimit, or down to what Config.MaxHeapBytes asked (see shed);
// counted in Node.crowded.
func (n *Node) crowdedNode(held, idle int) {
	if n.crowded.note() {
		n.logCrowded("activations", held, "idle", idle)
	}
}

// logCrowded logs the trims that fell short not logged yet, if any, with
// args.
func (n *Node) logCrowded(args ...any) {
	n.logTaken(&n.crowded, "cluster: the node holds more activations than Config.MaxActivations, ActivationLimit's or MaxHeapBytes' trims aim at, and too few of them are idle to passivate; the others are busy, activating, kept by a commit that committed nothing, or of kinds that never passivate",
		"trims", append(args, "max", n.cfg.MaxActivations, "limit", n.cfg.ActivationLimit, "maxHeapBytes", n.cfg.MaxHeapBytes)...)
}

// activationsFull counts and returns the refusal of an activation of
// (hk, identity) past Config.ActivationLimit (see activations.admit), and
// logs the refusals, a line a second at most.
func (n *Node) activationsFull(hk *hostedKind, identity string) error {
	n.refusedActivations.Add(1)
	if n.full.note() {
		n.logFull()
	}
	return newError(codes.ResourceExhausted, ErrTooManyActivations,
		"cluster: node %s holds Config.ActivationLimit activations (%d): grain %s/%s was not activated",
		n.name, n.cfg.ActivationLimit, hk.Name, identity)
}

// logFull logs the refused activations not logged yet, if any.
func (n *Node) logFull() {
	n.logTaken(&n.full, "cluster: the node holds Config.ActivationLimit activations, and refused new ones",
		"refused", "limit", n.cfg.ActivationLimit)
}

// keptIdle notes that the grain (kind, identity) stays active, its
// passivation held back by err, the failure of the commit before it;
// counted in Node.kept.
func (n *Node) keptIdle(kind, identity string, err error) {
	if n.kept.note() {
		n.logKept("kind", kind, "identity", identity, "err", err)
	}
}

// logKept logs the held-back passivations not logged yet, if any, with
// args.
func (n *Node) logKept(args ...any) {
	n.logTaken(&n.kept, "cluster: idle grains kept active: the commit of their buffered state before passivation failed; each is passivated once a commit goes through, tried again after its kind's IdleTimeout",
		"kept", args...)
}
