package cluster

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"
)

// SupportPackageIsVersion1 is referenced by code that protoc-gen-grain
// generates. If your build fails on this name, the generated code and this
// module disagree: regenerate with a protoc-gen-grain built from the same
// version of github.com/protograin/protograin that your go.mod requires.
const SupportPackageIsVersion1 = true

// Caller sends unary calls to grains. A *Node is a Caller, and so is the
// GrainContext a grain method receives, so generated clients work both
// outside grains and from one grain to another.
//
// Users may implement Caller themselves, for instance to fake a grain in a
// unit test of code that uses a generated client. A Caller that also
// implements Sender delivers one-way messages; for one that does not, the
// function Send runs them as calls.
type Caller interface {
	// Invoke delivers call to the grain call.Kind/call.Identity, activating it
	// on its owner node if needed, and returns the grain's response. The
	// response's dynamic type is the one call.NewResponse allocates.
	Invoke(ctx context.Context, call Call, opts ...CallOption) (proto.Message, error)
}

// Call is one unary grain call as a generated client builds it.
type Call struct {
	// Kind is the grain kind: the fully qualified proto service name.
	Kind string
	// Identity names the grain instance within its kind.
	Identity string
	// Method is the full method name, "/package.Service/Method". Calls are
	// routed by this name, never by a method's position in the service.
	Method string
	// Request is the request message. The callee must not keep or change it
	// after the call returns: a call to a grain on the same node passes it
	// without copying.
	Request proto.Message
	// NewResponse allocates an empty response message. It is used when the
	// response has to be decoded from the network.
	NewResponse func() proto.Message
}

// GrainContext is what a grain method receives: a context.Context carrying
// the caller's deadline and cancellation, the grain's own identity, and a
// Caller for calls to other grains.
type GrainContext interface {
	context.Context
	Caller
	// Kind returns the kind of the grain handling the call.
	Kind() string
	// Identity returns the identity of the grain handling the call.
	Identity() string
	// State returns the grain's durable state. Changes wait in a buffer
	// until they are flushed: after the call (FlushAfterCall) or when the
	// grain calls State().Flush (FlushManual), and on deactivation.
	State() State
}

// State is a grain's durable state, in the style of ActorFx: a dictionary of
// entries plus, for kinds whose service names a state message with the
// (protograin.v1.grain).state option, that typed message. Reads see buffered
// writes; Flush commits every buffered change atomically or none, and fails
// when another activation of the grain committed in between (an ETag check),
// after which the cluster deactivates this activation.
//
// A State is used only by its grain, one call at a time, and only during a
// call.
type State interface {
	// Get returns the value of key, or an error wrapping state.ErrNotFound.
	Get(key string) ([]byte, error)
	// TryGet returns the value of key and whether it exists.
	TryGet(key string) ([]byte, bool)
	// Set buffers a change of key to value.
	Set(key string, value []byte) error
	// Remove buffers the removal of key.
	Remove(key string) error
	// Keys returns the keys that exist, buffered changes included, sorted.
	Keys() []string
	// Message returns the grain's typed state message, or nil when its kind
	// has none. Change it in place; the next flush commits it. Generated code
	// offers it typed as <Service>StateOf(ctx).
	Message() proto.Message
	// Flush commits the buffered changes now. Within a stamped call that
	// changed state, the commit also records that the call ran; its reply
	// is recorded in the commit after the call (in FlushManual mode, the
	// next flush). If the reply is lost in between (the node fails, that
	// commit fails), a retry of the call fails with ErrStaleCall instead
	// of running again (see docs/state.md). The commit keeps ctx's values
	// but not its deadline or cancellation, as the commit after a call
	// does: it goes through even if the call's caller gave up meanwhile,
	// and ends after Config.CommitTimeout. A commit the store refused
	// without committing anything fails with an error that wraps
	// ErrStateUnavailable and storage.ErrNotCommitted, and keeps
	// everything buffered; the activation lives on.
	Flush(ctx context.Context) error
}

// FlushMode says when a grain's buffered state changes are committed.
type FlushMode int

const (
	// FlushAfterCall commits after every call that changed state, before
	// the reply is sent, together with the exactly-once record of the call.
	// It is the default.
	FlushAfterCall FlushMode = iota
	// FlushManual commits only when the grain calls State().Flush, and when
	// the grain is deactivated. A passivation commits before OnDeactivate,
	// and keeps the grain active while the store fails that commit, so
	// that acknowledged changes are not dropped with an idle grain. A grain
	// that moves to a member that joins, or from one that leaves
	// gracefully, commits on its old owner before the new one loads it
	// (see docs/architecture.md, "Moves wait for the old owner's
	// release"). Acknowledged changes not yet committed are lost in a
	// crash, and by an activation that the version check finds stale
	// (ErrStaleActivation), which only the moves that the hand-off does
	// not cover make (a member that fails or flaps, a move past its bound).
	FlushManual
)

// Activator is implemented by grains that want to run code when they are
// activated, before their first call is delivered. An error fails the call
// that caused the activation, and the activation is discarded. OnActivate
// runs on the goroutine of the call (or reminder) that caused the
// activation: that call returns when OnActivate has, even past its deadline
// (OnActivate sees the deadline in its GrainContext). A panic there fails
// the call with ErrGrainPanic; a runtime.Goexit ends the call's goroutine,
// and the activation is discarded too, its waiting calls failing with
// ErrGrainPanic.
type Activator interface {
	OnActivate(ctx GrainContext) error
}

// Deactivator is implemented by grains that want to run code when they are
// deactivated: after their idle timeout, or when their node shuts down or
// they move to another node. After the idle timeout, OnDeactivate runs once
// what the grain had buffered is committed, and not at all while the store
// fails that commit (the grain stays active meanwhile).
type Deactivator interface {
	OnDeactivate(ctx GrainContext) error
}

// Deactivate ends the activation of the grain whose call, one-way message
// or reminder ctx is, without waiting for its IdleTimeout: for a grain that
// knows it is done (an order delivered, a session closed). The calls
// already counted in run first, this one included; then OnDeactivate runs
// and what the grain buffered is committed, as when its node shuts down,
// and the activation goes. Calls that arrive meanwhile wait for that, and
// activate the grain again. A FlushManual grain whose commits at
// deactivation fail loses what it buffered, as in a Shutdown: Flush first
// what must not be lost.
//
// In OnActivate, it ends the activation once it is ready and the call
// that activated it has run, with those counted in meanwhile: for a grain
// that finds at activation that it has nothing to keep in memory, and
// still answers the call (to fail the call instead, return an error from
// OnActivate, which discards the activation). It does nothing for a grain
// already deactivating (in OnDeactivate, or asked before), and returns
// ErrBadRequest for a context no node passed to a grain.
func Deactivate(ctx GrainContext) error {
	if h, ok := innerContext(ctx).(*hookContext); ok && !h.over.Load() {
		if !h.deactivating {
			h.a.flags.Or(retireFlag) // see activations.activate
		}
		return nil
	}
	n, a, err := grainOf(ctx, "Deactivate")
	if err != nil {
		return err
	}
	n.acts.retire(a)
	return nil
}

// ReminderReceiver is implemented by grains that register reminders with
// RegisterReminder. OnReminder runs on the grain's owner when the reminder
// named name is due, one call at a time with the grain's calls; the grain is
// activated for it if needed. State changes are committed afterwards as
// after a call. An error makes the node deliver the reminder again later,
// with backoff. Reminders fire at least once: a handler should be
// idempotent, or check its state.
type ReminderReceiver interface {
	OnReminder(ctx GrainContext, name string) error
}

// Kind describes a grain kind a node can host. Generated code builds one per
// service with New<Service>Kind; set the configuration fields before the
// Kind is passed to Start, and do not change them afterwards.
type Kind struct {
	// Name is the kind name, the fully qualified proto service name.
	Name string
	// New creates the grain for one identity. It is called once per
	// activation, on the owner node.
	New func(identity string) any
	// Methods lists the kind's unary methods.
	Methods []Method

	// NewState allocates an empty typed state message, for kinds whose
	// service names one with the (protograin.v1.grain).state option. Nil
	// means the kind has only key/value state.
	NewState func() proto.Message
	// Flush says when buffered state changes are committed. Zero means
	// FlushAfterCall.
	Flush FlushMode

	// IdleTimeout is how long an activation may go without a call before it
	// is passivated. A sweep every Config.PassivationInterval (10 s by
	// default) finds idle activations, so one passivates between
	// IdleTimeout and IdleTimeout plus two intervals after its last call.
	// A passivation first commits what the grain has buffered; if the
	// store fails that commit, the grain stays active, and is tried again
	// once idle for another IdleTimeout (see docs/state.md).
	// Zero means DefaultIdleTimeout; a negative value means activations
	// stay until their node shuts down.
	IdleTimeout time.Duration

	// StatelessWorkers, above zero, makes the kind's grains stateless
	// workers, as Orleans' [StatelessWorker] does: for read-heavy or
	// pure-compute grains that one activation per identity would hold
	// to one call at a time on one node. A node that hosts the kind runs
	// the calls and one-way messages it sends to the kind itself, never
	// across the network, on up to StatelessWorkers activations per
	// identity at once: a call goes to an idle activation, else to a new
	// one while there are fewer, else waits on the one with the fewest
	// calls. A node that does not host the kind sends them to the owner
	// that placement picks among the nodes that do, which runs them the
	// same way. Each activation still takes one call at a time, and
	// passivates on its own after IdleTimeout, so a burst's extra
	// activations go once it ends.
	//
	// What a stateless worker gives up for that: it has no durable state
	// (State fails, the kind takes no NewState nor FlushManual), no
	// reminders (RegisterReminder fails; those stored for the kind
	// before it became one fire on one host, the one a node that does
	// not host the kind would send the identity's calls to, until
	// UnregisterReminder deletes them, after which that host may fire
	// one once more), and its calls are not deduplicated by their stamps (a
	// retried call may run twice, as a ReadOnly method's may), nor are
	// one-way messages kept in the order they were sent, since several
	// workers may run them. A worker that calls a grain of its own kind
	// and identity fails with ErrReentrant, as any grain does. Zero means
	// an ordinary kind: one activation per identity in the cluster.
	StatelessWorkers int
}

// maxStatelessWorkers bounds Kind.StatelessWorkers: a call looks at every
// worker slot of an identity before it activates a new one.
const maxStatelessWorkers = 1024

// DefaultIdleTimeout is the idle timeout of a Kind whose IdleTimeout is zero.
const DefaultIdleTimeout = 5 * time.Minute

// Method describes one unary method of a Kind.
type Method struct {
	// Name is the full method name, "/package.Service/Method".
	Name string
	// NewRequest allocates an empty request message, to decode into.
	NewRequest func() proto.Message
	// ReadOnly marks a method that does not change state, from the
	// (protograin.v1.method).read_only option: its calls are neither
	// deduplicated nor followed by a flush.
	ReadOnly bool
	// Handle calls the method on grain, which was made by the Kind's New.
	Handle func(grain any, ctx GrainContext, req proto.Message) (proto.Message, error)
}
