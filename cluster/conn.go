package cluster

import (
	"cmp"
	"context"
	"errors"
	"io"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// msgStream is what client and server streams have in common.
type msgStream interface {
	SendMsg(m any) error
	RecvMsg(m any) error
}

// conn is one bidirectional stream to a peer. Both ends can send requests
// on it; replies are matched to requests by id. Frames are queued in
// batches by the goroutines that send them and written by one writer
// goroutine, so under load several frames share a gRPC message.
type conn struct {
	t    *transport
	self weak.Pointer[conn] // for the shared deadlines that watch it (see sharedDeadline.watchers)
	peer string
	// addr is the peer's transport address: the one dialed, or the one
	// its hello said. A node restarted under its name has a new one, so
	// the streams of its old incarnation are told from its own (see
	// transport.conn and Node.dropMoved). "" from a peer too old to say.
	addr string
	// inc is the incarnation of the peer's start the stream is with: the
	// one that answered the hello of a stream this node dialed (else the
	// one dialed), or the one its hello said; "" if not known (a peer too
	// old to say). A start restarted at the same address, a fixed port,
	// has a new one, so that what its old start's streams said (that it
	// leaves) is not taken for the new start's (see transport.leaves).
	inc string
	// replaced is the incarnation the peer's start replaced under its
	// name, as the hello of a stream it dialed said; "" if none or not
	// said. Such a stream is newer than a view that still has that
	// incarnation (see transport.conn).
	replaced string
	stream   msgStream
	cancel   context.CancelFunc // ends the stream
	cc       *grpc.ClientConn   // nil for streams the peer dialed
	wake     chan struct{}      // tells the writer there is work
	done     chan struct{}      // closed by close
	heard    chan struct{}      // closed when the peer's bye arrives (see bye)
	names    nameTable          // names decoded by readLoop, interned
	lanes    oneWayLanes        // one-way requests that wait, in a lane per grain
	target   oneWayTarget       // where the one-way requests of the batch being read go; readLoop's
	kept     bool               // a frame of the batch being read kept its payload; readLoop's
	frame    frame              // the frame being decoded; readLoop's
	// The requests of the batch being read, served once it is read (see
	// serveBatch): the first, and the batch they share if there are more.
	// readLoop's.
	firstServed *servedCall
	batchServed *servedBatch

	// The reader's fields above are read for every frame it delivers, and
	// the mutex below is taken for every frame sent: a line of padding
	// keeps the two off one cache line, which the reader's core and the
	// senders' would otherwise pass back and forth: 3.9% more one-way
	// messages per second between two processes (bench/grains
	// BenchmarkOneWay, n=8).
	_ [cacheLine]byte

	peerLeaving atomic.Bool // the peer said it is leaving the cluster (helloLeaving); read without c.mu

	mu           sync.Mutex
	batches      []*[]byte // queued frames, each batch at most MaxBatchBytes (or one frame), from t.batches
	batchHint    int       // the bytes the writer took last time: the capacity of the next batch, doubled
	pendingBytes int
	space        chan struct{} // closed when the writer takes the batches; made by a sender that waits
	writing      bool          // a goroutine is sending batches on the stream (writeLoop or writeAlone)
	lone         loneWrite     // the write of a caller that writes its own request, while it lasts
	dict         nameDict      // the names this side defined in the stream's dictionary
	nextID       uint64
	calls        map[uint64]pendingCall // requests sent, waiting for their reply
	watched      *sharedDeadline        // the last deadline this conn asked to watch (see call)
	served       map[uint64]*servedCtx  // requests received, running
	err          error                  // why the conn closed
	corrupt      error                  // the decoding error that closed it, if any
	byeSent      bool                   // this side sent its bye: it sends no more requests (see bye)
	byeHeard     bool                   // the peer's bye arrived
	ending       bool                   // both byes are out and nothing is pending: the stream ends (see endIfDone)
	sendClosed   bool                   // the dialer's side of the stream is closed (CloseSend): nothing more goes out
	peerEnded    bool                   // the dialer closed its side: the acceptor closes the conn once its queue is written
	framesQueued uint64                 // frames sent, for tests and debugging
	batchesSent  uint64                 // gRPC messages sent
}

func newConn(t *transport, peer, addr string, s msgStream, cancel context.CancelFunc, cc *grpc.ClientConn) *conn {
	c := &conn{
		t: t, peer: peer, addr: addr, stream: s, cancel: cancel, cc: cc,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		heard:  make(chan struct{}),
		calls:  make(map[uint64]pendingCall),
		served: make(map[uint64]*servedCtx),
	}
	c.names.held = t.handler
	c.self = weak.Make(c)
	return c
}

// at reports whether c may be a stream to the peer at addr: its own
// address, or one it did not say.
func (c *conn) at(addr string) bool { return c.addr == addr || c.addr == "" }

// of reports whether the stream is with start inc of its peer, as far as
// it knows.
func (c *conn) of(inc string) bool { return c.inc == inc || c.inc == "" || inc == "" }

// with reports whether the stream is with member m's start, at m's
// address, as far as it knows.
func (c *conn) with(m *Member) bool {
	return c.peer == m.Name && c.at(m.GRPCAddr) && c.of(m.incarnation)
}

// start runs the reader and the writer. first, if not nil, is a batch
// already received on the stream (a dialer's first, see transport.open):
// the reader handles it before it reads more.
func (c *conn) start(first []byte) {
	go c.readLoop(first)
	go c.writeLoop()
}

// closedErr returns the error of a closed conn, or nil.
func (c *conn) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// corruptErr returns the decoding error that closed the conn, or nil.
func (c *conn) corruptErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.corrupt
}

// close ends the conn with err, a retryable error: calls waiting for a
// reply get it, requests being served are cancelled.
func (c *conn) close(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	for id, ctx := range c.served {
		ctx.end()
		delete(c.served, id)
	}
	// Calls waiting for a reply get a frameClosed, which no peer can send
	// (see call).
	for id, p := range c.calls {
		p.reply <- frame{typ: frameClosed} // buffered, and nothing else sends on it any more
		delete(c.calls, id)
	}
	close(c.done)
	c.mu.Unlock()
	c.cancel()
	if c.cc != nil {
		_ = c.cc.Close() // the stream is already gone; nothing to report
	}
	c.t.forget(c)
}

// pendingCall is a request sent and waiting for its reply.
type pendingCall struct {
	reply chan frame // buffered: whoever takes the call out of conn.calls sends its one reply
	// d is the call's deadline when it is all there is to the call's
	// context (see call), and expire ends the call then; nil otherwise.
	d *sharedDeadline
}

// Replies that come from this side rather than from the peer, in frame
// types that no peer sends (decoding rejects them).
const (
	frameClosed  frameType = 0   // the conn closed (see close)
	frameExpired frameType = 255 // the call's shared deadline passed (see expire)
)

// call sends req and waits for its reply, ctx or the conn's end.
//
// The trick: a call made without a deadline has a context that ends only
// at its shared deadline (see deadlines), one context for every call of a
// window. Waiting on its Done as well as on the reply is a select, which
// locks both channels to wait and again to stop waiting, so 64 callers
// queued on that one shared channel's lock: selectgo was 17% of the CPU
// of the calling goroutines in bench/grains RemoteCalls with 64 callers.
// Such a call waits on its reply alone, and when the deadline passes the
// conn sends it a reply of its own (frameExpired): the deadline watches the
// conns that have calls under it (sharedDeadline.watch), a lock once per
// window and conn instead of on every call.
func (c *conn) call(ctx context.Context, req *frame) (frame, error) {
	d := onlySharedDeadline(ctx)
	reply := c.t.getReplyChan()
	req.id = 0 // set as the call is registered (see queue)
	if err := c.queue(ctx, req, queueCall, pendingCall{reply: reply, d: d}); err != nil {
		if req.id == 0 {
			c.t.putReplyChan(reply)
		} else {
			// Registered, and then the write failed: the conn closed and
			// may have sent the call its end, so the channel is left to
			// the GC.
			c.forgetCall(req.id)
		}
		if ctx.Err() != nil { // the write was reset at the deadline (see writeAlone)
			err = contextError(ctx.Err())
		}
		return frame{}, err
	}
	if d != nil {
		return c.replied(req.id, reply, <-reply)
	}
	// The conn's end comes as a reply (see close) rather than as a case
	// on c.done: every call of the conn would wait on that one channel,
	// and a select on it was contended the same way (selectgo was 8% of
	// the CPU of a bench/grains RemoteCalls caller process).
	select {
	case r := <-reply:
		return c.replied(req.id, reply, r)
	case <-ctx.Done():
		c.forgetCall(req.id)
		// (On this path a reply may still come, and the channel is left to
		// the GC.)
		err := ctx.Err()
		c.cancelServed(req.id, err)
		return frame{}, contextError(err)
	}
}

// watch makes sure that d ends c's calls under it when it passes, and
// reports false if d has passed already. c.mu is held.
func (c *conn) watch(d *sharedDeadline) bool {
	if c.watched == d {
		// d watches c already, unless it has passed since (expire sets
		// passed before it takes c.mu to end c's calls).
		return !d.passed.Load()
	}
	if !d.watch(c) {
		return false
	}
	c.watched = d
	return true
}

// replied returns the reply r that call id received on reply, as call's
// result.
func (c *conn) replied(id uint64, reply chan frame, r frame) (frame, error) {
	// The one reply for this id has been taken: nothing else can be sent
	// on the channel, so it may serve another call.
	c.t.putReplyChan(reply)
	switch r.typ {
	case frameClosed:
		return frame{}, c.closedErr()
	case frameExpired:
		c.cancelServed(id, context.DeadlineExceeded)
		return frame{}, contextError(context.DeadlineExceeded)
	}
	return r, nil
}

// cancelServed tells the peer to stop working on the request with this id,
// which this side gave up on because its context ended with why: the
// cancel frame says whether that was the call's deadline (see fieldCode),
// so that the request's context there ends with the same error. If the
// queue is full the request times out there on its own deadline anyway.
func (c *conn) cancelServed(id uint64, why error) {
	f := frame{typ: frameCancel, id: id}
	if errors.Is(why, context.DeadlineExceeded) {
		f.code = codes.DeadlineExceeded
	}
	_ = c.send(canceledContext(), &f)
}

// expire ends the calls waiting under d, which has passed (see call), and
// resets the stream if a caller under d is still writing its own request
// (see writeAlone).
func (c *conn) expire(d *sharedDeadline) {
	c.mu.Lock()
	for id, p := range c.calls {
		if p.d == d {
			delete(c.calls, id)
			p.reply <- frame{typ: frameExpired} // buffered, and nothing else sends on it any more
		}
	}
	c.endIfDone()
	writing, seq := c.lone.active && c.lone.d == d, c.lone.seq
	c.mu.Unlock()
	if writing { // a caller under d is still writing its own request
		c.loneWriteLate(seq)
	}
}

func (c *conn) forgetCall(id uint64) {
	c.mu.Lock()
	delete(c.calls, id)
	c.endIfDone()
	c.mu.Unlock()
}

// send queues f for the writer. It waits while MaxPendingBytes are queued,
// until the writer makes room, ctx ends or the conn closes.
func (c *conn) send(ctx context.Context, f *frame) error {
	return c.queue(ctx, f, queueForWriter, pendingCall{})
}

// sendReply queues the reply to a served request. The request leaves
// c.served as its reply is queued, under the same lock, so that a stream
// that ends once nothing is pending (endIfDone) never ends between the two
// and leaves the reply behind.
func (c *conn) sendReply(f *frame) error {
	return c.queue(context.Background(), f, queueReply, pendingCall{})
}

// sendMode says how queue treats a frame.
type sendMode uint8

const (
	queueForWriter sendMode = iota // the writer writes it (send)
	queueCall                      // a call's request: it gets its id and waits as p (see call); alone, the caller writes it
	queueReply                     // a served request's reply (sendReply); alone, the server writes it
)

// queue implements send, sendReply and the sending of call's request,
// which it registers as p under the same lock.
//
// A call's request or a request's reply is written to the stream by the
// goroutine that queues it when nothing else is going on on the conn (no
// other call waits for a reply, no other request is being served, no frame
// is queued, nobody is writing). The trick: a lone caller otherwise hands
// each frame to the writer goroutine, and on each side of a round trip
// that hand-off is a wake-up of a parked goroutine, often of a sleeping
// thread. Under load this never applies (the conn has other calls in
// flight), so frames are still batched by the writer; and it is never
// used for one-way messages, whose single sender would lose the batching.
//
// A call registers itself here rather than under a lock of its own
// first: with 64 callers on one conn, c.mu is contended (Mutex.lockSlow
// was 3% of the CPU of a bench/grains RemoteCalls caller), and that was
// one acquisition more per call.
func (c *conn) queue(ctx context.Context, f *frame, mode sendMode, p pendingCall) error {
	f.refs = nameRefs{} // set by enqueue
	size := f.sizeBound()
	c.mu.Lock()
	for c.err == nil && c.pendingBytes > 0 && c.pendingBytes+size > c.t.cfg.MaxPendingBytes {
		if c.space == nil {
			c.space = make(chan struct{})
		}
		space := c.space
		c.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return contextError(ctx.Err())
		case <-c.done:
		}
		c.mu.Lock()
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	if c.sendClosed || c.byeSent && f.typ == frameRequest {
		c.mu.Unlock()
		return newError(codes.Unavailable, ErrUnavailable, "cluster: the stream to %s is closing", c.peer)
	}
	if mode == queueCall {
		if p.d != nil && !c.watch(p.d) {
			c.mu.Unlock()
			return contextError(context.DeadlineExceeded)
		}
		c.nextID++
		f.id = c.nextID
		c.calls[f.id] = p
	}
	// Only the frame that makes the queue non-empty wakes the writer: the
	// writer empties the queue under c.mu after each wake, so frames queued
	// behind it are taken with it. That spares the other frames a channel
	// operation each.
	wake := len(c.batches) == 0
	c.enqueue(f, size)
	if mode == queueReply {
		delete(c.served, f.id)
		c.endIfDone()
	}
	if mode != queueForWriter && wake && !c.writing && len(c.calls)+len(c.served) <= 1 {
		return c.writeAlone(ctx, p.d) // unlocks c.mu
	}
	c.mu.Unlock()
	if wake {
		select {
		case c.wake <- struct{}{}:
		default: // the writer has been woken already
		}
	}
	return nil
}

// enqueue appends f to the last batch, or starts a new one when it would
// grow past MaxBatchBytes. bound is f.sizeBound(). c.mu is held.
func (c *conn) enqueue(f *frame, bound int) {
	// A frame never makes a batch grow: it goes to a new one when the last
	// one is full (MaxBatchBytes, or its capacity). A new batch comes from
	// the transport's pool, with room for twice as many bytes as the writer
	// took last time, so under a steady load (one-way messages, many
	// callers) few batches are needed per gRPC write, while a lone caller's
	// batches stay one frame small. Growing a fresh batch by doubling
	// instead copied and cleared it at every step (14% of the CPU of a
	// one-way benchmark process), and allocating each batch anew was a
	// third of the bytes that process allocated.
	// The checks use f's bound rather than its size, which is known only
	// once it is written (see appendFrame): a batch may end a little
	// before MaxBatchBytes, which costs nothing.
	f.refs = c.dict.refs(f)
	n := len(c.batches)
	if n == 0 || len(*c.batches[n-1])+bound > min(c.t.cfg.MaxBatchBytes, cap(*c.batches[n-1])) {
		b := c.t.batches.Get(max(bound, min(2*c.batchHint, c.t.cfg.MaxBatchBytes)))
		*b = (*b)[:0]
		c.batches = append(c.batches, b)
		n++
	}
	c.framesQueued++
	b := c.batches[n-1]
	before := len(*b)
	*b = appendFrame(*b, f)
	c.pendingBytes += len(*b) - before
}

// writeAlone sends the queued batches from the calling goroutine (see
// queue), for a call under ctx, or under the shared deadline d alone if d
// is not nil. c.mu is held, and released.
//
// gRPC's SendMsg blocks while 64 KiB of the stream's data wait unsent,
// which they do when the peer stops reading (a hung process with its
// socket open) after a large message, and it takes no context. A caller
// writing its own request would then stay in it past its deadline, where
// one whose request the writer sends waits on its reply and returns at the
// deadline. So if the call's deadline passes, or its ctx ends, while the
// write is blocked, the stream is reset, which ends the write: a stream
// that took nothing for a call's whole deadline is taken for a broken
// one, and its calls fail as they would when it breaks, to be retried (see
// loneWriteLate). A call under d alone is watched by d (see expire);
// context.AfterFunc on such a call's context would start a goroutine per
// call.
func (c *conn) writeAlone(ctx context.Context, d *sharedDeadline) error {
	batches := c.take()
	c.writing = true
	c.lone.seq++
	c.lone.active, c.lone.d = true, d
	seq := c.lone.seq
	c.mu.Unlock()
	stop := func() bool { return true }
	if d == nil && ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { c.loneWriteLate(seq) })
	}
	err := c.write(batches)
	stop()
	c.mu.Lock()
	c.writing = false
	c.lone.active, c.lone.d = false, nil
	// Queued while we wrote, or the stream is to end once all is written:
	// the writer skipped it (see writeLoop).
	more := len(c.batches) > 0 || c.ending || c.peerEnded
	c.mu.Unlock()
	if more {
		c.wakeWriter()
	}
	return err
}

// loneWrite is the write of a caller that sends its own request (see
// writeAlone).
type loneWrite struct {
	seq    uint64          // counts the lone writes, to tell this one from later ones
	active bool            // the write is in progress
	d      *sharedDeadline // the call's deadline, when it is all there is to its context
}

// defaultLoneWriteGrace is how long a lone write may go on after its
// call's deadline passed or its context ended before the stream is reset
// (see loneWriteLate).
const defaultLoneWriteGrace = 100 * time.Millisecond

// loneWriteLate is called when the call of lone write seq has ended (its
// deadline passed, or its context ended) and the write may still be in
// progress. Most likely the write is only finishing, a matter of
// microseconds: the caller, rescheduled, has yet to see it done (a
// cancelled call whose request had reached the grain was seen to reset a
// healthy stream so). The stream is reset only if the write is still in
// progress after a grace: then the peer's flow control holds it.
func (c *conn) loneWriteLate(seq uint64) {
	if c.loneWriting(seq) {
		time.AfterFunc(cmp.Or(c.t.cfg.loneWriteGrace, defaultLoneWriteGrace), func() { c.resetLoneWrite(seq) })
	}
}

// loneWriting reports whether lone write seq is still in progress.
func (c *conn) loneWriting(seq uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lone.active && c.lone.seq == seq
}

// resetLoneWrite resets the stream if lone write seq is still in progress
// (see loneWriteLate).
func (c *conn) resetLoneWrite(seq uint64) {
	if c.loneWriting(seq) {
		c.t.log.Warn("cluster: resetting a stream whose write outlasted a call's deadline", "peer", c.peer)
		c.close(newError(codes.Unavailable, ErrUnavailable, "cluster: stream to %s reset: a write did not finish within a call's deadline", c.peer))
	}
}

// take takes the queued batches for writing. c.mu is held.
func (c *conn) take() []*[]byte {
	batches := c.batches
	c.batchHint = c.pendingBytes
	c.batches, c.pendingBytes = nil, 0
	c.batchesSent += uint64(len(batches))
	if c.space != nil { // only when a sender waits: a channel per batch otherwise
		close(c.space)
		c.space = nil
	}
	return batches
}

// write sends batches on the stream; only the writer, or a goroutine that
// set c.writing, calls it. A send error closes the conn.
func (c *conn) write(batches []*[]byte) error {
	for _, b := range batches {
		// gRPC keeps the batch until it is written, then frees it into the
		// transport's pool (see rawCodec.Marshal): it is not touched here
		// again.
		if err := c.stream.SendMsg(b); err != nil {
			err = newError(codes.Unavailable, ErrUnavailable, "cluster: send to %s: %v", c.peer, err)
			c.close(err)
			return err
		}
	}
	return nil
}

// writeLoop sends the queued batches. Each gRPC message takes every frame
// queued since the previous one (up to MaxBatchBytes), which is what batches
// frames under load.
func (c *conn) writeLoop() {
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		// Let the goroutines that are about to queue frames do so, so that
		// they share this message instead of each paying for a send.
		goruntime.Gosched()
		c.mu.Lock()
		if c.writing {
			// A lone sender is writing (writeAlone); it wakes us again if
			// frames are left when it is done.
			c.mu.Unlock()
			continue
		}
		batches := c.take()
		c.writing = true
		c.mu.Unlock()
		if c.write(batches) != nil {
			return
		}
		c.mu.Lock()
		c.writing = false
		end := c.endStep()
		c.mu.Unlock()
		if end != keepOpen {
			c.end(end)
		}
	}
}

// streamEnd is what the writer does to a stream that is to end, once it
// has written everything queued (see endStep).
type streamEnd uint8

const (
	keepOpen  streamEnd = iota // nothing (yet)
	closeSend                  // the dialer closes its side of the stream
	closeConn                  // the acceptor closes the conn, and serveStream returns
)

// endStep says how the writer ends the stream, if it is to end and
// everything queued has been written. The dialer closes its side
// (CloseSend, which lets the acceptor read every frame before it sees the
// end, where cancelling the stream would drop what gRPC still buffers);
// the acceptor, once the dialer has closed its side, closes the conn, and
// serveStream returns, which ends the stream after the frames written.
// Only the writer ends the stream, so that nothing is sent on it at the
// same time. c.mu is held.
func (c *conn) endStep() streamEnd {
	switch {
	case len(c.batches) > 0 || c.writing:
		return keepOpen // the writer comes back for them
	case c.peerEnded:
		return closeConn
	case c.ending && c.cc != nil && !c.sendClosed:
		c.sendClosed = true
		return closeSend
	}
	return keepOpen
}

// end ends the stream as endStep said.
func (c *conn) end(how streamEnd) {
	switch how {
	case closeSend:
		if cs, ok := c.stream.(grpc.ClientStream); ok {
			_ = cs.CloseSend() // fails only if the stream ended, which the reader sees
		}
	case closeConn:
		c.close(newError(codes.Unavailable, ErrUnavailable, "cluster: the stream to %s ended", c.peer))
	}
}

// bye tells the peer that this side sends no more requests on the stream:
// a hello frame with fieldBye, queued behind every frame queued before it,
// so the peer reads them all first. Requests queued later fail with
// ErrUnavailable (Invoke and Send place them again by the view that made
// this node say bye), and the transport stops handing the conn out.
// Replies and cancels still go both ways; once both sides said bye and no
// request is waiting for its reply in either direction, the stream ends
// (endIfDone), with nothing lost. It is how a node stops talking to a
// member that leaves gracefully, and how the leaver ends its streams
// (see Node.Shutdown).
func (c *conn) bye() {
	c.mu.Lock()
	if c.err != nil || c.byeSent {
		c.mu.Unlock()
		return
	}
	c.byeSent = true
	wake := c.enqueueHello(helloBye)
	c.endIfDone()
	c.mu.Unlock()
	if wake {
		c.wakeWriter()
	}
	c.t.retire(c)
}

// saidBye reports whether this side said bye on the stream: it takes no
// more requests.
func (c *conn) saidBye() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byeSent
}

// sayLeaving tells the peer that this node is leaving the cluster: a hello
// frame with helloLeaving, ahead of the forwards that follow, so that the
// peer, whose view may not have the leave yet, does not send back what
// this node passes on (see Node.forwardOneWay), nor cut the stream if the
// gossip tells it of the leave as a failure (see Node.dropFailed).
func (c *conn) sayLeaving() {
	c.mu.Lock()
	if c.err != nil || c.sendClosed {
		c.mu.Unlock()
		return
	}
	wake := c.enqueueHello(helloLeaving)
	c.mu.Unlock()
	if wake {
		c.wakeWriter()
	}
}

// enqueueHello queues a hello frame with flags, past MaxPendingBytes (it
// is a few bytes, and must not wait), and reports whether the writer
// needs a wake-up. c.mu is held.
func (c *conn) enqueueHello(flags helloFlags) bool {
	f := frame{typ: frameHello, node: c.t.name, hello: flags}
	wake := len(c.batches) == 0
	c.enqueue(&f, f.sizeBound())
	return wake
}

// heardBye records the peer's bye. Unless this node is leaving, which
// says bye itself once it has passed on what it still holds (see
// transport.farewell), it answers with its own.
func (c *conn) heardBye() {
	c.mu.Lock()
	if !c.byeHeard {
		c.byeHeard = true
		close(c.heard)
	}
	answer := !c.byeSent && !c.t.leaving.Load()
	c.endIfDone()
	c.mu.Unlock()
	if answer {
		c.bye()
	}
}

// endIfDone starts the end of the stream once both sides said bye and no
// request waits for its reply in either direction: the writer then ends
// the stream when it has written all that is queued (endStep). c.mu is
// held; the paths that take a call or a served request out of their maps
// call it, and it costs them two flags read.
func (c *conn) endIfDone() {
	if !c.byeSent || !c.byeHeard || c.ending || len(c.calls) > 0 || len(c.served) > 0 {
		return
	}
	c.ending = true
	c.wakeWriter()
}

// wakeWriter tells the writer there is work, without waiting.
func (c *conn) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
	default: // the writer has been woken already
	}
}

// readLoop receives batches and dispatches their frames until the stream
// ends or a batch does not decode; a corrupt batch closes the conn (and so
// resets the stream) without touching other conns. first, if not nil, is
// the batch to handle before the next one read.
func (c *conn) readLoop(first []byte) {
	if first != nil && !c.handleBatch(first) {
		return
	}
	// One variable for every batch: RecvMsg takes it as an interface, so
	// it lives on the heap, and declaring it in the loop made one per batch.
	var batch []byte
	for {
		if err := c.stream.RecvMsg(&batch); err != nil {
			if errors.Is(err, io.EOF) && c.cc == nil {
				// The dialer closed its side after both byes (see
				// endStep): the writer closes the conn once it has
				// written what is queued.
				c.mu.Lock()
				c.peerEnded = true
				c.mu.Unlock()
				c.wakeWriter()
				return
			}
			c.close(newError(codes.Unavailable, ErrUnavailable, "cluster: stream to %s ended: %v", c.peer, err))
			return
		}
		if !c.handleBatch(batch) {
			return
		}
	}
}

// handleBatch dispatches the frames of a batch received and reports
// whether the conn may read on: false when the batch was corrupt, which
// closes the conn.
func (c *conn) handleBatch(batch []byte) bool {
	c.kept = false
	err := decodeBatchInto(batch, &c.frame, &c.names, c.dispatch)
	c.t.handler.endOneWay(&c.target)
	// Even when the batch was corrupt: every request decoded so far
	// holds a ticket of the node's gate, and runs to give it back.
	c.serveBatch()
	if err == nil && !c.kept && cap(batch) >= smallBatch { // a small batch is not the pool's
		// Every frame is done with the batch (requests decode their
		// payload here, into messages of their own; see serve): its
		// buffer can take another batch. A new slice header, as the pool
		// must not hold the address of the variable RecvMsg fills.
		b := batch
		c.t.batches.Put(&b)
	}
	if err != nil {
		c.t.log.Error("cluster: closing the stream to a peer that sent a corrupt frame", "peer", c.peer, "err", err)
		c.mu.Lock()
		c.corrupt = err
		c.mu.Unlock()
		// Calls waiting on this stream did not fail for their own
		// sake: they get a retryable error.
		c.close(newError(codes.Unavailable, ErrUnavailable, "cluster: stream to %s reset: %v", c.peer, err))
		return false
	}
	return true
}

func (c *conn) dispatch(f *frame) {
	switch f.typ {
	case frameRequest:
		if f.oneWay != twoWay {
			c.serveOneWay(f)
		} else {
			// The one-way messages before this request reach their
			// grain before it does, as they were sent.
			c.target.batch.Flush()
			c.serve(f)
		}
	case frameResponse:
		c.mu.Lock()
		p, ok := c.calls[f.id]
		delete(c.calls, f.id)
		c.endIfDone()
		c.mu.Unlock()
		if ok {
			c.kept = true // decoded by the caller
			p.reply <- *f // buffered; the caller may have gone, which is fine
		}
	case frameCancel:
		c.mu.Lock()
		ctx, ok := c.served[f.id]
		c.mu.Unlock()
		switch {
		case !ok:
		case f.code == codes.DeadlineExceeded:
			ctx.expire()
		default: // cancelled, or a peer from before the code on cancel frames
			ctx.end()
		}
	case frameHello:
		// The acceptor's answer to our hello: whether it understands name
		// ids. Otherwise only the first frame of a dialed stream, which
		// serveStream reads; repeated ones say nothing.
		if f.hello&helloNames != 0 {
			c.mu.Lock()
			c.dict.on = true
			c.mu.Unlock()
		}
		if f.hello&helloLeaving != 0 {
			c.peerLeaving.Store(true)
			c.t.handler.heardLeaving()
		}
		if f.hello&helloBye != 0 {
			if c.peerLeaving.Load() {
				c.t.handler.heardFarewell()
			}
			c.heardBye()
		}
		if f.hello&helloSuperseded != 0 {
			c.t.handler.replaced(f.identity, c.peer)
		}
		if f.hello&helloAskRelease != 0 {
			c.t.handler.askedRelease(c, f.identity, f.message)
		}
		if f.hello&helloReleased != 0 {
			c.t.handler.released(c.peer, f.identity, f.message, f.hello&helloLeaving != 0)
		}
	}
}

// nameDict assigns the ids of the names a conn sends in the stream's name
// dictionary (see nameRefs). It is used under the conn's mutex, in the
// order frames are queued, which is the order the peer reads them in.
type nameDict struct {
	on  bool // the peer understands name ids
	ids map[string]uint16
	// The last name of each field and its id: a stream's frames mostly
	// repeat them, and comparing a name with the same string (the same
	// pointer: a constant of generated code) is cheaper than hashing it.
	kind, method, client nameCache
	// clientsSeen are the last client IDs sent as strings (see refs).
	clientsSeen [clientsSeenCount]string
	clientsNext int
}

// clientsSeenCount is how many recent client IDs a nameDict remembers
// before giving one an id.
const clientsSeenCount = 8

type nameCache struct {
	name string
	id   uint16
}

// refs returns how f's names go on the wire, defining those that are new.
// The order (kind, method, client) is the one the reader resolves them in.
func (d *nameDict) refs(f *frame) nameRefs {
	if !d.on {
		return nameRefs{}
	}
	r := nameRefs{kind: d.ref(&d.kind, f.kind), method: d.ref(&d.method, f.method)}
	if c := f.stamp.client; c != "" && (c == d.client.name || d.ids[c] != 0 || d.seenClient(c)) {
		r.client = d.ref(&d.client, c)
	}
	return r
}

// seenClient reports whether client was sent recently, and remembers it.
//
// Kinds and methods are few, but a client ID may be used once: the stamps
// of a grain's inner calls each have their own (innerStamp). Defining
// every one would fill the dictionary (maxNameID) with names that never
// come again, and later kinds and methods would go as strings for the rest
// of the stream. So a client ID gets an id only when it comes again within
// the last clientsSeenCount client IDs sent as strings, as a node's own
// does on its second call.
func (d *nameDict) seenClient(client string) bool {
	for _, s := range d.clientsSeen {
		if s == client {
			return true
		}
	}
	d.clientsSeen[d.clientsNext] = client
	d.clientsNext = (d.clientsNext + 1) % clientsSeenCount
	return false
}

func (d *nameDict) ref(last *nameCache, s string) nameRef {
	if s == "" {
		return nameRef{}
	}
	if last.id != 0 && s == last.name {
		return nameRef{id: last.id}
	}
	id, ok := d.ids[s]
	if !ok {
		if len(d.ids) >= maxNameID {
			return nameRef{} // full: a string, as without a dictionary
		}
		if d.ids == nil {
			d.ids = make(map[string]uint16)
		}
		id = uint16(len(d.ids) + 1)
		d.ids[s] = id
	}
	*last = nameCache{name: s, id: id}
	return nameRef{id: id, define: !ok}
}

// serve prepares a request from the peer to run once the batch it came in
// is read (see serveBatch), on a goroutine other than the reader's, so
// that a slow grain does not hold up the stream. The request's payload is
// decoded here, by the reader, so that the frame that goes on does not
// keep the batch.
//
// The trick: a batch that a frame keeps is left to the GC, and the next
// batch the pool hands out is a fresh 4 KiB. When the goroutine that ran a
// request decoded its payload, every batch of requests was kept: on the
// host of bench/grains RemoteCalls those buffers were 15% of the bytes it
// allocated, and that host's collections set the p99 of cross-node calls.
// Decoding takes the reader well under a microsecond per request.
func (c *conn) serve(f *frame) {
	h := c.t.handler
	ticket, ok := h.admitCall()
	if !ok {
		reply := &frame{typ: frameResponse, id: f.id, code: codes.Unavailable,
			message: "cluster: node " + c.t.name + " is shutting down", reason: reasonNotOwner}
		_ = c.send(context.Background(), reply) // fails only when the conn is closed
		return
	}
	// A request's context does not descend from a conn-wide one: close
	// ends every request in c.served itself, so making each a child of
	// another context (a lock on the parent to add it, and again to remove
	// it, on every request) would buy nothing.
	//
	// Its deadline is shared with the requests that arrive within the same
	// window (see deadlines): a context of its own with a timer cost three
	// allocations and two trips through the runtime's timer heap per
	// request (27% of the bytes the host allocated in bench/grains
	// RemoteCalls), for a timer that almost never fires. The request's
	// context only adds cancellation, and only when asked (see servedCtx).
	ctx := &servedCtx{}
	if f.timeout > 0 {
		ctx.d = c.t.deadlines.sharedAfter(time.Now(), f.timeout)
	}
	c.mu.Lock()
	if c.err == nil {
		c.served[f.id] = ctx
	} else {
		ctx.end() // closed already: the request runs only to fail fast
	}
	c.mu.Unlock()
	s, _ := c.t.served.Get().(*servedCall)
	if s == nil {
		s = new(servedCall)
	}
	s.c, s.req, s.ctx, s.ticket = c, *f, ctx, ticket
	s.decoded = h.decodeRequest(f)
	s.req.payload = nil // decoded: the batch may take other frames
	switch {
	case c.firstServed == nil:
		c.firstServed = s
	case c.batchServed == nil:
		// Room for a batch under load (about ten requests) in one go.
		calls := append(make([]*servedCall, 0, 16), c.firstServed, s)
		c.batchServed = &servedBatch{pool: c.t.servers, calls: calls}
	default:
		c.batchServed.calls = append(c.batchServed.calls, s)
	}
}

// serveBatch starts the requests of the batch just read: a lone request on
// a goroutine of its own, several on one goroutine in turn (servedBatch).
func (c *conn) serveBatch() {
	switch {
	case c.batchServed != nil:
		c.batchServed.start()
	case c.firstServed != nil:
		c.t.servers.run(c.firstServed)
	}
	c.firstServed, c.batchServed = nil, nil
}

// servedBatch runs the requests that came in one gRPC message one after
// the other, on one goroutine of the transport's goPool, and brings in
// another goroutine for the rest each time servedPatience passes with
// requests not started.
//
// The trick: under load a message carries about ten requests, and a
// goroutine of their own for each was ten wake-ups, each of which may
// wake a thread that first has to get a core (see docs/architecture.md,
// "Nodes that share cores"). One goroutine running them in turn is one
// wake-up, and an idle grain's turn is a few microseconds. A grain that
// takes longer, or blocks, holds up the requests behind it for at most
// servedPatience, so no request waits on another's grain for long, and a
// request that waits for the effect of a later one in the same message
// cannot deadlock. bench/grains RemoteCalls with 64 callers, against a
// goroutine per request (n=10): +8.15% calls/s, p50 -9.04%, p99 -19.99%.
type servedBatch struct {
	pool  *goPool
	calls []*servedCall // in the order they came
	next  atomic.Int32  // the index of the next request to start
	timer *time.Timer   // the first help; set before the batch runs
}

// servedPatience is how long a served batch's requests wait for the one
// running before another goroutine starts on them: several idle grains'
// turns, and far below a call's deadline.
const servedPatience = 100 * time.Microsecond

// start hands the batch to a pooled goroutine, with the timer that brings
// in help.
func (b *servedBatch) start() {
	b.timer = time.AfterFunc(servedPatience, b.help)
	b.pool.run(b)
}

// run implements task: it runs requests until none is left to start, then
// stops the first timer (a later one finds nothing left and stops by
// itself). Helpers (servedBatchHelper) run the same loop.
func (b *servedBatch) run() {
	b.drain()
	b.timer.Stop()
}

// drain starts the batch's requests one at a time until none is left.
//
// A grain that calls runtime.Goexit ends the goroutine in the middle of
// the loop, once its request is answered (see servedCall.exited): the
// requests left are then started by the next help, within
// servedPatience, as if that request had blocked. No timer is ever
// missing for that: one is pending for as long as requests wait to start.
func (b *servedBatch) drain() {
	for {
		i := int(b.next.Add(1)) - 1
		if i >= len(b.calls) {
			return
		}
		s := b.calls[i]
		b.calls[i] = nil // s.run recycles s
		s.run()
	}
}

// help runs on a timer: if requests are still waiting to start, another
// goroutine starts on them, and a new timer comes back after
// servedPatience.
func (b *servedBatch) help() {
	if int(b.next.Load()) < len(b.calls) {
		b.pool.run(servedBatchHelper{b})
		time.AfterFunc(servedPatience, b.help)
	}
}

// servedBatchHelper is a goroutine that joins a served batch (see help).
type servedBatchHelper struct{ b *servedBatch }

func (h servedBatchHelper) run() { h.b.drain() }

// servedCall is a request on its way through the goroutine that serves it.
//
// The trick: one object carries the request to that goroutine, and it is
// recycled (transport.served) once the reply is queued. A closure over the
// frame and the context cost the frame's copy (about 200 B) and the
// closure (64 B), and the reply frame, returned by pointer, another 200 B:
// 36% of the bytes the host allocated in bench/grains RemoteCalls. Now the
// reply is a value and s itself is the pool's task (see task). Only the
// context is allocated per request, as the grain may keep it past the
// call; nothing else holds s or its frame after run.
//
// Fewer bytes per request is fewer garbage collections: the host of that
// benchmark has a live heap of about 1 MiB, under the GC's 4 MiB minimum
// goal, so it collected every 3 MiB allocated, each collection with two
// stops of the world of 0.1 to 2 ms that every call in flight waits out.
type servedCall struct {
	c       *conn
	req     frame // without its payload
	decoded decodedRequest
	ctx     *servedCtx
	ticket  gateTicket // the request's entry in the node's gate
}

func (s *servedCall) run() {
	c, h, ctx := s.c, s.c.t.handler, s.ctx
	served := false
	defer func() {
		if !served {
			s.exited()
		}
		ctx.end()
	}()
	// The node's gate lets go of the request once it is served, before its
	// reply is queued: the queue waits for room while the peer reads
	// nothing (a hung process), and a Shutdown that waits for the requests
	// being served would wait for that peer too, for good if its gossip
	// keeps it alive. The farewell bounds the wait for replies instead.
	reply := func() frame {
		defer h.finishCall(s.ticket)
		return h.serveRequest(ctx, &s.req, &s.decoded)
	}()
	served = true
	reply.typ, reply.id = frameResponse, s.req.id
	// An error here means the conn closed: the caller retries or gives up.
	_ = c.sendReply(&reply)
	*s = servedCall{} // let the request and the context go
	c.t.served.Put(s)
}

// exited answers the request whose serving a grain ended with
// runtime.Goexit (t.FailNow in a method, or a library's), among the
// deferred calls of the goroutine that it ends: the grain's method, or its
// OnActivate, which the request's turn or activation ran here (see
// Node.serveRemote). Without it the peer had no reply until its deadline.
// The reply is the error a local caller whose turn a worker ran gets, so
// the peer's call fails at once, as if the method had panicked (see
// goexitReply). The goroutine then ends: the runtime carries on with the
// grain's actor on a new one (its supervisor restarts it), and a served
// batch with its other requests on another (see servedBatch.drain).
//
// run tells a Goexit by served, unset when its deferred call runs: a
// request that was served pays that flag, in a deferred call it had
// already, and nothing else.
func (s *servedCall) exited() {
	c := s.c
	reply := goexitReply(&s.req)
	reply.typ, reply.id = frameResponse, s.req.id
	_ = c.sendReply(&reply)
	*s = servedCall{}
	c.t.served.Put(s)
}

// canceledContext returns a context that is already done, for sends that
// must not wait for room in the queue.
func canceledContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// oneWayLanes holds the one-way requests of a conn that its reader could
// not deliver without blocking (their grain was not active: it needs an
// activation; or the request must be forwarded, or wait for a view), in a
// lane per grain. A grain's later requests join its lane while it holds
// any, and one goroutine per lane delivers them in order: messages from
// one peer to one grain keep their order, while the reader goes on with
// other frames (a reply this grain's activation waits for, say), and the
// requests for other grains go on by the reader's fast path. With one lane
// per stream, one slow activation (a store under load) held up every
// later one-way message of the peer, to every grain, for as long as it
// took.
//
// At most maxLaneDrainers goroutines of a stream drain its lanes, each a
// lane at a time until it is empty; lanes beyond them wait for one, in the
// order they opened. A goroutine per lane took, for a burst of one-way
// messages to grains that were not active (an event fanned out to many
// devices), a goroutine per grain, whose stack (2 KiB at the least) weighs
// more than the message it held (about 190 bytes, BenchmarkWaitingMemory).
// A pool of k is held up whole only by k slow activations at once from one
// peer, where one lane per stream was by one; what waits in the lanes is
// bounded per grain (see Node.laneRoom).
//
// Each lane counts as a busy lane in the transport (see
// transport.busyLanes) while it holds requests, drained or waiting.
type oneWayLanes struct {
	// busy counts the lanes: the reader looks a frame's grain up in lanes
	// only when it is not 0, so that a stream with no waiting grain pays
	// one atomic load per one-way frame, as before. Changed under mu.
	busy  atomic.Int32
	mu    sync.Mutex
	lanes map[laneKey]*grainLane // present while the lane holds requests
	// undrained holds the lanes that no drainer has taken yet, oldest
	// first, while drainers is maxLaneDrainers.
	undrained []*grainLane
	drainers  int // goroutines draining lanes
}

// maxLaneDrainers bounds the goroutines that drain the lanes of a stream
// (see oneWayLanes).
const maxLaneDrainers = 64

// laneKey is the grain of a lane.
type laneKey struct{ kind, identity string }

// grainLane is the lane of one grain: its requests in order, the first
// the one being delivered. They count against the grain's bound,
// MaxQueuedOneWay, from when they join until they are delivered (see
// Node.laneRoom).
type grainLane struct {
	key   laneKey
	queue []frame
}

// waiting calls count with how many one-way requests wait in each of c's
// lanes, and the kind of the lane's grain (see Node.Stats).
func (c *conn) waiting(count func(kind string, waiting int)) {
	l := &c.lanes
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, gl := range l.lanes {
		count(key.kind, len(gl.queue))
	}
}

// serveOneWay delivers a one-way request. The common case, a request to an
// active grain that has no lane, is handled right here by the reader: no
// goroutine, no copy of the frame. Otherwise the request joins its grain's
// lane, or opens one.
func (c *conn) serveOneWay(f *frame) {
	l := &c.lanes
	// A frame for the batch's target grain skips the look-up: the target
	// is set only for a grain that had no lane, and only the reader opens
	// lanes, ending the target first (serveOneWay ends it for any frame
	// it does not take). So a run of frames to one grain stays as cheap
	// while other grains' lanes are busy.
	if l.busy.Load() != 0 && !c.target.holds(f) {
		l.mu.Lock()
		if gl := l.lanes[laneKey{f.kind, f.identity}]; gl != nil {
			if c.t.handler.laneRoom(f) {
				c.kept = true // delivered from the lane's goroutine
				gl.queue = append(gl.queue, *f)
			}
			l.mu.Unlock()
			return
		}
		l.mu.Unlock() // no lane, or it emptied meanwhile: f may go first
	}
	if c.t.handler.serveOneWay(f, c.peer, false, &c.target) || !c.t.handler.laneRoom(f) {
		return
	}
	c.kept = true
	gl := &grainLane{key: laneKey{f.kind, f.identity}, queue: []frame{*f}}
	c.t.laneBusy() // before the lane is, so that the count is never short
	l.mu.Lock()
	if l.lanes == nil {
		l.lanes = make(map[laneKey]*grainLane)
	}
	l.lanes[gl.key] = gl
	l.busy.Add(1)
	drain := l.drainers < maxLaneDrainers
	if drain {
		l.drainers++
	} else {
		l.undrained = append(l.undrained, gl)
	}
	l.mu.Unlock()
	if drain {
		go c.drainLanes(gl)
	}
}

// drainLanes drains gl, then the lanes that wait for a drainer, until none
// does.
func (c *conn) drainLanes(gl *grainLane) {
	for gl != nil {
		c.drainLane(gl)
		gl = c.nextLane()
	}
}

// nextLane returns the oldest lane that waits for a drainer, taking it out
// of the wait, for a drainer that is done with its lane; or nil, counting
// the drainer out, if none waits.
func (c *conn) nextLane() *grainLane {
	l := &c.lanes
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.undrained) == 0 {
		l.drainers--
		return nil
	}
	gl := l.undrained[0]
	l.undrained[0] = nil
	l.undrained = l.undrained[1:]
	return gl
}

// drainLane delivers the requests of gl, a grain's lane, in order until it
// is empty. When one is dropped because its grain could not be activated,
// those behind it, which waited for the same activation, are dropped with
// it, with one log line: a store that is down is not asked once per
// message, nor the log written once per message. Requests that arrive
// later try again.
//
// A request's delivery may activate its grain, and Kind.New, OnActivate
// and the store's Load run on this goroutine (see activations.activate):
// one that calls runtime.Goexit (t.FailNow, or a library's) ends it in the
// middle of the loop. The deferred call, which tells that by delivering,
// set while a delivery is under way, takes over (see exitedLane): without
// it the lane stayed open with nobody to drain it, and every later request
// from the peer to the grain joined it, undelivered until the stream
// ended, and counted against the grain's bound and in the transport's
// busy lanes, which a farewell waits for.
func (c *conn) drainLane(gl *grainLane) {
	l := &c.lanes
	h := c.t.handler
	delivering := false
	defer func() {
		if delivering {
			c.exitedLane(gl)
		}
	}()
	for {
		l.mu.Lock()
		f := gl.queue[0]
		l.mu.Unlock()
		delivering = true
		err := h.serveWaiting(&f, c.peer)
		delivering = false
		if c.delivered(gl, &f, err) {
			return
		}
	}
}

// delivered takes f, the first request of gl, out of the lane once it is
// delivered, or dropped for err with the requests behind it, and reports
// whether that emptied the lane, which then leaves the conn's lanes.
func (c *conn) delivered(gl *grainLane, f *frame, err error) (empty bool) {
	l := &c.lanes
	h := c.t.handler
	l.mu.Lock()
	gl.queue[0] = frame{} // let the payload go
	gl.queue = gl.queue[1:]
	left, dropped := 1, 0
	if err != nil {
		dropped = 1 + len(gl.queue)
		left = dropped
		clear(gl.queue)
		gl.queue = nil
	}
	h.laneLeft(f, left) // after the mailbox counted f in: the counts err high, never low
	empty = len(gl.queue) == 0
	if empty {
		delete(l.lanes, gl.key)
		l.busy.Add(-1)
	}
	l.mu.Unlock()
	if dropped > 0 {
		h.dropWaiting(f, err, dropped)
	}
	if empty {
		c.t.laneIdle() // after the lane is, so that the count is never short
	}
	return empty
}

// exitedLane ends the drain of gl, whose first request's delivery a grain
// ended with runtime.Goexit (see drainLane), among the deferred calls of
// the goroutine that it ends. The Goexit failed the grain's activation as
// a panic does (see activations.activate, which logs it), so the request
// is dropped, with those behind it that waited for the same activation,
// as after any activation that failed; a later request tries again. The
// lanes that wait for a drainer are handed to a new goroutine, since this
// one goes: the drainer's place is passed on, not given up.
func (c *conn) exitedLane(gl *grainLane) {
	l := &c.lanes
	l.mu.Lock()
	f := gl.queue[0]
	l.mu.Unlock()
	c.delivered(gl, &f, goexitDropped(&f))
	if next := c.nextLane(); next != nil {
		go c.drainLanes(next)
	}
}
