package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/protograin/protograin/runtime"
)

// This file is the one-way path: Send on a node and in a grain, the frames
// it sends, and their delivery on the owner. The package doc ("One-way
// messages") states what it guarantees.

// Sender is implemented by Callers that deliver one-way messages: a *Node,
// and the GrainContext a grain method receives. It is separate from Caller
// so that a user's own Caller (a fake in a test, say) need not implement it;
// Send falls back to Invoke for those.
type Sender interface {
	// Send hands call over for delivery to the grain call.Kind/call.Identity
	// and returns without waiting for the grain to run it (see the package
	// doc, "One-way messages").
	Send(ctx context.Context, call Call, opts ...CallOption) error
}

// Send delivers call as a one-way message through caller: with its Send if
// caller is a Sender, otherwise by calling Invoke and discarding the
// response, so that it then returns when the grain has run the call, with
// its error. Generated clients use it for methods marked
// (protograin.v1.method).one_way.
func Send(ctx context.Context, caller Caller, call Call, opts ...CallOption) error {
	if s, ok := caller.(Sender); ok {
		return s.Send(ctx, call, opts...)
	}
	_, err := caller.Invoke(ctx, call, opts...)
	return err
}

// Send implements Sender. It places the grain and hands call over: to the
// grain's mailbox when this node owns it (activating it first if needed,
// without serializing the request), or to the stream to the owner. It
// returns when the message is handed over, not when the grain has run it,
// and never retries afterwards. It fails when the message could not be
// handed over: no alive member hosts the kind, or this node hosts the kind
// and it has no such method (ErrUnknownKind, ErrUnknownMethod, both
// codes.Unimplemented), the request is missing or does not encode
// (ErrBadRequest), ctx ended (or, if ctx has no deadline, DefaultCallTimeout
// passed while the message waited for an activation, or for room in the
// stream to its owner), the owner cannot be reached (ErrUnavailable), or
// the node is closed (ErrNodeClosed). A message placed on this node
// that finds the grain moved away while it waited for an activation (a
// member joined), or placed on a member whose stream no longer takes it
// (the member leaves or failed), is placed again by the new view.
//
// A node that receives a message for a grain it does not own (its view of
// the members differs from this node's) forwards it once to the owner it
// sees. An owner that cannot deliver a message it received (it does not
// know the method, the payload does not decode, or it received the message
// forwarded and does not come to own the grain within two seconds) logs it
// and drops it.
//
// A message to a grain of this node that is not active activates it on
// the caller's goroutine, as a call does (see Activator): an OnActivate
// that calls runtime.Goexit ends that goroutine, and Send never returns;
// the activation fails as if OnActivate had panicked, and the next message
// activates the grain afresh. A peer's message that activates the grain
// on its owner is dropped then, and logged (see conn.drainLane).
//
// WithCallID does not apply to one-way messages, which are not
// deduplicated: Send fails with ErrBadRequest if it is given. WithoutRetry
// and WithTurnOnCaller change nothing: a one-way message to a grain of this
// node waits in its mailbox for its worker. call.NewResponse is not used.
func (n *Node) Send(ctx context.Context, call Call, opts ...CallOption) error {
	if n.outgoing == nil {
		return n.send(ctx, &call, opts)
	}
	_, err := n.outgoing(ctx, call, true, n.sendNext, opts...)
	return err
}

// send is Send past the node's outgoing interceptors.
func (n *Node) send(ctx context.Context, call *Call, opts []CallOption) error {
	md, err := checkOneWay(call, opts)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return contextError(err)
	}
	if isDone(n.stop) {
		return newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is closed", n.name)
	}
	for {
		view := n.view.Load()
		owner, ok := view.owner(call.Kind, call.Identity)
		if !ok {
			return view.noOwner(call.Kind)
		}
		var err error
		if owner.Name == n.name {
			err = n.sendLocal(ctx, call, md)
		} else {
			// The owner would drop a message to a method its kind does
			// not have; a node that hosts the kind itself can say so now.
			if hk := n.kinds[call.Kind]; hk != nil && hk.methods[call.Method] == nil {
				return newError(codes.Unimplemented, ErrUnknownMethod, "cluster: grain kind %q has no method %q", call.Kind, call.Method)
			}
			err = n.sendRemote(ctx, owner, call, md)
		}
		// ErrNotOwner: the grain moved away while the message waited here
		// for its activation (a member joined). ErrUnavailable: the
		// stream to the owner took no more requests (the owner leaves, and
		// this node said bye to it) or ended. Either way the message was
		// not handed over: place it again by the new view; each turn of
		// the loop needs a view newer than the last.
		if !retryable(err) || n.view.Load() == view {
			return err
		}
	}
}

// checkOneWay refuses a one-way message that Send cannot take whoever
// owns its grain, and returns the metadata its options attach.
func checkOneWay(call *Call, opts []CallOption) (Metadata, error) {
	cc := applyCallOptions(opts)
	if cc.stamp != (stamp{}) {
		return Metadata{}, newError(codes.InvalidArgument, ErrBadRequest, "cluster: one-way message to %s/%s %s: WithCallID does not apply to one-way messages",
			call.Kind, call.Identity, call.Method)
	}
	if noMessage(call.Request) {
		return Metadata{}, newError(codes.InvalidArgument, ErrBadRequest, "cluster: one-way message to %s/%s %s: the request is nil",
			call.Kind, call.Identity, call.Method)
	}
	return cc.metadata, cc.checkMetadata(call)
}

// Send implements Sender: grains send one-way messages through their node.
// Unlike a call, a one-way message to a grain waiting in the chain of calls
// that led here, or to the grain itself, cannot deadlock: nobody waits for
// it. It runs after the current call; one a grain sends itself from
// OnActivate runs after OnActivate, and one from OnDeactivate on the
// grain's next activation (see hookContext).
func (g *grainContext) Send(ctx context.Context, call Call, opts ...CallOption) error {
	return g.n.Send(ctx, call, opts...)
}

// sendLocal queues a one-way message in the mailbox of a grain this node
// owns, with its metadata md, passing the request message through without
// copying it.
func (n *Node) sendLocal(ctx context.Context, call *Call, md Metadata) error {
	ticket, ok := n.calls.enter()
	if !ok {
		return newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is shutting down", n.name)
	}
	defer n.calls.leave(ticket)
	hk, m, err := n.localMethod(call)
	if err != nil {
		return err
	}
	if queued, err := n.tryQueueOneWay(hk, m, call.Identity, call.Request, md); queued || err != nil {
		return n.refusedSend(err)
	}
	// The grain is not active yet (or is going away): activate it within
	// the caller's deadline, or the default one.
	if _, ok := ctx.Deadline(); !ok && n.cfg.DefaultCallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = n.deadlines.with(ctx)
		defer cancel()
	}
	return n.refusedSend(n.queueOneWay(ctx, hk, m, call.Identity, call.Request, md))
}

// refusedSend returns err, Send's, and counts it in Stats.Refused if the
// grain's mailbox was full. A peer's message refused the same way is
// dropped instead, and counted in Stats.DroppedOneWay.
func (n *Node) refusedSend(err error) error {
	if err != nil && errors.Is(err, ErrMailboxFull) {
		n.refused.Add(1)
	}
	return err
}

// localMethod finds the kind and method of a message for a grain of this
// node, and checks its request's type: a local message is passed on as it
// is, with no encoding that would catch a wrong one.
func (n *Node) localMethod(call *Call) (*hostedKind, *hostedMethod, error) {
	hk, m, err := n.lookup(call.Kind, call.Method)
	if err != nil {
		return nil, nil, err
	}
	if got := call.Request.ProtoReflect().Descriptor().FullName(); got != m.request {
		return nil, nil, newError(codes.InvalidArgument, ErrBadRequest, "cluster: %s takes a %s, not a %s", m.Name, m.request, got)
	}
	return hk, m, nil
}

// hookContext is the GrainContext of OnActivate and OnDeactivate. While
// the hook runs, a one-way message the grain sends itself cannot go the
// usual way, which waits until the activation is done (or gone), that is
// for the hook itself, until ctx ends: Send keeps it instead, for the
// actor once it is spawned (OnActivate), or for the grain's next
// activation (OnDeactivate, see keepOneWay).
type hookContext struct {
	grainContext
	deactivating bool        // OnDeactivate's; OnActivate's otherwise
	over         atomic.Bool // the hook returned: Send goes the usual way
}

// Value implements context.Context: a hook serves no call, so it has no
// metadata, even when the call that activated the grain had some.
func (h *hookContext) Value(key any) any {
	if key == (metadataKey{}) {
		return Metadata{}
	}
	return h.grainContext.Value(key)
}

// Send implements Sender.
func (h *hookContext) Send(ctx context.Context, call Call, opts ...CallOption) error {
	a := h.a
	if h.over.Load() || call.Kind != a.hk.Name || call.Identity != a.identity {
		return h.grainContext.Send(ctx, call, opts...)
	}
	if h.n.outgoing == nil {
		return h.sendSelf(ctx, call, opts)
	}
	_, err := h.n.outgoing(ctx, call, true, func(ctx context.Context, call Call, opts ...CallOption) (proto.Message, error) {
		return nil, h.sendSelf(ctx, call, opts)
	}, opts...)
	return err
}

// sendSelf is Send for a one-way message the grain sends itself while its
// hook runs, past the node's outgoing interceptors.
func (h *hookContext) sendSelf(ctx context.Context, call Call, opts []CallOption) error {
	a := h.a
	if call.Kind != a.hk.Name || call.Identity != a.identity { // an interceptor sent it elsewhere
		return h.n.send(ctx, &call, opts)
	}
	md, err := checkOneWay(&call, opts)
	if err != nil {
		return err
	}
	_, m, err := h.n.localMethod(&call)
	if err != nil {
		return err
	}
	msg := newOneWayCall(m, call.Request, md)
	if h.deactivating {
		h.n.acts.keepOneWay(a, msg)
		return nil
	}
	if p := a.pending.Load(); p != nil && p.keep(msg) {
		return nil
	}
	return h.n.send(ctx, &call, opts)
}

// maxPooledPayload bounds the buffers kept in transport.payloads, so that one huge
// message does not keep its buffer alive in the pool.
const maxPooledPayload = 64 << 10

// sendRemote encodes a one-way message, with its metadata md, and queues
// it on the stream to its owner.
func (n *Node) sendRemote(ctx context.Context, owner *Member, call *Call, md Metadata) error {
	buf := n.transport.getPayload()
	defer n.transport.putPayload(buf)
	b, err := proto.MarshalOptions{}.MarshalAppend((*buf)[:0], call.Request)
	if err != nil {
		return newError(codes.InvalidArgument, ErrBadRequest, "cluster: encode the one-way message to %s/%s %s: %v",
			call.Kind, call.Identity, call.Method, err)
	}
	*buf = b
	if len(b) > n.cfg.MaxFrameBytes {
		return newError(codes.InvalidArgument, ErrBadRequest, "cluster: one-way message to %s/%s %s is %d bytes, over MaxFrameBytes (%d)",
			call.Kind, call.Identity, call.Method, len(b), n.cfg.MaxFrameBytes)
	}
	// A dial and a full queue wait for ctx: without a deadline of the
	// caller's, for the default one, as a local message's activation does,
	// or a hung owner (whose stream takes nothing) held Send for good.
	if _, ok := ctx.Deadline(); !ok && n.cfg.DefaultCallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = n.deadlines.with(ctx)
		defer cancel()
	}
	c, err := n.transport.conn(ctx, owner)
	if err != nil {
		return err
	}
	f := frame{typ: frameRequest, oneWay: oneWaySent, kind: call.Kind, identity: call.Identity, method: call.Method, payload: b,
		message: md.enc}
	return c.send(ctx, &f)
}

// tryQueueOneWay queues a one-way message in the mailbox of the grain's
// activation if it is active and ready, without waiting for anything; it
// reports whether it did, or ErrMailboxFull if the grain is active and has
// no room for it (see Config.MaxQueuedOneWay).
func (n *Node) tryQueueOneWay(hk *hostedKind, m *hostedMethod, identity string, req proto.Message, md Metadata) (bool, error) {
	a := n.readyActivation(hk, identity)
	if a == nil {
		return false, nil
	}
	defer n.acts.release(a)
	if !a.admitOneWay(n.maxOneWays) {
		return false, n.mailboxFull(a)
	}
	if a.ref.Send(newOneWayCall(m, req, md)) != nil {
		a.oneWays.Add(-1)
		return false, nil
	}
	return true, nil
}

// readyActivation returns the grain's activation, counted in (release must
// follow), if it is active and ready; otherwise nil, without waiting. For
// a kind of stateless workers, it is an idle worker's (see readyWorker).
func (n *Node) readyActivation(hk *hostedKind, identity string) *activation {
	if hk.workers != nil {
		return n.acts.readyWorker(hk, identity)
	}
	a := n.acts.lookup(hk, identity)
	if a == nil {
		return nil
	}
	if !a.activated() {
		n.acts.release(a)
		return nil
	}
	return a
}

// oneWayTarget is the grain that the last one-way frames of a batch went
// to, with its activation counted in and the node's call gate entered, so
// that the frames after them to the same grain and method, the usual case
// under load, skip the checks and lookups of serveOneWay: the gate, the
// kind and method, the owner, the activation table (a hash, a lock and two
// atomic adds), and the clock reading of a release. A stream's reader keeps
// one for the length of a batch, as if one call delivered all of them, and
// ends it with endOneWay.
//
// The messages for the target are collected in a runtime.Batch and reach
// the mailbox together when the target ends, with one push instead of one
// per message (see runtime.Batch); a reader that hands a request to a
// goroutine flushes them first, so that the grain still receives what one
// peer sent in the order it was sent.
//
// The messages are counted into the grain's mailbox (Config.MaxQueuedOneWay)
// oneWaysReserved at a time, before they are delivered: room is what the
// target counted in and has not used yet, given back when it ends.
type oneWayTarget struct {
	oneWayGrain
	batch  runtime.Batch // kept from target to target, with its free queue nodes
	ticket gateTicket    // the target's entry in the node's gate
	room   int32         // messages counted into the grain's mailbox and not yet added to batch
}

// oneWayGrain is the grain of a oneWayTarget.
type oneWayGrain struct {
	kind, identity, method string
	m                      *hostedMethod
	a                      *activation // nil: no target
}

// holds reports whether t has a target, and req is for its grain (by any
// method).
func (t *oneWayTarget) holds(req *frame) bool {
	return t.a != nil && req.identity == t.identity && req.kind == t.kind
}

// endOneWay implements requestHandler: it delivers the messages collected
// for the batch's target and releases it.
func (n *Node) endOneWay(t *oneWayTarget) {
	if t.a == nil {
		return
	}
	t.batch.Flush()
	if t.room > 0 {
		t.a.oneWays.Add(-t.room)
	}
	n.acts.release(t.a)
	n.calls.leave(t.ticket)
	t.oneWayGrain, t.ticket, t.room = oneWayGrain{}, 0, 0
}

// addToTarget adds msg, a message for t's grain, to the batch, and reports
// whether it did: false if the grain's activation is going away (the
// target is ended then). A message the grain has no room for is dropped.
func (n *Node) addToTarget(t *oneWayTarget, msg *oneWayCall) bool {
	if t.room == 0 {
		if t.room = t.a.reserveOneWays(oneWaysReserved, n.maxOneWays); t.room == 0 {
			n.dropOverflow(t.kind, t.identity, t.method)
			return true
		}
	}
	if t.batch.Add(t.a.ref, msg) != nil {
		n.endOneWay(t)
		return false
	}
	t.room--
	return true
}

// queueToTarget queues req for t's grain if it is the one the frame is for,
// and reports whether it did. A frame that does not decode is dropped
// here, as serveOneWay would.
func (n *Node) queueToTarget(t *oneWayTarget, req *frame) bool {
	if t.a == nil || req.identity != t.identity || req.method != t.method || req.kind != t.kind {
		return false
	}
	msg, err := decodePayload(req, t.m, "one-way message")
	if err != nil {
		n.dropOneWay(req, err)
		return true
	}
	return n.addToTarget(t, newOneWayCall(t.m, msg, Metadata{enc: req.message})) // if not, the activation is going away: the full path follows it
}

// queueOneWay queues a one-way message in the mailbox of the grain's
// activation, activating it first if needed. Like deliver, it follows a
// grain whose activation goes away under it to the next activation, as
// long as this node owns the grain.
func (n *Node) queueOneWay(ctx context.Context, hk *hostedKind, m *hostedMethod, identity string, req proto.Message, md Metadata) error {
	for {
		a, err := n.acts.get(ctx, hk, identity)
		if err != nil {
			return err
		}
		if !a.admitOneWay(n.maxOneWays) {
			n.acts.release(a)
			return n.mailboxFull(a)
		}
		err = a.ref.Send(newOneWayCall(m, req, md))
		n.acts.release(a)
		if err == nil {
			return nil
		}
		a.oneWays.Add(-1)
		if n.retryOnNextActivation(a, err) {
			if err := n.checkOwner(hk.Name, identity); err != nil {
				return err
			}
			continue
		}
		if errors.Is(err, runtime.ErrStopped) && !isDone(n.stop) {
			// The actor stopped by itself, after repeated panics. A call
			// would fail, and the next one activate the grain afresh;
			// nobody waits for this message, so it is that next one.
			n.acts.failed(a)
			continue
		}
		return n.callError(ctx, a, m.Name, err)
	}
}

// oneWayCall is a one-way message on its way to the grain's actor and,
// while its method runs, the GrainContext the method gets.
//
// The trick: a received one-way message allocates its decoded request and
// this, nothing else, so its size sets how often a busy node collects. A
// GrainContext has no per-message part but its deadline (a one-way message
// has no callers, no stamp, no caller's context): the grain and the node
// are the actor's. So instead of a grainContext and a context in the
// message (128 bytes), the message is the context, 48 bytes. On the host
// of bench/grains BenchmarkOneWay the oneWayCall was 64% of the bytes
// allocated and the collector's work a fifth of the CPU.
//
// Its context ends at the node's DefaultCallTimeout from when the message
// starts: it takes the deadline of the calls that start in the same window
// (see deadlines.forCall), one atomic load, where reading the clock for
// every message was 5% of the CPU of a one-way benchmark process. Without
// a DefaultCallTimeout it never ends. It carries no values: a one-way
// message has no caller's context.
type oneWayCall struct {
	method *hostedMethod
	req    proto.Message
	g      *grainActor     // the actor running it; set when it starts
	d      *sharedDeadline // its deadline, set when it starts; nil for none
	// md is its metadata, nil for none: a pointer rather than the
	// Metadata, which would take the message to the next size class (48
	// bytes to 64) for what most messages do not carry.
	md *Metadata
}

// Deadline implements context.Context.
func (m *oneWayCall) Deadline() (time.Time, bool) {
	if m.d == nil {
		return time.Time{}, false
	}
	return m.d.at, true
}

// Done implements context.Context.
func (m *oneWayCall) Done() <-chan struct{} {
	if m.d == nil {
		return nil
	}
	return m.d.ctx.Done()
}

// Err implements context.Context.
func (m *oneWayCall) Err() error {
	if m.d == nil {
		return nil
	}
	return m.d.ctx.Err()
}

// Value implements context.Context: the message's metadata is its only
// value.
func (m *oneWayCall) Value(key any) any {
	if key == (metadataKey{}) {
		return m.metadata()
	}
	return nil
}

// metadata returns the message's metadata.
func (m *oneWayCall) metadata() Metadata {
	if m.md == nil {
		return Metadata{}
	}
	return *m.md
}

// AfterFunc lets contexts derived from m follow it with a callback instead
// of a goroutine each (see deadlineCtx.AfterFunc).
func (m *oneWayCall) AfterFunc(f func()) func() bool {
	if m.d == nil {
		return context.AfterFunc(context.Background(), f) // never runs f
	}
	return context.AfterFunc(m.d.ctx, f)
}

// String names the context in debugging output.
func (m *oneWayCall) String() string { return "cluster.oneWayCall(" + m.method.Name + ")" }

// Kind implements GrainContext.
func (m *oneWayCall) Kind() string { return m.g.hk.Name }

// Identity implements GrainContext.
func (m *oneWayCall) Identity() string { return m.g.identity }

// State implements GrainContext.
func (m *oneWayCall) State() State { return m.g.act().stateFor(m.g.node(), stamp{}) }

// Invoke implements Caller as a call's GrainContext does, for a grain that
// no other grain waits for.
func (m *oneWayCall) Invoke(ctx context.Context, call Call, opts ...CallOption) (proto.Message, error) {
	gc := grainContext{Context: m, n: m.g.node(), a: m.g.act()}
	return gc.Invoke(ctx, call, opts...)
}

// Send implements Sender.
func (m *oneWayCall) Send(ctx context.Context, call Call, opts ...CallOption) error {
	return m.g.node().Send(ctx, call, opts...)
}

// scope implements grainScope.
func (m *oneWayCall) scope() (*Node, *activation) { return m.g.node(), m.g.act() }

// newOneWayCall makes the message of a one-way call to method m, with its
// metadata md.
func newOneWayCall(m *hostedMethod, req proto.Message, md Metadata) *oneWayCall {
	msg := &oneWayCall{method: m, req: req}
	if md.enc != "" {
		// A copy: &md would move md to the heap on every message, with
		// metadata or without, in each function this one inlines into.
		msg.md = new(Metadata)
		*msg.md = md
	}
	return msg
}

// serveOneWay implements requestHandler: it delivers a one-way message a
// peer sent. With wait false it does only what cannot block (the reader of
// a stream calls it so) and reports false if the message needs more: an
// activation, or a wait for one to go. A message that cannot be delivered
// is logged and dropped: nobody waits for an answer. target, if not nil,
// is the batch's target: a frame for it goes straight to its mailbox, and
// a frame queued for a ready activation becomes the target. from is the
// peer the message came from.
func (n *Node) serveOneWay(req *frame, from string, wait bool, target *oneWayTarget) bool {
	done, err := n.deliverOneWay(req, from, wait, target)
	if err != nil {
		n.dropOneWay(req, err)
	}
	return done
}

// serveWaiting implements requestHandler: it delivers a one-way message
// from a grain's lane, and returns why it dropped it, unlogged, if the
// grain could not be activated (or the message queued after waiting for
// its activation: the node closed, say); the lane drops the messages that
// waited behind it with it (see conn.drainLane).
func (n *Node) serveWaiting(req *frame, from string) error {
	_, err := n.deliverOneWay(req, from, true, nil)
	return err
}

// goexitDropped is why a one-way message is dropped whose delivery a
// grain ended with runtime.Goexit, in Kind.New, OnActivate or the store's
// Load, which the delivery ran to activate the grain: ErrGrainPanic, as
// for a peer's request whose activation exited (see goexitReply), since
// the activation failed as if the grain had panicked.
func goexitDropped(req *frame) error {
	return grainPanicked(req.kind, req.identity, req.method, runtime.ErrGoexit)
}

// dropWaiting implements requestHandler: it logs req, dropped for err,
// and the messages behind it in its lane, count in all.
func (n *Node) dropWaiting(req *frame, err error, count int) {
	n.dropOneWays(req, err, count)
}

// laneRoom implements requestHandler. The messages that wait for a grain
// in its lanes, on every peer's stream, and those in its mailbox are held
// together to Config.MaxQueuedOneWay: the mailbox is empty while the
// grain activates, and fills as the lanes drain into it. A message past
// the bound is dropped and counted in the overflow log, as one that finds
// the mailbox full is.
func (n *Node) laneRoom(req *frame) bool {
	if n.maxOneWays == math.MaxInt32 {
		return true // no bound, nothing counted
	}
	var mailbox int32
	// Only the count is read: the activation need not be counted in.
	if a := n.acts.peek(actKey{req.kind, req.identity}); a != nil {
		mailbox = a.oneWays.Load()
	}
	if n.laned.admit(actKey{req.kind, req.identity}, n.maxOneWays-mailbox) {
		return true
	}
	n.dropOverflow(req.kind, req.identity, req.method)
	return false
}

// laneLeft implements requestHandler.
func (n *Node) laneLeft(req *frame, count int) {
	if n.maxOneWays != math.MaxInt32 {
		n.laned.leave(actKey{req.kind, req.identity}, int32(count))
	}
}

// lanedOneWays counts, by grain, the one-way messages waiting in the
// lanes of the node's streams (see oneWayLanes), for the bound they share
// with the grain's mailbox (see Node.laneRoom). A grain is in it while it
// has any. Only messages that could not go straight to a mailbox take it:
// the reader's fast path does not.
type lanedOneWays struct {
	mu    sync.Mutex
	count map[actKey]int32
}

// admit counts a message of key's grain in, and reports true, if fewer
// than max wait; otherwise it reports false, counting nothing.
func (l *lanedOneWays) admit(key actKey, max int32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count[key] >= max {
		return false
	}
	if l.count == nil {
		l.count = make(map[actKey]int32)
	}
	l.count[key]++
	return true
}

// leave counts k messages of key's grain out.
func (l *lanedOneWays) leave(key actKey, k int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.count[key] - k; c > 0 {
		l.count[key] = c
	} else {
		delete(l.count, key)
	}
}

// deliverOneWay is serveOneWay, but returns, rather than logs, why it
// dropped a message that waited for its grain's activation in vain: err
// is not nil only then, and done is true.
func (n *Node) deliverOneWay(req *frame, from string, wait bool, target *oneWayTarget) (done bool, err error) {
	if target != nil {
		if n.queueToTarget(target, req) {
			return true, nil
		}
		n.endOneWay(target)
	}
	// Ownership first, as for a call (see serveRemote): a message for a kind
	// or method this node does not know is dropped as unknown only by the
	// grain's owner, and forwarded by any other node.
	hk, m, unknown := n.lookup(req.kind, req.method)
	err = n.checkOwner(req.kind, req.identity)
	if errors.Is(err, ErrNotOwner) && !n.mayForward(req) {
		if !wait {
			return false, nil // it may wait for the view: not on the reader
		}
		err = n.checkForwardedOwner(req)
		if errors.Is(err, ErrNotOwner) && n.mayForwardAfterWaiting(req, from) {
			if n.passOn(req, from) {
				return true, nil
			}
			err = nil // this node owns the grain now
		}
	}
	if errors.Is(err, ErrNotOwner) && n.mayForward(req) {
		if !wait {
			return false, nil // forwarding may dial: not on the reader
		}
		if n.passOn(req, from) {
			return true, nil
		}
		err = nil // this node owns the grain now
	}
	if err == nil {
		err = unknown
	}
	if err != nil {
		n.dropOneWay(req, err)
		return true, nil
	}
	ticket, ok := n.calls.enter()
	if !ok {
		n.dropOneWay(req, newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is shutting down", n.name))
		return true, nil
	}
	defer n.calls.leave(ticket)
	msg, err := decodePayload(req, m, "one-way message")
	if err != nil {
		n.dropOneWay(req, err)
		return true, nil
	}
	if a := n.readyActivation(hk, req.identity); a != nil {
		kept, keep := gateTicket(0), false
		if target != nil {
			kept, keep = n.calls.enter()
		}
		if keep {
			// Keep the activation and a gate entry for the next frames.
			target.oneWayGrain = oneWayGrain{kind: req.kind, identity: req.identity, method: req.method, m: m, a: a}
			target.ticket = kept
			if n.addToTarget(target, newOneWayCall(m, msg, Metadata{enc: req.message})) {
				return true, nil
			}
		} else {
			if !a.admitOneWay(n.maxOneWays) {
				n.acts.release(a)
				n.dropOverflow(req.kind, req.identity, req.method)
				return true, nil
			}
			err := a.ref.Send(newOneWayCall(m, msg, Metadata{enc: req.message}))
			n.acts.release(a)
			if err == nil {
				return true, nil
			}
			a.oneWays.Add(-1)
		}
	}
	if !wait {
		return false, nil
	}
	ctx, cancel := n.oneWayDeadline()
	defer cancel()
	for {
		err := n.queueOneWay(ctx, hk, m, req.identity, msg, Metadata{enc: req.message})
		if !errors.Is(err, ErrNotOwner) {
			switch {
			case errors.Is(err, ErrMailboxFull):
				n.dropOverflow(req.kind, req.identity, req.method)
			case err != nil:
				return true, err // the activation failed: the caller logs it
			}
			return true, nil
		}
		// The grain moved away while the message waited for an
		// activation: a member joined, or this node's view changed, and
		// may change back (a test loop saw a staying host lose a leaver's
		// grains for a moment during the leave). Forward it, or, if it
		// may not be forwarded (again) or this node owns the grain but
		// for members that said they leave, wait for a view in which this
		// node owns it, as a forwarded message does when it arrives.
		if n.mayForward(req) && n.passOn(req, from) {
			return true, nil
		}
		err = n.checkForwardedOwner(req)
		if errors.Is(err, ErrNotOwner) && n.mayForwardAfterWaiting(req, from) {
			// As for a message that finds its grain elsewhere as it
			// arrives: this node's view is ahead of the forwarder's.
			if n.passOn(req, from) {
				return true, nil
			}
			continue // this node owns the grain now
		}
		if err != nil {
			n.dropOneWay(req, err)
			return true, nil
		}
	}
}

// forwardOneWay sends a one-way message that this node received from a
// peer for a grain it does not own to the grain's owner in this node's
// view, and reports true; or reports false, doing nothing, if this node
// owns the grain by now. It may wait for a dial, or for room in the
// owner's stream, up to DefaultCallTimeout: it runs on the owner's forward
// queue (see passOn), where the wait holds up no other owner's messages.
// The sender placed the message by a view of the members that was behind
// or ahead of this node's (a member joined or left), and nobody else would
// hear of the message: a caller whose call reaches the wrong node gets
// ErrNotOwner and calls again, a sender has returned.
//
// A peer that said it is leaving (see conn.sayLeaving) owns nothing,
// whatever this node's view says (the gossip may not have brought the
// leave yet): the owner is chosen among the other members, so that a
// message does not go back to the leaver it came from, nor to another
// (members leaving at once would otherwise pass messages to each other).
// A node that is leaving skips itself, for the same reason.
//
// The message goes marked as forwarded once more, and a node that receives
// it so and does not own the grain either waits for a view in which it
// does, then drops it (see mayForward and mayForwardAfterWaiting for the
// exceptions): two nodes whose views disagree do not pass it back and
// forth. It is forwarded as it came, its payload not decoded.
//
// An owner that takes no stream (it refused one because its farewell is
// over, or nothing listens at its address) may be gone, its leave not yet
// in this node's view: two members that leave at once see each other
// alive after one of them said so on a stream that has ended since.
// Nothing was handed to it, and nobody else would send the message: it
// goes to the owner without that member, once. Not to this node, though,
// which would activate a grain that its view places elsewhere: a node that
// stays waits for a view in which it owns the grain instead (its view is
// behind the leave), as for a forwarded message, and a node that leaves
// drops the message.
func (n *Node) forwardOneWay(req *frame) bool {
	skip := n.ownNothing()
	var unreachable string // the owner that took no stream, in this view
	var err error          // why it took none
	for {
		view := n.view.Load()
		owner, ok := view.ownerExcept(req.kind, req.identity, append(skip, unreachable)...)
		switch {
		case !ok && !n.joined.Load():
			// This node is starting: its view stays empty until the
			// start has the cluster's members (see start), while peers
			// that see it already place grains on it. Wait for that
			// view, for as long as the start may wait for its name.
			n.log.Debug("cluster: a one-way message waits for the view of this node's start", "kind", req.kind, "identity", req.identity)
			if n.awaitNewerView(view, n.failurePatience()) {
				continue
			}
			n.dropOneWay(req, newError(codes.Unavailable, ErrUnavailable, "cluster: node %s did not finish its start", n.name))
			return true
		case !ok && unreachable == "" && view.fenced:
			n.dropOneWay(req, view.noOwner(req.kind))
			return true
		case !ok && unreachable == "":
			n.dropOneWay(req, newError(codes.Unimplemented, ErrUnknownKind, "cluster: no alive member that is not leaving hosts grain kind %q", req.kind))
			return true
		case ok && unreachable != "" && owner.Name == n.name && !n.transport.leaving.Load():
			// This node stays, and its view is behind a leave, or a
			// failure: the view that drops the owner that is gone
			// makes it the owner. It may take the failure detector to
			// bring that view (a member that joined as the owner left
			// misses the leave's broadcast), so the wait is as long as
			// the detector may take, not the forwardedPatience of a
			// leave's gossip; it holds up the queue of an owner that
			// is gone, and no other. The message is placed again by
			// the view that comes (which may also have the owner back
			// under its name at a new address). A node that leaves
			// never will own the grain.
			if n.awaitNewerView(view, n.failurePatience()) {
				unreachable = ""
				continue
			}
			n.dropOneWay(req, err)
			return true
		case !ok || unreachable != "" && owner.Name == n.name:
			n.dropOneWay(req, err)
			return true
		case owner.Name == n.name:
			return false
		}
		err = n.sendForwarded(req, owner)
		switch {
		case err == nil:
			return true
		case !errors.Is(err, ErrUnavailable): // this node closed, say
		case n.view.Load() != view:
			// The stream to the owner took no more requests (it leaves,
			// and this node said bye to it), as in Send: place the
			// message again by the newer view.
			unreachable = ""
			continue
		case unreachable == "":
			unreachable = owner.Name
			continue
		}
		n.dropOneWay(req, err)
		return true
	}
}

// ownNothing returns the members that own no grain whatever this node's
// view says, to place a message that this node forwards: this node if it
// leaves, and the peers that said they leave (see forwardOneWay).
func (n *Node) ownNothing() []string {
	var skip []string
	if n.transport.leaving.Load() {
		skip = append(skip, n.name)
	}
	return n.transport.peersLeaving(skip)
}

// passOn forwards req, a one-way message that this node does not own and
// may forward, through the queue of its owner in this node's view (see
// forwardQueues), and reports true; or reports false, doing nothing, if
// this node owns the grain by now. from is the peer req came from.
func (n *Node) passOn(req *frame, from string) bool {
	owner, ok := n.view.Load().ownerExcept(req.kind, req.identity, n.ownNothing()...)
	if ok && owner.Name == n.name {
		return false
	}
	var name string // no owner: forwardOneWay drops it, saying why, from the queue of none
	if ok {
		name = owner.Name
	}
	n.forwards.add(n, name, queuedForward{req: *req, from: from})
	return true
}

// forwardQueues holds the one-way messages that this node forwards, in a
// queue per owner, each delivered in order by a goroutine of its own while
// it holds any (see forwardOneWay). An owner that takes its messages
// slowly, or not at all while the gossip has it alive (a dial that hangs,
// a stream whose peer reads nothing: a paused process), holds up only its
// own queue. Forwarded from the lane they came on, they held the lane,
// and every message behind them, for the dial's DialTimeout or the
// stream's DefaultCallTimeout, where a leaver's farewell gives up sooner
// and loses what is left. A bound on that wait lost messages to healthy
// owners whose first connection was slow instead. A queue keeps its
// messages in the order of the lanes that filled it, and a grain's
// messages from one peer take one lane and, in one view, one queue: they
// keep their order as before.
//
// A queue holds at most Config.MaxPendingBytes, counting each message's
// payload and its place in the queue (see forwardCost); past it, a
// message is dropped and counted in the log, as a one-way message may be
// (at most once). A queue is frames waiting to go to one peer, as the
// stream's own queue is, and is bounded in the same unit by the same
// number: forwarding holds at most twice MaxPendingBytes per owner
// (its queue, and the stream's). A bound in messages would not bound the
// memory (each may be MaxFrameBytes), and MaxQueuedOneWay, a bound per
// grain, says nothing of an owner's many grains. Without a bound, the
// queue to a hung owner took everything forwarded to it until the node
// ran out of memory: each forward waits up to DefaultCallTimeout for room
// in its stream.
//
// A busy queue counts as a busy lane in the transport (see
// transport.busyLanes): a leaver's farewell waits for its forwards to be
// handed to their streams before it says bye on them.
type forwardQueues struct {
	mu     sync.Mutex
	queues map[string]*forwardQueue // by owner's name; present while its goroutine runs
}

// forwardQueue is the queue of one owner.
type forwardQueue struct {
	msgs  []queuedForward
	bytes int // the forwardCost of msgs
}

// queuedForward is a message in a forward queue, and the peer it came from.
type queuedForward struct {
	req  frame
	from string
}

// forwardCost is what f counts for in its queue's bound: its payload and
// names, and the queue's slot.
func forwardCost(f *queuedForward) int {
	return len(f.req.payload) + len(f.req.kind) + len(f.req.identity) + len(f.req.method) + int(unsafe.Sizeof(*f))
}

// add appends f to the queue of owner, and starts the queue's goroutine if
// it has none. It drops f if the queue has no room for it; an empty queue
// takes any message.
func (q *forwardQueues) add(n *Node, owner string, f queuedForward) {
	cost := forwardCost(&f)
	q.mu.Lock()
	if q.queues == nil {
		q.queues = make(map[string]*forwardQueue)
	}
	fq, running := q.queues[owner]
	if !running {
		fq = new(forwardQueue)
		q.queues[owner] = fq
	}
	if len(fq.msgs) > 0 && fq.bytes+cost > n.cfg.MaxPendingBytes {
		held := fq.bytes
		q.mu.Unlock()
		n.dropOneWay(&f.req, fmt.Errorf("cluster: the queue of messages forwarded to %s holds %d bytes, Config.MaxPendingBytes (%d)",
			owner, held, n.cfg.MaxPendingBytes))
		return
	}
	fq.msgs = append(fq.msgs, f)
	fq.bytes += cost
	q.mu.Unlock()
	if !running {
		n.transport.laneBusy() // before the lane that passed f on is idle: the count is never short
		go q.drain(n, owner, fq)
	}
}

// drain forwards the messages of fq, owner's queue, in order until it is
// empty. Each goes to its owner in the view of its turn, which is owner
// unless the view changed meanwhile; a message whose grain this node owns
// by then is delivered here, as it would have been had it come later.
//
// That delivery may activate the grain on this goroutine, and a Kind.New,
// OnActivate or store Load that calls runtime.Goexit (t.FailNow, or a
// library's) ends it in the middle of the loop. The activation failed as
// after a panic, and the message with it (logged, as the message behind a
// failed activation is); the deferred call, which tells the Goexit by
// delivering, set while a message is under way, hands the rest of the
// queue to a new goroutine. Without it the queue stayed registered as
// drained with nobody draining it: every later message forwarded to owner
// joined it and never went, and the farewell waited for it.
func (q *forwardQueues) drain(n *Node, owner string, fq *forwardQueue) {
	var f queuedForward
	delivering := false
	defer func() {
		if delivering {
			n.dropOneWay(&f.req, goexitDropped(&f.req))
			go q.drain(n, owner, fq)
		}
	}()
	for {
		q.mu.Lock()
		if len(fq.msgs) == 0 {
			delete(q.queues, owner)
			q.mu.Unlock()
			n.transport.laneIdle()
			return
		}
		f = fq.msgs[0]
		fq.msgs[0] = queuedForward{} // let the payload go
		fq.msgs = fq.msgs[1:]
		fq.bytes -= forwardCost(&f)
		q.mu.Unlock()
		if !n.forwardOneWay(&f.req) {
			delivering = true
			n.serveOneWay(&f.req, f.from, true, nil)
			delivering = false
		}
	}
}

// mayForward reports whether this node passes req on to the grain's owner
// in its view when it does not own the grain itself. A message from the
// node that placed it may be forwarded once. A message forwarded already
// may be forwarded on by a node that is leaving: it will never own the
// grain, and its view of itself is the newest there is, while the
// forwarder's was older (two members leaving at once each forward to the
// other what still reaches them, until they hear of each other's leave).
// Four hops at most bound the messages that views in flux pass around:
// with two members leaving at once, a message may take one from a member
// that stays, whose view is behind the sender's, to one leaver, one to
// the other leaver, whose leave the first had not heard of, and one to
// the owner that stays in that leaver's view; and, while members join as
// well, one more from there to a joiner that the leaver had not heard of
// (see mayForwardAfterWaiting).
func (n *Node) mayForward(req *frame) bool {
	switch req.oneWay {
	case oneWaySent:
		return true
	case oneWayForwarded, oneWayForwardedTwice:
		return n.transport.leaving.Load()
	}
	return false
}

// mayForwardAfterWaiting reports whether req, which the peer named from
// forwarded here, goes on to the grain's owner in this node's view after
// checkForwardedOwner waited in vain for a view in which this node owns
// it. That wait is for a view behind the forwarder's (a leave this node has
// not heard of yet). A view that stays is rather ahead of it: two members
// joined at once, the forwarder knew of one, this node knows of both, and
// the other owns the grain; or members joined while others left, and a
// leaver that forwarded the message a second time had not heard of the
// joiner that owns it now. The message then takes one hop more, to that
// owner, instead of being dropped; not back to the node it came from,
// which would only return it. A message forwarded three times has had its
// last hop: it goes no further.
func (n *Node) mayForwardAfterWaiting(req *frame, from string) bool {
	if req.oneWay != oneWayForwarded && req.oneWay != oneWayForwardedTwice {
		return false
	}
	owner, ok := n.view.Load().owner(req.kind, req.identity)
	return ok && owner.Name != from && owner.Name != n.name
}

// defaultForwardedPatience is how long a forwarded message waits for this
// node's view to make it the grain's owner (see checkForwardedOwner):
// longer than a leave takes to reach the members (LeavePropagateDelay is
// 1 s in the LAN and WAN gossip profiles).
const defaultForwardedPatience = 2 * time.Second

// checkForwardedOwner checks that this node owns the grain of req, which
// another node forwarded here, waiting up to defaultForwardedPatience for a
// view in which it does. The forwarder placed the message by a view this node
// may not have yet: a node that leaves knows it first, and forwards the
// messages that still reach it to the owner without it, which is this node
// once its view drops the leaver. Once a wait ran out in a view, later
// messages forwarded under the same view do not wait again, so that a
// grain's lane stalls at most once per view (the lanes of several grains
// that wait at once wait side by side).
func (n *Node) checkForwardedOwner(req *frame) error {
	if view := n.view.Load(); n.gaveUp.Load() == view || n.transport.leaving.Load() {
		// A node that leaves will not come to own the grain: no wait.
		return n.checkOwnerIn(view, req.kind, req.identity)
	}
	var timeout <-chan time.Time
	for {
		view, next := n.awaitView()
		err := n.checkOwnerIn(view, req.kind, req.identity)
		if err == nil || n.gaveUp.Load() == view || n.transport.leaving.Load() {
			return err // a node that began to leave meanwhile: as above
		}
		if timeout == nil {
			t := time.NewTimer(cmp.Or(n.cfg.forwardedPatience, defaultForwardedPatience))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-next:
		case <-timeout:
			n.gaveUp.Store(view)
			return err
		case <-n.stop:
			return err
		}
	}
}

// failurePatience is how long the failure detector may take to declare a
// member failed (see claimPatience).
func (n *Node) failurePatience() time.Duration {
	members := 1
	if n.serf != nil {
		members = n.serf.NumNodes()
	}
	return claimPatience(n.cfg.memberlistConfig(), members)
}

// awaitNewerView waits up to patience for a view newer than view, and
// reports whether one came. Once a wait ran out in a view, later ones in
// the same view do not wait, as in checkForwardedOwner.
func (n *Node) awaitNewerView(view *placement, patience time.Duration) bool {
	cur, next := n.awaitView()
	if cur != view {
		return true
	}
	if n.gaveUp.Load() == view {
		return false
	}
	t := time.NewTimer(patience)
	defer t.Stop()
	select {
	case <-next:
		return true
	case <-t.C:
		n.gaveUp.Store(view)
		return false
	case <-n.stop:
		return false
	}
}

// heardLeaving implements requestHandler: a peer leaves, perhaps before
// this node's view says so, and may forward to this node what still
// reaches it. A forwarded message that finds this node not its owner is
// then worth a wait again, even in a view in which such a wait ran out
// (see checkForwardedOwner): the view that drops the leaver may make this
// node the owner. Without this, one wait that ran out (two members that
// joined at once) made the node drop, without a wait, what the next
// leaver forwarded for as long as the view lasted.
//
// The view is refreshed too: the leaver owns nothing from now on (see
// viewOf).
func (n *Node) heardLeaving() {
	n.gaveUp.Store(nil)
	n.membershipChanged()
}

// sendForwarded queues req on the stream to owner, marked as forwarded
// once more than it came.
func (n *Node) sendForwarded(req *frame, owner *Member) error {
	if n.cfg.forwarding != nil {
		n.cfg.forwarding()
	}
	if isDone(n.stop) {
		return newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is closed", n.name)
	}
	ctx, cancel := n.oneWayDeadline()
	defer cancel()
	f := frame{typ: frameRequest, oneWay: req.oneWay + 1, kind: req.kind, identity: req.identity, method: req.method,
		payload: req.payload, message: req.message}
	c, err := n.transport.conn(ctx, owner)
	if err == nil {
		err = c.send(ctx, &f)
		// This node said bye on the stream after it was handed out (its
		// farewell, or a dial by a view in which the owner leaves, see
		// transport.dial): it takes no more requests, while the owner may
		// be as good as before. Once more, on a stream of its own; a
		// second bye means the view was old, and forwardOneWay places the
		// message again by the newer one.
		if err != nil && c.saidBye() {
			n.transport.retire(c)
			if c, err = n.transport.conn(ctx, owner); err == nil {
				err = c.send(ctx, &f)
			}
		}
	}
	return err
}

// oneWayDeadline bounds the delivery of a one-way message from a peer, or
// the run of one, by DefaultCallTimeout.
func (n *Node) oneWayDeadline() (context.Context, context.CancelFunc) {
	if n.cfg.DefaultCallTimeout <= 0 {
		return context.Background(), noCancel
	}
	return n.deadlines.with(context.Background())
}

// handleOneWay runs a one-way message. Nobody waits for it: an error is
// logged, a panic is logged and then supervised as in a call, and a message
// that reaches an activation after its OnDeactivate, or after a failed
// commit, is kept and sent on to the next activation (wherever the grain
// then lives) once this one is gone (see activations.deactivate). State
// changes are committed as after a call, but not recorded for
// deduplication: one-way messages carry no stamp.
//
// A message whose commit is refused because another activation of the
// grain committed first (ErrStaleActivation: two nodes ran it while their
// views of the members differed) is kept the same way, and runs again on
// the next activation, which loads the winner's state: nothing of it was
// committed, and dropping it would lose it though no node failed. Unless
// it committed something itself first (a Flush of its own that
// succeeded): then it ran, and is not run again.
func (g *grainActor) handleOneWay(m *oneWayCall) {
	g.ranOneWay()
	if g.unusable() {
		g.node().acts.keepOneWay(g.act(), m)
		return
	}
	// The sender's context may end as soon as Send returns: the message
	// runs under the node's default deadline instead, and is its own
	// context (see oneWayCall).
	m.g = g
	if g.node().cfg.DefaultCallTimeout > 0 {
		m.d = g.node().deadlines.forCall()
	}
	defer func() {
		if p := recover(); p != nil {
			g.node().log.Error("cluster: grain panicked on a one-way message", "kind", g.hk.Name, "identity", g.identity,
				"method", m.method.Name, "panic", p, "stack", string(debug.Stack()))
			panic(p) // for the actor's supervisor, as for a call
		}
	}()
	resp, err := g.runOneWay(m)
	if err == nil && !m.method.ReadOnly {
		// Not tracked: commit uses only the context and the method.
		_, err = g.commit(newGrainCall(m, m.method, nil, nil, stamp{}), resp, false)
	}
	if ferr := g.state.failure(); ferr != nil {
		err = ferr
		g.node().acts.retire(g.act())
		if errors.Is(ferr, ErrStaleActivation) && !g.state.flushedInTurn() {
			m.g, m.d = nil, nil // it runs anew
			g.node().acts.keepOneWay(g.act(), m)
			return
		}
	}
	if err != nil {
		g.node().log.Warn("cluster: one-way message failed", "kind", g.hk.Name, "identity", g.identity,
			"method", m.method.Name, "err", err)
	}
}

// runOneWay is grainActor.run for a one-way message: it calls the method,
// and a message that fails, returns no response or panics leaves no change
// in the state.
func (g *grainActor) runOneWay(m *oneWayCall) (resp proto.Message, err error) {
	g.state.begin(stamp{})
	done := false
	defer func() {
		if !done { // a panic: the actor's supervisor takes it from here
			g.state.rollback()
		}
	}()
	resp, err = g.callMethod(m, m.method, true, m.req)
	done = true
	if err == nil && noMessage(resp) {
		err = newError(codes.Internal, ErrBadResponse, "cluster: %s of grain %s/%s returned neither a response nor an error",
			m.method.Name, g.hk.Name, g.identity)
	}
	if err != nil {
		g.state.rollback()
	}
	return resp, err
}

// resendOneWay sends a one-way message that reached a retired activation
// again, to the grain's next activation, here or on its new owner (see
// activations.sendLeftovers). It goes as if a peer had sent it here, so
// that it follows the rules of a message placed by another node's view:
// an owner that takes no stream (a crashed member that this node's view
// still has alive, while the node leaves, say) passes it to the owner
// without that member, where Send would drop it (see forwardOneWay).
func (n *Node) resendOneWay(key actKey, m *oneWayCall) {
	req := frame{typ: frameRequest, oneWay: oneWaySent, kind: key.kind, identity: key.identity, method: m.method.Name,
		message: m.metadata().enc}
	var err error
	if req.payload, err = proto.Marshal(m.req); err != nil {
		n.dropOneWay(&req, fmt.Errorf("cluster: encode the one-way message: %w", err))
		return
	}
	n.serveOneWay(&req, n.name, true, nil)
}
