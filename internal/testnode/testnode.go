// Package testnode starts a one-node cluster for tests of generated code:
// real gossip and transport on loopback, nothing logged, closed when the
// test ends.
package testnode

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster"
)

// startTimeout bounds a node's Start: a lone node starts in milliseconds,
// and a loaded CI machine under the race detector may take seconds.
const startTimeout = 30 * time.Second

// Start starts a node named name that hosts kinds, and closes it when t
// ends. A failed start fails t.
func Start(t testing.TB, name string, kinds ...*cluster.Kind) *cluster.Node {
	t.Helper()
	return StartConfigured(t, name, func(cfg *cluster.Config) { cfg.Kinds = kinds })
}

// StartConfigured is Start for a node whose configuration configure
// completes (its kinds, seeds, bounds) after the loopback defaults are set.
func StartConfigured(t testing.TB, name string, configure func(*cluster.Config)) *cluster.Node {
	t.Helper()
	cfg := cluster.DefaultConfig()
	cfg.NodeName = name
	cfg.BindAddr = "127.0.0.1:0"
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.Gossip = cluster.GossipLocal
	cfg.Logger = slog.New(slog.DiscardHandler)
	configure(&cfg)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	node, err := cluster.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("testnode: start %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := node.Close(); err != nil {
			t.Errorf("testnode: close %s: %v", name, err)
		}
	})
	return node
}
