package runtime

import (
	"context"
	goruntime "runtime"
	"time"
)

// Context is what Receive gets: the current message and the actor's
// capabilities. It is valid only during the Receive call it was passed to
// and must not be kept or used from other goroutines; Ref values obtained
// from it may be.
type Context struct {
	ref   *Ref
	msg   any
	reply *replySlot // pending Request reply; nil once answered or detached
	spare spareList  // queue nodes freed during this turn, for Send
}

// Message returns the message being handled.
func (c *Context) Message() any { return c.msg }

// Self returns the actor's own Ref.
func (c *Context) Self() *Ref { return c.ref }

// Parent returns the Ref of the actor that spawned this one, or nil for an
// actor spawned with System.Spawn.
func (c *Context) Parent() *Ref { return c.ref.parent }

// System returns the System the actor runs in.
func (c *Context) System() *System { return c.ref.sys }

// IsRequest reports whether the current message came from Request and has
// not been answered yet.
func (c *Context) IsRequest() bool { return c.reply != nil }

// Respond answers the current Request: Request returns msg and a nil error.
// Only the first answer counts. For a message sent with Send it does
// nothing.
func (c *Context) Respond(msg any) {
	if c.reply != nil {
		c.reply.complete(msg, nil)
		c.reply = nil
	}
}

// RespondError answers the current Request with err, which Request returns
// as is. For a message sent with Send it does nothing.
func (c *Context) RespondError(err error) {
	if c.reply != nil {
		c.reply.complete(nil, err)
		c.reply = nil
	}
}

// DetachReply takes over the answer to the current Request, so that it can
// be given after Receive returns, from any goroutine. Without it, a Request
// that Receive leaves unanswered fails with ErrNoReply; so does one whose
// Responder is dropped unanswered, once it is garbage-collected (see
// Responder). It returns nil when the message is not an unanswered
// Request.
//
// That backstop is a cleanup (runtime.AddCleanup) on each Responder, a few
// allocations that only a detached reply pays: a Request answered in
// Receive makes no Responder.
func (c *Context) DetachReply() *Responder {
	if c.reply == nil {
		return nil
	}
	d := &detached{who: c.ref}
	d.slot.Store(c.reply)
	c.reply = nil
	r := &Responder{answer: d}
	goruntime.AddCleanup(r, (*detached).drop, d)
	return r
}

// Send sends msg to the actor to, as to.Send(msg) does, from within this
// actor's turn.
//
// The trick: the queue nodes this actor's turn has freed (one per message
// it took from its mailbox) are kept in the Context, and Send puts msg in
// one of them, where to.Send takes a node from the System's sync.Pool. An
// actor that answers each message with a message, as most do, then sends
// without touching the pool, whose Get and Put were about 30% of the CPU
// of ping-pong between actors on different Ps. What is left is returned
// to the pool at the end of the turn, so an idle actor keeps none.
func (c *Context) Send(to *Ref, msg any) error {
	return to.enqueue(context.Background(), msg, nil, &c.spare, false)
}

// Spawn starts a child actor supervised by this actor's Props.Supervisor.
// It fails with ErrStopped once this actor is stopping.
func (c *Context) Spawn(p Props) (*Ref, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	r := c.ref
	if r.inStop {
		return nil, ErrStopped
	}
	child, err := r.sys.newRef(&p, r)
	if err != nil {
		return nil, err
	}
	e := r.side()
	if e.children == nil {
		e.children = make(map[*Ref]struct{})
	}
	e.children[child] = struct{}{}
	if !p.StartOnFirstMessage {
		child.schedule() // delivers *Started
	}
	return child, nil
}

// Children returns the actor's children that were not asked to stop. A
// child being stopped (by its parent's restart, say, which starts the new
// instance without children) is left out, though its Done may not be
// closed yet.
func (c *Context) Children() []*Ref { return c.ref.siblings() }

// Watch asks for a *Terminated message when who stops. Watching an actor
// that has already stopped delivers *Terminated promptly. Watching is
// idempotent: one *Terminated is delivered however often Watch is called.
func (c *Context) Watch(who *Ref) {
	r := c.ref
	if who == nil || who == r {
		return
	}
	e := r.side()
	if e.watching == nil {
		e.watching = make(map[*Ref]struct{})
	}
	e.watching[who] = struct{}{}
	who.sendSystem(sysWatch{r})
}

// Unwatch cancels Watch; no *Terminated for who is delivered afterwards.
func (c *Context) Unwatch(who *Ref) {
	r := c.ref
	e := r.ext.Load()
	if e == nil {
		return
	}
	if _, ok := e.watching[who]; !ok {
		return
	}
	delete(e.watching, who)
	who.sendSystem(sysUnwatch{r})
}

// SendAfter sends msg to the actor itself after d. The timer is cancelled
// when the actor stops or restarts, or when the returned Timer is stopped;
// a cancelled timer's message is not delivered even if it was already
// queued. An actor that is stopping (in its *Stopping or *Stopped handler)
// gets a Timer stopped already, and msg goes to the dead letters; the same
// holds for SendEvery.
func (c *Context) SendAfter(d time.Duration, msg any) *Timer {
	return c.ref.startTimer(d, 0, msg)
}

// SendEvery sends msg to the actor itself every d until the returned Timer
// is stopped or the actor stops or restarts. It panics if d is not
// positive, as time.NewTicker does. Like a time.Ticker's, its ticks do not
// pile up: while one is in the mailbox the timer sends none, so an actor
// that is busy, or suspended awaiting a restart, while periods pass finds
// one tick when it gets to it.
func (c *Context) SendEvery(d time.Duration, msg any) *Timer {
	if d <= 0 {
		panic("runtime: non-positive interval for SendEvery")
	}
	return c.ref.startTimer(d, d, msg)
}
