package reminder

import (
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// id names one reminder: its grain and its name.
type id struct {
	grain storage.Key
	name  string
}

// entry is one reminder this node owns and schedules.
type entry struct {
	id id
	// stored is the reminder as this node last read or wrote it in the
	// store. Refresh compares it with the store to notice changes made by
	// other nodes.
	stored storage.Reminder
	// due is the due time being fired. It runs ahead of stored.Due when
	// saving the next due time after a firing failed.
	due time.Time
	// at is when the next attempt runs: due, or later while retrying.
	at time.Time
	// failures counts the failed attempts at firing due.
	failures int
	// storeWait is set while the entry waits in backoff after an attempt
	// that failed for the store (Config.StoreFailure): once a probe finds
	// the store working again, it is tried within ProbeEvery (see
	// storeWatch).
	storeWait bool
	// gen changes whenever the reminder is replaced or removed (see bump),
	// so a firing that started before can tell that its result no longer
	// applies.
	gen uint64
	// cancelFire cancels the context of the firing under way, from just
	// before Config.Fire is called until it returned; nil otherwise.
	cancelFire func()
	// index is the entry's position in the heap, or -1 when it is not in
	// the heap (it is being fired).
	index int
	// running is set while Config.Fire runs for the entry.
	running bool
	// gone is set when the entry left the schedule while it was running;
	// it then waits in Scheduler.leaving until the firing ends.
	gone bool
}

// bump raises e's generation, because the reminder was replaced or
// deleted: a firing under way must not record its outcome, and, if it has
// not reached the grain yet, must not deliver the old reminder: its
// context is cancelled (the grain would otherwise run OnReminder after its
// UnregisterReminder returned). Callers hold the Scheduler's mu.
func (e *entry) bump() {
	e.gen++
	if e.cancelFire != nil {
		e.cancelFire()
		e.cancelFire = nil
	}
}

// reminder returns the reminder to hand to Config.Fire.
func (e *entry) reminder() storage.Reminder {
	r := e.stored
	r.Due = e.due
	return r
}

// queue is a min-heap of entries by their next attempt, for container/heap.
type queue []*entry

func (q queue) Len() int { return len(q) }

func (q queue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }

func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index = i
	q[j].index = j
}

func (q *queue) Push(x any) {
	e := x.(*entry)
	e.index = len(*q)
	*q = append(*q, e)
}

func (q *queue) Pop() any {
	old := *q
	n := len(old) - 1
	e := old[n]
	old[n] = nil // let the entry go once it leaves the schedule
	e.index = -1
	*q = old[:n]
	return e
}
