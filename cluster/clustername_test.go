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
	named := func(name string) func(*Config) {
		return func(cfg *Config) { cfg.ClusterName = name }
	}
	as := startCluster(t, 2, nil, named("a"))
	a, crashed := as[0], as[1]
	addr := crashed.GossipAddr()
	if err := crashed.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "a to see its member failed", func() bool { return aliveCount(a) == 1 })

	logs := map[string]*logLines{}
	cfg := testConfig(t)
	cfg.NodeName += "-b"
	cfg.BindAddr = addr
	withLogs(logs, false, named("b"))(&cfg)
	b := startNode(t, cfg)
	waitFor(t, waitTimeout, "a's reconnects to reach b", func() bool {
		return logs[b.Name()].count("discarding", "unacceptable label") > 0 || aliveCount(a) > 1 || aliveCount(b) > 1
	})
	for _, n := range []*Node{a, b} {
		if got := aliveCount(n); got != 1 {
			t.Errorf("%s sees %d alive members, want only itself; views:\n%s", n.Name(), got, describeViews([]*Node{a, b}))
		}
	}

	cfg = testConfig(t)
	cfg.NodeName += "-c"
	cfg.ClusterName = "b"
	cfg.Seeds = []string{a.GossipAddr()}
	err := startFails(t, context.Background(), cfg)
	if !strings.Contains(err.Error(), a.GossipAddr()) || !strings.Contains(err.Error(), `ClusterName is not "b"`) {
		t.Errorf("a start whose only seed is of another cluster: %v; want an error naming the seed and the cluster's name", err)
	}
}
