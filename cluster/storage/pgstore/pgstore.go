package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/internal/storeutil"
)

// DefaultSchema is the schema Open uses when Config.Schema is empty.
const DefaultSchema = "protograin"

// ErrIncompatibleSchema is returned by Open when the schema holds tables of
// a layout this build does not know, or tables that are not protograin's
// (some of the store's table names, but no meta table).
var ErrIncompatibleSchema = errors.New("pgstore: incompatible schema")

// Config configures a Store.
type Config struct {
	// DSN is the PostgreSQL connection string, as a URL
	// ("postgres://user@host/db") or key=value pairs. Required.
	DSN string

	// Schema is the schema that holds the store's tables; Open creates it if
	// it is missing. Empty means DefaultSchema. Different schemas in one
	// database are independent stores.
	Schema string

	// MaxConns caps the connection pool. Zero means pgxpool's default, the
	// greater of 4 and the number of CPUs.
	MaxConns int32

	// ConnectTimeout bounds each attempt to open a connection to the
	// server, and each cancel request the driver sends when a connection
	// dies under a query (see Open). Zero means the DSN's connect_timeout
	// if it sets a non-zero one, else DefaultConnectTimeout. It must not be
	// negative.
	ConnectTimeout time.Duration

	// LockTimeout bounds how long a Commit waits for a row lock that
	// another transaction holds on the grain; the Commit then fails, having
	// changed nothing, and returns its connection to the pool. Zero means
	// DefaultLockTimeout, unless the DSN sets lock_timeout, which then
	// applies; a negative value sets no bound of the store's own (the
	// session's lock_timeout applies, by default none).
	LockTimeout time.Duration

	// idleInTransaction replaces DefaultIdleInTransactionTimeout when not
	// zero; tests shorten it.
	idleInTransaction time.Duration
}

// Store is a storage.Store in PostgreSQL. It is safe for concurrent use.
type Store struct {
	schema string
	q      queries
	// lockTimeout is the lock_timeout of a commit's transaction, and
	// setLockTimeout the statement that sets it; zero and empty when the
	// store sets none.
	lockTimeout    time.Duration
	setLockTimeout string
	maxConns       int32 // the pool's, for errors
	// lost counts the connections the store's operations saw fail (see
	// noteLost); a pooled connection that has not been checked since the
	// latest is pinged before it is handed out (see Open).
	lost atomic.Uint64

	// mu guards closed. Operations hold it for reading while they run, so
	// Close waits for them and later operations see closed instead of a
	// closed pool.
	mu     sync.RWMutex
	closed bool
	pool   *pgxpool.Pool
	// closing is set by Close before it waits for mu: an operation that
	// begins then fails with ErrClosed at once, rather than wait behind
	// Close (a waiting writer holds new readers back) for as long as the
	// operations under way take, whatever its own context says.
	closing atomic.Bool
}

var _ storage.Store = (*Store)(nil)

// DefaultIdleInTransactionTimeout is the idle_in_transaction_session_timeout
// Open sets on the store's sessions unless the DSN sets one: how long the server
// keeps a transaction of the store open while it waits for the client. A
// Commit waits so between its statement and its COMMIT, and Open's schema
// set-up between its statements, normally for far less than a millisecond.
// The bound matters when the network fails: the server would otherwise keep
// such a transaction, and its locks, until TCP keepalive notices the dead
// client, hours later with common settings, and every later commit of the
// grain would wait for it.
//
// Ten seconds is far above that, and as long as the cluster's default
// CommitTimeout, after which the client has given up on the commit anyway;
// while an orphaned transaction lasts, every commit of its grain fails
// after LockTimeout, so it should not outlast the caller's patience by
// much. A client that stalls for that long between the two (a process
// frozen for ten seconds) loses its commit, which fails having committed
// nothing.
const DefaultIdleInTransactionTimeout = 10 * time.Second

// DefaultLockTimeout is the lock_timeout a Commit's transaction sets unless
// Config.LockTimeout or the DSN says otherwise. A Commit waits on a lock
// only behind another commit of the same grain (two activations racing,
// briefly, during a hand-off), which holds it for one round trip between its
// statement and its COMMIT: milliseconds. A longer wait means a holder that
// is not coming back soon, such as the transaction of a client cut off by
// the network, which lasts until idle_in_transaction_session_timeout ends
// it. Without a bound each commit of that grain would hold one of the pool's
// connections for its caller's whole budget (the cluster's CommitTimeout,
// ten seconds by default) and, a few grains so stuck, starve every other
// grain's commits and the reminders. The bound does not end the
// starvation, it eases it: while stuck commits, retried by their callers,
// hold every connection, each other operation waits for one of them to give
// up, up to the lock timeout, and the pool serves the other grains about
// MaxConns operations per lock timeout (eight a second with pgxpool's
// default of four connections). So the bound is as short as a healthy wait
// allows. Half a second is far above one (milliseconds; tens of them for a
// COMMIT waiting on synchronous replication), and a commit that waits that
// long behind a racing commit of its grain would almost always fail anyway,
// with storage.ErrConflict once the other commits. It is well below the
// cluster's budget: a commit behind a stuck lock fails with most of its
// caller's time left.
const DefaultLockTimeout = 500 * time.Millisecond

// DefaultConnectTimeout is the connect timeout Open uses when neither
// Config.ConnectTimeout nor the DSN's connect_timeout sets one. A healthy
// server answers a connection in milliseconds, a distant one with TLS in
// well under a second; a few seconds tell a server that is down or frozen
// from a slow one. Without a bound, pgxpool gives a connection attempt two
// minutes, and it goes on after the caller that needed it gave up, holding
// a slot of the pool: an address that accepts connections but never answers
// (a frozen host, a load balancer with no backend during a failover) would
// leave the store unusable for two minutes after the database is back.
const DefaultConnectTimeout = 5 * time.Second

// Open connects to the database, creates the schema and tables if they are
// missing, and returns the store. ctx bounds the connection and the schema
// set-up only.
//
// When the schema and tables exist, Open only reads them: the role needs
// USAGE on the schema and SELECT, INSERT, UPDATE and DELETE on the tables,
// not CREATE. It refuses, with ErrIncompatibleSchema, a schema whose tables
// are of another layout or are not protograin's (tables without the meta
// table).
//
// Open sets idle_in_transaction_session_timeout to ten seconds
// (DefaultIdleInTransactionTimeout) on the store's sessions unless the DSN
// sets it (as a parameter or in options): the server then ends a transaction
// whose client vanished mid-way, releasing its locks, after ten seconds
// rather than when TCP keepalive notices. (It is sent at
// connection start-up; behind PgBouncer, list it in ignore_startup_parameters
// and rely on PgBouncer's idle_transaction_timeout instead.)
//
// Each connection attempt is bounded by Config.ConnectTimeout (by default
// DefaultConnectTimeout, or the DSN's connect_timeout), and so is each cancel
// request the driver sends to the server when a connection dies under a
// query or a query's context ends.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pc, schema, err := poolConfig(cfg)
	if err != nil {
		return nil, err
	}
	lockTimeout := cmp.Or(cfg.LockTimeout, DefaultLockTimeout)
	if cfg.LockTimeout == 0 && setsParam(pc.ConnConfig.RuntimeParams, lockTimeoutParam) {
		lockTimeout = -1 // the DSN's applies
	}
	s := &Store{schema: schema, q: newQueries(schema), maxConns: pc.MaxConns}
	// pgxpool pings a pooled connection before handing it out only when it
	// was idle over a second, so after a server restart quicker than that
	// the pool's connections, all dead, would be handed out one by one, each
	// failing its call. Once an operation has seen a connection fail, the
	// pool pings each connection it had, once, before it is used again.
	pc.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		c.PgConn().CustomData()[checkedKey] = s.lost.Load()
		return nil
	}
	pc.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool {
		return p.IdleDuration > time.Second || s.unchecked(p.Conn)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect: %w", err)
	}
	// The pool connects lazily; ping so an unreachable server is reported
	// as such rather than as a failed schema set-up.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: connect: %w", err)
	}
	s.pool = pool
	if lockTimeout > 0 {
		// SET LOCAL, in the commit's transaction, rather than a session
		// setting sent at start-up: it applies to the commit alone, not to
		// Open's wait for the schema set-up lock, and it needs no
		// ignore_startup_parameters behind PgBouncer.
		s.lockTimeout = max(lockTimeout, time.Millisecond) // the setting's unit
		s.setLockTimeout = fmt.Sprintf("SET LOCAL lock_timeout = %d", s.lockTimeout.Milliseconds())
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// poolConfig checks cfg and returns the pool's configuration and the schema.
func poolConfig(cfg Config) (*pgxpool.Config, string, error) {
	if cfg.DSN == "" {
		return nil, "", errors.New("pgstore: Config.DSN is empty")
	}
	schema := cfg.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	if strings.IndexByte(schema, 0) >= 0 || len(schema) > 63 {
		return nil, "", fmt.Errorf("pgstore: Config.Schema %q is not a PostgreSQL identifier (at most 63 bytes, no NUL)", schema)
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx's parse errors quote the DSN with its password masked.
		return nil, "", fmt.Errorf("pgstore: Config.DSN: %w", err)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	if cfg.ConnectTimeout < 0 {
		return nil, "", fmt.Errorf("pgstore: Config.ConnectTimeout %v is negative", cfg.ConnectTimeout)
	}
	// The DSN's connect_timeout (or PGCONNECT_TIMEOUT) is parsed into
	// ConnectTimeout; 0 there, libpq's "wait forever", counts as unset:
	// pgxpool would make it two minutes anyway.
	timeout := cmp.Or(cfg.ConnectTimeout, pc.ConnConfig.ConnectTimeout, DefaultConnectTimeout)
	pc.ConnConfig.ConnectTimeout = timeout
	boundCancelRequests(&pc.ConnConfig.Config, timeout)
	if !setsParam(pc.ConnConfig.RuntimeParams, idleInTransactionParam) {
		idle := cmp.Or(cfg.idleInTransaction, DefaultIdleInTransactionTimeout)
		pc.ConnConfig.RuntimeParams[idleInTransactionParam] = fmt.Sprint(idle.Milliseconds())
	}
	return pc, schema, nil
}

// boundCancelRequests bounds by timeout the cancel requests the driver sends.
//
// When a connection fails under a query (the network broke, the server went
// away) or the query's context ends, pgconn closes the connection in the
// background and first sends the server a cancel request on a connection of
// its own, waiting up to 15 s for the server to acknowledge it; pgxpool keeps
// the connection's slot until that is done. Against a server that is down the
// request fails at once, but an address that accepts connections and never
// answers holds the slot for the full 15 s. pgx offers no setting for that
// wait: it is not the context watcher's doing (pgx's default,
// DeadlineContextWatcherHandler, sends no cancel request of its own; the
// CancelRequestContextWatcherHandler alternative would delay the return of a
// query whose context ended, and its own request would be sent the same way),
// so the bound is put on the connection: the dial is bounded, and the
// connection gets a deadline timeout ahead, which AfterNetConnect clears on
// the connections that become sessions. Only cancel-request connections, which
// pgconn dials with the same DialFunc but never passes to AfterNetConnect,
// keep it. The cancel request is worth keeping rather than dropping: when the
// server is alive, it stops at once a statement whose client gave up (one
// waiting on a lock, say), which would otherwise run on, holding locks, until
// the server notices the closed connection. A live server acknowledges it in
// milliseconds; the connect timeout is what the store allows any connection
// to the server to take.
func boundCancelRequests(cc *pgconn.Config, timeout time.Duration) {
	dial := cc.DialFunc
	cc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
	after := cc.AfterNetConnect
	cc.AfterNetConnect = func(ctx context.Context, c *pgconn.Config, conn net.Conn) (net.Conn, error) {
		// A session's deadlines are pgconn's to set from contexts from here
		// on; ConnectTimeout bounds the rest of the start-up.
		if err := conn.SetDeadline(time.Time{}); err != nil {
			return conn, err // pgconn closes it
		}
		if after != nil {
			return after(ctx, c, conn)
		}
		return conn, nil
	}
}

// idleInTransactionParam is the name of the server setting that bounds how
// long a session may stay idle in a transaction.
const idleInTransactionParam = "idle_in_transaction_session_timeout"

// lockNotAvailable is the SQLSTATE of a statement that gave up waiting for
// a lock after lock_timeout.
const lockNotAvailable = "55P03"

// lockTimeoutParam is the name of the server setting that bounds how long a
// statement waits for a lock.
const lockTimeoutParam = "lock_timeout"

// setsParam reports whether the run-time parameters of a parsed DSN set the
// server setting name, directly or through "-c name=value" in options.
func setsParam(params map[string]string, name string) bool {
	for k, v := range params {
		switch strings.ToLower(k) {
		case name:
			return true
		case "options":
			if strings.Contains(strings.ToLower(v), name) {
				return true
			}
		}
	}
	return false
}

// Schema returns the schema that holds the store's tables.
func (s *Store) Schema() string { return s.schema }

// acquire holds the read lock for one operation, unless the store is
// closed; the caller must call the returned release.
func (s *Store) acquire() (release func(), err error) {
	if s.closing.Load() {
		return nil, storage.ErrClosed
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, storage.ErrClosed
	}
	return s.mu.RUnlock, nil
}

// conn takes a connection from the pool. If ctx ends first, the error says
// so: a caller sees that it waited for a connection (every one busy, or a new
// one slow to come), not for the database.
func (s *Store) conn(ctx context.Context) (*pgxpool.Conn, error) {
	c, err := s.pool.Acquire(ctx)
	// Not every error that wraps DeadlineExceeded: a connection attempt
	// that timed out (Config.ConnectTimeout) says so itself.
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("waiting for a connection from the pool (MaxConns %d): %w", s.maxConns, err)
	}
	return c, err
}

// checkedKey keys, in a connection's CustomData, the value of Store.lost
// when the connection was last known sound.
const checkedKey = "pgstore.checked"

// unchecked reports whether the connection has not been checked since an
// operation last saw a connection fail, and marks it checked: the pool pings
// it, and drops it if the ping fails. The pool calls it with the connection
// acquired, so no other goroutine uses its CustomData.
func (s *Store) unchecked(c *pgx.Conn) bool {
	lost := s.lost.Load()
	data := c.PgConn().CustomData()
	if checked, _ := data[checkedKey].(uint64); checked >= lost {
		return false
	}
	data[checkedKey] = lost
	return true
}

// noteLost reports whether err, from an operation on c, ended the connection
// for a reason other than ctx: the server went away or restarted (57P01 on a
// fast shutdown), the network failed. It then counts the loss, so that the
// pool checks its other connections before handing them out: what ended this
// one has likely ended them too. It must be called before c is released.
func (s *Store) noteLost(ctx context.Context, c *pgxpool.Conn, err error) bool {
	if err == nil || ctx.Err() != nil || !c.Conn().IsClosed() {
		return false
	}
	s.lost.Add(1)
	return true
}

// read runs f, a read-only operation, on a connection from the pool. If the
// connection fails under it, f runs once more on another one: a read has no
// effect to repeat, and f returns nothing of a failed run (its results are
// only handed out once it succeeded). The second try gets a connection that
// the pool has just checked (see noteLost) or a new one.
func (s *Store) read(ctx context.Context, f func(c *pgxpool.Conn) error) error {
	for try := 0; ; try++ {
		c, err := s.conn(ctx)
		if err != nil {
			return err
		}
		err = f(c)
		lost := s.noteLost(ctx, c, err)
		c.Release()
		if !lost || try > 0 {
			return err
		}
	}
}

// exec runs a statement on a connection from the pool. It tries again, once,
// only if the statement was never sent (pgconn.SafeToRetry): a write that
// failed after it was sent may have taken effect. An error of a statement
// that was never sent, or that found no connection, wraps
// storage.ErrNotCommitted.
func (s *Store) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	for try := 0; ; try++ {
		c, err := s.conn(ctx)
		if err != nil {
			return pgconn.CommandTag{}, storeutil.NotCommitted(err)
		}
		tag, err := c.Exec(ctx, sql, args...)
		s.noteLost(ctx, c, err)
		c.Release()
		if err == nil || try > 0 || ctx.Err() != nil || !pgconn.SafeToRetry(err) {
			if err != nil && pgconn.SafeToRetry(err) {
				err = storeutil.NotCommitted(err) // never sent
			}
			return tag, err
		}
	}
}

// Load implements storage.Store. One statement reads the version and the
// entries, so they come from one snapshot.
func (s *Store) Load(ctx context.Context, key storage.Key) (map[string][]byte, storage.Version, error) {
	if err := storeutil.CheckKey(ctx, key); err != nil {
		return nil, 0, err
	}
	release, err := s.acquire()
	if err != nil {
		return nil, 0, err
	}
	defer release()

	var entries map[string][]byte
	var version int64
	err = s.read(ctx, func(c *pgxpool.Conn) error {
		rows, err := c.Query(ctx, s.q.load, key.Kind, key.Identity)
		if err != nil {
			return err
		}
		defer rows.Close()
		entries, version = make(map[string][]byte), 0
		for rows.Next() {
			var k *string
			var v []byte
			if err := rows.Scan(&version, &k, &v); err != nil {
				return err
			}
			if k != nil { // nil for a grain with a version and no entries
				entries[*k] = storeutil.Clone(v)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("pgstore: load grain %s: %w", key, err)
	}
	return entries, storage.Version(version), nil
}

// Commit implements storage.Store.
func (s *Store) Commit(ctx context.Context, key storage.Key, expected storage.Version, changes []storage.Change) (storage.Version, error) {
	if err := storeutil.CheckCommit(ctx, key, changes); err != nil {
		return 0, err
	}
	release, err := s.acquire()
	if err != nil {
		return 0, err
	}
	defer release()

	if expected >= math.MaxInt64 {
		// The version column is a bigint: no stored version is this high.
		return 0, storeutil.Conflict(key, expected, s.storedVersion(ctx, key))
	}
	effect := storeutil.Coalesce(changes)
	won, retry, err := s.commitTx(ctx, key, expected, effect)
	if retry {
		won, _, err = s.commitTx(ctx, key, expected, effect)
	}
	if err != nil {
		return 0, fmt.Errorf("pgstore: commit grain %s: %w", key, err)
	}
	if !won {
		return 0, storeutil.Conflict(key, expected, s.storedVersion(ctx, key))
	}
	return expected + 1, nil
}

// commitTx runs the commit transaction and reports whether the version
// check passed.
//
// The transaction's work is one statement (see commitSQL): it checks the
// version and writes the entries only if the check passed, so a stale commit
// takes no lock on entries and cannot deadlock with the valid commit of the
// grain. It is sent with its BEGIN in one round trip; COMMIT, or ROLLBACK
// when the check failed, takes a second. COMMIT is not sent with the rest:
// it could not be withdrawn then, and a Commit whose context ended while its
// statement waited on a lock would still take effect once the lock was
// released. Between the two round trips the transaction waits for the
// client; idle_in_transaction_session_timeout (see Open) bounds that wait if
// the client vanishes.
//
// The statement waits on the grain's version row while another transaction
// holds it, for at most the store's lock timeout (Config.LockTimeout, set
// with SET LOCAL in the same round trip); it then fails, before any COMMIT,
// so nothing was committed.
//
// Every error before COMMIT is sent wraps storage.ErrNotCommitted: no
// connection from the pool, a statement that failed (the lock timeout
// included), a connection lost. Only a COMMIT that fails leaves the outcome
// unknown.
//
// It reports retry when the first round trip failed because the connection
// did (see noteLost), such as one the server closed in a restart before
// the pool noticed: no COMMIT was sent, so nothing was committed (a server
// that is still there rolls the transaction back when the connection closes,
// or when idle_in_transaction_session_timeout ends it), and the commit may
// be tried again on another connection. A COMMIT that fails leaves the
// outcome unknown, and is not tried again.
//
// The isolation level is explicit, READ COMMITTED whatever the server's
// default: under REPEATABLE READ or SERIALIZABLE a commit racing another
// would fail with a serialization error instead of finding the version
// changed.
func (s *Store) commitTx(ctx context.Context, key storage.Key, expected storage.Version, effect storeutil.Coalesced) (won, retry bool, err error) {
	conn, err := s.conn(ctx)
	if err != nil {
		return false, false, storeutil.NotCommitted(err)
	}
	// The pool closes a connection released inside a transaction, which
	// rolls the transaction back: an error below needs no ROLLBACK to be
	// safe, only to keep the connection.
	defer conn.Release()

	commit := s.q.commit
	if expected == 0 {
		commit = s.q.commitNew
	}
	keys, values := split(effect.Set)
	batch := &pgx.Batch{}
	batch.Queue(beginReadCommitted)
	if s.setLockTimeout != "" {
		batch.Queue(s.setLockTimeout)
	}
	batch.Queue(commit, key.Kind, key.Identity, int64(expected), effect.Remove, keys, values)
	results := conn.SendBatch(ctx, batch)
	_, err = results.Exec()
	if err == nil && s.setLockTimeout != "" {
		_, err = results.Exec()
	}
	if err == nil {
		err = results.QueryRow().Scan(&won)
	}
	if cerr := results.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && !conn.Conn().IsClosed() {
			// The server failed the statement, and with it the
			// transaction, and the connection is sound: end the
			// transaction so the pool keeps the connection, rather than
			// make a new one (a grain stuck behind a lock fails again and
			// again).
			conn.Exec(ctx, "ROLLBACK")
			if pgErr.Code == lockNotAvailable {
				bound := "lock_timeout"
				if s.lockTimeout > 0 {
					bound = fmt.Sprintf("the lock timeout (%v)", s.lockTimeout)
				}
				err = fmt.Errorf("another transaction held the grain locked past %s: %w", bound, err)
			}
		}
		return false, s.noteLost(ctx, conn, err), storeutil.NotCommitted(err)
	}
	if !won {
		// Nothing was written; the conflict stands even if this fails.
		conn.Exec(ctx, "ROLLBACK")
		return false, false, nil
	}
	tag, err := conn.Exec(ctx, "COMMIT")
	if err == nil && tag.String() != "COMMIT" {
		// The server answers COMMIT of a failed transaction with ROLLBACK.
		err = fmt.Errorf("transaction rolled back (%s)", tag)
	}
	s.noteLost(ctx, conn, err)
	return err == nil, false, err
}

func split(m map[string][]byte) ([]string, [][]byte) {
	keys := make([]string, 0, len(m))
	values := make([][]byte, 0, len(m))
	for k, v := range m {
		keys = append(keys, k)
		values = append(values, v)
	}
	return keys, values
}

// storedVersion reads the grain's version for a conflict message; zero if
// it cannot.
func (s *Store) storedVersion(ctx context.Context, key storage.Key) storage.Version {
	var v int64
	err := s.read(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, s.q.version, key.Kind, key.Identity).Scan(&v)
	})
	if err != nil {
		return 0
	}
	return storage.Version(v)
}

// SaveReminder implements storage.Store.
func (s *Store) SaveReminder(ctx context.Context, r storage.Reminder) error {
	if err := storeutil.CheckReminder(ctx, r); err != nil {
		return err
	}
	release, err := s.acquire()
	if err != nil {
		return err
	}
	defer release()
	_, err = s.exec(ctx, s.q.saveReminder, r.Grain.Kind, r.Grain.Identity, r.Name, r.Due.UnixNano(), int64(r.Period))
	if err != nil {
		return fmt.Errorf("pgstore: save reminder %q of grain %s: %w", r.Name, r.Grain, err)
	}
	return nil
}

// DeleteReminder implements storage.Store.
func (s *Store) DeleteReminder(ctx context.Context, key storage.Key, name string) error {
	if err := storeutil.CheckReminderKey(ctx, key, name); err != nil {
		return err
	}
	release, err := s.acquire()
	if err != nil {
		return err
	}
	defer release()
	if _, err := s.exec(ctx, s.q.deleteReminder, key.Kind, key.Identity, name); err != nil {
		return fmt.Errorf("pgstore: delete reminder %q of grain %s: %w", name, key, err)
	}
	return nil
}

// CompleteReminder implements storage.Store, in one statement that
// updates or deletes the row only where it still holds fired's due time and
// period (both stored as nanoseconds, so compared exactly).
func (s *Store) CompleteReminder(ctx context.Context, fired storage.Reminder, next *storage.Reminder) (bool, error) {
	if err := storeutil.CheckCompleteReminder(ctx, fired, next); err != nil {
		return false, err
	}
	release, err := s.acquire()
	if err != nil {
		return false, err
	}
	defer release()
	args := []any{fired.Grain.Kind, fired.Grain.Identity, fired.Name, fired.Due.UnixNano(), int64(fired.Period)}
	q := s.q.deleteFiredReminder
	if next != nil {
		q = s.q.replaceFiredReminder
		args = append(args, next.Due.UnixNano(), int64(next.Period))
	}
	tag, err := s.exec(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("pgstore: complete reminder %q of grain %s: %w", fired.Name, fired.Grain, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ListReminders implements storage.Store.
func (s *Store) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	if err := storeutil.CheckKind(ctx, kind); err != nil {
		return nil, err
	}
	release, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	var out []storage.Reminder
	err = s.read(ctx, func(c *pgxpool.Conn) error {
		rows, err := c.Query(ctx, s.q.listReminders, kind)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.Reminder, error) {
			r := storage.Reminder{Grain: storage.Key{Kind: kind}}
			var due, period int64
			err := row.Scan(&r.Grain.Identity, &r.Name, &due, &period)
			r.Due = time.Unix(0, due).UTC()
			r.Period = time.Duration(period)
			return r, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: list reminders of kind %q: %w", kind, err)
	}
	return out, nil
}

// Close implements storage.Store. It waits for operations under way, then
// closes the connection pool; operations that begin meanwhile fail with
// storage.ErrClosed.
func (s *Store) Close() error {
	s.closing.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.pool.Close()
	}
	return nil
}
