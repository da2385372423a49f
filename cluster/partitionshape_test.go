package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// TestAPartitionThatChangesShapeRunsNoGrainTwice cuts c off from a and b
// on the network, with KeepMajority, until a and b take its grains, and
// then moves b over to c's side: {a,b | c} becomes {a | b,c}. c sees b
// again at once and has a majority with it, while a goes on serving the
// grains it took from c until its failure detector finds b failed. c must
// not run a grain of its own that a runs meanwhile: a grain runs on one
// side of a partition only, whatever its shape. DownAfter is its default,
// the time the design gives a side to see a partition: with 3 s, a loaded
// machine (the package's tests at once, under -race) had a see b failed
// only after c had settled.
func TestAPartitionThatChangesShapeRunsNoGrainTwice(t *testing.T) {
	t.Parallel()
	nodes, _, p := partitionedTrio(t, 0)
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
// b. But a's calls to it fail at their deadlines until the network heals
// (and may run then): the cluster neither routes around the cut nor
// downs a member for it (see docs/architecture.md, "Non-guarantees").
func TestAOneWayPartitionRunsEachGrainOnce(t *testing.T) {
	t.Parallel()
	nodes, _, p := partitionedTrio(t, time.Second)
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
		// ErrUnavailable if a has no stream to b, DeadlineExceeded on one
		// a had: its bytes wait.
		if !errors.Is(err, ErrUnavailable) && status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("call %d through a, which cannot connect to b: %v, want ErrUnavailable or DeadlineExceeded", i, err)
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

	// The calls a gave up on may run once the network heals: on a stream
	// that was open, their bytes were held, as TCP holds them, and the
	// time left that they carry starts afresh as they arrive. Their
	// outcome was unknown to their caller, as that of any call that fails
	// at its deadline.
	p.heal()
	got := addWithin(t, a, id, 1)
	if got < 4 || got > 7 {
		t.Errorf("total %d through a once the network heals, want 4, and 3 more at most", got)
	}
	if again := addWithin(t, c, id, 1); again != got+1 {
		t.Errorf("total %d through c after %d through a, want %d: the grain's one activation", again, got, got+1)
	}
}

// TestAJoinerThroughTheMinorityBeforeItFencedCountsNoMajority cuts c off
// from a and b, with KeepMajority, and at once starts d with c as its
// seed, on c's side, before c's failure detector has seen the partition:
// c is not fenced, and passes a and b on to d as alive. a and b never hear
// of d. d's name sorts first, so that c and d, two of the four members
// they know, would count the even split theirs, while a and b count two
// of three: both sides would serve, and c's grain, which a and b take
// after DownAfter, would run on both. d must not start, as it reaches
// only c of the three members it heard of, and c must fence itself.
// DownAfter is its default: c, alone, with four members to probe and
// nobody to confirm its suspicions, takes longest to see the partition,
// which is what the default allows for (a shorter one here had a and b
// take c's grain before c saw them failed).
func TestAJoinerThroughTheMinorityBeforeItFencedCountsNoMajority(t *testing.T) {
	t.Parallel()
	nodes, _, p := partitionedTrio(t, 0)
	a, b, c := nodes[0], nodes[1], nodes[2]
	id := identityOwnedBy(t, nodes, c)
	if got := add(t, a, id, 1); got != 1 {
		t.Fatalf("total %d, want 1", got)
	}

	cfg := testConfig(t)
	cfg.NodeName = "A-joiner-" + cfg.NodeName // sorts before the others
	cfg.KeepMajority = true
	cfg.Kinds = []*Kind{newEchoKind(newHooks(cfg.NodeName), 0)}
	cfg.Seeds = []string{c.GossipAddr()}
	p.configure(&cfg)
	p.split(c)
	p.splitNamed(cfg.NodeName)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if d, err := Start(ctx, cfg); err == nil {
		t.Cleanup(func() { _ = d.Close() })
		p.learn(d)
		t.Errorf("d started through c, on the minority side")
	} else if !errors.Is(err, ErrNoQuorum) {
		t.Errorf("d's start through c: %v, want ErrNoQuorum", err)
	} else {
		t.Logf("d's start through c: %v", err)
	}

	waitFor(t, waitTimeout, "a and b to take c's grain", func() bool {
		ma, okA := a.Owner(echoKind, id)
		mb, okB := b.Owner(echoKind, id)
		return okA && okB && ma.Name != c.Name() && mb.Name != c.Name()
	})
	if mc, ok := c.Owner(echoKind, id); ok {
		t.Errorf("c places its grain on %s while a and b, which took it, serve it too; views:\n%s", mc.Name, describeViews(nodes))
	}
	if got := addWithin(t, a, id, 1); got != 1 {
		t.Errorf("total %d from the majority's fresh activation, want 1", got)
	}
}

// TestAJoinerHoldsTheGrainsOfAMemberItsSeedHasFailed cuts c off from a
// and b, with KeepMajority and a DownAfter of a minute, and once a and b
// see c failed, starts d through a, on their side, as a member restarted
// during a partition comes back. a's state names c failed, and memberlist
// takes in no failed member it never saw alive: d's view lacks c, so d
// would place the grains that a and b hold for c on a, b or itself at
// once, while c, which takes seconds to see the partition, may still
// serve them: a grain on both sides. d must place none of them elsewhere
// within DownAfter; nor may it serve those of c's grains that it wins
// itself (a and b place them on d, and c, which never heard of d, on
// itself): it settles, owning nothing, until c comes back or DownAfter
// passes. Once the network heals, c and d serve again.
func TestAJoinerHoldsTheGrainsOfAMemberItsSeedHasFailed(t *testing.T) {
	t.Parallel()
	nodes, p := trioWithCCutOff(t)
	a, b, c := nodes[0], nodes[1], nodes[2]
	d := keepMajorityJoiner(t, "-d", a, time.Minute, p)
	all := append(nodes, d)
	waitConverged(t, []*Node{a, b, d}, 3)

	id := placedOn(t, echoKind, "held", map[*Node]string{a: c.Name(), b: c.Name()})
	if m, ok := d.Owner(echoKind, id); ok && m.Name != c.Name() {
		t.Errorf("d places %s, which a and b hold for c, on %s within DownAfter; views:\n%s", id, m.Name, describeViews(all))
	}
	if !d.Fenced() {
		t.Errorf("d serves, while c, failed in its seed's view, may serve the grains d wins from it")
	}

	p.heal()
	waitFor(t, waitTimeout, "the partition to heal, and c to serve its grain for every node", func() bool {
		for _, n := range all {
			if m, ok := n.Owner(echoKind, id); n.Fenced() || aliveCount(n) != len(all) || !ok || m.Name != c.Name() {
				return false
			}
		}
		return true
	})
	if got := where(t, d, id); got != c.Name() {
		t.Errorf("%s answered from %s through d, want %s", id, got, c.Name())
	}
}

// TestAJoinerThroughASettlingNodeSettlesToo is
// TestAJoinerHoldsTheGrainsOfAMemberItsSeedHasFailed with a second joiner,
// e, whose only seed is d, which started after a and b saw c fail: d never
// took c in, so its list does not name c, and neither does e's view. e
// must still settle while a and b hold c's grains, as the others tell it,
// rather than serve those it wins from c, which c, cut off, may serve too.
func TestAJoinerThroughASettlingNodeSettlesToo(t *testing.T) {
	t.Parallel()
	nodes, p := trioWithCCutOff(t)
	a, c := nodes[0], nodes[2]
	d := keepMajorityJoiner(t, "-d", a, time.Minute, p)
	e := keepMajorityJoiner(t, "-e", d, time.Minute, p)
	if slices.Contains(e.claim.heardNames(), c.Name()) {
		t.Fatalf("e's join heard of c from d's list, so the test does not test what it is about")
	}
	if !d.Fenced() || !e.Fenced() {
		t.Errorf("d or e serves (fenced: %t, %t), while a and b hold c's grains and c may serve them", d.Fenced(), e.Fenced())
	}
}

// TestAJoinerServesOnceTheMembersHaveDownedTheFailedOne: c crashes, and a
// and b, with KeepMajority and a DownAfter of a second, down it and take
// its grains, while their gossip still passes c on in its lists, failed
// (for memberlist's GossipToTheDeadTime). d starts through a, with a
// DownAfter of an hour: its gossip does not take c in, and it asks the
// others how much longer they hold c's grains. They hold them no longer,
// so d serves at once, rather than settle for its DownAfter as a start
// whose lists named a failed member did, and places c's grain as they do.
// If a member cannot say (b runs without KeepMajority here, and does not
// answer), d settles for its DownAfter.
func TestAJoinerServesOnceTheMembersHaveDownedTheFailedOne(t *testing.T) {
	t.Parallel()
	for _, allAnswer := range []bool{true, false} {
		name := "every_member_answers"
		if !allAnswer {
			name = "a_member_does_not_answer"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			nodes, _ := echoCluster(t, 3, 0, func(cfg *Config) {
				cfg.KeepMajority, cfg.DownAfter = allAnswer || !strings.HasSuffix(cfg.NodeName, "-n1"), time.Second
			})
			a, b, c := nodes[0], nodes[1], nodes[2]
			id := identityOwnedBy(t, nodes, c)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, waitTimeout, "a and b to down c and take its grain", func() bool {
				ma, okA := a.Owner(echoKind, id)
				mb, okB := b.Owner(echoKind, id)
				return okA && okB && ma.Name != c.Name() && mb.Name != c.Name()
			})
			d := keepMajorityJoiner(t, "-d", a, time.Hour, nil)
			if !slices.Contains(d.claim.heardNames(), c.Name()) {
				t.Fatalf("d's join did not hear of c, which the test is about")
			}
			if !allAnswer {
				if !d.Fenced() {
					t.Error("d serves, though b could not say how long it holds c's grains")
				}
				return
			}
			waitConverged(t, []*Node{a, b, d}, 3)
			waitFor(t, waitTimeout, "d to serve, and place c's grain as a does", func() bool {
				ma, _ := a.Owner(echoKind, id)
				md, ok := d.Owner(echoKind, id)
				return !d.Fenced() && ok && md.Name == ma.Name
			})
		})
	}
}

// trioWithCCutOff starts a partitionedTrio with a DownAfter of a minute,
// cuts its third node, c, off from the others, and waits until they see
// it failed.
func trioWithCCutOff(t *testing.T) ([]*Node, *partition) {
	t.Helper()
	nodes, _, p := partitionedTrio(t, time.Minute)
	a, b, c := nodes[0], nodes[1], nodes[2]
	p.split(c)
	waitFor(t, waitTimeout, "a and b to see c failed", func() bool { return aliveCount(a) == 2 && aliveCount(b) == 2 })
	return nodes, p
}

// keepMajorityJoiner starts a node with KeepMajority and the given
// DownAfter, hosting the echo kind, through seed, on p's network unless p
// is nil.
func keepMajorityJoiner(t *testing.T, suffix string, seed *Node, downAfter time.Duration, p *partition) *Node {
	t.Helper()
	cfg := testConfig(t)
	cfg.NodeName += suffix
	cfg.KeepMajority, cfg.DownAfter = true, downAfter
	cfg.Kinds = []*Kind{newEchoKind(newHooks(cfg.NodeName), 0)}
	cfg.Seeds = []string{seed.GossipAddr()}
	if p != nil {
		p.configure(&cfg)
	}
	n := startNode(t, cfg)
	if p != nil {
		p.learn(n)
	}
	return n
}

// TestAHealWithinDownAfterMovesNoGrain cuts c off from a and b, with
// KeepMajority, and heals the network before DownAfter has passed: c
// fences itself and deactivates its grain, a and b hold it for c, and a
// call made through a meanwhile waits, to be answered by c once the
// network heals. No other node ever activates the grain.
func TestAHealWithinDownAfterMovesNoGrain(t *testing.T) {
	t.Parallel()
	nodes, hooks, p := partitionedTrio(t, time.Minute)
	a, b, c := nodes[0], nodes[1], nodes[2]
	id := cutOffAnOwner(t, nodes, hooks, p)
	waitFor(t, waitTimeout, "a and b to see c failed", func() bool { return aliveCount(a) == 2 && aliveCount(b) == 2 })
	for _, n := range []*Node{a, b} {
		if m, ok := n.Owner(echoKind, id); !ok || m.Name != c.Name() {
			t.Errorf("%s places %s on %s within DownAfter, want %s, which it holds", n.Name(), id, m.Name, c.Name())
		}
	}
	total := make(chan int64, 1)
	go func() {
		resp, err := a.Invoke(t.Context(), addCall(id, 1))
		if err != nil {
			t.Errorf("a call through a across the heal: %v", err)
			total <- -1
			return
		}
		total <- resp.(*wrapperspb.Int64Value).GetValue()
	}()

	p.heal()
	if got := receive(t, total, "the call through a to be answered"); got != 1 {
		t.Errorf("total %d from c's fresh activation, want 1", got)
	}
	if got := where(t, b, id); got != c.Name() {
		t.Errorf("%s answered from %s, want %s", id, got, c.Name())
	}
	if na, nb := hooks[a.Name()].news.Load(), hooks[b.Name()].news.Load(); na != 0 || nb != 0 {
		t.Errorf("a and b made %d and %d grains, want none", na, nb)
	}
}

// TestAHealAfterDownAfterLosesNoDeposit is TestARealPartitionLosesNoDeposit
// with KeepMajority: a client deposits through c, cut off from a and b,
// and another through a, each deposit retried with its stamp until it
// succeeds. c fences itself (its client's deposits wait), a and b take
// the account after DownAfter, and the network heals: c takes it back.
// The balance must be exactly the deposits that succeeded.
func TestAHealAfterDownAfterLosesNoDeposit(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	p := newPartition()
	nodes, _ := bankCluster(t, 3, store, 0, func(cfg *Config) {
		cfg.KeepMajority, cfg.DownAfter = true, 3*time.Second
		p.configure(cfg)
	})
	p.learn(nodes...)
	a, c := nodes[0], nodes[2]
	id := accountOwnedBy(t, c, accountKind, "heal")
	deposits := startDepositPair(t, c, a, id) // through c, and through a
	deposits.progress(t, "deposits on both sides before the partition")

	p.split(c)
	waitFor(t, waitTimeout, "c to fence itself, and a to take the account", func() bool {
		ma, ok := a.Owner(accountKind, id)
		return c.Fenced() && ok && ma.Name != c.Name()
	})
	deposits.progress(t, "deposits through the majority", &deposits.right)

	p.heal()
	waitHealed(t, nodes, accountKind, id, c)
	deposits.progress(t, "deposits on both sides after the partition")
	deposits.check(t, a, store, id, "c", "a")
}

// TestAHealAfterDownAfterWaitsForTheMajoritysCommit cuts c off from a and
// b, with KeepMajority, until a takes c's FlushManual account and
// acknowledges a deposit there, which it has yet to commit; then the
// network heals, and a's commit, as it gives the account back, is slow.
// c must not load the account before that commit (its activation would
// lose the deposit a acknowledged): a member back from a partition has
// the grains taken from it released to it as after a join.
func TestAHealAfterDownAfterWaitsForTheMajoritysCommit(t *testing.T) {
	t.Parallel()
	store := hookedMemstore(t)
	p := newPartition()
	waiting := make(chan string, 64)
	nodes, _ := bankCluster(t, 3, store, 0, func(cfg *Config) {
		cfg.KeepMajority, cfg.DownAfter = true, 3*time.Second
		name := cfg.NodeName
		cfg.awaitingRelease = func() {
			select {
			case waiting <- name:
			default: // nobody reads: the test waits for c's only
			}
		}
		p.configure(cfg)
	})
	p.learn(nodes...)
	a, c := nodes[0], nodes[2]
	id := placedWithout(t, a, manualKind, "heal", c.Name(), a.Name())
	if got := deposit(t, a, manualKind, id, 1); got != 1 {
		t.Fatalf("balance %d, want 1", got)
	}

	p.split(c) // c commits the deposit as it deactivates the account
	waitFor(t, waitTimeout, "c to fence itself, and a to take the account", func() bool {
		ma, ok := a.Owner(manualKind, id)
		return c.Fenced() && ok && ma.Name == a.Name()
	})
	if got := deposit(t, a, manualKind, id, 5); got != 6 {
		t.Fatalf("balance %d on a, want 6", got)
	}
	key := storage.Key{Kind: manualKind, Identity: id}
	store.holdKey.Store(&key)

	p.heal()
	receive(t, store.holding, "a's commit as it gives the account back")
	loads := store.loads.Load()
	for len(waiting) > 0 {
		<-waiting // the waits of the activations before
	}
	got := make(chan int64, 1)
	go func() {
		resp, err := c.Invoke(t.Context(), depositCall(manualKind, id, 1))
		if err != nil {
			t.Errorf("a deposit through c after the heal: %v", err)
			got <- -1
			return
		}
		got <- resp.(*wrapperspb.Int64Value).GetValue()
	}()
	waitFor(t, waitTimeout, "c to wait for a's release, or to load the account", func() bool {
		select {
		case name := <-waiting:
			return name == c.Name()
		default:
			return store.loads.Load() > loads
		}
	})
	close(store.release)
	if balance := receive(t, got, "the deposit through c"); balance != 7 {
		t.Errorf("balance %d after the deposit through c, want 7: c loaded the account before a committed the deposit it acknowledged", balance)
	}
}

// partitionedTrio starts three echo nodes with KeepMajority and
// downAfter (0 for the default), whose network a partition cuts.
func partitionedTrio(t *testing.T, downAfter time.Duration) ([]*Node, map[string]*hooks, *partition) {
	t.Helper()
	p := newPartition()
	nodes, hooks := echoCluster(t, 3, 0, func(cfg *Config) {
		cfg.KeepMajority, cfg.DownAfter = true, downAfter
		p.configure(cfg)
	})
	p.learn(nodes...)
	return nodes, hooks, p
}

// cutOffAnOwner activates, through the first of a partitionedTrio's
// nodes, a grain the third owns, then cuts the third off from the others
// and waits until it fenced itself and deactivated the grain; it returns
// the grain's identity.
func cutOffAnOwner(t *testing.T, nodes []*Node, hooks map[string]*hooks, p *partition) string {
	t.Helper()
	a, c := nodes[0], nodes[2]
	id := identityOwnedBy(t, nodes, c)
	if got := add(t, a, id, 1); got != 1 {
		t.Fatalf("total %d, want 1", got)
	}
	p.split(c)
	waitFor(t, waitTimeout, "the lone node to fence itself", c.Fenced)
	if got := receive(t, hooks[c.Name()].deactivated, "the lone node's grain to deactivate"); got != id {
		t.Errorf("%s deactivated, want %s", got, id)
	}
	return id
}
