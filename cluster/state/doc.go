// Package state is a grain's view of its durable state: a Buffer loaded from
// a storage.Store that holds changes as side effects until Flush commits
// them, all or none, with a version check (ActorFx's IActorState with
// Orleans-style ETags).
//
// # Reads, writes and flushes
//
// Get, TryGet and Keys read the state as the grain changed it: buffered Set
// and Remove calls are visible at once, the store sees nothing until Flush.
// Flush sends every buffered change in one storage.Store.Commit with the
// version the buffer loaded. If another activation of the same grain
// committed in between, the store refuses with storage.ErrConflict, nothing
// is written, and the buffer keeps its changes unflushed: this activation is
// stale, and its owner (the cluster) should deactivate it rather than retry.
// After any other failed Flush the changes stay buffered as well, but the
// commit may have happened (a database whose reply was lost): a later Flush
// then either commits them or fails with storage.ErrConflict, which tells.
// The cluster does not try: it deactivates the activation, and a retry of the
// call with the same stamp finds out. Discard drops what is buffered; with
// nothing buffered, Flush does not call the store at all.
//
// # Marks
//
// Mark notes what is buffered, and Rollback goes back to it, dropping only
// the changes, typed message and records buffered since. The cluster takes a
// mark when each call begins, so that a call that fails drops its own changes
// and keeps those of earlier calls still waiting for a manual flush. What a
// Flush committed since the mark stays committed.
//
// # The typed state message
//
// A grain whose kind names a typed state message keeps it, encoded, as one
// reserved entry: SetMessage buffers new bytes (bytes equal to the current
// ones buffer nothing), Message reads them, and Flush commits them with the
// other changes. Encoding is the caller's: this package sees only bytes. A
// caller whose encoding of the message it decoded differs from the stored
// bytes (fields of a newer version of the message, say, which it keeps but
// encodes in another place) makes that encoding the committed one with
// RebaseMessage, so that an unchanged message is no change to write.
//
// # Exactly-once calls
//
// A client that stamps its calls with (client ID, sequence number) can ask
// the grain, through Seen, whether a call already ran. The grain keeps, per
// client, a window of the replies to its latest recorded calls: the
// Config.WindowPerClient highest sequence numbers recorded (W below).
//
//   - seq recorded and still in the window: a retry; Seen returns that
//     call's reply, and the call must not run again;
//   - seq recorded unanswered (RecordUnanswered: a call that committed
//     changes while it ran, before its reply was known) and never given
//     its reply by Record: Seen returns ErrReplyLost, and the call must
//     not run again;
//   - seq below the window: W later calls of the client were recorded
//     since, or a call at or above seq was dropped from the window, so its
//     reply may be gone; Seen returns ErrStaleSequence;
//   - anything else (no record for the client, a seq above the window's
//     lowest, or a gap inside it): a new call; run it, then Record its
//     reply.
//
// Calls of one client may therefore run and commit in any order, as long
// as none is overtaken by W or more later calls that changed state: such a
// reordering is refused as stale. W must exceed the number of calls one
// client can have in flight to one grain at once. A client that calls in
// order loses nothing against keeping only its last reply: the next call is
// new, a retry of the last gets its reply, and so do retries of up to W-1
// calls before it.
//
// Records are buffered like state changes and committed in the same Flush,
// as one entry per client under ReservedPrefix holding its whole window, so
// a reply is durable exactly when the state changes of its call are. A reply
// sent before that Flush succeeded can be lost with its changes (the cluster
// does so only in manual flush mode). The entry is rewritten by every commit
// that records a call of its client: keep W, and replies, small.
//
// A grain remembers at most Config.MaxClients clients. When a Flush would
// leave more, it removes, in the same commit, the records of the clients
// whose last Record is oldest (ties broken by client ID); Seen does not
// count as use, so lookups never make the buffer dirty. The consequence: a
// client whose record was evicted and that then retries a call gets "new
// call" from Seen, and the call runs a second time. Set MaxClients above
// the number of clients that may retry calls to one grain.
//
// The cluster loads every grain with its node's cluster.Config.State, whose
// zero value means DefaultWindowPerClient and DefaultMaxClients; give every
// node of a cluster the same.
//
// # Keys
//
// Entry keys follow storage rules (non-empty, valid UTF-8, no NUL, at most
// storage.MaxNameLen bytes); keys starting with ReservedPrefix belong to this
// package and are refused with ErrReservedKey. Entries under ReservedPrefix
// that this version does not know are kept as they are.
//
// A Buffer is safe for concurrent use, though a grain normally uses it from
// one call at a time.
//
// This package must not import the cluster or runtime packages: the cluster
// builds on it, loading a Buffer on activation and flushing after calls.
package state
