package cluster

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// hookNew is what bank.count counts activations under (see countedBankKinds).
const hookNew = "New"

// countedBankKinds returns the kinds bankCluster's nodes host, over b,
// whose New counts each activation in b under hookNew: with OnDeactivate's
// count, that tells whether every activation ran its hook once.
func countedBankKinds(b *bank, idle time.Duration) []*Kind {
	kinds := []*Kind{newAccountKind(b, accountKind, FlushAfterCall, idle), newAccountKind(b, manualKind, FlushManual, idle)}
	for _, k := range kinds {
		k.New = func(identity string) any {
			b.ran(identity, hookNew)
			return &account{b: b}
		}
	}
	return kinds
}

// depositLoad deposits 1 on grains identities of both flush modes from
// callers goroutines on each of the nodes from, round after round while it
// runs (see run and pause), and sends a one-way deposit on accountKind's
// "one-way" grain now and then. It counts what was acknowledged: calls that
// returned nil, by "kind identity", and one-way messages that Send took.
type depositLoad struct {
	from            []*Node
	callers, grains int

	mu     sync.Mutex
	acked  map[string]int64
	sent   atomic.Int64
	failed atomic.Int64 // calls that returned an error: their outcome is unknown
	rounds atomic.Int64
	stop   atomic.Bool
	done   chan struct{}
}

func newDepositLoad(t *testing.T, from []*Node, callers, grains int) *depositLoad {
	l := &depositLoad{from: from, callers: callers, grains: grains, acked: make(map[string]int64)}
	t.Cleanup(l.pause)
	return l
}

// run starts the callers.
func (l *depositLoad) run(t *testing.T) {
	l.stop.Store(false)
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		concurrently(t, len(l.from)*l.callers, func(c int) error {
			n := l.from[c%len(l.from)]
			for r := 0; !l.stop.Load(); r++ {
				for i := range l.grains {
					id := fmt.Sprintf("g-%d", i)
					kind := []string{accountKind, manualKind}[(i+c+r)%2]
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := n.Invoke(ctx, depositCall(kind, id, 1))
					cancel()
					if err != nil {
						l.failed.Add(1)
					} else {
						l.mu.Lock()
						l.acked[kind+" "+id]++
						l.mu.Unlock()
					}
					if i%10 == c%10 && n.Send(context.Background(), depositCall(accountKind, "one-way", 1)) == nil {
						l.sent.Add(1)
					}
				}
				l.rounds.Add(1)
			}
			return nil
		})
	}()
}

// pause stops the callers and waits for them.
func (l *depositLoad) pause() {
	l.stop.Store(true)
	if l.done != nil {
		<-l.done
	}
}

// check fails t for each grain of kinds whose balance, read through c, is
// less than the deposits acknowledged on it, and returns how many were
// acknowledged.
func (l *depositLoad) check(t *testing.T, c Caller, kinds ...string) int64 {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var acked int64
	for key, want := range l.acked {
		var kind, id string
		fmt.Sscan(key, &kind, &id)
		if !slices.Contains(kinds, kind) {
			continue
		}
		if got := balance(t, c, kind, id); got < want {
			t.Errorf("balance of %s: %d, less than the %d deposits acknowledged", key, got, want)
		}
		acked += want
	}
	return acked
}

// checkStored is check against the committed balances in store, once the
// nodes have shut down and committed what they held.
func (l *depositLoad) checkStored(t *testing.T, store storage.Store, kinds ...string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, want := range l.acked {
		var kind, id string
		fmt.Sscan(key, &kind, &id)
		if !slices.Contains(kinds, kind) {
			continue
		}
		if got := storedBalance(t, store, kind, id); got < want {
			t.Errorf("stored balance of %s: %d, less than the %d deposits acknowledged", key, got, want)
		}
	}
}

// progress waits until the callers have made more rounds.
func (l *depositLoad) progress(t *testing.T, what string, more int64) {
	t.Helper()
	from := l.rounds.Load()
	waitFor(t, waitTimeout, what, func() bool { return l.rounds.Load() >= from+more })
}

// TestMaxActivationsWhileMembersComeAndGo deposits, from callers on two
// nodes that stay, on many more grains of both flush modes than
// Config.MaxActivations lets a node keep, with calls and one-way messages,
// while a member joins and then another leaves gracefully: trims passivate
// grains on every node while grains move between them. No acknowledged
// deposit may be lost, of either flush mode, while the members stay and
// through the moves (a FlushManual grain's new owner waits for the old
// one's release before it loads the state: see handoffs); every node must
// be back under its limit once the load stops, with its count of
// activations its table's; every activation must run OnDeactivate once,
// by the time the nodes have shut down; and the nodes must leave no
// goroutine behind.
func TestMaxActivationsWhileMembersComeAndGo(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		goroutines := runtime.NumGoroutine()
		const limit, grains, callers = 12, 60, 3
		banks := map[string]*bank{}
		kindsFor := func(name string) []*Kind {
			banks[name] = newBank(name)
			return countedBankKinds(banks[name], time.Hour) // only trims passivate
		}
		configure := func(cfg *Config) {
			cfg.Store = store
			cfg.MaxActivations = limit
		}
		nodes := startCluster(t, 3, kindsFor, configure)
		a, b, leaver := nodes[0], nodes[1], nodes[2]
		load := newDepositLoad(t, []*Node{a, b}, callers, grains)
		load.run(t)
		load.progress(t, "deposits before the join", 3)
		// While the members stay, trims alone deactivate grains: no
		// acknowledged deposit of either mode may be lost.
		load.pause()
		load.check(t, a, accountKind, manualKind)
		load.run(t)

		// A member joins: a share of every node's grains moves to it.
		cfg := testConfig(t)
		cfg.NodeName += "-joiner"
		cfg.Kinds = kindsFor(cfg.NodeName)
		cfg.Seeds = []string{a.GossipAddr()}
		configure(&cfg)
		joiner := startNode(t, cfg)
		waitConverged(t, []*Node{a, b, leaver, joiner}, 4)
		load.progress(t, "deposits after the join", 3)
		// The joiner took its grains of both modes without losing what
		// their old owners acknowledged.
		load.pause()
		load.check(t, a, accountKind, manualKind)
		load.run(t)

		// Another leaves gracefully: its grains move to the others.
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := leaver.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		live := []*Node{a, b, joiner}
		waitConverged(t, live, 3)
		load.progress(t, "deposits after the leave", 3)
		load.pause()

		for _, n := range live {
			waitFor(t, 2*time.Second, n.Name()+" to be back under its limit", func() bool { return n.acts.count() <= limit })
			if err := n.acts.waitDeactivations(ctx); err != nil {
				t.Fatal(err)
			}
			if held, count := n.acts.held.Load(), n.acts.count(); held != int64(count) {
				t.Errorf("%s counts %d activations, and holds %d", n.Name(), held, count)
			}
		}
		acked := load.check(t, a, accountKind, manualKind)
		waitFor(t, waitTimeout, "the one-way deposits", func() bool { return balance(t, a, accountKind, "one-way") >= load.sent.Load() })
		passivated := 0
		for _, bk := range banks {
			for i := range grains {
				passivated += bk.count(fmt.Sprintf("g-%d", i), hookDeactivate)
			}
		}
		if passivated < grains {
			t.Fatalf("%d deactivations of %d grains, %d deposits acknowledged, %d failed: the test tested little",
				passivated, grains, acked, load.failed.Load())
		}

		t.Logf("%d deposits acknowledged, %d failed, %d one-way deposits, %d deactivations of the %d grains",
			acked, load.failed.Load(), load.sent.Load(), passivated, grains)

		// Every activation runs OnDeactivate once: the nodes' shutdowns
		// deactivate what is left.
		for _, n := range live {
			if err := n.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		}
		load.checkStored(t, store, accountKind, manualKind)
		for name, bk := range banks {
			for i := range grains + 1 {
				id := fmt.Sprintf("g-%d", i)
				if i == grains {
					id = "one-way"
				}
				if news, hooks := bk.count(id, hookNew), bk.count(id, hookDeactivate); news != hooks {
					t.Errorf("%s on %s: %d activations ran OnDeactivate %d times", id, name, news, hooks)
				}
			}
		}
		// A little slack for the runtime's and the store's own.
		waitFor(t, waitTimeout, "the nodes' goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines+5 })
	})
}

// TestMaxActivationsWhileAMemberFails is TestMaxActivationsWhileMembersComeAndGo
// with a member that fails (Close) under the load: what it held in memory
// is lost with it, as in a crash, but no deposit a FlushAfterCall grain
// acknowledged; the others take its grains, stay within their limit once
// the load stops, and every node leaves no goroutine behind.
func TestMaxActivationsWhileAMemberFails(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		goroutines := runtime.NumGoroutine()
		const limit, grains, callers = 12, 60, 3
		nodes, _ := bankCluster(t, 3, store, time.Hour, func(cfg *Config) { cfg.MaxActivations = limit })
		a, b, failing := nodes[0], nodes[1], nodes[2]
		load := newDepositLoad(t, []*Node{a, b}, callers, grains)
		load.run(t)
		load.progress(t, "deposits before the failure", 3)
		_ = failing.Close()
		waitConverged(t, []*Node{a, b}, 2)
		load.progress(t, "deposits after the failure", 3)
		load.pause()

		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		for _, n := range []*Node{a, b} {
			waitFor(t, 2*time.Second, n.Name()+" to be back under its limit", func() bool { return n.acts.count() <= limit })
			if err := n.acts.waitDeactivations(ctx); err != nil {
				t.Fatal(err)
			}
			if held, count := n.acts.held.Load(), n.acts.count(); held != int64(count) {
				t.Errorf("%s counts %d activations, and holds %d", n.Name(), held, count)
			}
		}
		acked := load.check(t, a, accountKind)
		t.Logf("%d deposits acknowledged, %d failed", acked, load.failed.Load())
		for _, n := range []*Node{a, b} {
			if err := n.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, waitTimeout, "the nodes' goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines+5 })
	})
}

// TestATrimsPassivationOfAGrainThatMovesDuringItsCommit: a trim asks a
// FlushManual grain to passivate, and the grain moves to another member
// while the passivation commits what it buffered. The move takes the
// grain: its OnDeactivate runs once, from the move, the acknowledged
// deposits reach the store once, and the new owner serves them. When the
// grain comes back later, its new activation carries none of the old one's
// marks (askedFlag, keptFlag): a trim asks it, and it passivates.
func TestATrimsPassivationOfAGrainThatMovesDuringItsCommit(t *testing.T) {
	store := hookedMemstore(t)
	sw := &sweeper{}
	nodes, banks := bankCluster(t, 2, store, time.Hour, func(cfg *Config) {
		sw.configure(cfg)
		// Past the limit from the second activation on, with trims
		// only where the test makes them: a trim of the sweep's, woken
		// by the grain that comes back, could ask it, or the grain used
		// at the same look, before the test's own trim.
		cfg.MaxActivations = 1
		cfg.manualTrims = true
	})
	a, b := nodes[0], nodes[1]
	sw.n = a
	id, other := accountOwnedBy(t, b, manualKind, "moving"), accountOwnedBy(t, a, manualKind, "staying")
	setView := holdViews(t, a)
	setView(withStatus(b.Name(), StatusFailed)) // a takes b's grains meanwhile

	deposit(t, a, manualKind, id, 5) // acknowledged, buffered
	sw.at(t, time.Second, 0)         // notes its use at 1s
	deposit(t, a, manualKind, other, 1)
	sw.now.Store(int64(2 * time.Second))
	entered, release := gateCommits(store)
	if asked := a.acts.trim(); asked != 1 {
		t.Fatalf("the trim asked %d grains, want the one used least recently", asked)
	}
	receive(t, entered, "the passivation's commit")
	act := a.acts.peek(actKey{manualKind, id})
	if act == nil {
		t.Fatalf("the trim asked %s, not %s", other, id)
	}
	setView(withStatus(b.Name(), StatusAlive)) // the grain moves back to b
	if !act.deactivating {
		t.Fatal("the move did not take the grain whose passivation commits")
	}
	release()
	waitFor(t, waitTimeout, "the moved grain to leave a", func() bool { return a.acts.peek(actKey{manualKind, id}) == nil })
	if runs := banks[a.Name()].count(id, hookDeactivate); runs != 1 {
		t.Errorf("OnDeactivate ran %d times on a, want once", runs)
	}
	if got := storedBalance(t, store.Store, manualKind, id); got != 5 {
		t.Errorf("stored balance %d, want the 5 acknowledged", got)
	}
	if got := balance(t, b, manualKind, id); got != 5 {
		t.Errorf("balance on the new owner %d, want the 5 acknowledged", got)
	}
	if held, count := a.acts.held.Load(), a.acts.count(); held != int64(count) {
		t.Errorf("a counts %d activations, and holds %d", held, count)
	}

	// The grain comes back to a: a fresh activation, which a trim passivates.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.acts.deactivateAll(ctx); err != nil {
		t.Fatal(err)
	}
	setView(withStatus(b.Name(), StatusFailed))
	deposit(t, a, manualKind, id, 1)
	back := a.acts.peek(actKey{manualKind, id})
	if f := back.flags.Load(); f&(askedFlag|keptFlag) != 0 {
		t.Fatalf("the new activation has flags %b", f)
	}
	sw.at(t, 3*time.Second, 0)           // notes the deposit
	sw.now.Store(int64(4 * time.Second)) // other: last noted at 2s
	deposit(t, a, manualKind, other, 1)  // a use at 4s: id is the least recently used
	if asked := a.acts.trim(); asked != 1 {
		t.Fatalf("the trim asked %d grains, want the grain that came back", asked)
	}
	waitFor(t, waitTimeout, "the grain that came back to passivate", func() bool { return a.acts.peek(actKey{manualKind, id}) == nil })
	if runs := banks[a.Name()].count(id, hookDeactivate); runs != 2 {
		t.Errorf("OnDeactivate ran %d times on a, want once per activation, twice", runs)
	}
	if got := storedBalance(t, store.Store, manualKind, id); got != 6 {
		t.Errorf("stored balance %d, want the 6 acknowledged", got)
	}
}
