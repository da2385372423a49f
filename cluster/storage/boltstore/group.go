package boltstore

import (
	"context"
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/internal/storeutil"
)

// Group commit.
//
// bbolt has one writer, and a write transaction syncs the file when it
// commits, so commits in transactions of their own wait for a sync each, one
// after the other: as many commits a second from sixteen callers as from one
// (docs/benchmarks.md, "Grain state stores side by side"). A node commits
// many grains at once, each after its own calls, so Commit hands its write to
// the store's committer, a goroutine that applies every commit waiting when
// it is free in one transaction, with one sync. A lone commit waits for no
// company: the committer starts a group as soon as it holds one commit, and
// the commits that arrive while it syncs make the next group. (bbolt's own
// Batch waits up to 10 ms for company, which a lone caller would pay on every
// commit, and runs its callers' functions again after a failure, which
// Commit's conflict, an expected outcome, would cause.)

// maxGroup is the most commits one transaction applies: enough to share a
// sync among every grain a busy node commits at once, few enough to keep a
// transaction's dirty pages in bounds.
const maxGroup = 256

// pending is a commit waiting for the committer.
type pending struct {
	ctx      context.Context
	key      storage.Key
	gk       []byte
	expected storage.Version
	effect   storeutil.Coalesced
	// done receives the commit's outcome; it has room for it, so the
	// committer never waits for the caller.
	done chan error
}

// commit hands c to the committer and waits for its outcome. The caller holds
// s.mu for reading, so Close waits for it and the committer is running.
func (s *Store) commit(c *pending) error {
	c.done = make(chan error, 1)
	s.commits <- c
	return <-c.done
}

// runCommitter is the committer: it takes the commits waiting on s.commits,
// up to maxGroup at a time, applies each group in one transaction and tells
// each commit its outcome, until Close closes s.commits.
func (s *Store) runCommitter() {
	defer close(s.committerDone)
	group := make([]*pending, 0, maxGroup)
	for c := range s.commits {
		group = append(group[:0], c)
	gather:
		for len(group) < maxGroup {
			select {
			case c, ok := <-s.commits:
				if !ok {
					break gather
				}
				group = append(group, c)
			default:
				break gather
			}
		}
		for i, err := range s.commitGroup(group) {
			group[i].done <- err
		}
		clear(group) // let the finished commits' changes go
	}
}

// commitGroup applies group in one transaction and returns the outcome of
// each commit. A commit refused before it wrote anything (its context ended,
// its version conflicts, its version record is damaged) gets its error
// while the others commit. A commit that fails after it began writing may
// have left part of itself in the transaction, which must then be rolled
// back: the others did not fail, so each is tried again in a transaction of
// its own. A panic of bbolt (a damaged page) or a failed sync fails the whole
// group, which committed nothing.
func (s *Store) commitGroup(group []*pending) []error {
	outcomes := make([]error, len(group))
	if err := s.refused(true); err != nil {
		for i := range outcomes {
			outcomes[i] = err
		}
		return outcomes
	}
	s.groups.Add(1)
	failed := -1
	err := s.guarded(true, s.db.Update, func(tx *bolt.Tx) error {
		for i, c := range group {
			if outcomes[i] = checkCommit(tx, c); outcomes[i] != nil {
				continue
			}
			if err := writeCommit(tx, c); err != nil {
				failed = i
				return err
			}
		}
		return nil
	})
	switch {
	case err == nil:
		return outcomes
	case failed >= 0 && len(group) > 1:
		for i, c := range group {
			outcomes[i] = s.commitGroup([]*pending{c})[0]
		}
		return outcomes
	}
	for i := range outcomes {
		outcomes[i] = err
	}
	return outcomes
}

// checkCommit decides, without writing, whether c may be applied in tx.
func checkCommit(tx *bolt.Tx, c *pending) error {
	if err := c.ctx.Err(); err != nil {
		return storeutil.NotStarted(err)
	}
	stored, err := readVersion(tx, c.gk)
	if err != nil {
		return err
	}
	if stored != c.expected {
		return storeutil.Conflict(c.key, c.expected, stored)
	}
	return nil
}

// writeCommit writes c's changes and its new version in tx.
func writeCommit(tx *bolt.Tx, c *pending) error {
	grains, err := topBucket(tx, bucketGrains)
	if err != nil {
		return err
	}
	if err := applyEntries(grains, c.gk, c.effect); err != nil {
		return err
	}
	versions, err := topBucket(tx, bucketVersions)
	if err != nil {
		return err
	}
	return versions.Put(c.gk, binary.BigEndian.AppendUint64(nil, uint64(c.expected+1)))
}
