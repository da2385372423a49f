// Package cluster runs grains on a cluster of nodes.
//
// A Node joins the cluster with serf gossip, advertises the grain kinds it
// hosts in its serf tags, and places every (kind, identity) pair on one
// alive member with rendezvous hashing. Calls travel over one long-lived
// bidirectional gRPC stream per pair of nodes, in batched frames; a call to a
// grain on the calling node skips the network and serialization. The owner
// activates a grain on its first call, runs it on an actor of package
// runtime (one call at a time, supervised), and passivates it after its
// kind's idle timeout.
//
// What a grain can rely on:
//
//   - One call at a time per activation, and one activation per grain on
//     each node: concurrent first calls activate it once.
//   - Not one activation per cluster at every instant. When membership
//     changes, members adopt the new view one gossip round apart, so for
//     that window (usually milliseconds) the old and the new owner may both
//     run the grain; the old one deactivates it as soon as its view
//     changes. State must be guarded by its store (ETag checks), not by
//     placement.
//   - At-least-once delivery when nodes fail: Invoke retries a call whose
//     owner failed before replying, within the call's deadline (see
//     WithoutRetry), so the call may have run on the failed node.
//   - No reentrancy, and no deadlock from it: a call to a grain that is
//     waiting in the chain of calls that led to it (A calls B, B calls A)
//     fails at once with ErrReentrant.
//
// The package owns membership, placement, the node-to-node transport, the
// activation table and passivation. It builds on package runtime for actors
// and supervision. It must not import generated grain code or examples
// (they import it). Grain state lives in cluster/storage and cluster/state,
// which do not import this package; loading and flushing state around
// activations is not wired in yet.
package cluster
