package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// layoutVersion is the version of the tables described in the package doc,
// kept in the meta table so a later layout can recognise older ones.
const layoutVersion = "1"

// migrationLock is the key of the transaction-level advisory lock that
// serializes schema set-up among nodes opening the same database at once:
// CREATE ... IF NOT EXISTS alone can fail with a duplicate-key error when
// two sessions race.
const migrationLock = 0x70726f746f67 // "protog"

// tableSQL returns the statement that creates the named table of the
// store (one of tableNames); {s} is replaced by the quoted schema name. Open
// runs only the statements of missing tables: PostgreSQL checks the CREATE
// privilege before IF NOT EXISTS, so running them all would need rights a
// store whose tables exist does not.
func tableSQL(name string) string {
	switch name {
	case "meta":
		return `CREATE TABLE IF NOT EXISTS {s}.meta (
	name  text COLLATE "C" PRIMARY KEY,
	value text NOT NULL
)`
	case "grains":
		return `CREATE TABLE IF NOT EXISTS {s}.grains (
	kind     text COLLATE "C" NOT NULL,
	identity text COLLATE "C" NOT NULL,
	version  bigint NOT NULL,
	PRIMARY KEY (kind, identity)
)`
	case "entries":
		return `CREATE TABLE IF NOT EXISTS {s}.entries (
	kind     text COLLATE "C" NOT NULL,
	identity text COLLATE "C" NOT NULL,
	key      text COLLATE "C" NOT NULL,
	value    bytea NOT NULL,
	PRIMARY KEY (kind, identity, key)
)`
	case "reminders":
		return `CREATE TABLE IF NOT EXISTS {s}.reminders (
	kind      text COLLATE "C" NOT NULL,
	identity  text COLLATE "C" NOT NULL,
	name      text COLLATE "C" NOT NULL,
	due_ns    bigint NOT NULL,
	period_ns bigint NOT NULL,
	PRIMARY KEY (kind, identity, name)
)`
	}
	panic("pgstore: no table " + name)
}

// tableNames returns the store's tables, meta first: it is created first.
func tableNames() []string { return []string{"meta", "grains", "entries", "reminders"} }

// beginReadCommitted begins a transaction of the store. The isolation level
// is explicit: the store relies on READ COMMITTED (a statement waiting on a
// row lock re-reads the row) whatever default the server or role sets.
const beginReadCommitted = "BEGIN ISOLATION LEVEL READ COMMITTED"

// commitSQL is a Commit's statement; {s} is replaced by the quoted schema
// name and {check} by the version check, a statement that touches the
// grain's version row only if the version is the expected one ($3), and then
// returns a row. The entry changes ($4 the keys to remove, $5 and $6 the
// keys and values to set) run only if the check returned its row: a stale
// commit locks no entry. The check locks the version row first, so two
// commits of a grain that both pass it cannot exist at once. The statement
// returns whether the check passed.
const commitSQL = `WITH checked AS ({check} RETURNING 1),
removed AS (
	DELETE FROM {s}.entries
	WHERE kind = $1 AND identity = $2 AND key = ANY($4::text[])
		AND EXISTS (SELECT FROM checked)
),
upserted AS (
	INSERT INTO {s}.entries (kind, identity, key, value)
	SELECT $1, $2, u.key, u.value FROM unnest($5::text[], $6::bytea[]) AS u(key, value)
	WHERE EXISTS (SELECT FROM checked)
	ON CONFLICT (kind, identity, key) DO UPDATE SET value = EXCLUDED.value
)
SELECT EXISTS (SELECT FROM checked)`

// queries are the store's statements with the schema name filled in.
type queries struct {
	load, version                               string
	commit, commitNew                           string
	saveReminder, deleteReminder, listReminders string
	replaceFiredReminder, deleteFiredReminder   string
	layout                                      string
}

func newQueries(schema string) queries {
	s := pgx.Identifier{schema}.Sanitize()
	q := func(sql string) string { return strings.ReplaceAll(sql, "{s}", s) }
	return queries{
		load: q(`SELECT g.version, e.key, e.value FROM {s}.grains g
			LEFT JOIN {s}.entries e ON e.kind = g.kind AND e.identity = g.identity
			WHERE g.kind = $1 AND g.identity = $2`),
		version: q(`SELECT version FROM {s}.grains WHERE kind = $1 AND identity = $2`),
		// An existing grain: raise the version if it is the expected one.
		commit: q(strings.Replace(commitSQL, "{check}", `UPDATE {s}.grains SET version = version + 1
			WHERE kind = $1::text AND identity = $2::text AND version = $3::bigint`, 1)),
		// A new grain (expected version zero): insert its version row unless
		// another commit did.
		commitNew: q(strings.Replace(commitSQL, "{check}", `INSERT INTO {s}.grains (kind, identity, version)
			VALUES ($1::text, $2::text, $3::bigint + 1)
			ON CONFLICT (kind, identity) DO NOTHING`, 1)),
		saveReminder: q(`INSERT INTO {s}.reminders (kind, identity, name, due_ns, period_ns)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (kind, identity, name) DO UPDATE SET due_ns = EXCLUDED.due_ns, period_ns = EXCLUDED.period_ns`),
		deleteReminder: q(`DELETE FROM {s}.reminders WHERE kind = $1 AND identity = $2 AND name = $3`),
		// The fired reminder's row, if it still holds the due time and
		// period that fired ($4, $5): a row another writer changed or
		// deleted meanwhile is left as it is.
		replaceFiredReminder: q(`UPDATE {s}.reminders SET due_ns = $6, period_ns = $7
			WHERE kind = $1 AND identity = $2 AND name = $3 AND due_ns = $4 AND period_ns = $5`),
		deleteFiredReminder: q(`DELETE FROM {s}.reminders
			WHERE kind = $1 AND identity = $2 AND name = $3 AND due_ns = $4 AND period_ns = $5`),
		listReminders: q(`SELECT identity, name, due_ns, period_ns FROM {s}.reminders
			WHERE kind = $1 ORDER BY identity, name`),
		layout: q(`SELECT value FROM {s}.meta WHERE name = 'layout'`),
	}
}

// schemaState is what Open finds in the store's schema.
type schemaState struct {
	schemaExists bool
	tables       map[string]bool // which of tableNames exist
	version      string          // the meta table's layout version; "" if none
}

// inspect reads the layout of the store's schema. It needs no privilege
// beyond USAGE on the schema and SELECT on the meta table.
func (s *Store) inspect(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
}) (schemaState, error) {
	l := schemaState{tables: make(map[string]bool)}
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1)",
		s.schema).Scan(&l.schemaExists); err != nil || !l.schemaExists {
		return l, err
	}
	rows, err := db.Query(ctx, `SELECT c.relname::text FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = ANY($2::text[])`, s.schema, tableNames())
	if err != nil {
		return l, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return l, err
	}
	for _, n := range names {
		l.tables[n] = true
	}
	if l.tables["meta"] {
		err := db.QueryRow(ctx, s.q.layout).Scan(&l.version)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return l, err
		}
	}
	return l, nil
}

// check reports whether l is a complete store of this build's layout
// (complete), or an error wrapping ErrIncompatibleSchema if the schema holds
// tables of another layout or tables that are not protograin's.
func (l schemaState) check(schema string) (complete bool, err error) {
	if !l.tables["meta"] && len(l.tables) > 0 {
		var found []string
		for _, n := range tableNames() {
			if l.tables[n] {
				found = append(found, n)
			}
		}
		return false, fmt.Errorf("%w: schema %q holds tables %q but no meta table: not a protograin store",
			ErrIncompatibleSchema, schema, found)
	}
	if l.version != "" && l.version != layoutVersion {
		return false, fmt.Errorf("%w: schema %q has layout version %q, this build uses %q",
			ErrIncompatibleSchema, schema, l.version, layoutVersion)
	}
	return l.version == layoutVersion && len(l.tables) == len(tableNames()), nil
}

// migrate creates the schema and tables if they are missing and checks the
// layout version. A complete store of this layout is only read; otherwise
// the missing parts are created in one transaction under the migration lock,
// after reading the layout again under it.
func (s *Store) migrate(ctx context.Context) error {
	l, err := s.inspect(ctx, s.pool)
	if err == nil {
		var complete bool
		if complete, err = l.check(s.schema); complete {
			return nil
		}
	}
	if err == nil {
		err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
			return s.create(ctx, tx)
		})
	}
	if err != nil {
		return fmt.Errorf("pgstore: set up schema %q: %w", s.schema, err)
	}
	return nil
}

// create creates what is missing of the store's schema and tables, in tx.
func (s *Store) create(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
		return err
	}
	l, err := s.inspect(ctx, tx)
	if err != nil {
		return err
	}
	if complete, err := l.check(s.schema); err != nil || complete {
		return err
	}
	quoted := pgx.Identifier{s.schema}.Sanitize()
	if !l.schemaExists {
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoted); err != nil {
			return err
		}
	}
	for _, n := range tableNames() {
		if !l.tables[n] {
			if _, err := tx.Exec(ctx, strings.ReplaceAll(tableSQL(n), "{s}", quoted)); err != nil {
				return err
			}
		}
	}
	if l.version == "" {
		if _, err := tx.Exec(ctx, "INSERT INTO "+quoted+".meta (name, value) VALUES ('layout', $1) ON CONFLICT (name) DO NOTHING",
			layoutVersion); err != nil {
			return err
		}
	}
	return nil
}
