package pgstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/protograin/protograin/cluster/storage"
)

// endSessions ends, from the server's side, every session of the store's
// pool, as a server restart does (a fast shutdown sends each client 57P01,
// "terminating connection due to administrator command", and so does
// pg_terminate_backend). The pool is full and its connections were idle
// only for the moment it takes to return from here: pgxpool pings none of
// them before reuse (it pings connections idle over a second).
func endSessions(t *testing.T, s *Store, dsn string) {
	t.Helper()
	ctx := context.Background()
	conns := make([]*pgxpool.Conn, s.maxConns)
	pids := make([]uint32, s.maxConns)
	for i := range conns {
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns[i], pids[i] = c, c.Conn().PgConn().PID()
	}
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for _, pid := range pids {
		var ok bool
		if err := admin.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int64(pid)).Scan(&ok); err != nil || !ok {
			t.Fatalf("terminate backend %d: %v %v", pid, ok, err)
		}
	}
	// A backend leaves pg_stat_activity after it sent its client the error.
	waitUntil(t, 20*time.Second, "the pool's sessions to end", func() bool {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE pid = ANY($1)", pids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	for _, c := range conns {
		c.Release()
	}
}

// TestCallsWorkAfterTheServerEndsTheSessions: after the server ended every
// session of the pool (as in a restart quicker than pgxpool's one-second
// idle check), calls made once it is there again must succeed, whichever
// comes first: a read, retried once on another connection when its own
// turns out dead; or a Commit, whose first round trip, failed on a dead
// connection, committed nothing and is tried again. The calls after the
// first find the pool checking its older connections before reuse.
func TestCallsWorkAfterTheServerEndsTheSessions(t *testing.T) {
	ctx := context.Background()
	for _, first := range []string{"Load", "ListReminders", "Commit"} {
		t.Run(first, func(t *testing.T) {
			cfg := internalConfig(t)
			cfg.MaxConns = 4
			s := openInternal(t, cfg)
			key := func(i int) storage.Key { return storage.Key{Kind: "test.Counter", Identity: fmt.Sprint("after-", i)} }
			calls := map[string]func(i int) error{
				"Load": func(i int) error { _, _, err := s.Load(ctx, key(i)); return err },
				"ListReminders": func(int) error {
					_, err := s.ListReminders(ctx, "test.Counter")
					return err
				},
				"Commit": func(i int) error {
					_, err := s.Commit(ctx, key(i), 0, []storage.Change{{Key: "k", Value: []byte("v")}})
					return err
				},
				"SaveReminder": func(i int) error {
					return s.SaveReminder(ctx, storage.Reminder{Grain: key(i), Name: "r", Due: time.Now()})
				},
			}
			endSessions(t, s, cfg.DSN)
			if err := calls[first](0); err != nil {
				t.Fatalf("the first call after the sessions ended, %s: %v", first, err)
			}
			for i := 1; i < 2*int(cfg.MaxConns); i++ {
				for _, name := range []string{"Load", "Commit", "SaveReminder", "ListReminders"} {
					if err := calls[name](i); err != nil {
						t.Fatalf("%s after the sessions ended and a %s: %v", name, first, err)
					}
				}
			}
		})
	}
}
