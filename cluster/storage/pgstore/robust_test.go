package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/pgstore"
	"github.com/protograin/protograin/cluster/storage/pgstore/pgtest"
	"github.com/protograin/protograin/cluster/storage/storagetest"
)

// withParam returns dsn with the connection parameter name set to value; a
// parameter pgx does not know is sent to the server as a session setting.
func withParam(t *testing.T, dsn, name, value string) string {
	t.Helper()
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return fmt.Sprintf("%s %s='%s'", dsn, name, value) // key=value form
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(name, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// connect opens a plain connection to the test server, closed when t ends.
func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestConformanceWhateverDefaultIsolation runs the conformance suite on
// sessions whose default isolation is not READ COMMITTED, as a server or
// role may be configured: the store must not inherit it. Under REPEATABLE
// READ or SERIALIZABLE racing commits would fail with a serialization error
// (SQLSTATE 40001) instead of storage.ErrConflict.
func TestConformanceWhateverDefaultIsolation(t *testing.T) {
	d := pgtest.DSN(t)
	for _, level := range []string{"serializable", "repeatable read"} {
		t.Run(strings.ReplaceAll(level, " ", "_"), func(t *testing.T) {
			ds := withParam(t, d, "default_transaction_isolation", level)
			storagetest.Run(t, func(t *testing.T) storage.Store {
				return open(t, pgstore.Config{DSN: ds, Schema: pgtest.Schema(t, d), MaxConns: 4})
			})
		})
	}
}

// waitingOnLock reports whether a backend whose application_name is app
// waits on a lock.
func waitingOnLock(t *testing.T, watch *pgx.Conn, app string) bool {
	t.Helper()
	var waiting bool
	err := watch.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_stat_activity
		WHERE application_name = $1 AND wait_event_type = 'Lock')`, app).Scan(&waiting)
	if err != nil {
		t.Fatal(err)
	}
	return waiting
}

// TestStaleCommitTakesNoEntryLocks commits with an outdated expected version
// changes to entries whose rows another session holds locked. The commit must
// fail with storage.ErrConflict without waiting for those locks: a commit
// whose version check failed must not lock entries. If it did, crossed with
// the valid commit of the grain (each holding an entry the other wants), the
// two would deadlock and PostgreSQL could abort the valid one, failing a
// commit that had every right to succeed. The other session only makes the
// lock visible: the stale commit either returns or is seen waiting on it.
func TestStaleCommitTakesNoEntryLocks(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	app := fmt.Sprintf("pgstore_stale_%08x", rand.Uint32())
	stale := open(t, pgstore.Config{DSN: withParam(t, cfg.DSN, "application_name", app), Schema: cfg.Schema, MaxConns: 2})
	valid := open(t, cfg)
	key := storage.Key{Kind: "test.Counter", Identity: "crossed"}
	var v storage.Version
	for _, k := range []string{"k1", "k2", "k3"} {
		var err error
		if v, err = valid.Commit(ctx, key, v, []storage.Change{{Key: k, Value: []byte("0")}}); err != nil {
			t.Fatal(err)
		}
	}

	holder := connect(t, cfg.DSN)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT FROM "+pgx.Identifier{cfg.Schema, "entries"}.Sanitize()+
		" WHERE kind = $1 AND identity = $2 AND key = 'k3' FOR UPDATE", key.Kind, key.Identity); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := stale.Commit(ctx, key, v-1, []storage.Change{
			{Key: "k1", Remove: true}, {Key: "k3", Remove: true}, {Key: "k2", Value: []byte("stale")}})
		done <- err
	}()
	watch := connect(t, cfg.DSN)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	deadline := time.After(30 * time.Second)
	var staleErr error
wait:
	for {
		select {
		case staleErr = <-done:
			break wait
		case <-deadline:
			t.Fatal("the stale commit neither returned nor waited on a lock within 30 s")
		case <-poll.C:
			if waitingOnLock(t, watch, app) {
				tx.Rollback(ctx)
				t.Fatalf("the stale commit waited for the lock on entry k3, so it locks entries although its version check failed; "+
					"once the lock was released it returned %v", <-done)
			}
		}
	}
	if !errors.Is(staleErr, storage.ErrConflict) {
		t.Fatalf("stale commit: err = %v, want ErrConflict", staleErr)
	}
	// The valid commit, crossing the stale one's entries, goes through
	// while the other session still holds k3.
	nv, err := valid.Commit(ctx, key, v, []storage.Change{{Key: "k2", Remove: true}, {Key: "k1", Value: []byte("valid")}})
	if err != nil {
		t.Fatalf("valid commit: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	got, gotV, err := valid.Load(ctx, key)
	if err != nil || gotV != nv || len(got) != 2 || string(got["k1"]) != "valid" || string(got["k3"]) != "0" {
		t.Fatalf("after the commits: %q at version %d (err %v), want k1=valid k3=0 at %d", got, gotV, err, nv)
	}
}

// TestOpenWithoutCreateRights opens an existing store as a role that may
// only use the schema and read and write its tables, as a least-privilege
// deployment does: Open must not need CREATE on the database or the schema.
// The role is taken through the "role" session setting, so the test needs no
// login or password for it.
func TestOpenWithoutCreateRights(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	open(t, cfg).Close() // the tables, made by the test's own (privileged) user

	admin := connect(t, cfg.DSN)
	role := fmt.Sprintf("t_pgstore_user_%08x", rand.Uint32())
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" NOLOGIN"); err != nil {
		t.Skipf("cannot create a role for the test: %v", err)
	}
	t.Cleanup(func() {
		// The schema is dropped after this: cleanups run last-registered
		// first. DROP OWNED revokes the role's privileges.
		for _, q := range []string{"DROP OWNED BY " + role, "DROP ROLE " + role} {
			if _, err := admin.Exec(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	schema := pgx.Identifier{cfg.Schema}.Sanitize()
	for _, q := range []string{
		"GRANT " + role + " TO CURRENT_USER", // needed to take the role, unless a superuser
		"GRANT USAGE ON SCHEMA " + schema + " TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + schema + " TO " + role,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	dsn := withParam(t, cfg.DSN, "role", role)

	// The role indeed lacks CREATE rights, or the test shows nothing.
	conn := connect(t, dsn)
	if _, err := conn.Exec(ctx, "CREATE TABLE "+schema+".probe (x int)"); err == nil {
		t.Fatal("the role may create tables in the schema; the test needs one that may not")
	}

	s := open(t, pgstore.Config{DSN: dsn, Schema: cfg.Schema})
	key := storage.Key{Kind: "test.Counter", Identity: "least-privilege"}
	v, err := s.Commit(ctx, key, 0, []storage.Change{{Key: "k", Value: []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	if got, gotV, err := s.Load(ctx, key); err != nil || gotV != v || string(got["k"]) != "v" {
		t.Fatalf("Load: %q at version %d (err %v), want k=v at %d", got, gotV, err, v)
	}
}

// TestOpenRefusesForeignTables opens a schema that holds a table named like
// the store's, which protograin did not create (there is no meta table).
// Open must refuse it, leaving it alone, rather than adopt it and fail on
// every later call.
func TestOpenRefusesForeignTables(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	admin := connect(t, cfg.DSN)
	schema := pgx.Identifier{cfg.Schema}.Sanitize()
	for _, q := range []string{
		"CREATE SCHEMA " + schema,
		"CREATE TABLE " + schema + ".grains (id serial PRIMARY KEY, kind text, identity text)",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	s, err := pgstore.Open(ctx, cfg)
	if err == nil {
		s.Close()
	}
	if !errors.Is(err, pgstore.ErrIncompatibleSchema) || !strings.Contains(err.Error(), "not a protograin store") {
		t.Fatalf("Open of a schema with a foreign grains table: err = %v, want ErrIncompatibleSchema saying it is not a protograin store", err)
	}
	var meta *string
	if err := admin.QueryRow(ctx, "SELECT to_regclass($1)::text", cfg.Schema+".meta").Scan(&meta); err != nil {
		t.Fatal(err)
	}
	if meta != nil {
		t.Fatalf("Open created %s in the foreign schema", *meta)
	}
}
