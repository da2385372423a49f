// Package runtime is Protograin's actor runtime: actor references, lock-free
// mailboxes with a system-message lane processed first, dispatch of one
// message at a time, request/response with context deadlines, supervision
// (OneForOne and AllForOne with restart limits and exponential backoff),
// lifecycle messages, watches, timers owned by an actor and dead letters.
//
// The package knows nothing about the cluster, protobuf or gRPC, and must not
// import github.com/protograin/protograin/cluster, google.golang.org/protobuf
// or google.golang.org/grpc: the cluster builds on the runtime, never the
// other way round. It imports the standard library and this module's
// internal packages only (TestImports checks).
//
// # Actors and scheduling
//
// An actor is spawned from Props and addressed through a *Ref. Messages sent
// to a Ref are appended to the actor's mailbox, a pair of lock-free
// multi-producer single-consumer queues: one for system messages (stop,
// watch, supervision, lifecycle) and one for user messages. A sender that
// moves the actor from idle to scheduled with a compare-and-swap starts a
// turn on one of the System's worker goroutines (an idle worker is reused,
// so a turn rarely pays for a new goroutine and its stack growth). The turn
// handles the queued messages, system messages first, until the mailbox is
// empty; every Props.Throughput user messages it yields the processor to
// other goroutines (runtime.Gosched) and carries on with the same actor. A
// Request whose context can never end (its Done is nil) runs the turn of an
// idle actor on the caller's goroutine instead, since its caller would
// only wait for the reply; so does RequestInline, for a caller that
// accepts to return late should the handler outlive its context. For the
// actor nothing changes: one message at a time, system messages first, the
// same supervision. But that turn ends with the caller's request, or after
// Props.Throughput user messages: the caller handles what is ahead of its
// request, as a worker would before answering it (system messages first,
// even those that arrive meanwhile), and a worker takes whatever is left
// once the request is handled, system messages included (a stop or a
// restart that the handler caused, a *Terminated). So the caller returns
// once its handler has, and runs nothing that comes after it; the one
// exception is the panic of a top-level actor's handler, whose root
// supervisor decides on the goroutine that ran it (see Config.Supervisor),
// after the caller's *PanicError is set. When the mailbox is empty the
// actor goes idle and re-checks its queues, so no wake-up is lost. The
// queues recycle their nodes, so a send allocates nothing; Context.Send,
// for sending from inside an actor, reuses the nodes the actor's own turn
// freed and is the cheapest send; a Batch, for a goroutine that delivers
// messages in bursts (a network reader), queues a run of messages for one
// actor with a single push. An idle actor holds no
// goroutine: it costs its Ref and its Actor value (about 270 bytes of heap
// on amd64 with a small Actor; TestIdleActorMemory reports the figure).
//
// Config and Props are plain structs whose zero fields mean documented
// defaults. The runtime keeps no package-level mutable state: everything
// lives in a System, and a test can inject a Clock and the random source of
// a strategy's backoff jitter.
//
// # Lifecycle
//
// Receive sees *Started before any other message, *Restarting on the old
// instance before a restart (the new instance then sees *Started), *Stopping
// when the actor begins to stop and *Stopped as its last message. A watcher
// receives *Terminated when a watched actor has stopped. All lifecycle
// messages are pointers to structs.
//
// # Stopping
//
// Ref.Stop is abrupt: the actor stops after its current message and whatever
// is still queued becomes dead letters. Ref.GracefulStop first processes the
// messages queued before it. Both are idempotent and return the Done channel.
// A stopping actor stops its children and waits for them before it delivers
// *Stopped. System.Shutdown stops every actor gracefully and waits;
// System.Close stops them abruptly.
//
// # Requests that wait for each other
//
// An actor handles one message at a time, so a request that waits, inside
// a turn, for a reply that needs that same turn to end never gets one: a
// request from an actor to itself; a parent that asks a child which waits
// for the parent's supervision decision; a root Decider that asks the
// actor whose failure it is deciding. Give such requests a context with a
// deadline (they then fail with it), or send instead of asking. The
// cluster's grain calls detect the cycles among grains (see the cluster
// package); the runtime does not.
//
// # Failures and supervision
//
// A panic in Receive is recovered at the actor boundary and becomes a
// *Failure. If the actor was handling a Request, the caller at once gets a
// *PanicError (errors.Is(err, ErrPanic)), before the supervisor decides and
// before any restart, whether a worker or the caller ran the turn (a
// caller running a top-level actor's turn returns once the root strategy
// has decided, on its goroutine; see Config.Supervisor). The actor is
// suspended and its parent's SupervisorStrategy (Props.Supervisor of the
// parent, or Config.Supervisor for actors spawned by System.Spawn) chooses
// a Directive. A handler that calls runtime.Goexit (t.FailNow in a test,
// or a library's) fails the same way, with ErrGoexit for the panic value:
// the goroutine that ran the turn ends, a worker's or a Request's caller's
// (that Request never returns), and a new one carries on with the actor.
// A Decider that panics or calls runtime.Goexit escalates the failure
// (StrategyConfig.Rand too); a Goexit there ends the goroutine running
// the supervisor's turn (for a top-level actor, the failing actor's), and
// a new one escalates and carries on with it. In Props.New called by
// Spawn, or a Middleware composed by it, a Goexit ends Spawn's caller and
// spawns nothing. A Clock and a Logger must neither panic nor call
// runtime.Goexit: the runtime calls them outside any handler, where a
// panic ends the program and a Goexit may leave an actor's turn
// unfinished for good.
//
// On Restart, the old instance gets *Restarting, its timers are cancelled,
// its children are stopped (the new instance starts without children, and
// the message that failed is not delivered again), Props.New is called and
// the new instance gets *Started.
//
// Each failure a supervisor handles leaves one line in Config.Logger,
// "runtime: actor failed", at Warn, with the directive and the panic's
// stack; StrategyConfig.QuietFailures moves it to Debug, for code that
// reports its actors' failures itself. Some outcomes add a line: a Decider
// that panics or calls runtime.Goexit, or a Rand that does (at Error; the
// failure is escalated), a failure that exhausts
// StrategyConfig.MaxRestarts (at Warn, whatever QuietFailures says; the
// failure is escalated), and a failure escalated past the root (at Error;
// the actor stops). A panic that no supervisor handles leaves one line at
// Error, without the stack: in a *Restarting, *Stopping or *Stopped
// handler, or anywhere while the actor is stopping.
//
// # Dead letters
//
// Messages that cannot be delivered (the actor has stopped, a bounded
// mailbox is full, a timer fired into a full mailbox) are published as
// DeadLetter values to the channels registered with
// System.SubscribeDeadLetters. Publishing never blocks: a subscriber whose
// channel is full misses the letter, and System.DroppedDeadLetters counts it.
package runtime
