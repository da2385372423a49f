// Package pgtest opens PostgreSQL stores for tests: each in a schema of its
// own, dropped when the test ends, on the server that DSNEnv names. Without
// that variable the tests that need PostgreSQL skip, saying how to start one.
//
// It is for tests only and must not import the cluster or runtime packages.
package pgtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/protograin/protograin/cluster/storage/pgstore"
)

// DSNEnv is the environment variable that holds the DSN of the PostgreSQL
// server tests use. .ci/postgres.sh installs and starts a local server and
// prints its export.
const DSNEnv = "PROTOGRAIN_POSTGRES_DSN"

// DSN returns the test server's DSN, or skips t when DSNEnv is not set.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		t.Skipf("%s is not set: start a local PostgreSQL with `eval \"$(bash .ci/postgres.sh)\"` "+
			"from the repository root (it installs, starts and prints the export), "+
			"or set it to a database where this user may create schemas", DSNEnv)
	}
	return dsn
}

// Schema returns a schema name unique to t and to this run, and drops the
// schema on the server dsn names when t ends. The name is made from t's name,
// so a schema left behind by a killed run says which test made it.
func Schema(t testing.TB, dsn string) string {
	t.Helper()
	// A random suffix keeps runs apart even if one died before its cleanup.
	suffix := fmt.Sprintf("_%08x", rand.Uint32())
	name := strings.ToLower(nonWord.ReplaceAllString(t.Name(), "_"))
	if limit := maxIdentifier - len("t_") - len(suffix); len(name) > limit {
		name = name[len(name)-limit:]
	}
	schema := "t_" + name + suffix
	t.Cleanup(func() {
		if err := dropSchema(dsn, schema); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// Open opens a store on the test server in a fresh schema, with at most
// maxConns connections (zero means pgstore's default), and closes it and
// drops the schema when t ends. It skips t when DSNEnv is not set.
func Open(t testing.TB, maxConns int32) *pgstore.Store {
	t.Helper()
	dsn := DSN(t)
	// Schema registers its drop first, so it runs after the Close below:
	// cleanups run last-registered first.
	schema := Schema(t, dsn)
	s, err := pgstore.Open(context.Background(), pgstore.Config{DSN: dsn, Schema: schema, MaxConns: maxConns})
	if err != nil {
		t.Fatalf("pgtest: open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// maxIdentifier is PostgreSQL's limit on identifier length, in bytes.
const maxIdentifier = 63

// nonWord matches what may not appear in an unquoted identifier.
var nonWord = regexp.MustCompile(`[^A-Za-z0-9]+`)

func dropSchema(dsn, schema string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	return err
}
