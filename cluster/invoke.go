package cluster

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/protograin/protograin/runtime"
)

// Invoke implements Caller. It places the grain, sends the call to its owner
// (or runs it here, without serialization, if this node owns it) and
// returns the response. When the owner cannot be reached or turns out not to
// own the grain any more, Invoke places the grain again and retries, with
// backoff, until the call's deadline; WithoutRetry turns that off. A call
// whose deadline passes while it waits to retry fails with the error that
// made it retry, as codes.Unavailable (the retry budget ran out); one whose
// caller cancels fails with codes.Canceled, as anywhere else, and one whose
// node closes with ErrNodeClosed. A context
// without a deadline gets Config.DefaultCallTimeout. A local call whose
// context can never end (no deadline, no cancellation) may run the grain's
// method on the caller's goroutine: it then returns when the method does,
// even past DefaultCallTimeout (the method sees that deadline); so may any
// local call made WithTurnOnCaller. A method that calls runtime.Goexit
// (t.FailNow does) there ends the caller's goroutine, as any function the
// caller called would, and Invoke never returns; the grain fails as if the
// method had panicked, and its call is counted out all the same, so that
// it still passivates and a Shutdown does not wait for it. A call to a
// grain of another node fails with ErrGrainPanic then, wherever the owner
// ran the turn, as a local call whose turn a worker ran does. A call that
// activates a grain of this node runs its OnActivate on the caller's
// goroutine (see Activator).
//
// Every call carries a stamp, (client ID, sequence number), fixed before
// the first attempt so that retries reuse it: the node's Config.ClientID
// and the next number of a per-node counter, or the stamp given with
// WithCallID. A retried call may have run on an owner that failed before
// replying; methods that are not ReadOnly still take effect once per stamp,
// because the grain records the reply of each call that changed its state,
// in the same commit, and answers a retry with it (see the package doc).
func (n *Node) Invoke(ctx context.Context, call Call, opts ...CallOption) (proto.Message, error) {
	return n.invokeVia(ctx, call, nil, stamp{}, opts)
}

// invokeVia is invoke through the node's outgoing interceptors, if it has
// any.
func (n *Node) invokeVia(ctx context.Context, call Call, chain []actKey, st stamp, opts []CallOption) (proto.Message, error) {
	switch {
	case n.outgoing == nil:
		return n.invoke(ctx, call, chain, st, opts)
	case chain == nil && st == (stamp{}): // a client's call
		return n.outgoing(ctx, call, false, n.invokeNext, opts...)
	}
	return n.outgoing(ctx, call, false, func(ctx context.Context, call Call, opts ...CallOption) (proto.Message, error) {
		return n.invoke(ctx, call, chain, st, opts)
	}, opts...)
}

// invoke is Invoke for a call made by the grains in chain (outermost
// first), or by no grain if chain is empty, stamped st unless st is zero
// or an option says otherwise.
func (n *Node) invoke(ctx context.Context, call Call, chain []actKey, st stamp, opts []CallOption) (proto.Message, error) {
	cc := applyCallOptions(opts)
	if noMessage(call.Request) {
		return nil, newError(codes.InvalidArgument, ErrBadRequest, "cluster: call to %s/%s %s: the request is nil",
			call.Kind, call.Identity, call.Method)
	}
	if call.NewResponse == nil {
		return nil, newError(codes.InvalidArgument, ErrBadRequest, "cluster: call to %s/%s %s: Call.NewResponse is nil",
			call.Kind, call.Identity, call.Method)
	}
	switch {
	case cc.stamp != (stamp{}):
		if err := cc.stamp.check(); err != nil {
			return nil, err
		}
		st = cc.stamp
	case st == (stamp{}):
		st = stamp{client: n.clientID, seq: n.seq.Add(1)}
	}
	if err := cc.checkMetadata(&call); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok && n.cfg.DefaultCallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = n.deadlines.with(ctx)
		defer cancel()
	}
	r := remoteCall{call: call, chain: chain, stamp: st, metadata: cc.metadata, turnOnCaller: cc.turnOnCaller}
	backoff := n.cfg.RetryBackoff
	for {
		resp, err := n.invokeOnce(ctx, &r)
		if err == nil || !retryable(err) || cc.noRetry {
			return resp, err
		}
		if n.cfg.retrying != nil {
			n.cfg.retrying(err)
		}
		if !n.pause(ctx, backoff) {
			if err := ctx.Err(); errors.Is(err, context.Canceled) {
				// The caller cancelled: that, not the outage, ends the call.
				return nil, contextError(err)
			}
			if ctx.Err() == nil {
				// The node closed: that, not the outage, ends the call.
				return nil, newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s closed while %v waited to be retried", n.name, err)
			}
			sentinel := ErrUnavailable
			if errors.Is(err, ErrNoQuorum) {
				sentinel = ErrNoQuorum // the node's own state, which says more
			}
			return nil, newError(codes.Unavailable, sentinel, "%v (gave up retrying: %s)", err, ctx.Err())
		}
		backoff = min(2*backoff, n.cfg.RetryBackoffMax)
	}
}

// noMessage reports whether m is no message: nil, or a nil pointer to a
// message type in an interface (a generated method's typed nil), which
// would encode as an empty message across nodes and reach a grain on the
// same node as a nil pointer.
func noMessage(m proto.Message) bool {
	return m == nil || !m.ProtoReflect().IsValid()
}

// remoteCall is a call with its request encoded once for all attempts.
type remoteCall struct {
	call         Call     // a copy, so that the caller's Call does not escape
	chain        []actKey // the grains waiting on this call, outermost first
	stamp        stamp
	metadata     Metadata
	turnOnCaller bool // WithTurnOnCaller: a local call runs an idle grain's turn here
	payload      []byte
	encoded      bool
}

// pause waits d before a retry; it reports false if ctx ended or the node
// stopped first.
func (n *Node) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-n.stop:
		return false
	}
}

// invokeOnce makes one attempt at a call.
func (n *Node) invokeOnce(ctx context.Context, r *remoteCall) (proto.Message, error) {
	if isDone(n.stop) {
		return nil, newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is closed", n.name)
	}
	call := &r.call
	p := n.view.Load()
	owner, ok := p.owner(call.Kind, call.Identity)
	if !ok {
		return nil, p.noOwner(call.Kind)
	}
	if owner.Name == n.name {
		// Whether the turn may run here is ctx's to say, not that of the
		// context the grain gets, which carries the call's metadata.
		runHere := r.turnOnCaller || turnHere(ctx)
		return n.serveLocal(withMetadataOf(ctx, r.metadata), call, r.chain, r.stamp, runHere)
	}
	return n.invokeRemote(ctx, owner, r)
}

// invokeRemote sends a call to its owner over the transport.
func (n *Node) invokeRemote(ctx context.Context, owner *Member, r *remoteCall) (proto.Message, error) {
	call := &r.call
	if !r.encoded {
		b, err := proto.Marshal(call.Request)
		if err != nil {
			return nil, newError(codes.InvalidArgument, ErrBadRequest, "cluster: encode the request to %s/%s %s: %v",
				call.Kind, call.Identity, call.Method, err)
		}
		if len(b) > n.cfg.MaxFrameBytes {
			return nil, newError(codes.InvalidArgument, ErrBadRequest, "cluster: request to %s/%s %s is %d bytes, over MaxFrameBytes (%d)",
				call.Kind, call.Identity, call.Method, len(b), n.cfg.MaxFrameBytes)
		}
		r.payload, r.encoded = b, true
	}
	// A caller that gave up already sends nothing: the owner would run
	// the request if it read it before the cancel frame behind it.
	if err := ctx.Err(); err != nil {
		return nil, contextError(err)
	}
	req := frame{typ: frameRequest, kind: call.Kind, identity: call.Identity, method: call.Method, payload: r.payload,
		chain: r.chain, stamp: r.stamp, message: r.metadata.enc}
	if deadline, ok := ctx.Deadline(); ok {
		if req.timeout = time.Until(deadline); req.timeout <= 0 {
			return nil, contextError(context.DeadlineExceeded)
		}
	}
	c, err := n.transport.conn(ctx, owner)
	if err != nil {
		return nil, err
	}
	reply, err := c.call(ctx, &req)
	if err != nil {
		return nil, err
	}
	if reply.code != codes.OK {
		return nil, fromWire(reply.code, reply.message, reply.reason)
	}
	resp := call.NewResponse()
	if err := unmarshalNew(reply.payload, resp); err != nil {
		return nil, newError(codes.Internal, ErrBadResponse, "cluster: decode the response of %s/%s %s: %v",
			call.Kind, call.Identity, call.Method, err)
	}
	return resp, nil
}

// serveLocal runs a call to a grain this node owns, passing the request
// message through without copying it, on the caller's goroutine if runHere
// and the grain is idle. A reply the grain recorded earlier for the call's
// stamp is decoded into a new response.
func (n *Node) serveLocal(ctx context.Context, call *Call, chain []actKey, st stamp, runHere bool) (proto.Message, error) {
	ticket, ok := n.calls.enter()
	if !ok {
		return nil, newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is shutting down", n.name)
	}
	var held heldCall
	defer n.leaveCall(ticket, &held)
	hk, m, err := n.lookup(call.Kind, call.Method)
	if err != nil {
		return nil, err
	}
	if got := call.Request.ProtoReflect().Descriptor().FullName(); got != m.request {
		return nil, newError(codes.InvalidArgument, ErrBadRequest, "cluster: %s takes a %s, not a %s", m.Name, m.request, got)
	}
	resp, raw, err := n.callGrain(ctx, hk, m, call.Identity, call.Request, chain, st, runHere, &held)
	if err != nil || resp != nil {
		return resp, err
	}
	resp = call.NewResponse()
	if err := unmarshalNew(raw, resp); err != nil {
		return nil, newError(codes.Internal, ErrBadResponse, "cluster: decode the recorded response of %s/%s %s: %v",
			call.Kind, call.Identity, call.Method, err)
	}
	return resp, nil
}

// leaveCall ends a local call (see serveLocal): it releases the activation
// the call still holds, which only a Goexit in a turn the caller ran
// leaves held (see heldCall), and lets go of the node's gate.
func (n *Node) leaveCall(ticket gateTicket, held *heldCall) {
	held.release(n)
	n.calls.leave(ticket)
}

// heldCall is the activation a call is counted in on (see activations.get)
// while the grain's turn may run on the call's own goroutine: while
// deliverWithin waits in runtime.Ref.Ask.
//
// A grain method that calls runtime.Goexit there (t.FailNow, or a
// library's) ends that goroutine. The runtime fails the grain's actor as
// for a panic, on a new goroutine, and the supervisor restarts it; but the
// caller never gets back to deliverWithin, which counted its call out
// (activations.release). Counted in for good, the call kept the grain from
// passivating, and each Shutdown waited for it until DeactivateTimeout. So
// the function that began the call holds it here too, and its deferred
// call, which a Goexit runs, releases what is still held (release).
//
// The trick: a local call had a deferred call already, the gate's leave.
// It is now leaveCall, which checks the pointer first (release inlines)
// and calls the gate's leave, one call deeper; deliverWithin writes the
// pointer before and after Ask, in the caller's frame. No defer of its
// own, no atomic, no allocation. A peer's request and deliver (reminders)
// have a defer of their own, nanoseconds on paths of microseconds. A panic
// needs none of this: the runtime recovers it in the turn, and Ask
// returns.
type heldCall struct{ a *activation }

// release counts the call out of the activation it still holds, if any.
// It is small enough to inline: a call that returned pays the nil check.
func (h *heldCall) release(n *Node) {
	if h.a != nil {
		h.exited(n)
	}
}

// exited is release for a call whose goroutine is ending in the grain's
// turn, by a Goexit, which it logs. A local caller gets nothing back,
// since its goroutine is gone: that is Go's way with Goexit. A peer whose
// request the goroutine served gets ErrGrainPanic (see servedCall.exited).
func (h *heldCall) exited(n *Node) {
	a := h.a
	h.a = nil
	n.log.Error("cluster: grain method called runtime.Goexit on the goroutine that delivered its call, which ends",
		"kind", a.hk.Name, "identity", a.identity)
	n.acts.release(a)
}

// goexitReply returns the reply to req, a peer's request whose serving a
// grain ended with runtime.Goexit (see servedCall.exited): ErrGrainPanic,
// as callError makes of the *runtime.PanicError that a local caller gets
// when a worker ran the turn. A Goexit while the request activated the
// grain (in OnActivate, say) gets the same.
func goexitReply(req *frame) frame {
	code, msg := toStatus(grainPanicked(req.kind, req.identity, req.method, runtime.ErrGoexit))
	return frame{code: code, message: msg, reason: reasonGrainPanic}
}

// serveRequest implements requestHandler: it runs a call from a peer and
// builds the reply frame.
func (n *Node) serveRequest(ctx context.Context, req *frame, d *decodedRequest) frame {
	resp, payload, err := n.serveRemote(ctx, req, d)
	if err == nil {
		if payload == nil {
			payload, err = proto.Marshal(resp)
		}
		if err == nil && len(payload) > n.cfg.MaxFrameBytes {
			err = errors.New("over MaxFrameBytes")
		}
		if err == nil {
			return frame{payload: payload}
		}
		err = newError(codes.Internal, ErrBadResponse, "cluster: encode the response of %s/%s %s: %v",
			req.kind, req.identity, req.method, err)
	}
	code, msg := toStatus(err)
	return frame{code: code, message: msg, reason: reasonOf(err)}
}

// decodedRequest is a call from a peer as the stream's reader decoded it:
// the kind and method it calls and its request, or why there are none.
type decodedRequest struct {
	hk  *hostedKind
	m   *hostedMethod
	msg proto.Message
	err error
}

// unmarshalNew decodes b into m, a message just allocated (NewRequest and
// NewResponse allocate empty messages). It merges rather than first
// resetting m, as proto.Unmarshal does: on an empty message that is the
// same, and the reset, a reflective walk over the message's fields, was 3%
// of the CPU of a one-way benchmark process (bench/grains BenchmarkOneWay).
func unmarshalNew(b []byte, m proto.Message) error {
	return proto.UnmarshalOptions{Merge: true}.Unmarshal(b, m)
}

// decodeRequest implements requestHandler.
func (n *Node) decodeRequest(req *frame) decodedRequest {
	hk, m, err := n.lookup(req.kind, req.method)
	if err != nil {
		return decodedRequest{err: err}
	}
	msg, err := decodePayload(req, m, "request")
	if err != nil {
		return decodedRequest{err: err}
	}
	return decodedRequest{hk: hk, m: m, msg: msg}
}

// heldIdentity implements identityHolder. It takes no lock: the
// activation it finds may be going away, but its identity is the same
// string all the same.
func (n *Node) heldIdentity(kind string, v []byte) string {
	hk := n.kinds[kind]
	if hk == nil {
		return ""
	}
	h := hashString(hk.keySeed, v)
	if a := findIn(n.acts.shard(h).tab.Load(), h, hk, v); a != nil {
		return a.identity
	}
	return ""
}

// decodePayload decodes the payload of req, a request (what says which
// kind, for the error) to method m, into a new request message. A payload
// that does not decode is a bad request.
func decodePayload(req *frame, m *hostedMethod, what string) (proto.Message, error) {
	msg := m.NewRequest()
	if err := unmarshalNew(req.payload, msg); err != nil {
		return nil, newError(codes.InvalidArgument, ErrBadRequest, "cluster: decode the %s to %s/%s %s: %v",
			what, req.kind, req.identity, req.method, err)
	}
	return msg, nil
}

// serveRemote checks a call from a peer, decoded as d, and runs it. It
// returns the response, its encoding, or both.
//
// Ownership is checked first: a peer that sends a call for a kind or
// method this node does not know placed it by a view that differs from
// this node's (a member restarted at its old address with other kinds, or
// runs another version of the kind, and the gossip has not told everyone
// yet). Only the grain's owner may answer that the kind or method is
// unknown, which is final; any other node answers ErrNotOwner, and the
// caller places the call again by a newer view.
func (n *Node) serveRemote(ctx context.Context, req *frame, d *decodedRequest) (proto.Message, []byte, error) {
	if err := n.checkOwner(req.kind, req.identity); err != nil {
		return nil, nil, err
	}
	if d.err != nil {
		return nil, nil, d.err
	}
	if req.stamp != (stamp{}) {
		if err := req.stamp.check(); err != nil {
			return nil, nil, err
		}
	}
	// A peer's request runs an idle grain's turn on the goroutine that
	// serves it: that goroutine exists only to wait for the reply, and the
	// caller, on its own node, still returns at its deadline. A method
	// that ends it with runtime.Goexit leaves neither the peer without a
	// reply (see servedCall.exited) nor the call counted in (see
	// heldCall).
	var held heldCall
	defer held.release(n)
	ctx = withMetadataOf(ctx, Metadata{enc: req.message})
	return n.callGrain(ctx, d.hk, d.m, req.identity, d.msg, req.chain, req.stamp, true, &held)
}

// checkOwner returns ErrNotOwner unless this node owns the grain in its
// current view. The caller's view of the cluster may differ from ours; it
// retries after placing the grain again.
func (n *Node) checkOwner(kind, identity string) error {
	return n.checkOwnerIn(n.view.Load(), kind, identity)
}

// checkOwnerIn is checkOwner in view p.
func (n *Node) checkOwnerIn(p *placement, kind, identity string) error {
	if owner, ok := p.owner(kind, identity); !ok || owner.Name != n.name {
		return newError(codes.Unavailable, ErrNotOwner, "cluster: node %s does not own grain %s/%s", n.name, kind, identity)
	}
	return nil
}

// lookup finds a hosted kind and its method.
func (n *Node) lookup(kind, method string) (*hostedKind, *hostedMethod, error) {
	hk := n.kinds[kind]
	if hk == nil {
		return nil, nil, newError(codes.Unimplemented, ErrUnknownKind, "cluster: node %s does not host grain kind %q", n.name, kind)
	}
	m := hk.methods[method]
	if m == nil {
		return nil, nil, newError(codes.Unimplemented, ErrUnknownMethod, "cluster: grain kind %q has no method %q on node %s", kind, method, n.name)
	}
	return hk, m, nil
}

// callGrain delivers a call to the grain's activation and returns the
// response, its encoding (when the grain recorded it), or both: a reply
// recorded by an earlier run of the same stamp comes as bytes only.
// runHere is deliver's, held deliverWithin's.
func (n *Node) callGrain(ctx context.Context, hk *hostedKind, m *hostedMethod, identity string, req proto.Message,
	chain []actKey, st stamp, runHere bool, held *heldCall) (proto.Message, []byte, error) {
	resp, err := n.deliverWithin(ctx, hk, identity, m.Name, newGrainCall(ctx, m, req, chain, st), runHere, held, hk.maxCalls)
	if err != nil {
		return nil, nil, err
	}
	if r, ok := resp.(*encodedReply); ok {
		return r.msg, r.raw, nil
	}
	return resp.(proto.Message), nil, nil
}

// deliver sends msg to the grain's activation, activating it first if
// needed, and maps what the actor reports to the package's errors. what
// names the delivery in errors and logs. runHere says that the caller
// accepts to run an idle grain's turn on its own goroutine, and so to
// return when the turn ends, even past ctx's deadline (see turnHere).
func (n *Node) deliver(ctx context.Context, hk *hostedKind, identity, what string, msg any, runHere bool) (any, error) {
	var held heldCall
	defer held.release(n)
	return n.deliverWithin(ctx, hk, identity, what, msg, runHere, &held, maxCallsIn)
}

// deliverWithin is deliver for a message that an activation with max
// calls counted in refuses with ErrMailboxFull (see activations.getWithin).
// held holds the activation while its turn may run here (see heldCall):
// the caller releases it from a deferred call.
func (n *Node) deliverWithin(ctx context.Context, hk *hostedKind, identity, what string, msg any, runHere bool, held *heldCall, max int32) (any, error) {
	for {
		a, err := n.acts.getWithin(ctx, hk, identity, max)
		if err != nil {
			return nil, err
		}
		// The trick, with runHere: the caller runs the turn of an idle
		// grain itself, as the runtime does for a Request without a
		// deadline. A turn on a worker costs two goroutine switches per
		// call (caller -> worker -> caller), which were most of the CPU
		// of a local call. A busy grain is still waited for under ctx.
		held.a = a
		resp, gaveUp, err := a.ref.Ask(ctx, msg, runHere)
		held.a = nil
		if !gaveUp || !n.acts.handOff(a, msg) {
			n.acts.release(a)
		}
		if err == nil {
			return resp, nil
		}
		if n.retryOnNextActivation(a, err) {
			// The activation went away under the call, maybe because
			// the grain moved: activate it again only if it is still ours.
			if err := n.checkOwner(hk.Name, identity); err != nil {
				return nil, err
			}
			untake(msg)
			continue
		}
		return nil, n.callError(ctx, a, what, err)
	}
}

// turnHere reports whether a local call may run an idle grain's turn on
// the caller's goroutine: only when the caller's own context can never end
// (no deadline, no cancellation: only the node's DefaultCallTimeout bounds
// it, see deadlines.with). Such a call returns when the method does, even
// past DefaultCallTimeout; the method still sees that deadline in its
// GrainContext. A call with a deadline or cancellation of its own is handed
// to the grain's worker, so that it can return at its deadline, unless it
// was made WithTurnOnCaller.
func turnHere(ctx context.Context) bool { return onlySharedDeadline(ctx) != nil }

// retryOnNextActivation reports whether err says the call met an
// activation that was being deactivated: get then waits for it to go and
// activates the grain again.
func (n *Node) retryOnNextActivation(a *activation, err error) bool {
	if errors.Is(err, errDeactivated) {
		return true
	}
	if !errors.Is(err, runtime.ErrStopped) || isDone(n.stop) {
		return false
	}
	sh, _ := n.acts.shardOfActivation(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return a.deactivating
}

// callError maps the error of a grain call.
func (n *Node) callError(ctx context.Context, a *activation, what string, err error) error {
	var p *runtime.PanicError
	switch {
	case errors.As(err, &p):
		n.log.Error("cluster: grain panicked", "kind", a.hk.Name, "identity", a.identity, "method", what,
			"panic", p.Value, "stack", string(p.Stack))
		return grainPanicked(a.hk.Name, a.identity, what, p.Value)
	case errors.Is(err, runtime.ErrStopped):
		if isDone(n.stop) {
			return newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is closed", n.name)
		}
		n.acts.failed(a)
		return newError(codes.Aborted, ErrGrainFailed, "cluster: grain %s/%s was deactivated after repeated panics; the next call activates it again",
			a.hk.Name, a.identity)
	case ctx.Err() != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)):
		return contextError(ctx.Err())
	default:
		return err
	}
}

// grainPanicked is the error of a call whose grain panicked with value
// (runtime.ErrGoexit for a Goexit) running what.
func grainPanicked(kind, identity, what string, value any) error {
	return newError(codes.Internal, ErrGrainPanic, "cluster: grain %s/%s panicked in %s: %v", kind, identity, what, value)
}

// grainContext is the GrainContext of one call or hook.
type grainContext struct {
	context.Context
	n       *Node
	a       *activation
	callers []actKey // the grains waiting on this call, outermost first
	stamp   stamp    // the call's stamp; zero in hooks and reminders
	// inner counts the calls the grain made in a call's turn, above
	// callTaken, to stamp them (see Invoke); until the grain takes the
	// call, it says whether the caller gave up (see grainCall.take).
	inner atomic.Uint64
}

func (n *Node) grainContext(ctx context.Context, a *activation, callers []actKey, st stamp) GrainContext {
	return &grainContext{Context: ctx, n: n, a: a, callers: callers, stamp: st}
}

// hookContext returns the GrainContext of a's OnActivate, or of its
// OnDeactivate if deactivating.
func (n *Node) hookContext(ctx context.Context, a *activation, deactivating bool) *hookContext {
	return &hookContext{grainContext: grainContext{Context: ctx, n: n, a: a}, deactivating: deactivating}
}

// grainScope is implemented by the GrainContexts a node passes to grain
// methods: scope returns the node and the grain's activation.
type grainScope interface {
	scope() (*Node, *activation)
}

// scope implements grainScope.
func (g *grainContext) scope() (*Node, *activation) { return g.n, g.a }

// Kind implements GrainContext.
func (g *grainContext) Kind() string { return g.a.hk.Name }

// Identity implements GrainContext.
func (g *grainContext) Identity() string { return g.a.identity }

// State implements GrainContext.
func (g *grainContext) State() State {
	// Only a call's own turn makes the state here with a stamp: hooks and
	// reminders have none. A ReadOnly method changes no state, so the
	// stamp is not recorded (see grainState.Flush).
	return g.a.stateFor(g.n, g.stamp)
}

// AfterFunc lets contexts derived from g follow the call's context with a
// callback when that context can (the node's deadlineCtx and servedCtx
// can), instead of a goroutine each: the context package looks for this
// method on g itself, which the embedded Context's does not satisfy.
func (g *grainContext) AfterFunc(f func()) func() bool { return context.AfterFunc(g.Context, f) }

// Value implements context.Context. For metadataKey it answers with the
// call's own metadata, not with what a context it derives from carries: a
// grain that calls another grain of its node passes its GrainContext on,
// and the callee's context derives from it, while the callee's metadata
// is its own call's. A call's context is a metadataCtx exactly when the
// call carries metadata (see withMetadataOf), so telling needs no field.
func (g *grainContext) Value(key any) any {
	if key == (metadataKey{}) {
		if c, ok := g.Context.(*metadataCtx); ok {
			return c.md
		}
		return Metadata{}
	}
	return g.Context.Value(key)
}

// Invoke implements Caller: grains call other grains through their node.
//
// Activations are not reentrant: a call to a grain that is itself waiting
// in the chain of calls that led here (A calls B, B calls A) would wait for
// itself until its deadline. Invoke fails such a call at once with
// ErrReentrant instead, on any node of the chain.
//
// Inner calls are stamped from the stamp of the call being handled (see
// innerStamp), so a re-executed call repeats the stamps of its inner calls,
// in the same order, and their callees do not apply them twice. A grain
// that makes inner calls concurrently, or in an order that depends on
// something else than its state and request, loses that.
func (g *grainContext) Invoke(ctx context.Context, call Call, opts ...CallOption) (proto.Message, error) {
	self := g.a.key()
	target := actKey{call.Kind, call.Identity}
	if target == self || slices.Contains(g.callers, target) {
		return nil, newError(codes.FailedPrecondition, ErrReentrant,
			"cluster: grain %s/%s calls %s/%s, which is waiting for it: the call would deadlock",
			self.kind, self.identity, call.Kind, call.Identity)
	}
	chain := append(g.callers[:len(g.callers):len(g.callers)], self)
	var st stamp
	if g.stamp != (stamp{}) {
		st = innerStamp(g.stamp, self, g.inner.Add(1)-callTaken)
	}
	return g.n.invokeVia(ctx, call, chain, st, opts)
}
