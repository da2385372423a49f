// Package boltstore is an embedded storage.Store: one file on local disk, no
// server, ACID transactions, built on go.etcd.io/bbolt. Only one process can
// open the file, so it suits a cluster that is one process; nodes in several
// processes need a shared store such as pgstore.
//
// Why bbolt and not Pebble: a node writes the state of the grains it owns,
// one commit per flush, so bbolt's single writer is not the bottleneck a
// log-structured store is built to remove; its transactions give the version
// check and the all-or-nothing commit directly, with no write-ahead log or
// compaction to tune; it is pure Go with a tiny dependency tree; and etcd
// keeps it well maintained. Pebble pays off for write-heavy stores far larger
// than the state of one node's grains.
//
// Group commit: the writes that wait at once (commits, reminders) share one
// write transaction and one sync of the file, each checked and applied on
// its own, so one commit's conflict fails only that one. A lone write waits
// for nobody. Sixteen goroutines committing at once got seven times the
// commits a second of one here (docs/benchmarks.md).
//
// Layout inside the file: bucket "grains" holds one nested bucket per grain,
// keyed by the grain's kind (length-prefixed) then identity, with the grain's
// entries; bucket "versions" maps the same grain key to its version (8 bytes,
// big-endian); bucket "reminders" maps kind, identity (both length-prefixed)
// and name to the due time and period; bucket "meta" records the layout
// version. Length prefixes keep distinct grains apart however their names
// look ("a" + "b/c" versus "a/b" + "c"), and let ListReminders scan one kind
// by prefix.
//
// bbolt locks the file: a second Open of the same file, from this process or
// another, fails with ErrLocked after Config.LockTimeout.
//
// A damaged file gives errors wrapping ErrCorrupt, not panics: see Store for
// what the store does after bbolt panicked on a damaged page, and
// ListReminders for the reminder records it skips.
//
// It must not import the cluster or runtime packages.
package boltstore
