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
//   - Missed periods collapse into one firing: after a periodic reminder
//     fired, its next Due is Due+Period, or, if that is not in the future
//     any more (the node was down, Fire was slow or kept failing), the first
//     Due+k·Period that is.
//   - A failed Fire (a non-nil error) is retried after Config.RetryBackoff,
//     doubling up to Config.RetryBackoffMax, for as long as this node owns
//     the grain. The store is not touched until a Fire succeeds.
//
// # Registering and ownership
//
// Register saves a reminder, replacing one of the same grain and name, and
// schedules it when this node owns the grain; Unregister deletes it. A
// listing re-lists every hosted kind from the store and makes the local
// schedule match: reminders of grains this node now owns are added, those
// it no longer owns are dropped, and those changed or deleted in the store
// by another node are updated. Register, Unregister and the store write
// after a firing are serialized with listings, so a listing never undoes a
// change this node made while it listed.
//
// Start asks for the first listing, and Relist, called when ownership may
// have moved, for another; neither waits for the store. The scheduler
// lists on a goroutine of its own, one listing at a time: the requests
// made while one runs are served by one listing after it, which asks
// Config.Owns afresh. Each listing has Config.ListTimeout. A kind whose
// listing fails (a store that is down, or holds a record of the kind that
// cannot be read) keeps its part of the schedule as it was, while the
// other kinds are updated, and is listed again with backoff
// (Config.ListRetryBackoff) until its listing succeeds; failures are
// logged. Refresh lists at once and returns when done, without retrying.
//
// While ownership moves, two nodes may briefly both believe they own a grain
// and both fire its reminder; that is allowed by "at least once". The store
// holds one record per reminder, so the last writer wins.
//
// This package must not import the cluster or runtime packages: the cluster
// node builds on it. It uses only the storage package of protograin.
package reminder
