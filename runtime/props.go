package runtime

import (
	"fmt"
	"math"
)

// DefaultThroughput is Props.Throughput when it is zero.
const DefaultThroughput = 300

// Actor is the behaviour of an actor. Receive is called with one message at
// a time, never concurrently, so an actor's fields need no locking.
type Actor interface {
	Receive(c *Context)
}

// ActorFunc adapts a function to the Actor interface.
type ActorFunc func(c *Context)

// Receive calls f(c).
func (f ActorFunc) Receive(c *Context) { f(c) }

// ReceiveFunc handles one message; it is the unit Middleware wraps.
type ReceiveFunc func(c *Context)

// Middleware wraps the delivery of every message, lifecycle messages
// included, for tracing, metrics or logging. It is called once, at spawn,
// with the next step of the chain and returns the step to run instead.
// Middleware[0] is the outermost: it runs first and returns last.
type Middleware func(next ReceiveFunc) ReceiveFunc

// Props describes how to create and run an actor.
type Props struct {
	// New creates the actor instance. Required. It is called once by Spawn
	// and again, on the actor's goroutine, for every restart.
	New func() Actor
	// Mailbox bounds the user-message queue. The zero value is unbounded.
	Mailbox MailboxConfig
	// Throughput is how many user messages a worker's turn handles between
	// two yields of the processor to other goroutines (runtime.Gosched):
	// the turn then carries on with the same actor until its mailbox is
	// empty. A turn run by a Request's caller (see Ref.Request), or by
	// System.Shutdown and Close, ends after Throughput user messages
	// instead, and a worker takes the rest. Zero means DefaultThroughput.
	Throughput int
	// Supervisor decides what happens to this actor's children when they
	// fail. Nil means DefaultStrategy().
	Supervisor SupervisorStrategy
	// Middleware wraps Receive; see Middleware. The chain is composed once
	// at spawn, and an actor without middleware calls Receive directly.
	Middleware []Middleware
	// StartOnFirstMessage delays *Started to the actor's first turn, which
	// its first message (or a stop) brings, instead of running a turn for it
	// at spawn. *Started still comes before anything else. It suits actors
	// that do nothing until asked: spawning one then costs no hand-off to a
	// worker goroutine, and its first message, to an idle actor, may run on
	// the caller (see Ref.Request). An actor that is never sent anything
	// and never stopped never sees *Started.
	StartOnFirstMessage bool
}

// OverflowPolicy says what a send to a full bounded mailbox does.
type OverflowPolicy int

const (
	// MailboxBlock makes the sender wait for space: Send without a
	// deadline, SendContext and Request until their context ends. Stop
	// requests and timers never wait (a timer firing into a full mailbox
	// publishes a dead letter). It is the zero value.
	MailboxBlock OverflowPolicy = iota
	// MailboxFail makes the send fail at once with ErrMailboxFull.
	MailboxFail
)

// MailboxConfig configures an actor's user-message queue. System messages
// (stop, watch, supervision) are never bounded.
type MailboxConfig struct {
	// Capacity is the most user messages the mailbox holds. Zero means
	// unbounded.
	Capacity int
	// Overflow is what a send to a full mailbox does. The zero value is
	// MailboxBlock. It is ignored when Capacity is zero.
	Overflow OverflowPolicy
}

// validate reports unusable Props with an error wrapping ErrInvalidProps.
func (p *Props) validate() error {
	switch {
	case p.New == nil:
		return fmt.Errorf("%w: New is nil", ErrInvalidProps)
	case p.Throughput < 0 || p.Throughput > math.MaxInt32:
		return fmt.Errorf("%w: Throughput %d out of range", ErrInvalidProps, p.Throughput)
	case p.Mailbox.Capacity < 0:
		return fmt.Errorf("%w: negative Mailbox.Capacity %d", ErrInvalidProps, p.Mailbox.Capacity)
	case p.Mailbox.Overflow != MailboxBlock && p.Mailbox.Overflow != MailboxFail:
		return fmt.Errorf("%w: unknown Mailbox.Overflow %d", ErrInvalidProps, p.Mailbox.Overflow)
	}
	for i, m := range p.Middleware {
		if m == nil {
			return fmt.Errorf("%w: Middleware[%d] is nil", ErrInvalidProps, i)
		}
	}
	return nil
}

// compose builds the middleware chain around the actor's Receive. It
// returns nil when there is no middleware, so delivery costs nothing extra.
func compose(mw []Middleware) ReceiveFunc {
	if len(mw) == 0 {
		return nil
	}
	next := ReceiveFunc(receiveActor)
	for i := len(mw) - 1; i >= 0; i-- {
		next = mw[i](next)
	}
	return next
}

// receiveActor is the innermost step of every middleware chain. It reads the
// instance through the context, so the chain survives restarts.
func receiveActor(c *Context) { c.ref.actor.Receive(c) }
