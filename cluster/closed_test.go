package cluster

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"weak"
)

// TestAClosedNodeIsCollected: a closed node is garbage once its user drops
// it, even while timers it armed for long are pending: here the shared
// deadline of calls it made to a peer (DefaultCallTimeout), whose callback
// ends the calls still waiting on its streams, and a leaver's grace (see
// Node.keepLeaver), both an hour. Before, each kept the node, and all it
// held, until it fired.
func TestAClosedNodeIsCollected(t *testing.T) {
	b := startNode(t, hostingEcho(testConfig(t), "-b"))
	cfg := hostingEcho(testConfig(t), "-a")
	cfg.Seeds = []string{b.GossipAddr()}
	cfg.DefaultCallTimeout, cfg.leaverGrace = time.Hour, time.Hour
	a, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	// The test must not hold the node: its cleanup reaches it weakly.
	weakA := weak.Make(a)
	t.Cleanup(func() {
		if a := weakA.Value(); a != nil {
			_ = a.Close()
		}
	})
	waitConverged(t, []*Node{a, b}, 2)
	for i, called := 0, 0; called < 10; i++ {
		if m, ok := a.Owner(echoKind, fmt.Sprintf("g-%d", i)); ok && m.Name == b.Name() {
			add(t, a, fmt.Sprintf("g-%d", i), 1) // waits under a shared deadline on a's stream to b
			called++
		}
	}
	a.keepLeaver(b.Name())

	var collected atomic.Bool
	runtime.AddCleanup(a, func(c *atomic.Bool) { c.Store(true) }, &collected)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	a = nil
	collect(t, "the closed node to be collected", collected.Load)
}

// hostingEcho returns cfg named with suffix, hosting the echo kind.
func hostingEcho(cfg Config, suffix string) Config {
	cfg.NodeName += suffix
	cfg.Kinds = []*Kind{newEchoKind(newHooks(cfg.NodeName), 0)}
	return cfg
}
