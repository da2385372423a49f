package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// connTo returns from's open conn to the named peer, waiting for one.
func connTo(t *testing.T, from *Node, peer string) *conn {
	t.Helper()
	var found *conn
	waitFor(t, waitTimeout, fmt.Sprintf("a stream from %s to %s", from.Name(), peer), func() bool {
		for _, c := range from.transport.openConns() {
			if c.peer == peer {
				found = c
				return true
			}
		}
		return false
	})
	return found
}

// TestByeEndsTheStreamAfterWhatWasQueuedBeforeIt checks the end of a
// stream that the conns' byes bring about (see conn.bye), whichever side
// says bye first: every one-way message queued before the bye arrives,
// once and in order; a request queued after it on the same stream fails
// with ErrUnavailable; both ends of the stream close without an error
// logged; and the next message goes on a new stream.
func TestByeEndsTheStreamAfterWhatWasQueuedBeforeIt(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"sender", "receiver"} {
		t.Run(first+" first", func(t *testing.T) {
			t.Parallel()
			const messages = 2000
			nodes, recs, logs := recorderCluster(t, -1, nil)
			from, to := nodes[2], nodes[1]
			id := recorderOwnedBy(t, nodes, to, "bye")
			ctx := context.Background()
			for v := range int64(messages) {
				if err := from.Send(ctx, recordCall(id, v)); err != nil {
					t.Fatalf("Send %d: %v", v, err)
				}
			}
			sending, receiving := connTo(t, from, to.Name()), connTo(t, to, from.Name())
			if first == "sender" {
				sending.bye()
				late := frame{typ: frameRequest, oneWay: oneWaySent, kind: recorderKind, identity: id, method: methodRecord}
				if err := sending.send(ctx, &late); !errors.Is(err, ErrUnavailable) {
					t.Fatalf("a request queued after the bye: %v, want ErrUnavailable", err)
				}
			} else {
				receiving.bye()
			}
			for side, c := range map[string]*conn{"sending": sending, "receiving": receiving} {
				waitFor(t, waitTimeout, "the "+side+" end of the stream to close", func() bool { return isDone(c.done) })
			}
			waitValues(t, recs[to.Name()], id, sequence(0, messages-1))
			for name, l := range logs {
				l.mu.Lock()
				// The gossip's failure detector may warn of a member it
				// suspected on a busy machine ("Refuting a suspect
				// message"): not what the stream's end is to warn of.
				lines := slices.DeleteFunc(slices.Clone(l.lines), func(line string) bool { return strings.Contains(line, "component=gossip") })
				l.mu.Unlock()
				if len(lines) > 0 {
					t.Errorf("%s logged warnings or errors, want none: %q", name, lines)
				}
			}

			if err := from.Send(ctx, recordCall(id, messages)); err != nil {
				t.Fatalf("Send after the stream ended: %v", err)
			}
			waitValues(t, recs[to.Name()], id, sequence(0, messages))
		})
	}
}

// TestStreamEndsOnlyOnceItsCallsAreAnswered checks that a stream whose
// sides both said bye stays open while a call on it waits for its reply,
// and ends once the reply is through.
func TestStreamEndsOnlyOnceItsCallsAreAnswered(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 2, -1, nil)
	caller, owner := nodes[0], nodes[1]
	id := identityOwnedBy(t, nodes, owner)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	type result struct {
		v   string
		err error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := caller.Invoke(ctx, stringCall(methodBlock, id, ""))
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{v: resp.(*wrapperspb.StringValue).GetValue()}
	}()
	receive(t, hs[owner.Name()].entered, "the call to enter the grain")
	c := connTo(t, caller, owner.Name())
	c.bye()
	waitFor(t, waitTimeout, "the owner's bye in answer", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.byeHeard
	})
	c.mu.Lock()
	ending := c.ending
	c.mu.Unlock()
	if ending || isDone(c.done) {
		t.Fatal("the stream began to end while a call on it waited for its reply")
	}

	hs[owner.Name()].releaseHeld()
	r := receive(t, done, "the call")
	if r.err != nil || r.v != owner.Name() {
		t.Fatalf("the call returned %q, %v; want %q from the owner", r.v, r.err, owner.Name())
	}
	waitFor(t, waitTimeout, "the stream to end", func() bool { return isDone(c.done) })
	if _, err := caller.Invoke(ctx, addCall(id, 1)); err != nil {
		t.Fatalf("a call after the stream ended: %v", err)
	}
}

// TestAMemberSeenFailedThatSaidItIsLeavingKeepsItsStreams gives a caller
// a view in which the owner of a call it waits for failed, as serf's view
// of a graceful leave can be until the leave intent arrives (see
// Node.dropFailed). If the owner said it is leaving, before or during the
// grace a member seen failed gets, the caller says bye on the stream and
// keeps it: once the owner answers and says bye, as its farewell would,
// the call has its reply and the stream ends by the handshake. If the
// owner is still failed after the leaver's grace, or never said it is
// leaving, the stream is cut and the call fails.
func TestAMemberSeenFailedThatSaidItIsLeavingKeepsItsStreams(t *testing.T) {
	t.Parallel()
	const never = time.Hour
	for _, tc := range []struct {
		name                     string
		saysLeaving              string // "before" the view has it failed, "during" the grace, or "never"
		failedGrace, leaverGrace time.Duration
		theCallEndsBy            string
	}{
		{"said it is leaving", "before", never, never, "its reply"},
		{"said it is leaving during the grace", "during", never, never, "its reply"},
		{"said it is leaving, still failed after the grace", "before", never, 50 * time.Millisecond, "the cut"},
		{"did not say it is leaving", "never", 50 * time.Millisecond, never, "the cut"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var h *hooks
			nodes := startCluster(t, 2, func(name string) []*Kind {
				if h != nil {
					return nil // the caller hosts nothing: its call cannot go elsewhere
				}
				h = newHooks(name)
				return []*Kind{newEchoKind(h, -1)}
			}, func(c *Config) { c.failedGrace, c.leaverGrace = tc.failedGrace, tc.leaverGrace })
			t.Cleanup(h.releaseHeld) // before the nodes close
			owner, caller := nodes[0], nodes[1]
			id := identityOwnedBy(t, nodes, owner)
			done := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				resp, err := caller.Invoke(ctx, stringCall(methodBlock, id, ""))
				if err == nil && resp.(*wrapperspb.StringValue).GetValue() != owner.Name() {
					err = fmt.Errorf("answered by %q", resp.(*wrapperspb.StringValue).GetValue())
				}
				done <- err
			}()
			receive(t, h.entered, "the call to enter the grain")
			c := connTo(t, caller, owner.Name())
			sayLeaving := func() {
				owner.transport.leaving.Store(true) // as Shutdown does first
				owner.transport.sayLeavingOnAll()
				waitFor(t, waitTimeout, "the caller to hear that the owner leaves", func() bool {
					return caller.transport.saidLeaving(owner.Name())
				})
			}
			if tc.saysLeaving == "before" {
				sayLeaving()
			}
			holdViews(t, caller)(withStatus(owner.Name(), StatusFailed))
			if tc.saysLeaving == "during" {
				sayLeaving()
				caller.recheckFailed(owner.Name()) // as the grace's timer would
			}

			if tc.theCallEndsBy == "the cut" {
				err := receive(t, done, "the call to fail")
				if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrUnknownKind) {
					t.Errorf("the call returned %v, want it cut", err)
				}
				if !isDone(c.done) {
					t.Error("the stream is open after the cut")
				}
				return
			}
			c.mu.Lock()
			byeSent := c.byeSent
			c.mu.Unlock()
			if !byeSent || isDone(c.done) {
				t.Fatalf("the stream closed, or got no bye (%v)", byeSent)
			}
			h.releaseHeld()
			if err := receive(t, done, "the call"); err != nil {
				t.Fatalf("the call: %v", err)
			}
			connTo(t, owner, caller.Name()).bye() // as the owner's farewell would
			waitFor(t, waitTimeout, "the stream to end", func() bool { return isDone(c.done) })
			c.mu.Lock()
			err := c.err
			c.mu.Unlock()
			if want := fmt.Sprintf("cluster: stream to %s ended: EOF", owner.Name()); err == nil || err.Error() != want {
				t.Errorf("the stream ended with %v, want %q: the end after both byes", err, want)
			}
		})
	}
}

// viewWithLeaving makes n's view have the named member leaving, as a
// leave's gossip would, until the test ends (see holdView).
func viewWithLeaving(t *testing.T, n *Node, name string) {
	holdView(t, n, func(members []Member) []Member {
		for i := range members {
			if members[i].Name == name {
				members[i].Status = StatusLeaving
			}
		}
		return members
	})
}

// TestStreamsWithALeavingMemberSayByeAtOnce checks that a stream opened
// with a member that this node's view has leaving, or that says it is
// leaving as it dials, gets this node's bye at once, on either side: byeToLeavers said bye on the streams open when the
// view changed, and the leaver waits for a bye on every stream, the ones
// it opened since to pass messages on included (see transport.farewell).
func TestStreamsWithALeavingMemberSayByeAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("dialed", func(t *testing.T) {
		t.Parallel()
		nodes, _ := echoCluster(t, 2, -1, nil)
		a, b := nodes[0], nodes[1]
		member := a.view.Load().byName[b.Name()]
		viewWithLeaving(t, a, b.Name())
		c, err := a.transport.conn(ctx, member)
		if err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		said := c.byeSent
		c.mu.Unlock()
		if !said {
			t.Fatal("a stream dialed to a leaving member did not say bye")
		}
		a.transport.mu.Lock()
		e := a.transport.peers[b.Name()]
		a.transport.mu.Unlock()
		if e != nil && e.conn == c {
			t.Error("the stream that said bye is still handed out for requests")
		}
	})
	t.Run("accepted", func(t *testing.T) {
		t.Parallel()
		nodes, _ := echoCluster(t, 2, -1, nil)
		a, b := nodes[0], nodes[1]
		viewWithLeaving(t, b, a.Name())
		c, err := a.transport.conn(ctx, a.view.Load().byName[b.Name()])
		if err != nil {
			t.Fatal(err)
		}
		// b said bye on the stream it accepted, a answered (it is not
		// leaving), and with nothing pending the stream ends.
		waitFor(t, waitTimeout, "the stream to end after both byes", func() bool { return isDone(c.done) })
		c.mu.Lock()
		heard := c.byeHeard
		c.mu.Unlock()
		if !heard {
			t.Fatal("the stream ended without the accepting side's bye")
		}
	})
	t.Run("accepted from a member that says it is leaving", func(t *testing.T) {
		t.Parallel()
		nodes, _ := echoCluster(t, 2, -1, nil)
		a, b := nodes[0], nodes[1]
		b.transport.leaving.Store(true) // a's view has b alive: only b's hello says it leaves
		if _, err := b.transport.conn(ctx, b.view.Load().byName[a.Name()]); err != nil {
			t.Fatal(err)
		}
		c := connTo(t, a, b.Name())
		waitFor(t, waitTimeout, "the accepting side's bye", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.byeSent
		})
	})
}

// TestAStreamDialedToALeaverTheGossipFailedSaysByeAtOnce: the gossip may
// report a graceful leave as a failure. A peer whose view has the leaver
// failed, having heard on a stream that it leaves, says bye on the streams
// open then (keepLeaver) and may dial it again, as the hand-off's ask for
// its release does: that stream must say bye at once too, as one dialed to
// a member the view has leaving does, or the leaver's farewell waits for
// its bye until its patience runs out and warns.
func TestAStreamDialedToALeaverTheGossipFailedSaysByeAtOnce(t *testing.T) {
	t.Parallel()
	logs := &logLines{}
	var leaveHeld <-chan struct{}
	var releaseLeave func()
	nodes, _ := echoCluster(t, 2, -1, func(cfg *Config) {
		if strings.HasSuffix(cfg.NodeName, "-n1") {
			cfg.farewellPatience = waitTimeout // only the byes end the farewell before the test's own timeout
			cfg.Logger = slog.New(logs.handler(cfg.Logger.Handler()))
			leaveHeld, releaseLeave = holdGossipLeave(t, cfg)
		}
	})
	peer, leaver := nodes[0], nodes[1]
	if _, err := peer.Invoke(context.Background(), addCall(identityOwnedBy(t, nodes, leaver), 1)); err != nil {
		t.Fatal(err) // a stream between the two
	}
	first := connTo(t, peer, leaver.Name())
	setView := holdViews(t, peer) // the test gives the peer its views from here on
	shutdown := make(chan error, 1)
	go func() { shutdown <- leaver.Shutdown(context.Background()) }()
	receive(t, leaveHeld, "the leaver's gossip leave")
	waitFor(t, waitTimeout, "the peer to hear on its stream that the leaver leaves", func() bool {
		return peer.transport.saidLeaving(leaver.Name())
	})
	setView(withStatus(leaver.Name(), StatusFailed))
	if !first.saidBye() {
		t.Fatal("the stream open as the view had the leaver failed did not say bye")
	}
	member, ok := peer.view.Load().member(leaver.Name())
	if !ok {
		t.Fatal("the peer's view lost the leaver")
	}
	if member.Status != StatusFailed || !member.saidLeaving {
		t.Fatalf("the peer's view has the leaver %v (said it leaves: %v), want failed having said it leaves", member.Status, member.saidLeaving)
	}
	c, err := peer.transport.conn(context.Background(), member)
	if err != nil {
		t.Fatal(err)
	}
	if c == first {
		t.Fatal("the stream that said bye was handed out again")
	}
	if !c.saidBye() {
		t.Error("a stream dialed to a leaver the gossip failed did not say bye")
	}
	releaseLeave()
	if err := receive(t, shutdown, "the leaver's Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := logs.count("cluster: peers did not end their streams in time"); n > 0 {
		t.Error("the leaver's farewell waited out its patience for a bye")
	}
}

// TestFarewellWithAPeerThatNeverSaysBye shuts down a node whose peer does
// not hear of the leave (its view is held): the leaver's farewell waits for
// a bye that never comes. If Shutdown's context ends first, Shutdown
// returns its error, as it does when any of its graceful steps runs out;
// if the farewell's patience ends first, the node logs it and stops
// without an error. Either way the node stops.
func TestFarewellWithAPeerThatNeverSaysBye(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		patience time.Duration
		ctx      time.Duration
		want     error
	}{
		{"context ends first", time.Hour, 200 * time.Millisecond, context.DeadlineExceeded},
		{"patience ends first", 50 * time.Millisecond, waitTimeout, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := &logLines{}
			nodes, _ := echoCluster(t, 2, -1, func(cfg *Config) {
				cfg.farewellPatience = tc.patience
				if strings.HasSuffix(cfg.NodeName, "-n1") {
					cfg.Logger = slog.New(logs.handler(cfg.Logger.Handler()))
				}
			})
			peer, leaver := nodes[0], nodes[1]
			if _, err := peer.Invoke(context.Background(), addCall(identityOwnedBy(t, nodes, leaver), 1)); err != nil {
				t.Fatal(err) // a stream between the two
			}
			holdView(t, peer, func(members []Member) []Member { return members }) // it never hears of the leave
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
			defer cancel()
			if err := leaver.Shutdown(ctx); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Shutdown = %v, want %v", err, tc.want)
			}
			if !isDone(leaver.Done()) {
				t.Fatal("the node did not stop")
			}
			warned := logs.count("cluster: peers did not end their streams in time")
			if (tc.want == nil) != (warned == 1) {
				t.Errorf("logged the patience running out %d times", warned)
			}
		})
	}
}

// startHeldFarewell starts the farewell of the leaver, nodes[0], with a
// stream held open: the leaver's call to a grain of nodes[2] that holds it
// (through h) until h.releaseHeld. The peer, nodes[1], does not hear of the
// leave: its view is held. It returns once the leaver said bye on that
// stream, with the call's outcome and Shutdown's to come.
func startHeldFarewell(t *testing.T, nodes []*Node, h *hooks) (held, shutdown chan error) {
	t.Helper()
	leaver, peer, owner := nodes[0], nodes[1], nodes[2]
	held, shutdown = make(chan error, 1), make(chan error, 1)
	hold := stringCall(methodHold, identityOwnedBy(t, nodes, owner), "")
	go func() {
		_, err := leaver.Invoke(context.Background(), hold)
		held <- err
	}()
	receive(t, h.entered, "the leaver's call to enter the grain")
	first := connTo(t, leaver, owner.Name())
	holdView(t, peer, func(members []Member) []Member { return members }) // it has not heard of the leave
	go func() { shutdown <- leaver.Shutdown(context.Background()) }()
	waitFor(t, waitTimeout, "the leaver's bye on its first stream", func() bool {
		first.mu.Lock()
		defer first.mu.Unlock()
		return first.byeSent
	})
	return held, shutdown
}

// TestFarewellEndsTheStreamsOpenedDuringIt has a peer whose view does not
// have the leave yet open its first stream to the leaver while the
// leaver's farewell waits for its other streams to end (a call the leaver
// made holds one open). The messages the peer sends on it are forwarded to
// the grains' new owner on another new stream; once the first streams
// end, the farewell must end these two as well, by the handshake, rather
// than leave them to be cut when the node stops: every message runs once,
// and the leaver's end of the peer's stream closes after both byes.
func TestFarewellEndsTheStreamsOpenedDuringIt(t *testing.T) {
	t.Parallel()
	const messages = 500
	var h *hooks
	rec := newRecorder()
	nodes := startCluster(t, 3, func(name string) []*Kind {
		switch {
		case strings.HasSuffix(name, "-n0"): // the leaver
			return []*Kind{newRecorderKind(newRecorder(), -1)}
		case strings.HasSuffix(name, "-n1"): // the late peer
			return nil
		}
		h = newHooks(name)
		return []*Kind{newEchoKind(h, -1), newRecorderKind(rec, -1)}
	}, nil)
	t.Cleanup(h.releaseHeld) // before the nodes close
	leaver, peer := nodes[0], nodes[1]
	id := ownedInEveryView(t, nodes, leaver, recorderKind, "late")
	held, shutdown := startHeldFarewell(t, nodes, h)
	for v := range int64(messages) {
		if err := peer.Send(context.Background(), recordCall(id, v)); err != nil {
			t.Fatalf("Send %d: %v", v, err)
		}
	}
	late := connTo(t, leaver, peer.Name())
	peer.transport.byeTo(leaver.Name(), leaver.incarnation) // as it would once it hears of the leave
	h.releaseHeld()
	if err := receive(t, held, "the leaver's call"); err != nil {
		t.Fatalf("the leaver's call: %v", err)
	}
	if err := receive(t, shutdown, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitValues(t, rec, id, sequence(0, messages-1))
	late.mu.Lock()
	err := late.err
	late.mu.Unlock()
	if want := fmt.Sprintf("cluster: the stream to %s ended", peer.Name()); err == nil || err.Error() != want {
		t.Errorf("the leaver's end of the peer's stream closed with %v, want %q", err, want)
	}
}

// TestFarewellWaitsForTheForwardsOfAStreamThatEnded: a leaver forwards
// what reaches it from its streams' lanes, which may outlast their stream.
// Here a peer whose view does not have the leave opens its first stream to
// the leaver while the leaver's farewell waits for its other stream (a
// call the leaver made holds it open), sends a message, and its stream
// breaks while the leaver's forward of the message is held. The farewell
// must wait for that forward rather than take no stream left for done and
// close the node: the message runs on the owner.
func TestFarewellWaitsForTheForwardsOfAStreamThatEnded(t *testing.T) {
	t.Parallel()
	var h *hooks
	rec := newRecorder()
	forwarding, forward := make(chan struct{}, 1), make(chan struct{})
	nodes := startCluster(t, 3, func(name string) []*Kind {
		switch {
		case strings.HasSuffix(name, "-n0"): // the leaver
			return []*Kind{newRecorderKind(newRecorder(), -1)}
		case strings.HasSuffix(name, "-n1"): // the peer
			return nil
		}
		h = newHooks(name)
		return []*Kind{newEchoKind(h, -1), newRecorderKind(rec, -1)}
	}, func(cfg *Config) {
		if strings.HasSuffix(cfg.NodeName, "-n0") {
			cfg.farewellPatience = time.Hour // the test's steps, however slow, are not cut short
			cfg.forwarding = func() {
				forwarding <- struct{}{}
				<-forward
			}
		}
	})
	t.Cleanup(h.releaseHeld) // before the nodes close
	leaver, peer := nodes[0], nodes[1]
	id := ownedInEveryView(t, nodes, leaver, recorderKind, "lane")
	held, shutdown := startHeldFarewell(t, nodes, h)
	if err := peer.Send(context.Background(), recordCall(id, 7)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	receive(t, forwarding, "the leaver's forward of the message")
	connTo(t, peer, leaver.Name()).close(newError(codes.Unavailable, ErrUnavailable, "test: the stream breaks"))
	waitFor(t, waitTimeout, "the end of the peer's stream at the leaver", func() bool {
		return !slices.ContainsFunc(leaver.transport.openConns(), func(c *conn) bool { return c.peer == peer.Name() })
	})
	h.releaseHeld()
	if err := receive(t, held, "the leaver's call"); err != nil {
		t.Fatalf("the leaver's call: %v", err)
	}
	// Now the farewell waits for the lane (or, wrongly, the node stops).
	waitFor(t, waitTimeout, "the farewell to wait for the forward, or the node to stop", func() bool {
		leaver.transport.mu.Lock()
		defer leaver.transport.mu.Unlock()
		return leaver.transport.lanesIdle != nil || isDone(leaver.Done())
	})
	close(forward)
	if err := receive(t, shutdown, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitValues(t, rec, id, []int64{7})
}

// TestAForwardOnAStreamThatSaidByeGoesOnANewOne: a node may say bye on a
// stream (its farewell, or a dial by a view in which the peer leaves)
// between handing the stream out for a forward and the forward's send,
// which then fails: the stream takes no more requests. The owner may be
// as good as before, and nobody else would send the message: it goes on a
// new stream.
func TestAForwardOnAStreamThatSaidByeGoesOnANewOne(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderClusterOf(t, 2, 2, 0, nil)
	forwarder, owner := nodes[0], nodes[1]
	id := recorderOwnedBy(t, nodes, owner, "bye-forward")
	if err := forwarder.Send(context.Background(), recordCall(id, 1)); err != nil {
		t.Fatal(err)
	}
	waitValues(t, recs[owner.Name()], id, []int64{1})
	c := connTo(t, forwarder, owner.Name())
	c.mu.Lock() // the bye, as it stands the moment after it was said: not yet retired
	c.byeSent = true
	c.mu.Unlock()
	f := frame{typ: frameRequest, oneWay: oneWaySent, kind: recorderKind, identity: id, method: methodRecord,
		payload: []byte{0x08, 0x02}} // an Int64Value of 2
	if !forwarder.forwardOneWay(&f) {
		t.Fatal("the forwarder took itself for the owner")
	}
	waitValues(t, recs[owner.Name()], id, []int64{1, 2})
}

// TestAForwardToAnOwnerThatIsGoneGoesToTheNextOne: a node forwards a
// message to the owner in a view that does not have the owner's leave
// yet (two members that leave at once: each sees the other alive after a
// stream on which it said so has ended). The owner is gone and takes no
// stream; nothing was handed to it, and nobody else would send the
// message: it goes to the owner without it, which runs it once its own
// view has the leave.
func TestAForwardToAnOwnerThatIsGoneGoesToTheNextOne(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderClusterOf(t, 3, 3, 0, nil)
	forwarder, gone, next := nodes[0], nodes[1], nodes[2]
	id := ownedNextBy(t, forwarder, gone.Name(), next.Name(), "gone")
	holdView(t, forwarder, func(members []Member) []Member { return members }) // it does not hear of the leave
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := gone.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	f := frame{typ: frameRequest, oneWay: oneWaySent, kind: recorderKind, identity: id, method: methodRecord,
		payload: []byte{0x08, 0x03}} // an Int64Value of 3
	if !forwarder.forwardOneWay(&f) {
		t.Fatal("the forwarder took itself for the owner")
	}
	waitValues(t, recs[next.Name()], id, []int64{3})
}

// TestAPeerThatRefusedAStreamAsClosingIsNotDialedAgain: once a peer
// refused a stream because its farewell is over, the transport fails the
// next stream to that start of the peer at once, where it dialed it again
// for every message that a view with the peer alive sent there.
func TestAPeerThatRefusedAStreamAsClosingIsNotDialedAgain(t *testing.T) {
	t.Parallel()
	nodes, _, _ := recorderClusterOf(t, 2, 2, 0, nil)
	n, closing := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if !closing.transport.farewell(ctx) {
		t.Fatal("the farewell of a node with no stream did not end")
	}
	m, ok := n.view.Load().member(closing.Name())
	if !ok || m.incarnation == "" {
		t.Fatalf("the view has %+v for the closing node", m)
	}
	if _, err := n.transport.conn(ctx, m); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the first stream: %v, want ErrUnavailable", err)
	}
	// With a context that has ended, nothing is dialed or waited for: the
	// refusal kept from the first stream comes first.
	const kept = "refuses streams: it is closing"
	if _, err := n.transport.conn(canceledContext(), m); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), kept) {
		t.Fatalf("the second stream: %v, want ErrUnavailable at once", err)
	}
	later := *m
	later.incarnation += "-later" // a later start under the name is dialed
	if _, err := n.transport.conn(canceledContext(), &later); err == nil || strings.Contains(err.Error(), kept) {
		t.Fatalf("a stream to a later start: %v, want the dial's own outcome", err)
	}
}

// TestAStreamDialedAfterTheFarewellIsRefused: once a leaving node's
// farewell found no stream left, the node is about to close and takes no
// new stream. A peer whose view still has it alive dials it, is refused
// before it sends anything (a dialer waits for the acceptor's hello), and
// its Send returns ErrUnavailable, where it returned nil for a message that
// the node's close then cut off its stream unread. Once the peer's view
// takes the refusal for a leave, the grain is the peer's.
func TestAStreamDialedAfterTheFarewellIsRefused(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderClusterOf(t, 2, 2, 0, nil)
	leaver, peer := nodes[0], nodes[1]
	id := recorderOwnedBy(t, nodes, leaver, "after-farewell")
	setView := holdViews(t, peer) // the refusal's refresh waits (see Node.viewOf)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if !leaver.transport.farewell(ctx) {
		t.Fatal("the farewell of a node with no stream did not end")
	}
	err := peer.Send(context.Background(), recordCall(id, 1))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Send after the farewell: %v, want ErrUnavailable", err)
	}
	if got := recs[leaver.Name()].values(id); len(got) != 0 {
		t.Fatalf("the leaver ran %v after its farewell", got)
	}
	if got := leaver.transport.openConns(); len(got) != 0 {
		t.Fatalf("the leaver took %d streams after its farewell", len(got))
	}
	// Once the peer's view takes the refusal for a leave, the grain is the
	// peer's, and the message runs there.
	setView(func(ms []Member) []Member { return ms })
	if st, _ := peer.view.Load().status(leaver.Name()); st != StatusLeaving {
		t.Fatalf("the leaver is %v in the peer's view after it refused a stream as closing, want leaving", st)
	}
	if err := peer.Send(context.Background(), recordCall(id, 2)); err != nil {
		t.Fatalf("Send once the view has the leave: %v", err)
	}
	waitValues(t, recs[peer.Name()], id, []int64{2})
}

// TestStreamsAcceptedWhileSayingLeaving opens streams to a node while it
// says it is leaving on every stream it has, over and over: an accepted
// stream is seen by sayLeavingOnAll as soon as it is tracked, so whether it
// uses name ids must be settled before (under -race, this failed when
// serveStream set it after).
func TestStreamsAcceptedWhileSayingLeaving(t *testing.T) {
	t.Parallel()
	a := startNode(t, testConfig(t))
	b := startNode(t, testConfig(t))
	m := &Member{Name: a.name, GRPCAddr: a.transport.addr().String()}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !isDone(stop) {
				a.transport.sayLeavingOnAll()
			}
		})
	}
	for range 100 {
		c, err := b.transport.open(m)
		if err != nil {
			t.Fatal(err)
		}
		c.close(newError(codes.Unavailable, ErrUnavailable, "test: done with the stream"))
	}
	close(stop)
	wg.Wait()
}
