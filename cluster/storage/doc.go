// Package storage defines where grain state lives: the Store interface that
// loads a grain's entries with their version and commits changes atomically
// with a version check (an ETag), plus durable reminders.
//
// A grain, named by a Key (kind and identity), owns a set of entries: string
// keys mapped to byte values. Every successful Commit raises the grain's
// version by exactly one, and a Commit whose expected version is not the
// stored one fails with ErrConflict and changes nothing. That is what keeps a
// stale duplicate activation from overwriting newer state: it loaded an older
// version, so its commit is refused.
//
// Versions never go back. Removing a grain's last entry keeps the grain's
// version record, so Load then returns no entries and a non-zero version.
// Dropping the record would reset the version to zero and let an activation
// that loaded the empty state long ago commit again; the price is one small
// record per grain that was ever written.
//
// Implementations: memstore (in memory, for tests; a cluster node without a
// configured store uses a private one), boltstore (an embedded single-file
// store, for a cluster that is one process), pgstore (PostgreSQL, for
// clusters of several processes) and redisstore (Redis, for the same). The
// storagetest package holds the
// conformance suite every Store must pass; a user's own Store should run it
// too. Of ErrNotCommitted, which saves the cluster an activation when a
// commit fails, it asks only what every store can tell: a context done
// before the call.
//
// The change buffer that grains use (Get/Set/Remove then Flush) is in package
// state, built on this interface.
//
// This package must not import the cluster or runtime packages: it is the
// base they build on, and stores must stay usable without a cluster.
package storage
