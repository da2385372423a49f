package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/protograin/protograin/cluster/storage"
)

// lockGrains holds the version rows of the grains locked from a session of
// its own, as the transaction of a commit whose client the network cut off
// holds them, until the returned release is called or t ends.
func lockGrains(t *testing.T, cfg Config, keys ...storage.Key) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, err := tx.Exec(ctx, "SELECT FROM "+pgx.Identifier{cfg.Schema, "grains"}.Sanitize()+
			" WHERE kind = $1 AND identity = $2 FOR UPDATE", k.Kind, k.Identity); err != nil {
			t.Fatal(err)
		}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			tx.Rollback(ctx)
			conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	return release
}

// waitForLockWaiters waits until n sessions whose statement names the
// schema wait for a lock.
func waitForLockWaiters(t *testing.T, cfg Config, n int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	waitUntil(t, 20*time.Second, fmt.Sprintf("%d sessions to wait on a lock", n), func() bool {
		var got int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_stat_activity
			WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0`, cfg.Schema).Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got >= n
	})
}

// TestStuckCommitsDoNotStarveThePool: a pool of two, and two grains whose
// version rows another transaction holds locked, each with a caller that
// commits again and again with a ten-second budget (the cluster's
// CommitTimeout). Commits of a healthy grain, with five seconds each, must
// go through: a stuck commit gives up after the store's lock timeout, having
// committed nothing, and its connection goes back to the pool (rather than
// be closed and replaced).
func TestStuckCommitsDoNotStarveThePool(t *testing.T) {
	ctx := context.Background()
	cfg := internalConfig(t)
	cfg.MaxConns = 2
	s := openInternal(t, cfg)
	slow := []storage.Key{{Kind: "test.Counter", Identity: "slow-0"}, {Kind: "test.Counter", Identity: "slow-1"}}
	ok := storage.Key{Kind: "test.Counter", Identity: "ok"}
	versions := make(map[storage.Key]storage.Version)
	for _, k := range append(slow, ok) {
		v, err := s.Commit(ctx, k, 0, []storage.Change{{Key: "n", Value: []byte("1")}})
		if err != nil {
			t.Fatal(err)
		}
		versions[k] = v
	}

	release := lockGrains(t, cfg, slow...)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stuckErrs := make([][]error, len(slow))
	for i, k := range slow {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := s.Commit(cctx, k, versions[k], []storage.Change{{Key: "n", Value: []byte("stuck")}})
				cancel()
				stuckErrs[i] = append(stuckErrs[i], err)
			}
		})
	}
	waitForLockWaiters(t, cfg, len(slow))
	madeBefore := s.pool.Stat().NewConnsCount() // the pool is full

	v := versions[ok]
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		nv, err := s.Commit(cctx, ok, v, []storage.Change{{Key: "n", Value: []byte(fmt.Sprint(v + 1))}})
		cancel()
		if err != nil {
			t.Fatalf("a healthy grain's commit, while two others are stuck on row locks, failed after %v: %v",
				time.Since(start).Round(time.Millisecond), err)
		}
		v = nv
	}
	close(stop)
	wg.Wait()
	release()

	for i, errs := range stuckErrs {
		for _, err := range errs {
			var pgErr *pgconn.PgError
			if err == nil || errors.Is(err, storage.ErrConflict) || !errors.As(err, &pgErr) || pgErr.Code != lockNotAvailable ||
				!errors.Is(err, storage.ErrNotCommitted) {
				t.Errorf("a commit of %s behind the lock: %v; want a lock timeout (SQLSTATE %s) wrapping storage.ErrNotCommitted",
					slow[i], err, lockNotAvailable)
			}
		}
	}
	if made := s.pool.Stat().NewConnsCount() - madeBefore; made > 0 {
		t.Errorf("the pool made %d new connections: commits that failed on the lock timeout closed theirs", made)
	}
	// Nothing of the stuck commits was written; the grains work again.
	for _, k := range slow {
		got, gotV, err := s.Load(ctx, k)
		if err != nil || gotV != versions[k] || string(got["n"]) != "1" {
			t.Fatalf("%s after the stuck commits: %q at version %d (err %v), want n=1 at %d", k, got, gotV, err, versions[k])
		}
		if _, err := s.Commit(ctx, k, versions[k], []storage.Change{{Key: "n", Value: []byte("2")}}); err != nil {
			t.Fatalf("%s once the lock is released: %v", k, err)
		}
	}
}

// TestPoolWaitSaysWhatItWaitedFor: with the pool's only connection held by
// a commit waiting on a row lock, calls whose context ends while they wait
// for a connection say so, and how many the pool has, keeping the context's
// error for errors.Is. The writes that can tell (Commit, CompleteReminder)
// say that they committed nothing (storage.ErrNotCommitted).
func TestPoolWaitSaysWhatItWaitedFor(t *testing.T) {
	ctx := context.Background()
	cfg := internalConfig(t)
	cfg.MaxConns = 1
	cfg.LockTimeout = time.Minute // longer than the test
	s := openInternal(t, cfg)
	stuck := storage.Key{Kind: "test.Counter", Identity: "stuck"}
	v, err := s.Commit(ctx, stuck, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	release := lockGrains(t, cfg, stuck)
	done := make(chan error, 1)
	go func() {
		_, err := s.Commit(ctx, stuck, v, nil)
		done <- err
	}()
	waitForLockWaiters(t, cfg, 1)

	other := storage.Key{Kind: "test.Counter", Identity: "other"}
	const want = "waiting for a connection from the pool (MaxConns 1)"
	notCommitted := map[string]bool{"Commit": true, "CompleteReminder": true}
	for name, call := range map[string]func(context.Context) error{
		"Commit": func(ctx context.Context) error { _, err := s.Commit(ctx, other, 0, nil); return err },
		"CompleteReminder": func(ctx context.Context) error {
			_, err := s.CompleteReminder(ctx, storage.Reminder{Grain: other, Name: "r", Due: time.Now()}, nil)
			return err
		},
		"Load": func(ctx context.Context) error { _, _, err := s.Load(ctx, other); return err },
		"SaveReminder": func(ctx context.Context) error {
			return s.SaveReminder(ctx, storage.Reminder{Grain: other, Name: "r", Due: time.Now()})
		},
		"ListReminders": func(ctx context.Context) error { _, err := s.ListReminders(ctx, other.Kind); return err },
	} {
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := call(cctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s with the pool's only connection busy: %v; want DeadlineExceeded, saying %q", name, err, want)
		}
		if notCommitted[name] && !errors.Is(err, storage.ErrNotCommitted) {
			t.Errorf("%s with the pool's only connection busy: %v; want it to wrap storage.ErrNotCommitted", name, err)
		}
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("the commit behind the lock, once released: %v", err)
	}
}

// TestLockTimeoutSetting checks the lock timeout a Commit's transaction
// sets: the configured one, else none when the DSN sets lock_timeout (its
// own applies), else the default; none for a negative one.
func TestLockTimeoutSetting(t *testing.T) {
	cfg := internalConfig(t)
	for _, tc := range []struct {
		name   string
		config time.Duration
		params string
		want   time.Duration
	}{
		{"default", 0, "", DefaultLockTimeout},
		{"config", 300 * time.Millisecond, "lock_timeout=5000", 300 * time.Millisecond},
		{"DSN", 0, "lock_timeout=5000", 0},
		{"none", -1, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openInternal(t, Config{DSN: withParams(t, cfg.DSN, tc.params), Schema: cfg.Schema, MaxConns: 1, LockTimeout: tc.config})
			if s.lockTimeout != tc.want {
				t.Fatalf("lock timeout %v, want %v", s.lockTimeout, tc.want)
			}
			// The commit transaction runs with it.
			if _, err := s.Commit(context.Background(), storage.Key{Kind: "test.Counter", Identity: tc.name}, 0, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}
