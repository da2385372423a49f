// Package pgstore is a storage.Store in PostgreSQL, through a pgx connection
// pool, for clusters whose grain state must outlive any one node's disk.
//
// Open creates its schema and tables if they are missing, under an advisory
// lock so that nodes starting together do not race, and checks the layout
// version of tables that exist. Tables, in Config.Schema:
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
// A Commit is one transaction: a conditional update of the grain's version
// row (an insert that does nothing on conflict, for a new grain) followed by
// the entry changes. Two racing commits with the same expected version
// serialize on the version row; the second finds the version changed, its
// update touches no row, and it rolls back with storage.ErrConflict.
//
// It must not import the cluster or runtime packages.
package pgstore
