package boltstore

import (
	"context"
	"encoding/binary"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/internal/storeutil"
)

// Group commit.
//
// bbolt has one writer, and a write transaction syncs the file when it
// commits, so writes in transactions of their own wait for a sync each, one
// after the other: as many commits a second from sixteen callers as from one
// (docs/benchmarks.md, "Grain state stores side by side"). A node commits
// many grains at once, each after its own calls, and completes the
// reminders that fire together, so every write hands itself to the store's
// committer, a goroutine that applies every write waiting when it is free in
// one transaction, with one sync. A lone write waits for no company: the
// committer starts a group as soon as it holds one write, and the writes
// that arrive while it syncs make the next group. (bbolt's own Batch waits
// up to 10 ms for company, which a lone caller would pay on every commit,
// and runs its callers' functions again after any error, which Commit's
// conflict, an expected outcome, would cause.)

// maxGroup is the most writes one transaction applies: enough to share a
// sync among every grain a busy node commits at once, few enough to keep a
// transaction's dirty pages in bounds.
const maxGroup = 256

// pending is a write waiting for the committer.
type pending struct {
	ctx context.Context
	// check, if not nil, decides without writing whether the write may be
	// applied; its error is the write's outcome, and leaves the
	// transaction fit for the group's other writes.
	check func(tx *bolt.Tx) error
	// apply makes the write's changes. Its error may come after some of
	// them, so the group's transaction must then be rolled back. apply may
	// run twice (see commitGroup), so it sets what it reports afresh.
	apply func(tx *bolt.Tx) error
	// done receives the write's outcome; it has room for it, so the
	// committer never waits for the caller.
	done chan error
	// state says whether the committer took the write (taken) or its
	// caller, whose context ended first, withdrew it (withdrawn). Whichever
	// of the two sets it first decides.
	state atomic.Int32
}

// The states of a pending write.
const (
	queued int32 = iota
	taken
	withdrawn
)

// write hands a write to the committer and waits for its outcome: an error
// wrapping storage.ErrNotCommitted if ctx ended before the committer took
// it (write then returns at once: a stalled disk does not hold a caller
// past its deadline) or before its turn in its group came, else check's
// error or apply's, or the group's (see commitGroup). Once the committer
// took it, write waits for its outcome whatever ctx does, as the write may
// then commit.
func (s *Store) write(ctx context.Context, check, apply func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock() // so Close waits for the outcome
	if err := s.usable(true); err != nil {
		return err
	}
	w := &pending{ctx: ctx, check: check, apply: apply, done: make(chan error, 1)}
	select {
	case s.writes <- w:
	case <-ctx.Done():
		return storeutil.NotStarted(ctx.Err())
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		if w.state.CompareAndSwap(queued, withdrawn) {
			return storeutil.NotStarted(ctx.Err())
		}
		return <-w.done
	}
}

// take adds w to group unless its caller withdrew it.
func take(group []*pending, w *pending) []*pending {
	if w.state.CompareAndSwap(queued, taken) {
		group = append(group, w)
	}
	return group
}

// runCommitter is the committer: it takes the writes waiting on s.writes,
// up to maxGroup at a time, applies each group in one transaction and tells
// each write its outcome, until Close closes s.writes.
func (s *Store) runCommitter() {
	defer close(s.committerDone)
	group := make([]*pending, 0, maxGroup)
	for w := range s.writes {
		group = take(group[:0], w)
	gather:
		for len(group) < maxGroup {
			select {
			case w, ok := <-s.writes:
				if !ok {
					break gather
				}
				group = take(group, w)
			default:
				break gather
			}
		}
		if len(group) == 0 {
			continue
		}
		for i, err := range s.commitGroup(group) {
			group[i].done <- err
		}
		clear(group) // let the finished writes' changes go
	}
}

// commitGroup applies group in one transaction and returns the outcome of
// each write. A write refused before it wrote anything (its context ended,
// its check failed) gets its error while the others commit. A write that
// fails after it began writing may have left part of itself in the
// transaction, which must then be rolled back: the others did not fail, so
// each is tried again in a transaction of its own. A panic of bbolt (a
// damaged page) or a failed sync fails the whole group, which committed
// nothing.
func (s *Store) commitGroup(group []*pending) []error {
	outcomes := make([]error, len(group))
	if err := s.refused(true); err != nil {
		for i := range outcomes {
			outcomes[i] = err
		}
		return outcomes
	}
	s.groups.Add(1)
	failed := false
	err := s.guarded(true, s.db.Update, func(tx *bolt.Tx) error {
		for i, w := range group {
			if outcomes[i] = w.ctx.Err(); outcomes[i] != nil {
				outcomes[i] = storeutil.NotStarted(outcomes[i])
				continue
			}
			if w.check != nil {
				if outcomes[i] = w.check(tx); outcomes[i] != nil {
					continue
				}
			}
			if err := w.apply(tx); err != nil {
				failed = true
				return err
			}
		}
		return nil
	})
	switch {
	case err == nil:
		return outcomes
	case failed && len(group) > 1:
		for i, w := range group {
			outcomes[i] = s.commitGroup([]*pending{w})[0]
		}
		return outcomes
	}
	for i := range outcomes {
		outcomes[i] = err
	}
	return outcomes
}

// checkVersion is the check of a commit to grain gk (key) that expects
// version expected.
func checkVersion(tx *bolt.Tx, key storage.Key, gk []byte, expected storage.Version) error {
	stored, err := readVersion(tx, gk)
	if err != nil {
		return err
	}
	if stored != expected {
		return storeutil.Conflict(key, expected, stored)
	}
	return nil
}

// writeCommit writes effect and version next to grain gk in tx.
func writeCommit(tx *bolt.Tx, gk []byte, effect storeutil.Coalesced, next storage.Version) error {
	grains, err := topBucket(tx, bucketGrains)
	if err != nil {
		return err
	}
	if err := applyEntries(grains, gk, effect); err != nil {
		return err
	}
	versions, err := topBucket(tx, bucketVersions)
	if err != nil {
		return err
	}
	return versions.Put(gk, binary.BigEndian.AppendUint64(nil, uint64(next)))
}
