// Package cluster runs grains on a cluster of nodes.
//
// A Node joins the cluster with serf gossip, advertises the grain kinds it
// hosts in its serf tags, and places every (kind, identity) pair on one
// alive member with rendezvous hashing. Calls travel over one long-lived
// bidirectional gRPC stream per pair of nodes, in batched frames; a call to a
// grain on the calling node skips the network and serialization. The owner
// activates a grain on its first call, runs it on an actor of package
// runtime (one call at a time, supervised), and passivates it after its
// kind's idle timeout, or when the grain calls Deactivate.
//
// What a grain can rely on:
//
//   - One call at a time per activation, and one activation per grain on
//     each node: concurrent first calls activate it once.
//   - Not one activation per cluster at every instant. When membership
//     changes, members adopt the new view one gossip round apart, so for
//     that window (usually milliseconds) the old and the new owner may both
//     run the grain; the old one deactivates it as soon as its view
//     changes, running nothing more of what is queued to it (calls are
//     placed again, one-way messages sent on to the new owner). State must
//     be guarded by its store (ETag checks), not by placement.
//   - At-least-once delivery when nodes fail: Invoke retries a call whose
//     owner failed before replying, within the call's deadline (see
//     WithoutRetry), so the call may have run on the failed node. For state,
//     exactly-once effects make up for it (below).
//   - A bounded queue: at most Config.MaxQueuedCalls calls (10,000 by
//     default) wait for one grain, those whose callers gave up at their
//     deadline included, as they stay in its mailbox until the grain
//     reaches them. Past it, a call fails at once with ErrMailboxFull
//     (codes.ResourceExhausted), locally and from another node, and is not
//     retried: a grain stuck in a turn, or slower than its callers, costs
//     the node a bounded amount of memory, however often they call again.
//     Node.Stats tells how many calls and one-way messages wait on a node,
//     and how many one-way messages it dropped.
//   - No reentrancy, and no deadlock from it: a call to a grain that is
//     waiting in the chain of calls that led to it (A calls B, B calls A)
//     fails at once with ErrReentrant.
//   - Across a network partition, by default, each side places the other
//     side's grains on itself, so a grain called on both sides runs on
//     both until the partition heals (its durable state refuses the second
//     commit). Config.KeepMajority opts into split-brain protection: only
//     the side that sees a majority of the members serves (on an even
//     split, the half with the member whose name sorts first, and failed
//     members count against a majority until they come back); the other
//     side's nodes own nothing and fail calls with ErrNoQuorum (Node.Fenced
//     reports it, for a readiness probe); and a failed member's grains
//     move only after Config.DownAfter, once the other side had time to
//     see the partition and stand down (a node that starts meanwhile,
//     whose gossip does not take in the failed members, serves nothing
//     for DownAfter, unless they come back first). It is a vote of each node
//     on its own view, not agreement among the nodes. A node that joins
//     through fenced members only would hear of their side alone and count a
//     majority of its own: the fenced members do not take it in, and its
//     Start fails with ErrNoQuorum, until the partition heals or it joins
//     through a member of the majority. A seed that has not yet fenced itself
//     (the failure detector takes seconds) still lets a joiner in, and a node
//     restarted under a name the fenced side knows is taken back, and starts
//     if it gives that side a majority; one that comes under a new name is
//     not, so nodes with KeepMajority need fixed names.
//
// # Durable state
//
// Each activation loads its grain's state from Config.Store before the
// grain's OnActivate runs, and the grain reads and changes it through
// GrainContext.State (entries, plus the typed message of kinds that set
// Kind.NewState). Reads see buffered writes. A call that returns an error
// (or panics) leaves no change: the changes it buffered are dropped and the
// typed message is restored, while those of earlier calls still waiting for
// a manual flush stay (what the grain flushed itself stays committed). After a call that changed state, in
// FlushAfterCall mode (the default), every change is committed atomically
// before the reply is sent; in FlushManual mode, only when the grain calls
// State().Flush. Deactivation commits what is left, in both modes; a
// passivation commits it before OnDeactivate, and keeps the grain active
// while the store refuses that commit, rather than drop it. Every
// commit checks the version the activation loaded: if another activation
// committed first (two nodes both ran the grain during a membership
// change; a FlushManual grain that moves to a member that joins, or from
// one that leaves gracefully, is loaded by its new owner only once its old
// owner committed it, see the architecture doc's "Moves wait for the old
// owner's release"), the commit is refused, the call fails with ErrStaleActivation
// (codes.Aborted), and the activation is deactivated; the next call loads
// the winner's state. Any other commit failure fails the call with
// ErrStateUnavailable (codes.Unavailable) and deactivates the activation
// too, unless the store said that it committed nothing: the error then
// wraps storage.ErrNotCommitted as well, the call had no effect on state,
// and the activation lives on. A state that cannot be loaded fails the
// activating call with ErrStateUnavailable; a stored typed state message
// that does not decode as the kind's message (written by an incompatible
// version of it, or damaged) fails it with ErrStateUndecodable
// (codes.FailedPrecondition), which no retry mends, and is left as stored.
//
// # Exactly-once calls
//
// Every call carries a stamp, (client ID, sequence number): by default the
// calling node's Config.ClientID and a per-node counter, fixed before the
// first attempt so that Invoke's retries reuse it; WithCallID pins it. For a
// method that is not ReadOnly, the grain keeps the replies of each client's
// latest calls that changed its state (package cluster/state explains the
// window and the bound on clients) and commits each reply in the same
// commit as the call's changes. A call whose stamp the grain recorded gets
// the recorded reply without running again, also after the grain moved to
// another node; one below the client's window fails with ErrStaleCall
// (codes.FailedPrecondition), and so does one that flushed its changes
// itself (State().Flush) and whose reply was lost before it was recorded
// after the call: it ran. A call that changed nothing is not recorded:
// running it again is harmless to state. ReadOnly methods are neither
// deduplicated nor followed by a commit, and calls that change nothing, like
// them, never touch the store.
//
// A grain's calls to other grains are stamped from the stamp of the call it
// is handling, the calling grain and their order, so a call that runs again
// repeats its inner stamps and the callees do not apply them twice.
//
// # One-way messages
//
// Send (a *Node's, a GrainContext's, or the function Send over any Caller)
// delivers a call without waiting for it to run: it returns once the
// message is handed over, queued in the grain's mailbox when this node owns
// the grain, or in the stream to the owner (a request frame marked one-way,
// batched with the others, which gets no reply). Generated clients use it
// for methods marked (protograin.v1.method).one_way, which return
// google.protobuf.Empty. What a sender can rely on:
//
//   - At most once: a one-way message carries no stamp, is never
//     deduplicated, and is never retried once handed over. A message queued
//     for a node that fails, or behind a grain that fails past its restart
//     limit, is lost. A node that leaves with Shutdown loses none: it
//     passes on what reaches it until every peer has said it sends no
//     more, and only then ends its streams (see Node.Shutdown); a stream
//     dialed to it after that is refused before anything is sent on it,
//     and Send places the message again by a newer view, or returns
//     ErrUnavailable. A peer that has not heard of the leave within two
//     seconds is the exception: what it sends later is lost, and so is what
//     the leaver still holds then (its forwards of what reached it). A
//     message from a peer that finds Config.MaxQueuedOneWay messages
//     waiting for its grain (in its mailbox, or for its activation) is
//     dropped, and counted in the owner's log; so is one that a node
//     forwards when Config.MaxPendingBytes of forwards wait for the
//     owner's stream already. The messages from a peer that wait for an
//     activation that fails (a store that is down) are dropped with the
//     one that tried it, with one log line; later ones try again. So are
//     those behind an activation whose OnActivate (or Kind.New, or the
//     store's Load) called runtime.Goexit, which fails it as a panic does.
//     Such lines are written a second at most, and the sweep counts the
//     rest.
//   - Order: messages from one node to one grain run in the order they
//     were sent, as long as the grain's owner does not change. (Messages
//     sent from several goroutines have no order to keep.) Messages that
//     reach a grain as it deactivates, behind its OnDeactivate, are sent on
//     to its next activation in their order, but may run after messages
//     sent later, which went there directly.
//   - The first message to an identity activates the grain, as a call does;
//     Send on the owner waits for that activation, within ctx or the
//     default call timeout. On an owner that received it from a peer, it
//     and the peer's later messages to that grain wait for the activation
//     in a lane of the grain's, without holding up the peer's messages to
//     other grains.
//   - Send fails only when it cannot hand the message over: no alive member
//     hosts the kind, or this node hosts the kind and it has no such method
//     (codes.Unimplemented); a missing or unencodable request, or
//     WithCallID (codes.InvalidArgument); ctx ended; the owner unreachable;
//     the node closed; on the owner's node, Config.MaxQueuedOneWay
//     messages waiting for the grain already (ErrMailboxFull,
//     codes.ResourceExhausted).
//   - While members join and leave, views of them differ for a moment. A
//     message that finds its grain moved away while it waited for an
//     activation on the sending node is placed again. A node that receives
//     a message for a grain it does not own forwards it once, to the owner
//     it sees; a node that is leaving forwards a forwarded message on,
//     four hops in all at most (two members leaving at once pass each
//     other what reaches them), and skips every peer that said it is
//     leaving. A peer that says so on a stream, or refuses one as closing,
//     is leaving in the node's view at once, before the gossip brings the
//     leave. A forward that the owner takes no stream for (it has left,
//     though this node's view does not say so yet) goes once more, to the
//     owner without it; if that is this node, which stays, it waits for a
//     newer view, as long as the failure detector may take, and places the
//     message again by it. A node that does not own the grain of a
//     forwarded message waits up to two seconds for a view in which it
//     does (the forwarder may know first: a node that leaves does), and so
//     does one whose grain moved away while the message waited for an
//     activation. If none comes, its view is rather ahead of the
//     forwarder's (two members joined at once, and it knows of one the
//     forwarder did not): it forwards the message once more, to the owner
//     it sees, unless that is the node it came from or the message had its
//     four hops; otherwise it drops it with a log line, as an owner does a
//     message it cannot deliver (an unknown method, a payload that does not
//     decode).
//   - The grain runs the message like a call, under the owner's
//     DefaultCallTimeout from when it starts: its state changes are
//     committed as after a call (FlushAfterCall), the error it returns is
//     logged by the owner, and a panic is logged and supervised as for a
//     call. A message whose commit is refused because another activation
//     of the grain committed first (ErrStaleActivation: two nodes ran the
//     grain while their views differed) committed nothing: it runs again
//     on the grain's next activation, on the winner's state, where a call
//     would fail to its caller. What it did beyond state (messages it sent,
//     calls it made) may then happen twice; a message that committed
//     something itself (a Flush of its own) is not run again.
//
// # Reminders
//
// A grain that implements ReminderReceiver registers durable reminders with
// RegisterReminder. They are kept in Config.Store; each node fires those of
// the grains it owns (package cluster/internal/reminder), re-reading the
// store on every membership change, so reminders survive restarts and move
// with their grain. They fire at least once, from the owner only except
// while ownership moves. StartTimer's timers are their in-memory
// counterpart: they tick on the grain while it is active, and end with the
// activation.
//
// docs/state.md states all of this from a user's point of view, with what
// is not guaranteed.
//
// # Securing a cluster
//
// By default any host that reaches a member's gossip port may join, and
// nodes talk in the clear. Config.GossipKeys encrypts and authenticates
// the gossip with keys every member shares, and Config.TLS runs the
// transport between nodes over TLS (MutualTLS makes a mutual one from PEM
// files). Node.ChangeGossipKey changes the gossip key of every member
// while the cluster runs; MutualTLS takes renewed certificates and changed
// CAs from their files. Config.ClusterName keeps clusters on one network apart, but
// keeps nobody out.
//
// The package owns membership, placement, the node-to-node transport, the
// activation table, passivation, and the wiring of state, exactly-once calls
// and reminders into activations and calls. It builds on package runtime
// for actors and supervision, cluster/storage and cluster/state for state,
// and cluster/internal/reminder for reminders; none of them imports it. It
// must not import generated grain code or examples (they import it).
package cluster
