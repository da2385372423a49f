package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/pgstore"
	"github.com/protograin/protograin/cluster/storage/pgstore/pgtest"
	"github.com/protograin/protograin/cluster/storage/storagetest"
)

func open(t *testing.T, cfg pgstore.Config) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testConfig returns the configuration of a store on the test server in a
// schema of this test's own.
func testConfig(t *testing.T) pgstore.Config {
	dsn := pgtest.DSN(t)
	return pgstore.Config{DSN: dsn, Schema: pgtest.Schema(t, dsn)}
}

func TestConformance(t *testing.T) {
	d := pgtest.DSN(t)
	storagetest.Run(t, func(t *testing.T) storage.Store {
		// Small pools: the suite runs its subtests in parallel.
		return open(t, pgstore.Config{DSN: d, Schema: pgtest.Schema(t, d), MaxConns: 4})
	})
}

func TestStateSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	key := storage.Key{Kind: "test.Counter", Identity: "a"}

	s := open(t, cfg)
	v, err := s.Commit(ctx, key, 0, []storage.Change{{Key: "count", Value: []byte("7")}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, cfg)
	got, gotV, err := s.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if gotV != v || string(got["count"]) != "7" {
		t.Fatalf("after reopen: entries %q at version %d, want count=7 at version %d", got, gotV, v)
	}
}

// TestConcurrentOpen opens one new schema from several goroutines at once,
// as nodes starting together do: the schema set-up must not race.
func TestConcurrentOpen(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConns = 2
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := pgstore.Open(context.Background(), cfg)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Open: %v", err)
	}
}

func TestSchemasAreSeparate(t *testing.T) {
	ctx := context.Background()
	d := pgtest.DSN(t)
	a := open(t, pgstore.Config{DSN: d, Schema: pgtest.Schema(t, d)})
	b := open(t, pgstore.Config{DSN: d, Schema: pgtest.Schema(t, d)})
	key := storage.Key{Kind: "test.Counter", Identity: "a"}
	if _, err := a.Commit(ctx, key, 0, []storage.Change{{Key: "k", Value: []byte("in a")}}); err != nil {
		t.Fatal(err)
	}
	got, v, err := b.Load(ctx, key)
	if err != nil || v != 0 || len(got) != 0 {
		t.Fatalf("Load from the other schema = %q, version %d, err %v; want nothing", got, v, err)
	}
}

func TestIncompatibleLayout(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	s := open(t, cfg)
	s.Close()

	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE "+pgx.Identifier{cfg.Schema, "meta"}.Sanitize()+" SET value = '999' WHERE name = 'layout'"); err != nil {
		t.Fatal(err)
	}
	_, err = pgstore.Open(ctx, cfg)
	if !errors.Is(err, pgstore.ErrIncompatibleSchema) || !strings.Contains(err.Error(), cfg.Schema) {
		t.Fatalf("Open of a schema with layout 999: err = %v, want ErrIncompatibleSchema naming the schema", err)
	}
}

func TestOpenBadConfig(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		cfg  pgstore.Config
		want string
	}{
		{"empty DSN", pgstore.Config{}, "pgstore: Config.DSN is empty"},
		{"malformed DSN", pgstore.Config{DSN: "postgres://a b:%zz@/"}, "pgstore: Config.DSN"},
		{"NUL in schema", pgstore.Config{DSN: "postgres:///db", Schema: "a\x00b"}, "pgstore: Config.Schema"},
		{"long schema", pgstore.Config{DSN: "postgres:///db", Schema: strings.Repeat("s", 64)}, "pgstore: Config.Schema"},
		{"no server", pgstore.Config{DSN: "postgres:///db?host=" + t.TempDir()}, "pgstore: connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := pgstore.Open(ctx, tt.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want an error starting %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Open: err = %q, want it to start with %q", err, tt.want)
			}
		})
	}
}

// TestCommitWaitingOnLockHonoursContext holds the grain's version row
// locked from another session, so a Commit blocks on it; the Commit must give
// up when its context ends, and change nothing.
func TestCommitWaitingOnLockHonoursContext(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	s := open(t, cfg)
	key := storage.Key{Kind: "test.Counter", Identity: "locked"}
	v, err := s.Commit(ctx, key, 0, []storage.Change{{Key: "k", Value: []byte("before")}})
	if err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	lock := "SELECT version FROM " + pgx.Identifier{cfg.Schema, "grains"}.Sanitize() + " WHERE kind = $1 AND identity = $2 FOR UPDATE"
	if _, err := tx.Exec(ctx, lock, key.Kind, key.Identity); err != nil {
		t.Fatal(err)
	}

	// The lock is held until after Commit returns, so Commit can only end
	// by its deadline; the duration is not asserted.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = s.Commit(short, key, v, []storage.Change{{Key: "k", Value: []byte("after")}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Commit blocked on a lock past its deadline: err = %v, want context.DeadlineExceeded", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	got, gotV, err := s.Load(ctx, key)
	if err != nil || gotV != v || string(got["k"]) != "before" {
		t.Fatalf("after the timed-out Commit: %q at version %d (err %v), want k=before at %d", got, gotV, err, v)
	}
	// The pool recovers: the next Commit works.
	if _, err := s.Commit(ctx, key, v, []storage.Change{{Key: "k", Value: []byte("after")}}); err != nil {
		t.Fatalf("Commit after the timed-out one: %v", err)
	}
}
