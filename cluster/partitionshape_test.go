package cluster

import (
	"testing"
	"time"
)

// TestAPartitionThatChangesShapeRunsNoGrainTwice cuts c off from a and b
// on the network, with KeepMajority, until a and b take its grains, and
// then moves b over to c's side: {a,b | c} becomes {a | b,c}. c sees b
// again at once and has a majority with it, while a goes on serving the
// grains it took from c until its failure detector finds b failed. c must
// not run a grain of its own that a runs meanwhile: a grain runs on one
// side of a partition only, whatever its shape.
func TestAPartitionThatChangesShapeRunsNoGrainTwice(t *testing.T) {
	t.Parallel()
	p := newPartition()
	nodes, _ := echoCluster(t, 3, 0, func(cfg *Config) {
		cfg.KeepMajority, cfg.DownAfter = true, 3*time.Second
		p.configure(cfg)
	})
	p.learn(nodes...)
	a, b, c := nodes[0], nodes[1], nodes[2]
	id := placedWithout(t, a, echoKind, "shape", c.Name(), a.Name())
	if got := add(t, a, id, 1); got != 1 {
		t.Fatalf("total %d, want 1", got)
	}

	p.split(c)
	waitFor(t, waitTimeout, "c to fence itself, and a and b to take its grain", func() bool {
		ma, okA := a.Owner(echoKind, id)
		mb, okB := b.Owner(echoKind, id)
		return c.Fenced() && okA && okB && ma.Name == a.Name() && mb.Name == a.Name()
	})
	if got := addWithin(t, a, id, 1); got != 1 {
		t.Fatalf("total %d from a's fresh activation, want 1", got)
	}

	p.reshape(b, c)
	// Read c's view before a's: c, once it serves the grain, goes on
	// serving it, and a, once fenced, stays fenced, so that both owning it
	// in these reads means both did at the second.
	waitFor(t, waitTimeout, "a to fence itself", func() bool {
		mc, okC := c.Owner(echoKind, id)
		ma, okA := a.Owner(echoKind, id)
		if okC && mc.Name == c.Name() && okA && ma.Name == a.Name() {
			t.Fatalf("c serves %s again while a, not fenced yet, serves it too; views:\n%s", id, describeViews(nodes))
		}
		return a.Fenced()
	})
	waitFor(t, waitTimeout, "c to serve its grain with b", func() bool {
		mb, okB := b.Owner(echoKind, id)
		mc, okC := c.Owner(echoKind, id)
		return okB && okC && mb.Name == c.Name() && mc.Name == c.Name()
	})
	if got := addWithin(t, b, id, 1); got != 1 {
		t.Errorf("total %d from c's fresh activation, want 1", got)
	}
}
