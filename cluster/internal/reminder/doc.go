// Package reminder fires the durable reminders of the grains a node owns. A
// Scheduler per node lists the reminders of the kinds the node hosts from a
// storage.Store, keeps the ones whose grain this node owns in a min-heap
// ordered by due time, and hands each one to Config.Fire when it is due. The
// node decides what firing means (activate the grain, deliver the reminder)
// and what owning means (placement); this package only keeps time and the
// store.
//
// # When a reminder fires
//
//   - At its Due time, or soon after: one timer for the whole heap, so many
//     reminders cost a heap slot each, not a goroutine or a timer. Timing is
//     not precise; a busy node, a slow Fire or Config.MaxConcurrentFires can
//     delay a firing.
//   - Only if Config.Owns still says this node owns the grain at fire time.
//     If not, the reminder is dropped locally (it stays in the store), and
//     the owner's next listing picks it up.
//   - At least once, not exactly once. A periodic reminder's next Due is
//     saved to the store only after Fire returned nil, so a crash between
//     the two fires it again after the restart. A one-shot reminder (zero
//     Period) is deleted from the store after Fire returned nil, with the
//     same consequence. If that save or delete fails, the failure is logged
//     and the firing may repeat after the next listing.
//   - The write after a firing is conditional (storage.Store's
//     CompleteReminder): it applies only if the store still holds the
//     reminder that fired. A reminder that was unregistered or replaced
//     meanwhile, here or on another node, stays as that change left it; the
//     entry then leaves the schedule, and the next listing schedules what
//     the store holds.
//   - A firing under way is cancelled when its reminder is unregistered or
//     replaced on this node, or a listing finds it deleted or changed:
//     Config.Fire sees its context end, and the firing is neither retried
//     nor logged as failed.
//   - Missed periods collapse into one firing: after a periodic reminder
//     fired, its next Due is Due+Period, or, if that is not in the future
//     any more (the node was down, Fire was slow or kept failing), the first
//     Due+k·Period that is.
//   - A failed Fire (a non-nil error) is retried after Config.RetryBackoff,
//     doubling up to Config.RetryBackoffMax, for as long as this node owns
//     the grain, or sooner once the store works again if it failed for
//     the store (see below). The store is not touched until a Fire
//     succeeds.
//
// # When the store fails
//
// A Fire that failed for the store (Config.StoreFailure says so: the
// grain's state could not be loaded or saved) and a listing that failed
// wait in backoff as any failure does, but they also make the scheduler
// probe the store: it lists the reminders of a kind no grain has, which
// reads nothing but needs a working store. While the probe fails, it is
// made again every Config.ProbeEvery (a second by default); once a probe
// that follows a failed one succeeds, the store is back, and every firing
// and listing that waits for it is tried again within ProbeEvery, at a
// random moment, rather than at the end of a backoff that a long outage
// stretched to a minute. The random spread, and Config.MaxConcurrentFires,
// keep a store that just came back from meeting them all at once.
//
// Only an outage the probe saw begin and end does that. A firing that
// failed for its grain (an error of its own, a panic, an owner that cannot
// be reached) keeps its backoff, as does one that failed for the store
// while a probe finds the store working: the grain's record alone may be
// unreadable, or locked, which a working store says nothing about, and
// trying it again at each sign of life of the store would try it without
// backoff. For the same reason the probe runs at most once per
// ProbeEvery. A firing or listing that was under way when the store came
// back and failed then is tried again within ProbeEvery too: it met the
// store as it was before.
//
// # Registering and ownership
//
// Register saves a reminder, replacing one of the same grain and name, and
// schedules it when this node owns the grain; Unregister deletes it. A
// listing re-lists every hosted kind from the store and makes the local
// schedule match: reminders of grains this node now owns are added, those
// it no longer owns are dropped, and those changed or deleted in the store
// by another node are updated. No lock is held across a call to the store:
// Register, Unregister and firings never wait for a listing. A listing
// never undoes a change this node made while it listed: the scheduler
// notes its own store writes per reminder, and a listing leaves alone the
// reminders with a write in flight, or one that ended after the listing
// started; where what it read of them disagrees with the schedule, it asks
// for another listing, after the write. Of two listings of one kind, one
// that ends after a listing that started later is not applied.
//
// Start asks for the first listing, and Relist, called when ownership may
// have moved, for another; neither waits for the store. Each hosted kind
// is listed on a goroutine of its own, each kind within its own
// Config.ListTimeout, and its part of the schedule is updated as soon as
// its listing ends, so a kind whose listing hangs holds up no other. The
// requests made while a kind is listed are served by one listing of it
// after that one, which asks Config.Owns afresh. A kind whose listing
// fails (a store that is down, or holds a record of the kind that cannot
// be read) keeps its part of the schedule as it was, and is listed again
// with backoff (Config.ListRetryBackoff) until its listing succeeds, or
// sooner once the store works again (see below); failures are logged. Refresh lists at once and returns when done,
// without retrying.
//
// Another node's store write can land after this node's listing for the
// change that prompted it: a node that leaves deactivates its grains after
// the others saw it leave, and their hooks may register and unregister
// reminders; and a node that joins takes grains whose old owners, whose
// views may not have it yet, still end calls on them that may do the same.
// RelistAfter asks for a listing once such writes are over (the cluster
// calls it when a member left its view, and when it joined); and the
// scheduler lists by itself Config.RelistEvery (five minutes by default)
// after the last listing asked for, as anti-entropy.
//
// Stop ends the firing: it cancels the Fires under way, and waits for the
// store writes after firings as long as its context lasts, then cancels
// them too. Close stops at once, without waiting for those writes.
//
// While ownership moves, two nodes may briefly both believe they own a grain
// and both fire its reminder; that is allowed by "at least once". The store
// holds one record per reminder, so the last writer wins.
//
// This package must not import the cluster or runtime packages: the cluster
// node builds on it. It uses only the storage package of protograin.
package reminder
