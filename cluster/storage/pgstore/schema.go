package pgstore

import (
	"context"
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

// schemaSQL creates the store's schema and tables; {s} is replaced by the
// quoted schema name.
const schemaSQL = `
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.meta (
	name  text COLLATE "C" PRIMARY KEY,
	value text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.grains (
	kind     text COLLATE "C" NOT NULL,
	identity text COLLATE "C" NOT NULL,
	version  bigint NOT NULL,
	PRIMARY KEY (kind, identity)
);
CREATE TABLE IF NOT EXISTS {s}.entries (
	kind     text COLLATE "C" NOT NULL,
	identity text COLLATE "C" NOT NULL,
	key      text COLLATE "C" NOT NULL,
	value    bytea NOT NULL,
	PRIMARY KEY (kind, identity, key)
);
CREATE TABLE IF NOT EXISTS {s}.reminders (
	kind      text COLLATE "C" NOT NULL,
	identity  text COLLATE "C" NOT NULL,
	name      text COLLATE "C" NOT NULL,
	due_ns    bigint NOT NULL,
	period_ns bigint NOT NULL,
	PRIMARY KEY (kind, identity, name)
);
INSERT INTO {s}.meta (name, value) VALUES ('layout', '` + layoutVersion + `')
	ON CONFLICT (name) DO NOTHING;
`

// queries are the store's statements with the schema name filled in.
type queries struct {
	load, version                               string
	insertGrain, bumpVersion                    string
	deleteEntries, upsertEntries                string
	saveReminder, deleteReminder, listReminders string
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
		insertGrain: q(`INSERT INTO {s}.grains (kind, identity, version) VALUES ($1, $2, 1)
			ON CONFLICT (kind, identity) DO NOTHING`),
		bumpVersion: q(`UPDATE {s}.grains SET version = version + 1
			WHERE kind = $1 AND identity = $2 AND version = $3`),
		deleteEntries: q(`DELETE FROM {s}.entries WHERE kind = $1 AND identity = $2 AND key = ANY($3::text[])`),
		upsertEntries: q(`INSERT INTO {s}.entries (kind, identity, key, value)
			SELECT $1, $2, u.key, u.value FROM unnest($3::text[], $4::bytea[]) AS u(key, value)
			ON CONFLICT (kind, identity, key) DO UPDATE SET value = EXCLUDED.value`),
		saveReminder: q(`INSERT INTO {s}.reminders (kind, identity, name, due_ns, period_ns)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (kind, identity, name) DO UPDATE SET due_ns = EXCLUDED.due_ns, period_ns = EXCLUDED.period_ns`),
		deleteReminder: q(`DELETE FROM {s}.reminders WHERE kind = $1 AND identity = $2 AND name = $3`),
		listReminders: q(`SELECT identity, name, due_ns, period_ns FROM {s}.reminders
			WHERE kind = $1 ORDER BY identity, name`),
		layout: q(`SELECT value FROM {s}.meta WHERE name = 'layout'`),
	}
}

// migrate creates the schema and tables if they are missing and checks the
// layout version, in one transaction under the migration lock.
func (s *Store) migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
			return err
		}
		sql := strings.ReplaceAll(schemaSQL, "{s}", pgx.Identifier{s.schema}.Sanitize())
		// No arguments: pgx sends it with the simple protocol, which runs
		// several statements.
		if _, err := tx.Exec(ctx, sql); err != nil {
			return err
		}
		var layout string
		if err := tx.QueryRow(ctx, s.q.layout).Scan(&layout); err != nil {
			return err
		}
		if layout != layoutVersion {
			return fmt.Errorf("%w: schema %q has layout version %q, this build uses %q",
				ErrIncompatibleSchema, s.schema, layout, layoutVersion)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: set up schema %q: %w", s.schema, err)
	}
	return nil
}
