package pgstore

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// switchProxy stands in for the database's address across a failover. In
// forward mode it relays connections to the server; frozen, it accepts
// connections and never answers them, as a frozen host or a load balancer
// with no backend up does.
type switchProxy struct {
	dsn string // the test DSN, through the proxy

	// startups and cancels count the connections held while frozen that
	// sent a startup message (a new connection of the pool) or a cancel
	// request.
	startups, cancels atomic.Int64

	target func() (net.Conn, error)
	mu     sync.Mutex
	frozen bool
	live   []net.Conn // relayed connections, both ends
	held   []net.Conn // accepted while frozen
}

func newSwitchProxy(t *testing.T, dsn string) *switchProxy {
	t.Helper()
	ln, target, proxied := listenProxy(t, dsn)
	p := &switchProxy{dsn: proxied, target: target}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range append(p.live, p.held...) {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.frozen {
				p.held = append(p.held, c)
				p.mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					var b [8]byte
					if _, err := io.ReadFull(c, b[:]); err != nil {
						return
					}
					switch binary.BigEndian.Uint32(b[4:]) {
					case 196608: // protocol 3.0
						p.startups.Add(1)
					case 80877102:
						p.cancels.Add(1)
					}
				}()
				continue
			}
			p.mu.Unlock()
			s, err := p.target()
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.live = append(p.live, c, s)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(s, c); s.Close() }()
			go func() { defer wg.Done(); io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

// freeze cuts every relayed connection (the server is gone) and holds the
// connections that come next unanswered.
func (p *switchProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
	for _, c := range p.live {
		c.Close()
	}
	p.live = nil
}

// thaw relays new connections again (the new primary is up); those held
// while frozen stay held.
func (p *switchProxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = false
}

// waitUntil waits until cond holds, failing t after limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(time.Millisecond) // polling pace
	}
}

// TestFrozenAddressReleasesThePool: the database's address stops
// answering (connections accepted, never answered), then reaches the server
// again. The store must work again within a few seconds of that, whatever it
// was doing while the address was frozen:
//
//   - connect: the pool had begun a connection there for a caller that
//     gave up; the attempt goes on in the background, holding the pool's
//     only slot, until the connect timeout (pgxpool's two minutes without
//     one).
//   - cancel: the pool's connection was cut under a query; the driver sends
//     the server a cancel request before it gives the slot back, which the
//     frozen address holds until pgconn's 15 s, unless bounded too.
//
// The store's connect timeout is one second here; the test allows ten.
func TestFrozenAddressReleasesThePool(t *testing.T) {
	const timeout, limit = time.Second, 10 * time.Second
	for _, tc := range []struct {
		name   string
		outage func(t *testing.T, s *Store, p *switchProxy)
	}{
		{"connect", func(t *testing.T, s *Store, p *switchProxy) {
			// Empty the pool, so the next call needs a new connection.
			s.pool.Reset()
			waitUntil(t, limit, "the pool to close its connection", func() bool { return s.pool.Stat().TotalConns() == 0 })
			p.freeze()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if _, _, err := s.Load(ctx, storage.Key{Kind: "test.Counter", Identity: "during"}); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Load while frozen: %v, want DeadlineExceeded", err)
			}
			waitUntil(t, limit, "the pool to connect to the frozen address", func() bool { return p.startups.Load() > 0 })
		}},
		{"cancel", func(t *testing.T, s *Store, p *switchProxy) {
			// The pool's connection is cut; the next query on it fails.
			p.freeze()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if _, _, err := s.Load(ctx, storage.Key{Kind: "test.Counter", Identity: "during"}); err == nil {
				t.Fatal("Load on a cut connection succeeded")
			}
			waitUntil(t, limit, "a cancel request to the frozen address", func() bool { return p.cancels.Load() > 0 })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := internalConfig(t)
			p := newSwitchProxy(t, cfg.DSN)
			s, err := Open(context.Background(), Config{DSN: p.dsn, Schema: cfg.Schema, MaxConns: 1, ConnectTimeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			// Close waits for what the pool still holds: not in the test.
			t.Cleanup(func() { go s.Close() })
			key := storage.Key{Kind: "test.Counter", Identity: "after"}
			if _, _, err := s.Load(context.Background(), key); err != nil {
				t.Fatal(err)
			}

			tc.outage(t, s, p)
			p.thaw()
			thawed := time.Now()
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				_, _, err := s.Load(ctx, key)
				cancel()
				if err == nil {
					t.Logf("the store worked again %v after the thaw", time.Since(thawed).Round(time.Millisecond))
					return
				}
				if time.Since(thawed) > limit {
					t.Fatalf("no Load went through within %v after the address answered again: %v", limit, err)
				}
			}
		})
	}
}

// TestConnectTimeout checks the connect timeout Open gives the pool: the
// configured one, else the DSN's, else the default.
func TestConnectTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  time.Duration
		dsn  string
		want time.Duration
	}{
		{"default", 0, "postgres://u@127.0.0.1:1/db", DefaultConnectTimeout},
		{"DSN", 0, "postgres://u@127.0.0.1:1/db?connect_timeout=7", 7 * time.Second},
		{"DSN zero", 0, "postgres://u@127.0.0.1:1/db?connect_timeout=0", DefaultConnectTimeout},
		{"config", 3 * time.Second, "postgres://u@127.0.0.1:1/db?connect_timeout=7", 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc, _, err := poolConfig(Config{DSN: tc.dsn, ConnectTimeout: tc.cfg})
			if err != nil {
				t.Fatal(err)
			}
			if got := pc.ConnConfig.ConnectTimeout; got != tc.want {
				t.Fatalf("connect timeout %v, want %v", got, tc.want)
			}
		})
	}
}
