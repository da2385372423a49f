package pgstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/protograin/protograin/cluster/storage"
)

// These tests are in the package to reach the store's connections and its
// idle-in-transaction default; they cannot use pgtest, which imports the
// package.

// internalConfig returns the configuration of a store on the test server in a
// schema of the test's own, dropped when t ends, or skips t without a server.
func internalConfig(t *testing.T) Config {
	t.Helper()
	dsn := os.Getenv("PROTOGRAIN_POSTGRES_DSN") // pgtest.DSNEnv
	if dsn == "" {
		t.Skip("PROTOGRAIN_POSTGRES_DSN is not set (see pgtest)")
	}
	schema := fmt.Sprintf("t_internal_%08x", rand.Uint32())
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return Config{DSN: dsn, Schema: schema}
}

func openInternal(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestOpenSetsIdleInTransactionTimeout checks the idle-in-transaction bound
// of the store's sessions: Open's default when the DSN sets none, and the
// DSN's own otherwise, given as a parameter or in options.
func TestOpenSetsIdleInTransactionTimeout(t *testing.T) {
	cfg := internalConfig(t)
	tests := []struct {
		name, params, want string
	}{
		{"default", "", "10s"},
		{"parameter", "idle_in_transaction_session_timeout=250", "250ms"},
		{"options", "options=" + url.QueryEscape("-c idle_in_transaction_session_timeout=5s"), "5s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openInternal(t, Config{DSN: withParams(t, cfg.DSN, tt.params), Schema: cfg.Schema, MaxConns: 1})
			var got string
			if err := s.pool.QueryRow(context.Background(), "SHOW idle_in_transaction_session_timeout").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("idle_in_transaction_session_timeout = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCutCommitDoesNotWedgeTheGrain cuts a Commit's connection after its
// statement ran and before its COMMIT reached the server, as a network
// partition does: the server sees no more of the client, nor that it went,
// and the transaction keeps the grain's version row locked. The server must
// end that transaction after the idle-in-transaction bound Open set (here
// shortened), so that a later commit of the grain, from a healthy
// connection, goes through instead of waiting for TCP keepalive.
func TestCutCommitDoesNotWedgeTheGrain(t *testing.T) {
	ctx := context.Background()
	cfg := internalConfig(t)
	cfg.idleInTransaction = 200 * time.Millisecond
	healthy := openInternal(t, cfg)
	key := storage.Key{Kind: "test.Counter", Identity: "wedged"}
	v, err := healthy.Commit(ctx, key, 0, []storage.Change{{Key: "k", Value: []byte("before")}})
	if err != nil {
		t.Fatal(err)
	}

	p := newCutProxy(t, cfg.DSN)
	cut := openInternal(t, Config{DSN: p.dsn, Schema: cfg.Schema, MaxConns: 1, idleInTransaction: cfg.idleInTransaction})
	p.armed.Store(true)
	cutCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := cut.Commit(cutCtx, key, v, []storage.Change{{Key: "k", Value: []byte("cut")}})
		done <- err
	}()
	select {
	case <-p.cut:
	case err := <-done:
		t.Fatalf("Commit returned (%v) without sending COMMIT on its own", err)
	}
	cancel() // the client gives up; the server does not hear of it
	if err := <-done; err == nil || errors.Is(err, storage.ErrConflict) {
		t.Fatalf("the cut Commit: err = %v, want an error other than ErrConflict", err)
	}

	// Without the bound, this waits on the version row until its deadline.
	later, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	nv, err := healthy.Commit(later, key, v, []storage.Change{{Key: "k", Value: []byte("after")}})
	if err != nil {
		t.Fatalf("a later commit of the grain from a healthy connection: %v", err)
	}
	got, gotV, err := healthy.Load(ctx, key)
	if err != nil || gotV != nv || string(got["k"]) != "after" {
		t.Fatalf("after: %q at version %d (err %v), want k=after at %d", got, gotV, err, nv)
	}
}

// cutProxy relays PostgreSQL connections between a client and the server,
// through a Unix socket of its own. Once armed, it swallows the first COMMIT
// a client sends as a simple query, and every byte after it from that
// client, keeping the server's side open: the server never learns that the
// client is gone.
type cutProxy struct {
	dsn   string        // the test DSN, through the proxy
	armed atomic.Bool   // set to cut at the next COMMIT
	cut   chan struct{} // closed when a COMMIT was swallowed

	target    func() (net.Conn, error)
	ln        net.Listener
	mu        sync.Mutex
	conns     []net.Conn
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func newCutProxy(t *testing.T, dsn string) *cutProxy {
	t.Helper()
	ln, target, proxied := listenProxy(t, dsn)
	p := &cutProxy{dsn: proxied, cut: make(chan struct{}), target: target, ln: ln}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// listenProxy listens on a Unix socket of its own for a proxy to the server
// dsn names. It returns the listener, a function that dials the server, and
// dsn through the proxy: the client reaches the proxy's socket, the rest of
// the DSN (user, database, password) goes through unchanged. It skips t for
// a DSN that is not a URL.
func listenProxy(t *testing.T, dsn string) (ln net.Listener, target func() (net.Conn, error), proxied string) {
	t.Helper()
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil || !strings.Contains(dsn, "://") {
		t.Skip("the proxy rewrites URL DSNs only")
	}
	network, address := "tcp", net.JoinHostPort(pc.Host, fmt.Sprint(pc.Port))
	if strings.HasPrefix(pc.Host, "/") {
		network, address = "unix", filepath.Join(pc.Host, fmt.Sprintf(".s.PGSQL.%d", pc.Port))
	}
	dir, err := os.MkdirTemp("", "pgproxy") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err = net.Listen("unix", filepath.Join(dir, fmt.Sprintf(".s.PGSQL.%d", pc.Port)))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("host", dir)
	q.Set("port", fmt.Sprint(pc.Port))
	q.Set("sslmode", "disable")
	u.Host = ""
	u.RawQuery = q.Encode()
	return ln, func() (net.Conn, error) { return net.Dial(network, address) }, u.String()
}

func (p *cutProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := p.target()
		if err != nil {
			client.Close()
			continue
		}
		p.track(client)
		p.track(server)
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			io.Copy(client, server)
			client.Close()
		}()
		go func() {
			defer p.wg.Done()
			if !p.relay(client, server) {
				server.Close() // the client went: let the server know
			}
		}()
	}
}

// relay copies the client's messages to the server. It reports whether it
// swallowed a COMMIT, leaving the server's side open.
func (p *cutProxy) relay(client, server net.Conn) bool {
	// The startup message has no type byte. Over a Unix socket pgx sends
	// no SSL request before it.
	var hdr [4]byte
	if _, err := io.ReadFull(client, hdr[:]); err != nil {
		return false
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:])-4)
	if _, err := io.ReadFull(client, body); err != nil {
		return false
	}
	if _, err := server.Write(append(hdr[:], body...)); err != nil {
		return false
	}
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(client, hdr[:]); err != nil {
			return false
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(client, body); err != nil {
			return false
		}
		isCommit := hdr[0] == 'Q' && strings.EqualFold(strings.TrimSpace(strings.TrimRight(string(body), "\x00")), "commit")
		if isCommit && p.armed.CompareAndSwap(true, false) {
			p.closeOnce.Do(func() { close(p.cut) })
			io.Copy(io.Discard, client) // until the client or the test closes it
			return true
		}
		if _, err := server.Write(append(hdr[:], body...)); err != nil {
			return false
		}
	}
}

// withParams returns dsn, a URL, with the URL parameters params appended;
// it skips the test when dsn is not a URL.
func withParams(t *testing.T, dsn, params string) string {
	t.Helper()
	if !strings.Contains(dsn, "://") {
		t.Skip("the test appends URL parameters to the DSN")
	}
	switch {
	case params == "":
		return dsn
	case strings.Contains(dsn, "?"):
		return dsn + "&" + params
	}
	return dsn + "?" + params
}
