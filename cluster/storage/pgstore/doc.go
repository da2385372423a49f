// Package pgstore is a storage.Store in PostgreSQL, through a pgx connection
// pool, for clusters whose grain state must outlive any one node's disk.
//
// Open creates its schema and tables if they are missing, under an advisory
// lock so that nodes starting together do not race, and checks the layout
// version of tables that exist. A schema whose tables all exist is only
// read, so a role without CREATE rights can open it; a schema holding tables
// that protograin did not create (no meta table) is refused. Tables, in
// Config.Schema:
//
//	grains    (kind, identity) → version
//	entries   (kind, identity, key) → value
//	reminders (kind, identity, name) → due_ns, period_ns
//	meta      (name) → value; "layout" is the layout version
//
// Names are text with the "C" collation, so ListReminders orders them
// byte-wise like Go strings; times are kept as Unix nanoseconds so they
// round-trip exactly.
//
// A Commit is one transaction at READ COMMITTED, whatever the server's
// default isolation. One statement checks the version (a conditional update
// of the grain's version row, or an insert that does nothing on conflict for
// a new grain) and applies the entry changes only if the check passed. Two
// racing commits with the same expected version serialize on the version
// row; the second finds the version changed, writes nothing, takes no lock
// on entries, and rolls back with storage.ErrConflict. The statement goes
// with its BEGIN in one round trip, the COMMIT in a second.
//
// Open sets idle_in_transaction_session_timeout to ten seconds on the
// store's sessions, unless the DSN sets it: if the network fails between a
// commit's statement and its COMMIT, the server ends the transaction, and
// releases the grain's version row, after ten seconds instead of when TCP
// keepalive notices, hours later. Meanwhile a Commit of that grain waits for
// the row at most Config.LockTimeout (DefaultLockTimeout, half a second, unless
// the DSN sets lock_timeout), then fails having committed nothing: stuck
// grains do not hold the pool's connections for their callers' whole budget,
// starving the other grains and the reminders.
//
// Connection attempts are bounded by Config.ConnectTimeout
// (DefaultConnectTimeout, five seconds, unless it or the DSN's
// connect_timeout says otherwise), and so are the cancel requests the driver
// sends when a connection dies under a query: an address that accepts
// connections and never answers, as during a failover, holds the pool's
// slots for that long rather than minutes.
//
// When a connection turns out dead under a call (the server restarted, or
// ended the session, before the pool noticed), the pool checks each of its
// other connections with a ping before it is next used, and the call is
// tried once more on another connection if that is safe: a read (Load,
// ListReminders), a Commit that had not yet sent its COMMIT (nothing was
// committed), or a statement that was never sent. A reminder write that
// failed after it was sent is not repeated: it may have taken effect.
//
// It must not import the cluster or runtime packages.
package pgstore
