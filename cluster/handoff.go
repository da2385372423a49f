package cluster

import (
	"context"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// The hand-off of grains between members, in the manner of Akka sharding's
// hand-off.
//
// When a member B joins, the grains it wins move to it from the members
// that held them. A caller whose view has B already sends B such a grain's
// calls, and B activates the grain, loading its stored state, while the old
// owner A (whose view may not have B yet) still holds its activation, with
// changes it acknowledged and has not committed (FlushManual). A's move
// then commits them, and B's activation is stale: its first commit fails
// the version check, and in manual mode every change it acknowledged until
// then was lost with it, not only those of the overlap. A member L that
// leaves gracefully is the same: the others take its grains as soon as
// they hear it leaves, and L commits what its grains buffered as it
// deactivates them, which it begins as it says it leaves, and which takes
// a while: a commit per grain.
//
// So an activation on B of a grain that a member P may hold, and has not
// released yet, waits before it loads the state. Any member that hosts the
// grain's kind may hold it: the grain's owner in B's view without B never
// held it if another member joined just before B and the old owner has yet
// to see that join; nor did a leaver ranked above B if the leaver ranked
// below B held it in a view that lacked B. So B waits for every alive
// member of its view that hosts the kind, and every one its view has
// leaving or left (see waitingFor). B asks P once per start of P (and once
// more each time P comes back from a failure, see below, and when P
// leaves) whether it released B's grains: a hello with
// fieldAskRelease. P answers, with a hello with fieldReleased, once its
// view has B's start alive and P holds no activation of a FlushManual
// grain that its view places elsewhere (its moves committed: B's view may
// place on B a grain that P's places on a third member); a P that is
// leaving answers once it has deactivated all its grains (see
// Node.Shutdown). B's wait ends with the answer, or when P is no longer in
// B's view as alive or leaving (it failed, say), or once
// Config.DeactivateTimeout has passed since B's view first had P's start
// alive (for a leaver, the leaver's grace: see newLeaverGrace); a bound
// that ends a wait an activation was in is logged, once per P, and the
// activations go on: the version check still guards the state. (A bound
// that passes after P failed ended nothing, and says nothing.) The calls
// to the grain wait meanwhile, within their deadlines.
//
// Only FlushManual kinds wait. Their grains are the ones that lose what
// they acknowledged to a stale activation; a FlushAfterCall grain has
// committed every call it acknowledged, and a stale activation of it
// fails its first call with ErrStaleActivation, which changed nothing. And
// the wait is the kind's, on every node, for as long as a member takes to
// release: a leaver releases once its grains are deactivated (tens of
// milliseconds for 200 grains, see BenchmarkCallsDuringALeave), during
// which every activation of its kinds anywhere would wait.
//
// The cost: B knows, for each FlushManual kind it hosts, whether every
// member hosting the kind has released or is past its bound
// (hostedKind.handedOver). An
// activation reads that flag, and in the steady state does nothing more;
// only during the bound after a change does it look for the members it
// waits for. Only members whose tags say they answer (tagReleases) are
// asked and waited for: a node older than the hand-off holds up nobody.
//
// A member that B's view had failed and has alive again, under the same
// start, is asked again (see storeView): it may have taken grains from B
// meanwhile, as the side of a partition that kept a majority takes the
// grains of the other after DownAfter, and moves them back as it sees B
// again, committing what it acknowledged. A test that healed a partition
// and held that commit saw B load a FlushManual account before it, and
// lose the deposit the other side had acknowledged, when a member
// released once per start.
//
// What it does not cover: a one-sided failure, P seeing B failed (and taking
// its grains) while B never saw P failed, so never asks again, is left to the
// version check; so are members that fail (they commit nothing), leavers that
// the gossip has failed rather than leaving before they said on a stream to
// the node that they leave (one that said so is waited for as a leaver: see
// leaves), and moves that outlast the bound.
// See docs/architecture.md, "Non-guarantees".

// handoffs is what a node knows of its peers' releases (see above).
type handoffs struct {
	n *Node

	mu sync.Mutex
	// bounds counts the bounds begun, to tell each wait's from the
	// earlier waits' (see releaseWait.bound).
	bounds uint64
	// peers holds, by name and incarnation (see peerKey), the starts of
	// the members of the view that answer, and those that released to this
	// node before its view had them.
	peers map[string]*peerRelease
	// wake is closed, and replaced, when a wait ends: waiting activations
	// look again.
	wake chan struct{}
}

// peerRelease is what a node knows of one start of a peer: the release of
// the grains the node took from it while it was alive, and of all of its
// grains once it leaves.
type peerRelease struct {
	join, leave releaseWait
	// viewed: a view of this node had the start. One that released before
	// is kept until a view has it; others go with the view.
	viewed bool
	// failed: the last view had the start failed. Back alive, it is asked
	// again for the grains this node took from it (see storeView).
	failed bool
}

// releaseWait is one release a node waits for.
type releaseWait struct {
	timer *time.Timer // ends the wait at its bound; nil until it began
	// bound numbers the timer among the node's (handoffs.bounds): a timer
	// that fired as the wait was replaced, afresh for a member back from
	// a failure, say, and waits for handoffs.mu meanwhile, must not end
	// the new wait (see expire).
	bound  uint64
	asked  bool // the peer was asked
	done   bool // released, or past its bound
	waited bool // an activation waited for it: it says so if the bound ends the wait
}

// wait returns e's wait for the release of the grains the node took from
// the start, or for that of all its grains if leave.
func (e *peerRelease) wait(leave bool) *releaseWait {
	if leave {
		return &e.leave
	}
	return &e.join
}

// leaves reports which release of m a node waits for: that of the grains
// it took from m while m is alive, that of all its grains once m leaves or
// left, or the gossip has it failed after it said on its stream that it
// leaves (Member.saidLeaving: the gossip may report a graceful leave as a
// failure, and the leaver commits its grains all the same); ok is false
// for a member in none of these states (failed, say), which nobody waits
// for.
func leaves(m *Member) (leave, ok bool) {
	switch m.Status {
	case StatusAlive:
		return false, true
	case StatusLeaving, StatusLeft:
		return true, true
	case StatusFailed:
		return true, m.saidLeaving
	}
	return false, false
}

// awaited reports whether an activation of kind on this node may wait for
// m, and for which of its releases (see leaves): m is another member, says
// it answers, and hosts the kind.
func (h *handoffs) awaited(m *Member, kind string) (leave, ok bool) {
	if m.Name == h.n.name || !m.releases || !slices.Contains(m.Kinds, kind) {
		return false, false
	}
	return leaves(m)
}

func newHandoffs(n *Node) *handoffs {
	return &handoffs{n: n, peers: make(map[string]*peerRelease), wake: make(chan struct{})}
}

// peerKey is the key of a member's start in handoffs.peers.
func peerKey(name, incarnation string) string { return name + " " + incarnation }

// storeView makes p the node's view (Node.view), and begins the waits for the
// starts that p has alive, leaving or left (afresh for one back from a
// failure), and forgets those that p does not have. The kinds' handedOver
// flags are cleared before p is stored, and set again for p, all under h.mu:
// an activation that finds p never finds a flag set for an earlier view
// (settle looks at the view stored, under h.mu too).
func (h *handoffs) storeView(p *placement) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hk := range h.n.kinds {
		if hk.Flush == FlushManual {
			hk.handedOver.Store(false)
		}
	}
	h.n.view.Store(p)
	inView := make(map[string]bool, len(p.members))
	for i := range p.members {
		m := &p.members[i]
		if m.Name == h.n.name || !m.releases {
			continue
		}
		key := peerKey(m.Name, m.incarnation)
		inView[key] = true
		e := h.entry(key)
		e.viewed = true
		switch {
		case m.Status == StatusFailed:
			e.failed = true
		case e.failed:
			// Back from a failure, as when a partition heals: the start
			// may hold grains it took from this node meanwhile, and its
			// release covers only those it took before.
			e.failed = false
			e.join.stop()
			e.join = releaseWait{}
		}
		if leave, ok := leaves(m); ok {
			h.begin(key, e.wait(leave), leave)
		}
	}
	for key, e := range h.peers {
		if !inView[key] && e.viewed {
			e.join.stop()
			e.leave.stop()
			delete(h.peers, key)
		}
	}
	h.settle(p)
}

// close stops the bounds of the waits, as the node stops: a closed node
// keeps no timer.
func (h *handoffs) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.peers {
		e.join.stop()
		e.leave.stop()
	}
}

// entry returns the record of a start, making it if there is none. h.mu is
// held.
func (h *handoffs) entry(key string) *peerRelease {
	e := h.peers[key]
	if e == nil {
		e = &peerRelease{}
		h.peers[key] = e
	}
	return e
}

// begin starts w, a wait for the start key's release (of all its grains,
// if leave), unless it began or ended already: its bound runs from now.
// h.mu is held.
func (h *handoffs) begin(key string, w *releaseWait, leave bool) {
	if w.done || w.timer != nil {
		return
	}
	bound := h.n.cfg.DeactivateTimeout
	if leave {
		bound = h.n.leaverGrace
	}
	h.bounds++
	w.bound = h.bounds
	id := w.bound
	w.timer = time.AfterFunc(bound, func() { h.expire(key, leave, bound, id) })
}

// stop stops w's bound.
func (w *releaseWait) stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
}

// expire ends a wait at its bound (see begin), if id is still the wait's
// bound. It says so if an activation waited, and the view still has the
// start in a state that is waited for: a start that the view has failed
// since (see leaves) ended the wait itself, and its activations went on
// then.
func (h *handoffs) expire(key string, leave bool, bound time.Duration, id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.peers[key]
	if e == nil {
		return
	}
	w := e.wait(leave)
	if w.done || w.bound != id {
		return
	}
	w.done = true
	if w.waited && h.awaits(key, leave) {
		h.n.log.Warn("cluster: a member did not say in time that it released the grains this node took from it; activating them without waiting",
			"start", key, "leaving", leave, "waited", bound)
		if h.n.cfg.releaseGaveUp != nil {
			h.n.cfg.releaseGaveUp(key)
		}
	}
	h.settle(h.n.view.Load())
}

// awaits reports whether the node's view has the start key in a state in
// which the node waits for its release (of all its grains, if leave; see
// leaves). h.mu is held.
func (h *handoffs) awaits(key string, leave bool) bool {
	p := h.n.view.Load()
	for i := range p.members {
		m := &p.members[i]
		if peerKey(m.Name, m.incarnation) == key {
			l, ok := leaves(m)
			return ok && l == leave
		}
	}
	return false
}

// settle sets the handedOver flag of each FlushManual kind the node hosts
// that no member of p, the node's view, hosts and has yet to release, and wakes
// the waiting activations. h.mu is held.
func (h *handoffs) settle(p *placement) {
	for _, hk := range h.n.kinds {
		if hk.Flush == FlushManual {
			hk.handedOver.Store(!h.waitsIn(p, hk.Name))
		}
	}
	close(h.wake)
	h.wake = make(chan struct{})
}

// waitsIn reports whether a member of p that hosts kind has yet to
// release. h.mu is held.
func (h *handoffs) waitsIn(p *placement, kind string) bool {
	for i := range p.members {
		m := &p.members[i]
		leave, ok := h.awaited(m, kind)
		if !ok {
			continue
		}
		if e := h.peers[peerKey(m.Name, m.incarnation)]; e == nil || !e.wait(leave).done {
			return true
		}
	}
	return false
}

// pending returns the channel to wait on while an activation waits for
// m's release (of all its grains, if leave), asking m for it if nobody has
// yet; nil if m released, or is past its bound. p is the view the
// activation read m from.
func (h *handoffs) pending(p *placement, m *Member, leave bool) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n.view.Load() != p {
		// p, which has m, was replaced since the activation read it, and
		// the wake of that change is closed already: look again, in the
		// view that replaced it, rather than begin a wait for m, which it
		// may not have (a record of m made now would then wait for its
		// bound, and stay for good).
		again := make(chan struct{})
		close(again)
		return again
	}
	key := peerKey(m.Name, m.incarnation)
	e := h.entry(key)
	w := e.wait(leave)
	if w.done {
		return nil
	}
	h.begin(key, w, leave)
	w.waited = true
	if !w.asked {
		w.asked = true
		h.n.askRelease(*m, leave)
	}
	return h.wake
}

// waiting reports whether the node waits for m's release (of all its
// grains, if leave), and returns the channel closed when that may have
// changed.
func (h *handoffs) waiting(m *Member, leave bool) (<-chan struct{}, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.peers[peerKey(m.Name, m.incarnation)]
	if e == nil {
		return h.wake, false
	}
	return h.wake, !e.wait(leave).done
}

// askAgain forgets that m was asked for its release of the grains this
// node took from it, as the stream the ask went on ended before m
// answered, and wakes the waiting activations: the next one asks again.
func (h *handoffs) askAgain(m *Member) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.peers[peerKey(m.Name, m.incarnation)]
	if e == nil || e.join.done {
		return
	}
	e.join.asked = false
	close(h.wake)
	h.wake = make(chan struct{})
}

// release records that a start released the grains this node took from it
// (all of its grains, if leaving).
func (h *handoffs) release(name, incarnation string, leaving bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entry(peerKey(name, incarnation))
	e.join.done = true
	e.join.stop()
	if leaving {
		e.leave.done = true
		e.leave.stop()
	}
	h.settle(h.n.view.Load())
}

// waitingFor returns the channel to wait on while an activation of a
// grain of kind waits for the release of a member that may hold it, or nil
// if it waits for nobody (see handoffs), in p, the node's view.
//
// Every member of p that hosts kind may hold it, whatever its rank for
// the grain: an alive member ranks below this node, and owned the grain in
// a view that lacked the members ranked above it (one that joined just
// before this node, say, whose join the grain's old owner has yet to see:
// the owner without this node never held the grain then); a leaver ranked
// below this node owned it in a view that lacked this node (it joined as
// the other left). So the wait is the kind's, not the grain's: the answers
// cover all the grains a member moves, and the flags (handedOver) are per
// kind already.
//
// It asks every member it waits for in one pass, not one after the other
// as their answers come: in a cluster of many members the first
// activation after a change waits for the slowest answer, not for the sum
// of them.
func (h *handoffs) waitingFor(p *placement, kind string) <-chan struct{} {
	var wake <-chan struct{}
	for i := range p.members {
		m := &p.members[i]
		leave, ok := h.awaited(m, kind)
		if !ok {
			continue
		}
		w := h.pending(p, m, leave)
		if w == nil {
			continue
		}
		if isDone(w) {
			return w // the view changed, or an answer came: look again now
		}
		wake = w
	}
	return wake
}

// awaitRelease waits, before an activation of the grain (hk, identity)
// loads its state, until every member that may hold the grain has released
// it (see handoffs and waitingFor); or ctx ends, which fails the
// activation with ctx's error; or the node's view no longer places the
// grain here, which fails it with ErrNotOwner. In the steady state it
// costs one atomic load.
func (n *Node) awaitRelease(ctx context.Context, hk *hostedKind, identity string) error {
	said := false
	for !hk.handedOver.Load() {
		p := n.view.Load()
		if said {
			// The wait woke: a view may have moved the grain on (a member
			// joined that wins it). Its new owner activates it: the call
			// places it again, and this node's answer to the new owner,
			// which waits for this activation to go, need not wait out
			// the bound of this one's wait.
			if err := n.checkOwnerIn(p, hk.Name, identity); err != nil {
				return err
			}
		}
		wake := n.handoffs.waitingFor(p, hk.Name)
		if wake == nil {
			return nil
		}
		if !said && n.cfg.awaitingRelease != nil {
			n.cfg.awaitingRelease()
		}
		said = true
		select {
		case <-wake:
		case <-ctx.Done():
			return contextError(ctx.Err())
		case <-n.life.Done():
			return newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is closed", n.name)
		}
	}
	return nil
}

// askRelease asks m, on a goroutine of its own, to say when it released
// the grains this node took from it (see fieldAskRelease), or all of its
// grains if leave. If the ask does not reach an alive member, it is made
// again once the transport would dial m again (unreachableMemory): a dial
// may fail for a moment, and the wait would otherwise run to its bound
// (DeactivateTimeout) for want of an ask; a member that stays out of
// reach keeps the wait to its bound. A leaver that cannot be reached, or
// that ends the stream the ask went on, has nothing more to commit (it
// ends its streams in its farewell, after its grains are deactivated, or
// as it closes, which commits nothing), and it is taken for released. An
// alive member answers on the stream the ask went on: if that ends before
// the answer, the next activation that waits for m asks again.
func (n *Node) askRelease(m Member, leave bool) {
	n.transport.goAlong(func() {
		ctx, cancel := context.WithTimeout(n.transport.ctx, n.cfg.DialTimeout)
		c, err := n.transport.conn(ctx, &m)
		if err == nil {
			f := frame{typ: frameHello, node: n.name, identity: n.incarnation, message: m.incarnation, hello: helloAskRelease}
			err = c.send(ctx, &f)
		}
		cancel()
		switch {
		case err != nil && leave:
			n.handoffs.release(m.Name, m.incarnation, true)
		case err != nil:
			n.log.Debug("cluster: could not ask a member whether it released its grains; asking again", "member", m.Name, "err", err)
			again := time.NewTimer(unreachableMemory)
			defer again.Stop()
			select {
			case <-again.C:
				n.handoffs.askAgain(&m) // the activations still waiting ask
			case <-n.transport.ctx.Done():
			}
		default:
			n.watchAsk(c, &m, leave)
		}
	})
}

// watchAsk watches c, the stream m was asked on for its release (of all
// its grains, if leave), until m answers: if c ends first, a leaver is
// taken for released, and an alive member is asked again (see
// askRelease).
func (n *Node) watchAsk(c *conn, m *Member, leave bool) {
	for {
		wake, waiting := n.handoffs.waiting(m, leave)
		if !waiting {
			return
		}
		select {
		case <-c.done:
			if leave {
				n.handoffs.release(m.Name, m.incarnation, true)
			} else {
				n.handoffs.askAgain(m)
			}
			return
		case <-wake:
		case <-n.transport.ctx.Done():
			return
		}
	}
}

// askedRelease implements requestHandler: the peer on c, in its start
// incarnation, asks when this node released the grains it took from it.
// An ask to an earlier start under this node's name is not this one's.
func (n *Node) askedRelease(c *conn, incarnation, to string) {
	if to != "" && to != n.incarnation {
		return
	}
	n.transport.goAlong(func() { n.answerRelease(c, incarnation) })
}

// answerRelease answers the ask of the peer on c, in its start
// incarnation, once this node's view has that start alive and this node
// holds no activation of a FlushManual grain it moves (see moving); or, if
// this node is leaving, once it has deactivated all its grains. It gives
// up after the longest the peer waits (a leaver's grace), or when the
// transport closes.
func (n *Node) answerRelease(c *conn, incarnation string) {
	bound := time.NewTimer(n.leaverGrace)
	defer bound.Stop()
	done := n.transport.ctx.Done()
	for {
		if n.transport.leaving.Load() {
			select {
			case <-n.movedAll:
				n.sayReleased(c, incarnation, true)
			case <-bound.C:
			case <-done:
			}
			return
		}
		p := n.view.Load()
		if m, ok := p.member(c.peer); ok && m.Status == StatusAlive && m.incarnation == incarnation {
			held := n.acts.moving(p)
			if len(held) == 0 {
				n.sayReleased(c, incarnation, false)
				return
			}
			// Moving, or activating and about to move (see activate).
			if !n.acts.awaitGone(held, bound.C, done) {
				return
			}
			continue
		}
		// The view does not have the peer's start alive yet: wait for
		// the next. (Asked only then, as awaitView makes the channel.)
		if later, next := n.awaitView(); later == p {
			select {
			case <-next:
			case <-bound.C:
				return
			case <-done:
				return
			}
		}
	}
}

// sayReleased answers an ask on c (see answerRelease).
func (n *Node) sayReleased(c *conn, incarnation string, leaving bool) {
	ctx, cancel := context.WithTimeout(n.transport.ctx, n.cfg.DialTimeout)
	defer cancel()
	f := frame{typ: frameHello, node: n.name, identity: n.incarnation, message: incarnation, hello: helloReleased}
	if leaving {
		f.hello |= helloLeaving
	}
	if err := c.send(ctx, &f); err != nil {
		n.log.Debug("cluster: could not tell a member that its grains are released", "member", c.peer, "err", err)
	}
}

// released implements requestHandler: the peer's start incarnation says it
// released the grains this node took from it, or all of its grains if it
// is leaving. An answer to an earlier start under this node's name is not
// this one's.
func (n *Node) released(peer, incarnation, to string, leaving bool) {
	if to != "" && to != n.incarnation {
		return
	}
	n.handoffs.release(peer, incarnation, leaving)
}

// moving returns the activations in the table, in any state, of the
// FlushManual grains that p, the node's view, does not place on this node:
// those it moves, or is about to (see activate); only their activations
// wait for the answer (see handoffs). An asker may own any of them in
// its own view, not only those it owns in p: a view of the asker's that
// lacks a member that joined, which p has, places on the asker grains that
// p places on that member, and this node may still hold one of them.
func (t *activations) moving(p *placement) []*activation {
	self := t.n.name
	var held []*activation
	t.each(func(a *activation) {
		if a.hk.Flush != FlushManual || a.removed {
			return
		}
		if o, ok := p.owner(a.hk.Name, a.identity); !ok || o.Name != self {
			held = append(held, a)
		}
	})
	return held
}

// awaitGone waits until every activation of acts has left the table, and
// reports whether they did before bound fired or done closed.
func (t *activations) awaitGone(acts []*activation, bound <-chan time.Time, done <-chan struct{}) bool {
	for _, a := range acts {
		sh, _ := t.shardOfActivation(a)
		sh.mu.Lock()
		gone := a.goneChan()
		sh.mu.Unlock()
		select {
		case <-gone:
		case <-bound:
			return false
		case <-done:
			return false
		}
	}
	return true
}
