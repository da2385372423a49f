package runtime

import (
	"context"
	"fmt"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Scheduling states of an actor.
const (
	idle uint32 = iota
	running
)

// Bits of Ref.stopReq.
const (
	stopAbrupt   uint32 = 1 << iota // Stop was called
	stopGraceful                    // GracefulStop was called
	stopping                        // the actor began to stop
)

// Ref addresses an actor. It is always used as *Ref; two Refs are the same
// actor exactly when the pointers are equal. All methods are safe for
// concurrent use.
//
// A Ref is what an idle actor costs, so it holds only what every actor
// uses; what few actors use (middleware, a bounded mailbox, a Throughput
// other than the default, a supervisor strategy, timers, children,
// watches, restart history) lives in a refExt made on first use.
//
// It is three 64-byte cache lines (192 bytes on amd64, a size class whose
// objects all start on a line; TestRefSize checks it), one for each party
// to a busy mailbox: the first holds what producers write on every send
// (the queue heads), the second what both sides read, the third what the
// goroutine running the actor writes on every message (the queue tails,
// the Context). Packed into 160 bytes, a push made the consumer's next read
// of its own fields a miss, and a pop the producers' next send, as the two
// cores passed the shared lines back and forth. The explicit padding costs
// an idle actor 32 bytes and bought 5.5% more one-way grain messages per
// second between two processes (bench/grains BenchmarkOneWay, n=8) and
// 9.8% more requests per second from 16 callers (bench BenchmarkRequest,
// n=6). TestRefLayout checks the lines.
type Ref struct {
	// Line 1: written by every producer; the rest of the line is seldom
	// touched.
	sysHead  queueHead
	userHead queueHead
	parent   *Ref
	id       uint64
	newActor func() Actor
	mu       sync.Mutex    // guards dead, done and refExt's timers
	done     chan struct{} // made on first use: most actors are never waited on
	_        [8]byte

	// Line 2: read by producers and by the actor's goroutine, seldom
	// written.
	sys          *System
	ext          atomic.Pointer[refExt] // nil until first needed; see side
	status       atomic.Uint32          // idle or running
	stopReq      atomic.Uint32          // stopAbrupt | stopGraceful already requested; stopping once it began
	actor        Actor                  // owned by the actor's goroutine; changes on a restart
	startPending bool                   // owned by the actor's goroutine: *Started not delivered yet
	suspended    bool                   // owned by the actor's goroutine: awaiting a supervisor's decision
	inStop       bool                   // owned by the actor's goroutine: began to stop
	graceful     bool                   // owned by the actor's goroutine: the stop in progress is graceful
	finished     bool                   // owned by the actor's goroutine: everything that arrives is a dead letter
	dead         bool                   // guarded by mu: Done is closed (or would be)
	after        stage                  // owned by the actor's goroutine: what follows the lifecycle handler running now
	// topPrev and topNext link a top-level actor into its part of the
	// System's set (see topShard), under that part's lock; they are
	// written when the actor is spawned and when it, or a neighbour,
	// stops.
	topPrev, topNext *Ref

	// Line 3: written by the actor's goroutine on every message.
	sysTail  queueTail
	userTail queueTail
	ctx      Context
	// fedInRuns is set by the first Batch.Flush to the actor: its free
	// queue nodes go back to the pool as runs, for Batches to take (see
	// envelopePool). It is read at the end of every turn, so it lives on
	// the line the actor's goroutine owns; a producer writes it once.
	fedInRuns atomic.Bool
	_         [4]byte
}

// refExt is the part of an actor that most actors never use. Each group of
// fields has the owner its comment names, as if they were fields of Ref.
type refExt struct {
	// Set before the Ref is published, read-only afterwards.
	throughput int32         // Props.Throughput unless it is DefaultThroughput (then 0)
	recv       ReceiveFunc   // middleware chain; nil without middleware
	tokens     chan struct{} // bounded mailbox: one token per queued message; nil if unbounded
	failFull   bool          // bounded mailbox policy is MailboxFail
	strategy   SupervisorStrategy

	// Guarded by Ref.mu.
	timers map[*Timer]struct{}

	// Owned by the goroutine running the actor.
	children map[*Ref]struct{}
	watchers map[*Ref]struct{}
	watching map[*Ref]struct{}
	// escalated are the children whose failures this actor escalated and
	// whose fate waits on its supervisor's decision: a second child can
	// fail before the decision about the first comes.
	escalated []*Ref
	// heldTerminated are watched actors that stopped while this actor
	// was suspended: their *Terminated waits for the instance that goes
	// on, resumed or new (see handleTerminated).
	heldTerminated []*Ref
	// restarted counts the restarts. A timer belongs to the restarts it
	// was armed after (Timer.restarted): the message of a one-shot timer
	// that fired before a restart is no longer in the timers that the
	// restart cancels, and must not reach the instance after it.
	restarted uint32

	// Owned by the supervisor: the parent's goroutine, or, for a top-level
	// actor, the goroutine running its turn, where the root supervisor
	// handles its failures.
	restarts []time.Time
}

// side returns the actor's refExt, making it on first use. Any goroutine
// may call it: the CAS lets one of two racing callers install its refExt.
func (r *Ref) side() *refExt {
	if e := r.ext.Load(); e != nil {
		return e
	}
	if e := new(refExt); r.ext.CompareAndSwap(nil, e) {
		return e
	}
	return r.ext.Load()
}

// throughput returns how many user messages a turn handles before yielding.
func (r *Ref) throughput() int32 {
	if e := r.ext.Load(); e != nil && e.throughput != 0 {
		return e.throughput
	}
	return DefaultThroughput
}

// tokens returns the bounded mailbox's tokens, nil if it is unbounded.
func (r *Ref) tokens() chan struct{} {
	if e := r.ext.Load(); e != nil {
		return e.tokens
	}
	return nil
}

// children returns the set of live children; nil (empty) if none was
// ever spawned. Only the actor's goroutine may call it.
func (r *Ref) children() map[*Ref]struct{} {
	if e := r.ext.Load(); e != nil {
		return e.children
	}
	return nil
}

// isStopping reports whether the actor began to stop, so sends are refused.
func (r *Ref) isStopping() bool { return r.stopReq.Load()&stopping != 0 }

// newRef builds an actor from validated props; it does not start it.
func (s *System) newRef(p *Props, parent *Ref) (*Ref, error) {
	a, err := firstInstance(p.New)
	if err != nil {
		return nil, err
	}
	r := &Ref{
		sys:          s,
		parent:       parent,
		id:           s.nextID.Add(1),
		newActor:     p.New,
		startPending: true,
	}
	if p.Throughput != 0 && p.Throughput != DefaultThroughput {
		r.side().throughput = int32(p.Throughput)
	}
	if recv := compose(p.Middleware); recv != nil {
		r.side().recv = recv
	}
	if p.Supervisor != nil {
		r.side().strategy = p.Supervisor
	}
	if p.Mailbox.Capacity > 0 {
		e := r.side()
		e.tokens = make(chan struct{}, p.Mailbox.Capacity)
		e.failFull = p.Mailbox.Overflow == MailboxFail
	}
	initQueue(&r.sysHead, &r.sysTail, &s.envelopes)
	initQueue(&r.userHead, &r.userTail, &s.envelopes)
	r.ctx.ref = r
	r.actor = a
	return r, nil
}

// firstInstance calls New for Spawn, turning a nil actor or a panic into
// an error for the caller.
func firstInstance(newActor func() Actor) (a Actor, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("runtime: spawn: Props.New: %w", &PanicError{Value: v, Stack: debug.Stack()})
		}
	}()
	if a = newActor(); a == nil {
		return nil, fmt.Errorf("%w: New returned nil", ErrInvalidProps)
	}
	return a, nil
}

// errNilRef is returned by Send and Request on a nil *Ref.
var errNilRef = fmt.Errorf("runtime: nil *Ref: %w", ErrStopped)

// String returns the actor's path, such as "/3/7" for actor 7 spawned by
// top-level actor 3. Paths identify actors in logs only.
func (r *Ref) String() string {
	if r == nil {
		return "<nil>"
	}
	id := strconv.FormatUint(r.id, 10)
	if r.parent == nil {
		return "/" + id
	}
	return r.parent.String() + "/" + id
}

// Send enqueues msg without waiting for it to be handled. It fails with
// ErrStopped, publishing a dead letter, if the actor has stopped or is
// stopping. On a full bounded mailbox it blocks (MailboxBlock, without a
// deadline; use SendContext to bound the wait) or fails with ErrMailboxFull
// (MailboxFail).
func (r *Ref) Send(msg any) error {
	return r.enqueue(context.Background(), msg, nil, nil, false)
}

// SendContext is Send that stops waiting for space in a full MailboxBlock
// mailbox when ctx ends, returning ctx.Err().
func (r *Ref) SendContext(ctx context.Context, msg any) error {
	return r.enqueue(ctx, msg, nil, nil, false)
}

// Request sends msg and waits for the reply given with Context.Respond or
// Context.RespondError. It returns ctx.Err() when ctx ends first; a reply
// that arrives later is dropped. It fails at once with ErrStopped when the
// actor has stopped, or stops before handling msg; with an error wrapping
// ErrPanic (a *PanicError) when the handler panics, or calls
// runtime.Goexit (the error then wraps ErrGoexit); and with ErrNoReply
// when the handler returns without replying. With a context that can never
// end (Done returns nil) and an idle actor, the caller runs the actor's turn
// itself, as a worker would, up to its request: the user messages queued
// before it, then the request, at most Props.Throughput user messages in
// all, with the system messages first, even those that arrive meanwhile.
// The turn ends there: a worker takes the rest, and whatever is left once
// the request is handled, system messages included (a stop or a restart
// the handler caused, say). So the caller has its reply, or its
// *PanicError, before a restart begins.
func (r *Ref) Request(ctx context.Context, msg any) (any, error) {
	if r == nil {
		return nil, errNilRef
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return r.request(ctx, msg, ctx.Done() == nil)
}

// RequestInline is Request for a caller that accepts to run the actor's
// turn itself: to an idle actor, the caller handles msg on its own
// goroutine, after what was queued before it, as Request does with a
// context that can never end, whatever ctx. ctx then bounds the wait for a
// busy actor only: a turn the caller runs ends with its request, even past
// ctx's deadline, and RequestInline returns its reply. Use it where the
// handler is known to honour its context or to be short, and a late return
// is better than the cost of a hand-off to a worker.
func (r *Ref) RequestInline(ctx context.Context, msg any) (any, error) {
	if r == nil {
		return nil, errNilRef
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return r.request(ctx, msg, true)
}

// Ask is Request, or RequestInline when inline is set, for a caller that
// must know what became of msg when ctx ends first: gaveUp reports that
// msg was queued and that the caller gave up waiting before the actor
// answered it. The actor then still holds msg in its mailbox, or is
// handling it, or handled it just now, and its answer reaches nobody; or
// it stopped, or stops, before it reached msg, which is then a dead letter
// that nobody answers either. The error is ctx.Err() then, as Request's.
// With gaveUp false, an error means that msg was not queued (ctx had
// ended, the actor is stopping, its bounded mailbox is full) or is the
// actor's answer (ErrStopped when it stopped before it reached msg); a
// message that was queued and answered is never reported as given up.
func (r *Ref) Ask(ctx context.Context, msg any, inline bool) (reply any, gaveUp bool, err error) {
	if r == nil {
		return nil, false, errNilRef
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	return r.ask(ctx, msg, inline || ctx.Done() == nil)
}

// request enqueues msg with a reply slot and waits for the reply; with
// inline set it runs the turn of an idle actor in the caller first.
func (r *Ref) request(ctx context.Context, msg any, inline bool) (any, error) {
	val, _, err := r.ask(ctx, msg, inline)
	return val, err
}

// ask is request, and reports whether the caller gave up on msg once it
// was queued (see Ask).
func (r *Ref) ask(ctx context.Context, msg any, inline bool) (any, bool, error) {
	slot := r.sys.getSlot()
	if err := r.enqueue(ctx, msg, slot, nil, inline); err != nil {
		r.sys.putSlot(slot)
		return nil, false, err
	}
	return slot.wait(ctx, r.sys)
}

// Stop stops the actor abruptly: after its current message, skipping what
// is queued (those messages become dead letters). It is idempotent and
// returns the Done channel.
func (r *Ref) Stop() <-chan struct{} {
	r.requestStop(stopAbrupt, false)
	return r.Done()
}

// GracefulStop stops the actor after it has handled the messages already
// queued. It is idempotent and returns the Done channel. The stop request
// bypasses a bounded mailbox's capacity.
func (r *Ref) GracefulStop() <-chan struct{} {
	r.requestStop(stopGraceful, false)
	return r.Done()
}

// requestStop asks the actor to stop, abruptly (how is stopAbrupt) or
// gracefully (stopGraceful), unless it was asked so before. With here set,
// an idle actor's stopping turn runs on the calling goroutine (see
// runInline), as System.Shutdown and Close do; otherwise on a worker.
func (r *Ref) requestStop(how uint32, here bool) {
	if r.stopReq.Or(how)&how != 0 {
		return
	}
	if how == stopAbrupt {
		r.sysHead.push(r.sys.envelopes.get(sysStop{}, nil))
	} else {
		r.userHead.push(r.sys.envelopes.get(gracefulStop{}, nil))
	}
	if here {
		r.runInline(nil)
	} else {
		r.schedule()
	}
}

// Done returns a channel that is closed when the actor has stopped: it has
// received *Stopped, its children have stopped, and the messages left in its
// mailbox have been turned into dead letters.
func (r *Ref) Done() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		if r.dead {
			return r.sys.closedCh
		}
		r.done = make(chan struct{})
	}
	return r.done
}

// Stopped reports whether the actor has stopped, as a receive from Done
// would, without making the Done channel: polling many actors with it costs
// them no memory.
func (r *Ref) Stopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dead
}

// closeDone marks the actor stopped for Done.
func (r *Ref) closeDone() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dead = true
	if r.done != nil {
		close(r.done)
	}
}

// enqueue appends a user message, in a node from spare if it has one (see
// Context.Send), else from the pool. With inline set (a Request that may
// run the turn itself) it runs the turn of an idle actor on the caller.
func (r *Ref) enqueue(ctx context.Context, msg any, reply *replySlot, spare *spareList, inline bool) error {
	if r == nil {
		return errNilRef
	}
	if msg == nil {
		return ErrNilMessage
	}
	if r.isStopping() {
		r.sys.deadLetter(r, msg, ErrStopped)
		return ErrStopped
	}
	if tokens := r.tokens(); tokens != nil {
		if err := r.acquire(ctx, tokens, msg); err != nil {
			return err
		}
	}
	var e *envelope
	if spare != nil {
		e = spare.take(msg, reply)
	}
	if e == nil {
		e = r.sys.envelopes.get(msg, reply)
	}
	r.userHead.push(e)
	if inline {
		// A Request that nothing can end early, or whose caller accepts to
		// return late (RequestInline): its caller would only wait for the
		// reply, so it may as well produce it (see runInline).
		r.runInline(reply)
	} else {
		r.schedule()
	}
	return nil
}

// acquire takes a slot of a bounded mailbox.
func (r *Ref) acquire(ctx context.Context, tokens chan struct{}, msg any) error {
	select {
	case tokens <- struct{}{}:
		return nil
	default:
	}
	if r.ext.Load().failFull {
		r.sys.deadLetter(r, msg, ErrMailboxFull)
		return ErrMailboxFull
	}
	select {
	case tokens <- struct{}{}:
		return nil
	case <-r.Done():
		r.sys.deadLetter(r, msg, ErrStopped)
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sendSystem appends a system message; system messages are never refused,
// and those reaching a stopped actor are handled by deadSystem.
func (r *Ref) sendSystem(msg any) {
	r.sysHead.push(r.sys.envelopes.get(msg, nil))
	r.schedule()
}

// schedule starts the actor's turn unless it is already running, on a
// worker goroutine of the System (see workers).
func (r *Ref) schedule() {
	// The load first: a busy actor's producers would otherwise all write
	// the status word with a failing CAS (a locked instruction that takes
	// the cache line exclusively), while reading it shares the line.
	if r.status.Load() == idle && r.status.CompareAndSwap(idle, running) {
		r.sys.workers.start(r)
	}
}

// runInline runs one turn of an idle actor on the calling goroutine, the
// caller of a Request whose reply goes to own (nil for a stop, see
// requestStop): it claims the actor with the CAS a producer uses to
// schedule it, so no worker can run it at the same time, handles what is
// queued up to the caller's request (system messages first, then at most
// Throughput user messages: those queued before the request, and the
// request), and then releases the actor exactly as a worker's turn ends,
// or hands it to a worker if messages are left.
//
// The trick: a request to an idle actor otherwise costs a handoff to a
// worker goroutine and a park and wake-up of the caller; here the reply is
// ready when Request starts to wait. It is only done for a context that
// can never end (Done is nil), or when the caller asked for it
// (RequestInline): a caller running a handler cannot return when its
// deadline passes, and Request must return then. A caller that is
// itself inside a turn nests the two actors' turns on its goroutine: the
// CAS still lets only one goroutine run each actor. But nothing may hold a
// lock across user code that can make a request (a handler, a Decider):
// the nested turn may come back to the code that took it, on the same
// goroutine, and wait for itself. The root supervisor held System's lock
// around its Decider, and a Decider that asked an actor that then failed
// waited for that lock forever (see Ref.fail).
//
// The turn ends with the caller's request: the messages left once it is
// handled, system messages included, go to a worker. Run here, they held the caller
// past its own handler, and could deadlock it: a message queued after the
// request that waits on the caller (an actor that calls the caller's
// actor, which waits for this reply) would wait for a reply that waits for
// it. The system messages did so too, and ran user code: the restart that
// a panicking handler caused (Restarting, Props.New, the new instance's
// Started), a *Terminated, a stop, a child's failure for the Decider. A
// new instance whose Started asked the caller's actor something waited
// for the caller, which waited for the restart to end.
func (r *Ref) runInline(own *replySlot) {
	if r.status.Load() != idle || !r.status.CompareAndSwap(idle, running) {
		return // running elsewhere: that turn will handle the request
	}
	if r.process(true, own) || r.goIdle() {
		r.sys.workers.start(r) // still running: a worker takes the rest
	}
}

// run drains the mailbox on a worker, then goes idle.
func (r *Ref) run() {
	for {
		r.process(false, nil)
		if !r.goIdle() {
			return
		}
	}
}

// goIdle ends a turn. After going idle it looks at the queues once more: a
// producer that pushed while the actor was running saw it running and did
// not schedule it, so the message would otherwise wait for the next send.
// It reports whether it took the actor back (it is running again and the
// caller must run another turn).
func (r *Ref) goIdle() bool {
	sysStub, userStub := r.sysTail.stub, r.userTail.stub
	userReady := r.finished || !(r.suspended || r.inStop)
	if h := r.sys.beforeIdle; h != nil {
		h(r)
	}
	r.status.Store(idle)
	// Only the heads are read: once idle, another goroutine may own the
	// queues and recycle the saved tails. A head that moved means a push;
	// if it is not linked yet, the next turn finds nothing and comes back
	// here until it is.
	if r.sysHead.empty(sysStub) && (!userReady || r.userHead.empty(userStub)) {
		return false
	}
	// A producer scheduled a new turn if the CAS fails.
	return r.status.CompareAndSwap(idle, running)
}

// process handles queued messages, system messages first, until none can be
// handled now, or, if own is not nil, until it handled the request whose
// reply goes to own. Every Throughput user messages a worker yields its
// processor and continues; with bounded set, process instead returns true
// there, leaving the rest queued.
func (r *Ref) process(bounded bool, own *replySlot) bool {
	more := r.processLoop(bounded, own)
	// Before the actor may go idle: the next turn may run elsewhere.
	r.ctx.spare.flush(&r.sys.envelopes, r.fedInRuns.Load())
	return more
}

func (r *Ref) processLoop(bounded bool, own *replySlot) bool {
	limit := r.throughput()
	if r.startPending {
		r.startPending = false
		if f := r.deliver(&Started{}); f != nil {
			r.fail(f)
		}
	}
	n := int32(0)
	for {
		if msg, _, ok := r.sysTail.pop(&r.ctx.spare); ok {
			if r.finished {
				r.deadSystem(msg)
			} else {
				r.handleSystem(msg)
			}
			continue
		}
		if r.finished {
			msg, reply, ok := r.userTail.pop(&r.ctx.spare)
			if !ok {
				return false
			}
			r.deadUser(msg, reply)
			continue
		}
		if r.suspended || r.inStop {
			return false
		}
		if n == limit {
			if bounded {
				return true
			}
			n = 0
			// Bound the nodes kept for Send by an actor that receives
			// more than it sends.
			r.ctx.spare.flush(&r.sys.envelopes, r.fedInRuns.Load())
			goruntime.Gosched() // let other actors run; the turn continues
			continue
		}
		msg, reply, ok := r.userTail.pop(&r.ctx.spare)
		if !ok {
			return false
		}
		n++
		r.handleUser(msg, reply)
		if own != nil && reply == own {
			// The caller's turn ends with its request: what is queued now,
			// system messages included, is a worker's (see runInline).
			return false
		}
	}
}

// handleUser delivers one user message.
func (r *Ref) handleUser(msg any, reply *replySlot) {
	switch m := msg.(type) {
	case gracefulStop:
		r.beginStop(true)
		return
	case timerFired:
		r.release()
		if m.t.every > 0 {
			m.t.queued.Store(false) // the timer may queue its next tick (see Timer.fire)
		}
		if !r.timerLive(m.t) {
			return
		}
		msg = m.t.msg
	default:
		r.release()
	}
	c := &r.ctx
	c.msg, c.reply = msg, reply
	if f := r.invoke(c); f != nil {
		r.failed(f)
		return
	}
	if c.reply != nil {
		c.reply.complete(nil, fmt.Errorf("%w: %s handled %T", ErrNoReply, r, msg))
		c.reply = nil
	}
	c.msg = nil
}

// failed ends the handling of a message whose handler failed: a Request
// it left unanswered gets a *PanicError, and the supervisor the failure.
func (r *Ref) failed(f *Failure) {
	c := &r.ctx
	if c.reply != nil {
		c.reply.complete(nil, &PanicError{Value: f.Reason, Stack: f.Stack})
		c.reply = nil
	}
	c.msg = nil
	r.fail(f)
}

// release frees the bounded-mailbox slot of a dequeued message.
func (r *Ref) release() {
	if tokens := r.tokens(); tokens != nil {
		<-tokens
	}
}

// invoke calls the actor with the message in c, recovering a panic into a
// Failure. This is the only place the runtime recovers panics.
//
// A handler that calls runtime.Goexit (t.FailNow does) neither returns nor
// panics: its goroutine runs its deferred calls and ends, and recover sees
// nothing. So the deferred call tells a Goexit by returned, unset, and a
// recover that finds no panic, and hands the actor to a new goroutine (see
// exited). A handler that returned pays a flag for it, and skips the
// recover.
func (r *Ref) invoke(c *Context) (f *Failure) {
	returned := false
	defer func() {
		if returned {
			return
		}
		if v := recover(); v != nil {
			f = newFailure(r, v, c.msg)
			return
		}
		r.exited(c.msg)
	}()
	if e := r.ext.Load(); e != nil && e.recv != nil {
		e.recv(c)
	} else {
		r.actor.Receive(c)
	}
	returned = true
	return nil
}

// exited takes over from a goroutine that runtime.Goexit is ending in the
// middle of the actor's turn: a handler called it, handling msg, or
// Props.New did. It runs among that goroutine's deferred calls, after
// which nothing runs on it: neither the rest of the turn nor, if a
// Request's caller was running the turn (see runInline), the caller. So a
// new goroutine takes the actor, still running, and does what a panic
// would have led to: a Request being handled gets a *PanicError, the
// supervisor the Failure, and a restart or a stop whose lifecycle handler
// it was carries on (see deliverOrLog). It then runs the actor's turns as
// a worker does.
func (r *Ref) exited(msg any) {
	f := &Failure{Who: r, Reason: ErrGoexit, Stack: debug.Stack(), Message: msg}
	after := r.after
	r.after = noStage
	go func() {
		if after == noStage {
			r.failed(f)
		} else {
			r.ctx.msg = nil
			r.logLifecycleFailure(msg, f)
			r.carryOn(after)
		}
		r.sys.workers.loop(r)
	}()
	// Under GODEBUG=panicnil=1 a panic(nil) recovers as nil too, and its
	// goroutine would go on with the turn beside the new one: it ends here,
	// as if the handler had called Goexit.
	goruntime.Goexit()
}

// deliver passes a lifecycle or system-originated message to the actor.
func (r *Ref) deliver(msg any) *Failure {
	c := &r.ctx
	c.msg = msg
	f := r.invoke(c)
	c.msg = nil
	return f
}

// deliverOrLog delivers msg and logs a panic instead of supervising it: used
// for Restarting, Stopping and Stopped, after which supervision makes no
// sense. The caller goes on with the stage then; should the handler end
// the goroutine with runtime.Goexit, the goroutine that takes over does
// (see exited).
func (r *Ref) deliverOrLog(msg any, then stage) {
	r.after = then
	f := r.deliver(msg)
	r.after = noStage
	if f != nil {
		r.logLifecycleFailure(msg, f)
	}
}

// logLifecycleFailure logs the failure of the handler of msg, a
// *Restarting, *Stopping or *Stopped, which no supervisor handles.
func (r *Ref) logLifecycleFailure(msg any, f *Failure) {
	r.sys.logger.Error("runtime: actor panicked in lifecycle handler",
		"actor", r.String(), "message", typeName(msg), "panic", f.Reason)
}

// A stage is the part of a restart or of a stop that follows a lifecycle
// handler, named for the goroutine that takes over from one that a
// handler ended with runtime.Goexit (see exited).
type stage uint8

const (
	noStage         stage = iota
	afterRestarting       // restart's: renew
	afterStopping         // beginStop's: stopChildren
	afterStopped          // finish's: bury
)

// carryOn runs the stage s.
func (r *Ref) carryOn(s stage) {
	switch s {
	case afterRestarting:
		r.renew()
	case afterStopping:
		r.stopChildren()
	case afterStopped:
		r.bury()
	}
}

// handleSystem handles one system message while the actor is alive.
func (r *Ref) handleSystem(msg any) {
	switch m := msg.(type) {
	case sysStop:
		r.beginStop(false)
	case sysWatch:
		e := r.side()
		if e.watchers == nil {
			e.watchers = make(map[*Ref]struct{})
		}
		e.watchers[m.who] = struct{}{}
	case sysUnwatch:
		if e := r.ext.Load(); e != nil {
			delete(e.watchers, m.who)
		}
	case sysTerminated:
		r.handleTerminated(m.who)
	case sysChildDone:
		if e := r.ext.Load(); e != nil {
			delete(e.children, m.who)
			e.escalated = slices.DeleteFunc(e.escalated, func(c *Ref) bool { return c == m.who })
		}
		r.maybeFinish()
	case sysFailure:
		r.superviseChild(m.f)
	case sysResume:
		r.resume()
	case sysRestart:
		r.restart()
	}
}

// handleTerminated delivers *Terminated for a watched actor. A suspended
// actor's instance failed and waits for its supervisor: the message is
// held for the instance that goes on (see deliverHeldTerminated), where
// delivering it to the failed one lost it for a restarted actor.
func (r *Ref) handleTerminated(who *Ref) {
	e := r.ext.Load()
	if e == nil || r.inStop {
		return
	}
	if _, ok := e.watching[who]; !ok {
		return
	}
	delete(e.watching, who)
	if r.suspended {
		e.heldTerminated = append(e.heldTerminated, who)
		return
	}
	if f := r.deliver(&Terminated{Who: who}); f != nil {
		r.fail(f)
	}
}

// deliverHeldTerminated delivers the *Terminated held while the actor was
// suspended, in the order they came, until one fails.
func (r *Ref) deliverHeldTerminated() {
	e := r.ext.Load()
	for e != nil && len(e.heldTerminated) > 0 && !r.suspended && !r.inStop {
		who := e.heldTerminated[0]
		e.heldTerminated = e.heldTerminated[1:]
		if f := r.deliver(&Terminated{Who: who}); f != nil {
			r.fail(f)
		}
	}
}

// beginStop starts stopping: refuse new messages, cancel timers, tell the
// actor, stop the children, and finish once they have stopped.
func (r *Ref) beginStop(graceful bool) {
	if r.inStop {
		if r.graceful && !graceful {
			// An abrupt stop overtakes a graceful one in progress.
			r.graceful = false
			for c := range r.children() {
				c.Stop()
			}
		}
		return
	}
	r.inStop, r.graceful = true, graceful
	r.stopReq.Or(stopping)
	r.cancelTimers()
	r.deliverOrLog(&Stopping{}, afterStopping)
	r.stopChildren()
}

// stopChildren is the end of beginStop, after *Stopping.
func (r *Ref) stopChildren() {
	for c := range r.children() {
		if r.graceful {
			c.GracefulStop()
		} else {
			c.Stop()
		}
	}
	r.maybeFinish()
}

// maybeFinish completes a stop once no child is left.
func (r *Ref) maybeFinish() {
	if r.inStop && !r.finished && len(r.children()) == 0 {
		r.finish()
	}
}

// finish delivers *Stopped, turns the queued messages into dead letters,
// closes Done, and only then notifies watchers and parent: a parent that
// learns of its child's end may finish and close its own Done at once, so
// the child must be done by then. A top-level actor leaves the System's set
// before its Done closes, so that whoever saw it stop (System.Shutdown and
// Close wait for Done) finds it gone from the set. What arrives after the
// drain meets a finished actor and becomes a dead letter too (see
// processLoop).
func (r *Ref) finish() {
	r.deliverOrLog(&Stopped{}, afterStopped)
	r.bury()
}

// bury is the end of finish, after *Stopped.
func (r *Ref) bury() {
	r.finished = true
	r.actor = nil
	r.drainDead()
	if r.parent == nil {
		r.sys.removeTop(r)
	}
	r.closeDone()
	if e := r.ext.Load(); e != nil {
		for w := range e.watchers {
			w.sendSystem(sysTerminated{r})
		}
		for w := range e.watching {
			w.sendSystem(sysUnwatch{r})
		}
		e.watchers, e.watching = nil, nil
	}
	if r.parent != nil {
		r.parent.sendSystem(sysChildDone{r})
	}
}

// drainDead empties both queues of a stopped actor.
func (r *Ref) drainDead() {
	for {
		msg, _, ok := r.sysTail.pop(&r.ctx.spare)
		if !ok {
			break
		}
		r.deadSystem(msg)
	}
	for {
		msg, reply, ok := r.userTail.pop(&r.ctx.spare)
		if !ok {
			break
		}
		r.deadUser(msg, reply)
	}
}

// deadUser disposes of a user message that reached a stopped actor: a
// Request fails with ErrStopped, and the message is a dead letter.
func (r *Ref) deadUser(msg any, reply *replySlot) {
	// Bounded-mailbox slots are not released: a sender waiting for space
	// must see Done and fail with ErrStopped rather than queue a message
	// that can only become a dead letter.
	switch m := msg.(type) {
	case gracefulStop:
		return
	case timerFired:
		if r.timerLive(m.t) {
			r.sys.deadLetter(r, m.t.msg, ErrStopped)
		}
		return
	}
	if reply != nil {
		reply.complete(nil, ErrStopped)
	}
	r.sys.deadLetter(r, msg, ErrStopped)
}

// deadSystem disposes of a system message that reached a stopped actor. A
// late watcher is told at once that the actor has terminated.
func (r *Ref) deadSystem(msg any) {
	if m, ok := msg.(sysWatch); ok {
		m.who.sendSystem(sysTerminated{r})
	}
}
