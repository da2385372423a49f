package cluster

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestNodesThatStartedApartFindEachOther: the pods of a StatefulSet
// start at once with a headless service as their seed, which resolves to
// the pods DNS lists by then, their own included. Here a starts before
// b listens, and b's DNS does not list a yet: each starts alone. They
// used to stay two clusters for good, each placing every grain on itself;
// now a joins the seed that is not a member again, and they become one,
// and call each other's grains.
func TestNodesThatStartedApartFindEachOther(t *testing.T) {
	t.Parallel()
	// b's port is free when a takes it for a seed, and may not be when b
	// starts: another test's connection may have taken it for its local
	// port meanwhile (met once in a CI-like run). Such a start is tried
	// again, on other ports.
	var nodes []*Node
	for attempt := 1; nodes == nil; attempt++ {
		var err error
		if nodes, err = startApart(t); err != nil {
			if !strings.Contains(err.Error(), "address already in use") || attempt == 5 {
				t.Fatal(err)
			}
			t.Logf("attempt %d: %v; again, on other ports", attempt, err)
		}
	}
	waitConverged(t, nodes, 2)
	for _, owner := range nodes {
		for _, caller := range nodes {
			addWithin(t, caller, identityOwnedBy(t, nodes, owner), 1)
		}
	}
}

// startApart starts a with seeds [a, b by the name localhost] before b
// listens, then b with seeds [b], and returns them; or b's start error,
// with a closed.
func startApart(t *testing.T) ([]*Node, error) {
	a, b := freeAddr(t), freeAddr(t)
	// A's seed b by a host name, as a service's is.
	_, port, _ := net.SplitHostPort(b)
	bByName := net.JoinHostPort("localhost", port)
	var nodes []*Node
	for _, start := range []struct {
		name, addr string
		seeds      []string
	}{{"-a", a, []string{a, bByName}}, {"-b", b, []string{b}}} {
		cfg := testConfig(t)
		cfg.NodeName += start.name
		cfg.BindAddr = start.addr
		cfg.Seeds = start.seeds
		cfg.SeedRejoinInterval = 50 * time.Millisecond
		cfg.Kinds = []*Kind{newEchoKind(newHooks(cfg.NodeName), 0)}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		n, err := Start(ctx, cfg)
		cancel()
		if err != nil {
			for _, started := range nodes {
				_ = started.Close()
			}
			return nil, fmt.Errorf("Start(%s): %w", cfg.NodeName, err)
		}
		t.Cleanup(func() { _ = n.Close() })
		// b's start joins only b; a's rejoin may reach it at once.
		if got := aliveCount(n); len(nodes) == 0 && got != 1 {
			t.Fatalf("%s sees %d members at its start, want only itself", n.Name(), got)
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// freeAddr returns a loopback address whose port the kernel just handed
// out, TCP and UDP, for a node that must know its gossip address before
// it starts.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 10 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return addr
		}
	}
	t.Fatal("no port free for both TCP and UDP in ten tries")
	return ""
}

// TestSeedRejoinIntervalDefaults: zero is the gossip profile's interval,
// and a node without seeds, or with a negative interval, never rejoins.
func TestSeedRejoinIntervalDefaults(t *testing.T) {
	seeds := []string{"10.0.0.1:7946"}
	for _, tc := range []struct {
		name  string
		cfg   Config
		every time.Duration
	}{
		{"LAN", Config{Seeds: seeds}, 30 * time.Second},
		{"WAN", Config{Seeds: seeds, Gossip: GossipWAN}, 30 * time.Second},
		{"local", Config{Seeds: seeds, Gossip: GossipLocal}, time.Second},
		{"set", Config{Seeds: seeds, SeedRejoinInterval: time.Minute}, time.Minute},
		{"negative", Config{Seeds: seeds, SeedRejoinInterval: -1}, 0},
		{"no seeds", Config{SeedRejoinInterval: time.Minute}, 0},
	} {
		if got := tc.cfg.seedRejoinInterval(); got != tc.every {
			t.Errorf("%s: every %v, want %v", tc.name, got, tc.every)
		}
	}
}
