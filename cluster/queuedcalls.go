package cluster

import (
	"google.golang.org/grpc/codes"
)

// The calls waiting for a grain are bounded (Config.MaxQueuedCalls), as
// its one-way messages are. A caller waits for its call's reply, but only
// until its deadline or cancellation: its call then stays in the grain's
// mailbox until the grain reaches it and skips it, and a peer's call too
// (the goroutine that served it returns at the cancel frame). A front end
// whose callers time out and call again queued one call per attempt to a
// grain stuck in a turn, 576 bytes each, until the node ran out of memory.
//
// What is counted: activation.calls, which the call path keeps already
// (enter, out), rather than a second count, which would cost every call an
// atomic write more on a line that its callers and its grain share. It
// counts a call from the moment its caller finds the activation (while it
// activates, while the call waits in the mailbox, and while it runs) until
// its caller has the reply, as before; a call whose caller gave up once it
// was queued stays counted until the grain takes it (see handOff), which
// is what makes it bounded. So are the few one-way senders that hold the
// activation for a moment (a Send, a stream's reader for one batch, see
// oneWayTarget): the bound errs a few calls low, never high. A turn the
// caller runs itself (WithTurnOnCaller, or a context that cannot end)
// changes nothing: the calls whose callers gave up that it takes on the
// way are counted out as a worker's turn would, and its own call is
// counted out when its caller has the reply, whether the turn ended with
// it or stopped before it (the Throughput limit, a suspended grain) and
// left it to a worker.
//
// What it costs a call whose caller waits for the reply, the hot path:
// nothing but a comparison of a value it has in a register already (see
// activations.getWithin): the bound lives in the hostedKind, which the
// lookup reads anyway, and the count's closed bit, which the lookup tested,
// makes any closed count greater than any bound, so one comparison tests
// both. The hand-off costs the grain no atomic more either: taking a call
// swaps its inner-call counter, which the grain reset with an atomic store
// before (see grainCall.take).

// maxCallsIn is the bound of a lookup that sets none: the greatest count
// below callsClosed, so that the comparison with it refuses only an
// activation closed to calls.
const maxCallsIn = callsClosed - 1

// callBound returns the bound of activation.calls for a call under
// Config.MaxQueuedCalls max: maxCallsIn for none (negative), and for
// bounds that high, which no count reaches short of the closed bit.
func callBound(max int) int32 {
	if max < 0 || max >= maxCallsIn {
		return maxCallsIn
	}
	return int32(max)
}

// The states of a grain call's grainContext.inner before its grain takes it,
// and the base of its inner-call count once taken.
const (
	// callTaken: the grain took the call from its mailbox; the inner calls
	// made in its turn are counted above it.
	callTaken uint64 = 1 << 62
	// callGaveUp: the caller gave up on the call once it was queued and
	// before the grain took it, and left it to the grain to count out.
	callGaveUp uint64 = 1 << 63
)

// take marks m taken by its grain, and reports whether its caller gave it
// up before (see handOff): the grain then counts it out. It runs on the
// grain's actor, once per call, run or skipped.
//
// The trick: the grain used to reset the counter with an atomic store as
// it ran the call; a swap is the same instruction on amd64 (XCHG), and
// returns the caller's word with it. So a call whose caller waits costs
// the hand-off nothing, on either side: only a caller that gave up writes
// (handOff's compare-and-swap).
func (m *grainCall) take() bool {
	return m.gctx.inner.Swap(callTaken) == callGaveUp
}

// untake makes msg, if it is a grain call that an activation that went
// away answered (see Node.retryOnNextActivation), untaken again before it
// goes to the next activation, so that a caller that gives up on it there
// leaves it to that grain as it would a new call. The activation that
// answered is done with it.
func untake(msg any) {
	if m, ok := msg.(*grainCall); ok {
		m.gctx.inner.Store(0)
	}
}

// handOff leaves the count of a call whose caller gave up after it was
// queued (runtime.Ref.Ask) to the grain, which counts it out when it takes
// it (grainCall.take), and reports whether it did; if the grain took it
// first, it reports false and the caller counts it out (release) as after
// a reply. Only a grain call is handed off: a reminder's firing keeps its
// count until the scheduler gives up, as before (one per reminder). The
// call is marked used, as release does.
func (t *activations) handOff(a *activation, msg any) bool {
	m, ok := msg.(*grainCall)
	if !ok || !m.gctx.inner.CompareAndSwap(0, callGaveUp) {
		return false
	}
	if a.flags.Load()&usedFlag == 0 {
		a.flags.Or(usedFlag)
	}
	return true
}

// callsFull is a call's error when its grain has Config.MaxQueuedCalls
// calls counted in already, counted in Stats.Refused.
func (n *Node) callsFull(a *activation) error {
	n.refused.Add(1)
	return newError(codes.ResourceExhausted, ErrMailboxFull,
		"cluster: grain %s/%s has %d calls waiting, Config.MaxQueuedCalls: the call was not queued",
		a.hk.Name, a.identity, n.cfg.MaxQueuedCalls)
}
