package pgstore

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/protograin/protograin/cluster/storage"
)

// TestAnOperationDuringCloseFailsAtOnce: while Close waits for a Commit
// that another session's row lock holds up, a Load that begins fails with
// ErrClosed at once, rather than wait behind Close for that Commit, whatever
// its own context says.
func TestAnOperationDuringCloseFailsAtOnce(t *testing.T) {
	ctx := context.Background()
	cfg := internalConfig(t)
	// The Commit waits for the row lock for as long as the test needs,
	// not the default half a second, which a loaded machine can spend
	// before the release.
	cfg.LockTimeout = time.Minute
	s := openInternal(t, cfg)
	key := storage.Key{Kind: "test.Counter", Identity: "busy"}
	v, err := s.Commit(ctx, key, 0, []storage.Change{{Key: "k", Value: []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}

	// Another session locks the grain's version row, so the next Commit
	// waits for it.
	other, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close(context.Background()) })
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	release := func() { tx.Rollback(context.Background()) }
	t.Cleanup(release)
	if _, err := tx.Exec(ctx, "SELECT 1 FROM "+pgx.Identifier{cfg.Schema, "grains"}.Sanitize()+
		" WHERE kind = $1 AND identity = $2 FOR UPDATE", key.Kind, key.Identity); err != nil {
		t.Fatal(err)
	}
	committed := make(chan error, 1)
	go func() {
		_, err := s.Commit(ctx, key, v, nil)
		committed <- err
	}()
	waitForLockWaiters(t, cfg, 1)

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	deadline := time.Now().Add(20 * time.Second)
	for !s.closing.Load() {
		if time.Now().After(deadline) {
			t.Fatal("Close did not begin")
		}
		runtime.Gosched()
	}

	loaded := make(chan error, 1)
	go func() {
		_, _, err := s.Load(ctx, storage.Key{Kind: "test.Counter", Identity: "other"})
		loaded <- err
	}()
	select {
	case err := <-loaded:
		if !errors.Is(err, storage.ErrClosed) {
			t.Fatalf("Load during Close: %v, want ErrClosed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Load during Close waited for the Commit that Close waits for")
	}

	release()
	if err := <-committed; err != nil {
		t.Fatalf("the Commit under way: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}
