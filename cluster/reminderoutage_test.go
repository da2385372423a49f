package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/protograin/protograin/cluster/storage"
)

// outageStore fails every operation while down is set, as a database
// that is restarting does: a commit, or the write after a firing, with an
// error that says nothing was committed. It counts the commits and the
// listings it failed.
type outageStore struct {
	storage.Store
	down          atomic.Bool
	failedCommits atomic.Int64
	failedLists   atomic.Int64
}

func (s *outageStore) Load(ctx context.Context, key storage.Key) (map[string][]byte, storage.Version, error) {
	if s.down.Load() {
		return nil, 0, errStoreDown
	}
	return s.Store.Load(ctx, key)
}

func (s *outageStore) Commit(ctx context.Context, key storage.Key, expected storage.Version, changes []storage.Change) (storage.Version, error) {
	if s.down.Load() {
		s.failedCommits.Add(1)
		return 0, errNothingCommitted
	}
	return s.Store.Commit(ctx, key, expected, changes)
}

func (s *outageStore) SaveReminder(ctx context.Context, r storage.Reminder) error {
	if s.down.Load() {
		return errStoreDown
	}
	return s.Store.SaveReminder(ctx, r)
}

func (s *outageStore) DeleteReminder(ctx context.Context, key storage.Key, name string) error {
	if s.down.Load() {
		return errStoreDown
	}
	return s.Store.DeleteReminder(ctx, key, name)
}

func (s *outageStore) CompleteReminder(ctx context.Context, fired storage.Reminder, next *storage.Reminder) (bool, error) {
	if s.down.Load() {
		return false, errNothingCommitted
	}
	return s.Store.CompleteReminder(ctx, fired, next)
}

func (s *outageStore) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	if s.down.Load() {
		s.failedLists.Add(1)
		return nil, errStoreDown
	}
	return s.Store.ListReminders(ctx, kind)
}

// TestRemindersResumeWhenTheStoreComesBack: the store goes down while a
// grain's reminder fires, and the delivery fails as its commit does; a
// failed delivery waits ten minutes here. Once the store is back, the node
// finds it working again (its scheduler probes the store, and saw it down)
// and delivers the reminder at once: the firing's change is committed
// well within the test's timeout, where the backoff alone would leave the
// test waiting for minutes.
func TestRemindersResumeWhenTheStoreComesBack(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		outage := &outageStore{Store: store}
		nodes, _ := bankCluster(t, 1, outage, -1, func(cfg *Config) { cfg.reminderRetryBackoff = 10 * time.Minute })
		n := nodes[0]
		remind(t, n, "patient", "tick", "100ms")
		waitFor(t, waitTimeout, "a firing's change to be committed", func() bool {
			return storedBalance(t, store, accountKind, "patient") > 0
		})

		outage.down.Store(true)
		waitFor(t, waitTimeout, "a delivery to fail on its commit, and the store to be seen down", func() bool {
			return outage.failedCommits.Load() > 0 && outage.failedLists.Load() > 0
		})
		before := storedBalance(t, store, accountKind, "patient") // nothing commits while the store is down
		outage.down.Store(false)
		waitFor(t, waitTimeout, "a firing's change to be committed after the store came back", func() bool {
			return storedBalance(t, store, accountKind, "patient") > before
		})
	})
}

// TestReminderStoreFailure: the deliveries that failed for the store are
// told from those that failed for the grain or the way to it, which a
// store that works again does not mend.
func TestReminderStoreFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err   error
		store bool
	}{
		{newError(codes.Unavailable, ErrStateUnavailable, "load failed"), true},
		{newError(codes.Unavailable, errStateNotCommitted, "commit committed nothing"), true},
		{fmt.Errorf("on reminder: %w", newError(codes.Unavailable, ErrStateUnavailable, "a call it made")), true},
		{newError(codes.FailedPrecondition, ErrStateUndecodable, "state does not decode"), false},
		{newError(codes.Aborted, ErrStaleActivation, "version conflict"), false},
		{newError(codes.Internal, ErrGrainPanic, "panicked"), false},
		{newError(codes.Unavailable, ErrUnavailable, "owner unreachable"), false},
		{newError(codes.FailedPrecondition, ErrNotOwner, "moved"), false},
		{errors.New("the grain's own error"), false},
	} {
		if got := reminderStoreFailure(tc.err); got != tc.store {
			t.Errorf("reminderStoreFailure(%v) = %v, want %v", tc.err, got, tc.store)
		}
	}
}
