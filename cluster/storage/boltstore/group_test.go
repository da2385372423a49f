package boltstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/protograin/protograin/cluster/storage"
)

// Most of these tests line writes up behind a write transaction of their
// own, which holds bbolt's writer lock, so that they reach the committer
// together, as a busy node's do.

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "grains.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitUntil fails t unless cond holds within ten seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// lineUp holds bbolt's writer lock while writes start: the first write
// takes the committer into a transaction that waits for the lock, and the
// rest (queued, their number) wait on the committer's channel, until the
// returned release (or the end of the test) lets them all go.
func lineUp(t *testing.T, s *Store, first func(), queued int, rest func()) (release func()) {
	t.Helper()
	held, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	release = sync.OnceFunc(func() {
		if err := held.Rollback(); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(release) // before the store's Close, which waits for the writes
	groups := s.groups.Load()
	go first()
	waitUntil(t, "the first write's group waits for the writer lock", func() bool { return s.groups.Load() == groups+1 })
	rest()
	waitUntil(t, fmt.Sprintf("%d writes wait for the committer", queued), func() bool { return len(s.writes) == queued })
	return release
}

// entry loads grain and returns its entry, failing t if it has no such
// entry or not version.
func entry(t *testing.T, s *Store, grain storage.Key, key string, version storage.Version) string {
	t.Helper()
	entries, v, err := s.Load(context.Background(), grain)
	if err != nil {
		t.Fatal(err)
	}
	if v != version {
		t.Fatalf("%s is at version %d; want %d", grain, v, version)
	}
	value, ok := entries[key]
	if !ok {
		t.Fatalf("%s has no entry %q: %q", grain, key, entries)
	}
	return string(value)
}

func TestCommitsThatWaitShareATransaction(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	key := func(id string) storage.Key { return storage.Key{Kind: "test.Account", Identity: id} }
	set := func(value string) []storage.Change { return []storage.Change{{Key: "balance", Value: []byte(value)}} }
	if _, err := s.Commit(ctx, key("committed"), 0, set("1")); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(map[string]error)
	var mu sync.Mutex
	start := func(name string, ctx context.Context, grain storage.Key, expected storage.Version, value string) {
		wg.Go(func() {
			_, err := s.Commit(ctx, grain, expected, set(value))
			mu.Lock()
			defer mu.Unlock()
			errs[name] = err
		})
	}
	canceled, cancel := context.WithCancel(ctx)
	defer cancel()
	release := lineUp(t, s, func() { start("first", ctx, key("first"), 0, "first") }, 9, func() {
		for i := range 5 {
			id := fmt.Sprint("grain-", i)
			start(id, ctx, key(id), 0, id)
		}
		start("stale", ctx, key("committed"), 0, "stale") // committed is at version 1
		start("twin-a", ctx, key("twin"), 0, "a")         // one of the twins wins
		start("twin-b", ctx, key("twin"), 0, "b")
		start("canceled", canceled, key("canceled"), 0, "canceled")
	})
	groups := s.groups.Load()
	cancel() // while the commit waits: it is withdrawn
	release()
	wg.Wait()

	if got := s.groups.Load() - groups; got != 1 {
		t.Errorf("the commits that waited took %d transactions; want 1", got)
	}
	for _, id := range []string{"first", "grain-0", "grain-1", "grain-2", "grain-3", "grain-4"} {
		if errs[id] != nil {
			t.Errorf("commit of %s: %v", id, errs[id])
		}
		if got := entry(t, s, key(id), "balance", 1); got != id {
			t.Errorf("%s's balance is %q; want %q", id, got, id)
		}
	}
	if !errors.Is(errs["stale"], storage.ErrConflict) {
		t.Errorf("commit expecting version 0 of a grain at version 1: %v; want ErrConflict", errs["stale"])
	}
	if got := entry(t, s, key("committed"), "balance", 1); got != "1" {
		t.Errorf("the conflicting commit changed the grain's balance to %q", got)
	}
	a, b := errs["twin-a"], errs["twin-b"]
	if (a == nil) == (b == nil) || !errors.Is(a, storage.ErrConflict) && !errors.Is(b, storage.ErrConflict) {
		t.Errorf("two commits of one grain from version 0 in one group: %v and %v; want one to commit and one to conflict", a, b)
	}
	winner := map[bool]string{true: "a", false: "b"}[a == nil]
	if got := entry(t, s, key("twin"), "balance", 1); got != winner {
		t.Errorf("twin's balance is %q; want the winner's %q", got, winner)
	}
	if !errors.Is(errs["canceled"], storage.ErrNotCommitted) || !errors.Is(errs["canceled"], context.Canceled) {
		t.Errorf("commit whose context ended while it waited: %v; want context.Canceled and ErrNotCommitted", errs["canceled"])
	}
	if _, v, err := s.Load(ctx, key("canceled")); err != nil || v != 0 {
		t.Errorf("the canceled commit's grain is at version %d (%v); want 0", v, err)
	}
}

// A commit that fails after it began writing (here, an entry that a damaged
// file holds as a nested bucket, which bbolt refuses to overwrite, after
// the commit removed another entry) fails alone: the group's transaction is
// rolled back and the other writes, commits and a reminder's completion,
// run again in transactions of their own.
func TestACommitThatFailsMidwayLeavesItsGroupCommitted(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	damaged := storage.Key{Kind: "test.Account", Identity: "damaged"}
	if _, err := s.Commit(ctx, damaged, 0, []storage.Change{{Key: "a", Value: []byte("kept")}}); err != nil {
		t.Fatal(err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		_, err := tx.Bucket([]byte(bucketGrains)).Bucket(grainKey(damaged)).CreateBucket([]byte("nested"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	fired := storage.Reminder{Grain: damaged, Name: "tick", Due: time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC), Period: time.Minute}
	if err := s.SaveReminder(ctx, fired); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make([]error, 5)
	commit := func(i int, grain storage.Key, expected storage.Version, changes ...storage.Change) {
		wg.Go(func() { _, errs[i] = s.Commit(ctx, grain, expected, changes) })
	}
	next := fired
	next.Due = fired.Due.Add(fired.Period)
	var completed bool
	others := []storage.Key{{Kind: "test.Account", Identity: "x"}, {Kind: "test.Account", Identity: "y"}}
	first := func() {
		commit(4, storage.Key{Kind: "test.Account", Identity: "first"}, 0, storage.Change{Key: "a", Value: []byte("first")})
	}
	release := lineUp(t, s, first, 4, func() {
		commit(0, damaged, 1, storage.Change{Key: "a", Remove: true}, storage.Change{Key: "nested", Value: []byte("over the bucket")})
		commit(1, others[0], 0, storage.Change{Key: "a", Value: []byte("x")})
		commit(2, others[1], 0, storage.Change{Key: "a", Value: []byte("y")})
		wg.Go(func() { completed, errs[3] = s.CompleteReminder(ctx, fired, &next) })
	})
	groups := s.groups.Load()
	release()
	wg.Wait()

	if !errors.Is(errs[0], ErrCorrupt) || !errors.Is(errs[0], berrors.ErrIncompatibleValue) {
		t.Errorf("commit that overwrites a nested bucket: %v; want ErrCorrupt and bbolt's ErrIncompatibleValue", errs[0])
	}
	// Load refuses the damaged grain; its entry is read here directly.
	err = s.db.View(func(tx *bolt.Tx) error {
		if got := tx.Bucket([]byte(bucketGrains)).Bucket(grainKey(damaged)).Get([]byte("a")); string(got) != "kept" {
			t.Errorf("the failed commit's removal stayed: entry a is %q; want kept", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, grain := range others {
		if errs[i+1] != nil {
			t.Errorf("commit of %s, in the failed commit's group: %v", grain, errs[i+1])
		}
		if got := entry(t, s, grain, "a", 1); got != grain.Identity {
			t.Errorf("%s's entry is %q; want %q", grain, got, grain.Identity)
		}
	}
	// The reminder's completion ran twice, in the group and alone: it
	// reports what its second run did, which the store kept.
	if !completed || errs[3] != nil {
		t.Errorf("CompleteReminder in the failed commit's group = %v, %v; want true", completed, errs[3])
	}
	if rs, err := s.ListReminders(ctx, damaged.Kind); err != nil || len(rs) != 1 || !rs[0].Due.Equal(next.Due) {
		t.Errorf("reminders after the completion: %v, %v; want the next firing, due %v", rs, err, next.Due)
	}
	if got := s.groups.Load() - groups; got != 5 {
		t.Errorf("a group of four with a failure took %d transactions; want 5 (the group, then each alone)", got)
	}
}

// A write whose context ends while it waits for the committer returns at
// once, having written nothing, however long the committer is held up (a
// stalled disk, here a transaction of the test's); the committer then
// skips it.
func TestAWriteThatWaitsEndsWithItsContext(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	first := storage.Key{Kind: "test.Account", Identity: "first"}
	late := storage.Key{Kind: "test.Account", Identity: "late"}
	set := []storage.Change{{Key: "balance", Value: []byte("1")}}
	firstDone := make(chan error, 1)
	lateDone := make(chan error, 1)
	lateCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	release := lineUp(t, s, func() {
		go func() { _, err := s.Commit(ctx, first, 0, set); firstDone <- err }()
	}, 1, func() {
		go func() { _, err := s.Commit(lateCtx, late, 0, set); lateDone <- err }()
	})
	groups := s.groups.Load()
	cancel()
	select {
	case err := <-lateDone:
		if !errors.Is(err, storage.ErrNotCommitted) || !errors.Is(err, context.Canceled) {
			t.Errorf("commit whose context ended while it waited: %v; want context.Canceled and ErrNotCommitted", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a commit whose context ended still waits for the held-up committer")
	}
	release()
	if err := <-firstDone; err != nil {
		t.Fatalf("the commit the committer had taken: %v", err)
	}
	// A sync write after the withdrawn one: the committer has passed it.
	if _, err := s.Commit(ctx, first, 1, set); err != nil {
		t.Fatal(err)
	}
	if got := s.groups.Load() - groups; got != 1 {
		t.Errorf("the committer ran %d transactions after the held one; want 1, none for the withdrawn commit", got)
	}
	if _, v, err := s.Load(ctx, late); err != nil || v != 0 {
		t.Errorf("the withdrawn commit's grain is at version %d (%v); want 0", v, err)
	}
}

// TestConcurrentWritesKeepEveryGrainConsistent runs commits from many
// goroutines at once, some on grains of their own and some racing on shared
// grains, a fifth of them with a context that ends within 0.12 ms, so that the
// committer's groups mix commits, conflicts and withdrawn writes. Whatever
// the grouping, each grain must end at the version of its successful
// commits, each version given once, holding the last one's value: a commit
// reported as not committed wrote nothing, a conflict changed nothing.
func TestConcurrentWritesKeepEveryGrainConsistent(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	const goroutines, commits = 8, 150
	key := func(id string) storage.Key { return storage.Key{Kind: "test.Account", Identity: id} }

	var mu sync.Mutex
	won := make(map[string]map[storage.Version]string) // grain -> version -> value
	var conflicts, notCommitted atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range commits {
				id := fmt.Sprint("shared-", i%3)
				if i%2 == 0 {
					id = fmt.Sprint("own-", g)
				}
				_, expected, err := s.Load(ctx, key(id))
				if err != nil {
					t.Error(err)
					return
				}
				cctx, cancel := context.WithCancel(ctx)
				if i%5 == 0 {
					// Before the commit is queued, while it waits, or
					// after the committer took it.
					time.AfterFunc(time.Duration(i%7)*20*time.Microsecond, cancel)
				}
				value := fmt.Sprintf("%d/%d", g, i)
				v, err := s.Commit(cctx, key(id), expected, []storage.Change{{Key: "balance", Value: []byte(value)}})
				cancel()
				switch {
				case err == nil:
					mu.Lock()
					if won[id] == nil {
						won[id] = make(map[storage.Version]string)
					}
					if prior, twice := won[id][v]; twice {
						t.Errorf("%s's version %d committed twice: %s and %s", id, v, prior, value)
					}
					won[id][v] = value
					mu.Unlock()
				case errors.Is(err, storage.ErrConflict):
					conflicts.Add(1)
				case errors.Is(err, storage.ErrNotCommitted):
					notCommitted.Add(1)
				default:
					t.Errorf("commit %s to %s: %v", value, id, err)
				}
			}
		})
	}
	wg.Wait()

	for id, versions := range won {
		n := storage.Version(len(versions))
		if got := entry(t, s, key(id), "balance", n); got != versions[n] {
			t.Errorf("%s holds %q; want %q, the value of its last commit, version %d", id, got, versions[n], n)
		}
	}
	if len(won) != goroutines+3 {
		t.Errorf("%d grains took commits; want %d", len(won), goroutines+3)
	}
	t.Logf("%d conflicts, %d not committed, %d transactions for %d commits", conflicts.Load(), notCommitted.Load(), s.groups.Load(), goroutines*commits)
}

// A write that cannot even be queued, the committer's queue being full
// behind a held-up group, returns when its context ends, having written
// nothing.
func TestAWriteThatCannotBeQueuedEndsWithItsContext(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	set := []storage.Change{{Key: "balance", Value: []byte("1")}}
	commit := func(id string) { s.Commit(ctx, storage.Key{Kind: "test.Account", Identity: id}, 0, set) }
	release := lineUp(t, s, func() { go commit("first") }, maxGroup, func() {
		for i := range maxGroup {
			go commit(fmt.Sprint("queued-", i))
		}
	})
	defer release()
	// Its context outlives the checks before the queue, and ends while
	// the write waits to be queued.
	late := storage.Key{Kind: "test.Account", Identity: "late"}
	lateCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	lateDone := make(chan error, 1)
	go func() { _, err := s.Commit(lateCtx, late, 0, set); lateDone <- err }()
	select {
	case err := <-lateDone:
		if !errors.Is(err, storage.ErrNotCommitted) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("commit whose context ended before the full queue took it: %v; want context.DeadlineExceeded and ErrNotCommitted", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a commit whose context ended still waits for room in the queue")
	}
	release()
	waitUntil(t, "the queued commits are done", func() bool {
		for i := range maxGroup {
			if _, v, err := s.Load(ctx, storage.Key{Kind: "test.Account", Identity: fmt.Sprint("queued-", i)}); err != nil || v != 1 {
				return false
			}
		}
		return true
	})
	if _, v, err := s.Load(ctx, late); err != nil || v != 0 {
		t.Errorf("the commit that was never queued left its grain at version %d (%v); want 0", v, err)
	}
}
