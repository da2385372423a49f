package cluster

import (
	"context"
	"strings"
	"testing"
)

// TestClustersOfOtherNamesDoNotMerge: a member of cluster "a" crashes,
// and a node of cluster "b" starts at its gossip address, as a pod that
// gets a reused IP does. The member of "a" left keeps trying to reach its
// failed member there (serf's reconnects, every second with GossipLocal),
// and without names the two clusters merged at the first try. With them,
// the node of "b" drops each try, and neither sees the other; a node
// whose seeds are of another cluster fails to start.
func TestClustersOfOtherNamesDoNotMerge(t *testing.T) {
	as := startCluster(t, 2, nil, func(cfg *Config) { cfg.ClusterName = "a" })
	a, crashed := as[0], as[1]
	addr := crashed.GossipAddr()
	if err := crashed.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "a to see its member failed", func() bool { return aliveCount(a) == 1 })

	logs := map[string]*logLines{}
	b := startNamed(t, "-b", "b", logs, func(cfg *Config) { cfg.BindAddr = addr })
	waitFor(t, waitTimeout, "a's reconnects to reach b", func() bool {
		return logs[b.Name()].count("discarding", "unacceptable label") > 0 || aliveCount(a) > 1 || aliveCount(b) > 1
	})
	for _, n := range []*Node{a, b} {
		if got := aliveCount(n); got != 1 {
			t.Errorf("%s sees %d alive members, want only itself; views:\n%s", n.Name(), got, describeViews([]*Node{a, b}))
		}
	}

	cfg := testConfig(t)
	cfg.NodeName += "-c"
	cfg.ClusterName = "b"
	cfg.Seeds = []string{a.GossipAddr()}
	err := startFails(t, context.Background(), cfg)
	if !strings.Contains(err.Error(), a.GossipAddr()) || !strings.Contains(err.Error(), `ClusterName is not "b"`) {
		t.Errorf("a start whose only seed is of another cluster: %v; want an error naming the seed and the cluster's name", err)
	}
	// A seed nobody listens at refuses the connection: nothing there
	// says anything of cluster names, and neither does the error.
	cfg.Seeds = []string{"127.0.0.1:1"}
	if err := startFails(t, context.Background(), cfg); strings.Contains(err.Error(), "ClusterName") {
		t.Errorf("a start whose only seed is unreachable: %v; want no word of cluster names", err)
	}
}

// startNamed starts a node of the named cluster, its name suffixed,
// recording its log in logs and configured by configure, if not nil.
func startNamed(t *testing.T, suffix, cluster string, logs map[string]*logLines, configure func(*Config)) *Node {
	t.Helper()
	cfg := testConfig(t)
	cfg.NodeName += suffix
	withLogs(logs, false, func(cfg *Config) {
		cfg.ClusterName = cluster
		if configure != nil {
			configure(cfg)
		}
	})(&cfg)
	return startNode(t, cfg)
}

// TestAStreamToAnotherClusterIsRefused: an address outlives the node that
// had it, and a view may still have a failed member alive at an address
// that a node of another cluster has taken (a reused pod IP). A stream
// dialed there is refused: by the node that answers, if the dialer has a
// cluster name, and by the dialer, when it reads the answer, if it has
// none. Before, the stream carried the member's grain calls, which a node
// of the other cluster that hosts the same kinds would have run against
// its own store.
func TestAStreamToAnotherClusterIsRefused(t *testing.T) {
	logs := map[string]*logLines{}
	a, unnamed, other := startNamed(t, "-a", "a", logs, nil), startNamed(t, "-u", "", logs, nil), startNamed(t, "-y", "b", logs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	_, err := a.transport.conn(ctx, &Member{Name: "x", GRPCAddr: other.GRPCAddr()})
	if err == nil || !strings.Contains(err.Error(), `is of cluster "b", not of `+a.Name()+`'s "a"`) {
		t.Errorf("a stream from a node of cluster a to member x's address, where a node of cluster b listens: %v; want it refused by that node", err)
	}
	if got := logs[other.Name()].count("refused a transport stream from a node of another cluster", "cluster=a"); got != 1 {
		t.Errorf("the node of cluster b logged %d refusals of a's stream, want 1", got)
	}
	_, err = unnamed.transport.conn(ctx, &Member{Name: "x", GRPCAddr: other.GRPCAddr()})
	if err == nil || !strings.Contains(err.Error(), `as a node of cluster "b", not of this node's ""`) {
		t.Errorf("a stream from a node without a cluster name to member x's address, where a node of cluster b listens: %v; want it refused on the answer", err)
	}
}
