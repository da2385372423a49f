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
// The package owns membership, placement, the node-to-node transport, the
// activation table and passivation. It builds on package runtime for actors
// and supervision; the storage of grain state lives in cluster/storage.
// It must not import generated grain code, examples, or cluster/storage
// (storage is layered on top of the cluster, not the other way round).
package cluster
