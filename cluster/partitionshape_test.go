package cluster

import (
	"context"
	"errors"
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

// TestAOneWayPartitionRunsEachGrainOnce loses the packets from a to b, and
// only those, in a cluster of three with KeepMajority: b's datagrams reach
// a, a's do not reach b, and neither can connect to the other (a TCP
// handshake needs both ways). Memberlist's indirect probes, through c,
// keep a and b alive in every view: nobody fences itself or takes
// another's grains, and b's grain runs once, served through c and through
// b. But a's calls to it fail at their deadlines, with ErrUnavailable,
// until the network heals: the cluster neither routes around the cut nor
// downs a member for it (see docs/architecture.md, "Non-guarantees").
func TestAOneWayPartitionRunsEachGrainOnce(t *testing.T) {
	t.Parallel()
	p := newPartition()
	nodes, _ := echoCluster(t, 3, 0, func(cfg *Config) {
		cfg.KeepMajority, cfg.DownAfter = true, time.Second
		p.configure(cfg)
	})
	p.learn(nodes...)
	a, b, c := nodes[0], nodes[1], nodes[2]
	id := identityOwnedBy(t, nodes, b)
	if got := add(t, c, id, 1); got != 1 {
		t.Fatalf("total %d, want 1", got)
	}

	p.lose(a, b)
	// Three calls through a, a second each: the failure detectors probe
	// ten times meanwhile, and DownAfter passes thrice.
	for i := range 3 {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		_, err := a.Invoke(ctx, addCall(id, 1))
		cancel()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d through a, which cannot connect to b: %v, want ErrUnavailable", i, err)
		}
	}
	for _, n := range nodes {
		if n.Fenced() || aliveCount(n) != len(nodes) {
			t.Errorf("%s: fenced %t, %d members alive; want unfenced, all %d alive; views:\n%s", n.Name(), n.Fenced(), aliveCount(n), len(nodes), describeViews(nodes))
		}
		if m, ok := n.Owner(echoKind, id); !ok || m.Name != b.Name() {
			t.Errorf("%s places %s on %s, want %s", n.Name(), id, m.Name, b.Name())
		}
	}
	if got := addWithin(t, c, id, 1); got != 2 {
		t.Errorf("total %d through c, want 2: the grain's one activation", got)
	}
	if got := addWithin(t, b, id, 1); got != 3 {
		t.Errorf("total %d through b, want 3", got)
	}

	p.heal()
	if got := addWithin(t, a, id, 1); got != 4 {
		t.Errorf("total %d through a once the network heals, want 4", got)
	}
}
