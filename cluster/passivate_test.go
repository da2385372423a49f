package cluster

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
)

// A passivation commits what the grain buffered before its OnDeactivate,
// and keeps the grain if that commit fails (see grainActor.passivate).
// These tests hold the store back with hookedStore; the account kinds'
// OnDeactivate counts its runs (hookDeactivate).

// heldIdle and heldDeactivateTimeout are the idle timeout and the
// DeactivateTimeout of the tests whose sweeps run on their own (every 10
// ms, see testConfig): the store refuses commits for many
// DeactivateTimeouts.
const (
	heldIdle              = 50 * time.Millisecond
	heldDeactivateTimeout = 30 * time.Millisecond
)

// sweeper drives the passivation sweeps of a node on a clock of its own
// (Config.clock), so that a test says when a grain has been idle long
// enough.
type sweeper struct {
	now atomic.Int64
	n   *Node
}

// configure makes the node's table read s's clock, and leaves the sweeps
// to the test.
func (s *sweeper) configure(cfg *Config) {
	cfg.PassivationInterval = time.Hour
	cfg.clock = func() time.Duration { return time.Duration(s.now.Load()) }
}

// at sweeps at time at and checks that the sweep asked want grains to
// passivate.
func (s *sweeper) at(t *testing.T, at time.Duration, want int) {
	t.Helper()
	s.now.Store(int64(at))
	if got := s.n.acts.passivate(); got != want {
		t.Fatalf("the sweep at %v asked %d grains to passivate, want %d", at, got, want)
	}
}

// gateCommits holds the next commit of store until the returned release
// is called, and returns a channel closed when that commit has begun.
// Later commits pass.
func gateCommits(store *hookedStore) (entered <-chan struct{}, release func()) {
	in, proceed := make(chan struct{}), make(chan struct{})
	hold := sync.OnceFunc(func() {
		close(in)
		<-proceed
	})
	f := func() { hold() }
	store.beforeCommit.Store(&f)
	return in, sync.OnceFunc(func() { close(proceed) })
}

// TestPassivationWaitsForTheStore: an idle FlushManual grain whose
// acknowledged changes are buffered, with the store refusing commits
// (storage.ErrNotCommitted) for many DeactivateTimeouts and sweeps, is not
// deactivated and loses nothing: it stays, serving calls, without its
// OnDeactivate. Once the store takes commits again, a sweep commits the
// changes and passivates the grain, with one OnDeactivate, and a fresh
// activation reads them.
func TestPassivationWaitsForTheStore(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		store := newHookedStore(s)
		logs := map[string]*logLines{}
		nodes, banks := bankCluster(t, 1, store, heldIdle, withLogs(logs, false, func(cfg *Config) {
			cfg.DeactivateTimeout = heldDeactivateTimeout
		}))
		n, b := nodes[0], banks[nodes[0].Name()]
		const id = "held"
		deposit(t, n, manualKind, id, 7) // acknowledged, and buffered
		loads, commits := store.loads.Load(), store.commits.Load()
		down := time.Now()
		store.commitErr.Store(&errNothingCommitted)
		waitFor(t, waitTimeout, "three passivations held back, over five DeactivateTimeouts", func() bool {
			return store.commits.Load()-commits >= 3 && time.Since(down) > 5*heldDeactivateTimeout
		})
		if runs := b.count(id, hookDeactivate); runs != 0 {
			t.Fatalf("OnDeactivate ran %d times while the store committed nothing, want 0: the grain was deactivated", runs)
		}
		wantSameActivation(t, n, store, loads, "passivations that the store held back")
		if got := balance(t, n, manualKind, id); got != 7 {
			t.Fatalf("balance %d on the kept activation, want the acknowledged 7", got)
		}
		if got := deposit(t, n, manualKind, id, 1); got != 8 {
			t.Fatalf("a deposit on the kept activation replied %d, want 8", got)
		}
		if v := storedVersion(t, store.Store, manualKind, id); v != 0 {
			t.Fatalf("stored version %d while the store committed nothing, want 0", v)
		}
		if logs[n.Name()].count("idle grains kept active", "kept=") == 0 {
			t.Error("no log line about the passivations held back")
		}

		store.commitErr.Store(nil)
		waitFor(t, waitTimeout, "the passivation once the store takes commits", func() bool { return n.acts.count() == 0 })
		if runs := b.count(id, hookDeactivate); runs != 1 {
			t.Fatalf("OnDeactivate ran %d times, want once", runs)
		}
		if got := storedBalance(t, store.Store, manualKind, id); got != 8 {
			t.Fatalf("stored balance %d after the passivation, want the acknowledged 8", got)
		}
		loads = store.loads.Load()
		if got := balance(t, n, manualKind, id); got != 8 {
			t.Fatalf("a fresh activation read balance %d, want 8", got)
		}
		if got := store.loads.Load() - loads; got != 1 {
			t.Fatalf("%d loads for the call after the passivation, want 1: a fresh activation", got)
		}
	})
}

// bornAccount is an account whose OnActivate sets the entry "born": a
// change made outside calls, which waits in the buffer for the next commit.
type bornAccount struct{ *account }

func (a bornAccount) OnActivate(ctx GrainContext) error {
	return ctx.State().Set("born", []byte("yes"))
}

// TestPassivationWaitsForTheStoreWithOnActivatesChanges: in FlushAfterCall
// mode too, changes made outside calls (here OnActivate's, on a grain that
// only served read-only calls) wait in the buffer until the passivation,
// which keeps the grain while the store commits nothing and commits them
// once it does.
func TestPassivationWaitsForTheStoreWithOnActivatesChanges(t *testing.T) {
	store := hookedMemstore(t)
	var b *bank
	nodes := startCluster(t, 1, func(name string) []*Kind {
		b = newBank(name)
		k := newAccountKind(b, accountKind, FlushAfterCall, heldIdle)
		k.New = func(string) any { return bornAccount{&account{b: b}} }
		return []*Kind{k}
	}, func(cfg *Config) {
		cfg.Store = store
		cfg.DeactivateTimeout = heldDeactivateTimeout
	})
	n := nodes[0]
	const id = "born"
	store.commitErr.Store(&errNothingCommitted)
	commits := store.commits.Load()
	balance(t, n, accountKind, id) // activates; read-only: commits nothing
	waitFor(t, waitTimeout, "three passivations held back", func() bool { return store.commits.Load()-commits >= 3 })
	if runs := b.count(id, hookDeactivate); runs != 0 || n.acts.count() != 1 {
		t.Fatalf("OnDeactivate ran %d times and %d activations while the store committed nothing, want 0 and 1", runs, n.acts.count())
	}
	store.commitErr.Store(nil)
	waitFor(t, waitTimeout, "the passivation", func() bool { return n.acts.count() == 0 })
	entries, _, err := store.Store.Load(context.Background(), storage.Key{Kind: accountKind, Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	if string(entries["born"]) != "yes" {
		t.Fatalf("stored entries %v after the passivation, want OnActivate's born=yes", entries)
	}
	if runs := b.count(id, hookDeactivate); runs != 1 {
		t.Fatalf("OnDeactivate ran %d times, want once", runs)
	}
}

// TestACallDuringAPassivationRunsOnTheGrain: a call that arrives while a
// passivation commits the grain's state waits for that commit and then
// runs on the same activation, whether the commit failed (the grain is
// kept for the store) or went through (the grain is kept for the call).
// OnDeactivate does not run then, and runs once when a later sweep
// passivates the grain, with the call's change committed.
func TestACallDuringAPassivationRunsOnTheGrain(t *testing.T) {
	for _, fails := range []bool{true, false} {
		t.Run(fmt.Sprint("commitFails=", fails), func(t *testing.T) {
			eachStore(t, func(t *testing.T, s storage.Store) {
				store := newHookedStore(s)
				sw := &sweeper{}
				nodes, banks := bankCluster(t, 1, store, time.Minute, sw.configure)
				n, b := nodes[0], banks[nodes[0].Name()]
				sw.n = n
				const id = "racer"
				deposit(t, n, manualKind, id, 3)
				loads := store.loads.Load()
				a := n.acts.peek(actKey{manualKind, id})

				entered, release := gateCommits(store)
				defer release()
				if fails {
					store.commitErr.Store(&errNothingCommitted)
				}
				sw.at(t, 0, 0)           // notes the deposit
				sw.at(t, time.Minute, 1) // idle for IdleTimeout: asked
				receive(t, entered, "the commit before the passivation to begin")
				type reply struct {
					resp proto.Message
					err  error
				}
				done := make(chan reply, 1)
				go func() {
					resp, err := n.Invoke(context.Background(), depositCall(manualKind, id, 4))
					done <- reply{resp, err}
				}()
				waitFor(t, waitTimeout, "the call to be counted in", func() bool { return a.calls.Load() == 1 })
				release()
				r := receive(t, done, "the call")
				if r.err != nil {
					t.Fatalf("the call during the passivation's commit: %v", r.err)
				}
				if got := r.resp.(*wrapperspb.Int64Value).GetValue(); got != 7 {
					t.Fatalf("the call replied %d, want 7", got)
				}
				store.commitErr.Store(nil)
				wantSameActivation(t, n, store, loads, "a call during the passivation's commit")
				if runs := b.count(id, hookDeactivate); runs != 0 {
					t.Fatalf("OnDeactivate ran %d times, want 0: the grain served the call", runs)
				}
				want := int64(3) // the first commit went through, before the call
				if fails {
					want = 0
				}
				if got := storedBalance(t, store.Store, manualKind, id); got != want {
					t.Fatalf("stored balance %d after the passivation's commit, want %d", got, want)
				}

				sw.at(t, 2*time.Minute, 0) // notes the call
				sw.at(t, 3*time.Minute, 1)
				waitFor(t, waitTimeout, "the passivation", func() bool { return n.acts.count() == 0 })
				if runs := b.count(id, hookDeactivate); runs != 1 {
					t.Fatalf("OnDeactivate ran %d times, want once", runs)
				}
				if got := storedBalance(t, store.Store, manualKind, id); got != 7 {
					t.Fatalf("stored balance %d after the passivation, want 7", got)
				}
			})
		})
	}
}

// TestShutdownDuringAPassivationsCommit: a Shutdown that begins while a
// passivation commits the grain's state deactivates the grain as before,
// with one OnDeactivate, and commits what it buffered: after that commit
// if it went through, or, if the store committed nothing, by the final
// commit of the deactivation, tried again within DeactivateTimeout.
func TestShutdownDuringAPassivationsCommit(t *testing.T) {
	for _, fails := range []bool{true, false} {
		t.Run(fmt.Sprint("commitFails=", fails), func(t *testing.T) {
			store := hookedMemstore(t)
			sw := &sweeper{}
			nodes, banks := bankCluster(t, 1, store, time.Minute, func(cfg *Config) {
				sw.configure(cfg)
				cfg.DeactivateTimeout = waitTimeout
			})
			n, b := nodes[0], banks[nodes[0].Name()]
			sw.n = n
			const id = "leaver"
			deposit(t, n, manualKind, id, 5)
			a := n.acts.peek(actKey{manualKind, id})

			entered, release := gateCommits(store)
			defer release()
			if fails {
				store.commitErr.Store(&errNothingCommitted)
			}
			sw.at(t, 0, 0)
			sw.at(t, time.Minute, 1)
			receive(t, entered, "the commit before the passivation to begin")
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			shut := make(chan error, 1)
			go func() { shut <- n.Shutdown(ctx) }()
			waitFor(t, waitTimeout, "Shutdown to close the grain", func() bool { return a.calls.Load()&callsClosed != 0 })
			commits := store.commits.Load()
			release()
			if fails {
				waitFor(t, waitTimeout, "the deactivation's commit to be tried", func() bool { return store.commits.Load() > commits })
				store.commitErr.Store(nil)
			}
			if err := receive(t, shut, "Shutdown"); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if runs := b.count(id, hookDeactivate); runs != 1 {
				t.Fatalf("OnDeactivate ran %d times, want once", runs)
			}
			if got := storedBalance(t, store.Store, manualKind, id); got != 5 {
				t.Fatalf("stored balance %d after Shutdown, want the acknowledged 5", got)
			}
		})
	}
}

// TestShutdownCommitsBeforeALingeringOnDeactivate: Shutdown commits what
// acknowledged calls left buffered before the grain's OnDeactivate, so a
// hook that spends all of DeactivateTimeout (it waits for its context to
// end) loses only its own change, not the callers'.
func TestShutdownCommitsBeforeALingeringOnDeactivate(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, banks := bankCluster(t, 1, store, time.Hour, func(cfg *Config) {
			cfg.DeactivateTimeout = heldDeactivateTimeout
		})
		n, b := nodes[0], banks[nodes[0].Name()]
		const id, farewell = "lingering", "farewell"
		k := farewell
		b.farewell.Store(&k)
		b.lingering.Store(true)
		deposit(t, n, manualKind, id, 5)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if runs := b.count(id, hookDeactivate); runs != 1 {
			t.Fatalf("OnDeactivate ran %d times, want once", runs)
		}
		if got := storedBalance(t, store, manualKind, id); got != 5 {
			t.Fatalf("stored balance %d after Shutdown, want the acknowledged 5, committed before the hook", got)
		}
	})
}

// TestAStateACommitBrokeIsNotCommittedBeforeOnDeactivate: a grain's own
// Flush of unknown outcome breaks its state, and the activation goes
// without committing what it held: the try before its OnDeactivate
// commits nothing either, though the store answers again by then.
func TestAStateACommitBrokeIsNotCommittedBeforeOnDeactivate(t *testing.T) {
	store := hookedMemstore(t)
	nodes, banks := bankCluster(t, 1, store, time.Hour, nil)
	n, b := nodes[0], banks[nodes[0].Name()]
	const id = "unsure"
	var commits atomic.Int32
	failFirst := func() {
		if commits.Add(1) == 1 {
			store.commitErr.Store(&errStoreDown)
		} else {
			store.commitErr.Store(nil)
		}
	}
	deposit(t, n, manualKind, id, 5) // acknowledged, buffered
	store.beforeCommit.Store(&failFirst)
	_, err := n.Invoke(context.Background(), accountCall(manualKind, methodFlush, id, ""), WithoutRetry())
	if !errors.Is(err, ErrStateUnavailable) {
		t.Fatalf("Flush whose commit failed: %v, want ErrStateUnavailable", err)
	}
	waitFor(t, waitTimeout, "the deactivation", func() bool { return n.acts.count() == 0 })
	if runs := b.count(id, hookDeactivate); runs != 1 {
		t.Fatalf("OnDeactivate ran %d times, want once", runs)
	}
	if got := storedBalance(t, store.Store, manualKind, id); got != 0 {
		t.Fatalf("stored balance %d, want 0: the deactivation committed the changes of a commit of unknown outcome", got)
	}
}

// TestPassivationCommitOfUnknownOutcome: a commit before a passivation
// that fails without saying that it committed nothing leaves the grain's
// state uncertain, as after a call: the activation is deactivated without
// committing, with one OnDeactivate, and says so in the log; the next
// activation reads what the store has.
func TestPassivationCommitOfUnknownOutcome(t *testing.T) {
	store := hookedMemstore(t)
	logs := map[string]*logLines{}
	nodes, banks := bankCluster(t, 1, store, heldIdle, withLogs(logs, false, nil))
	n, b := nodes[0], banks[nodes[0].Name()]
	const id = "unsure"
	deposit(t, n, manualKind, id, 7)
	store.commitErr.Store(&errStoreDown)
	waitFor(t, waitTimeout, "the deactivation", func() bool { return n.acts.count() == 0 })
	store.commitErr.Store(nil)
	if runs := b.count(id, hookDeactivate); runs != 1 {
		t.Fatalf("OnDeactivate ran %d times, want once", runs)
	}
	if logs[n.Name()].count("left its state uncertain", errStoreDown.Error()) != 1 {
		t.Error("the failed commit was not logged once")
	}
	if got := balance(t, n, manualKind, id); got != 0 {
		t.Fatalf("the next activation read balance %d, want the stored 0", got)
	}
}

// TestPassivationLosesOnlyTheHooksChanges: the changes a grain buffered
// are committed before its OnDeactivate; if the store then fails, the
// commit of what the hook changed is tried within DeactivateTimeout, and
// only those changes are lost.
func TestPassivationLosesOnlyTheHooksChanges(t *testing.T) {
	store := hookedMemstore(t)
	logs := map[string]*logLines{}
	nodes, banks := bankCluster(t, 1, store, heldIdle, withLogs(logs, false, func(cfg *Config) {
		cfg.DeactivateTimeout = heldDeactivateTimeout
	}))
	n, b := nodes[0], banks[nodes[0].Name()]
	const id, farewell = "hook", "farewell"
	k := farewell
	b.farewell.Store(&k)
	var seen atomic.Int32
	fail := func() {
		if seen.Add(1) == 2 { // the commit after the hook, and those after it
			store.commitErr.Store(&errNothingCommitted)
		}
	}
	deposit(t, n, manualKind, id, 7)
	store.beforeCommit.Store(&fail)
	waitFor(t, waitTimeout, "the passivation", func() bool { return n.acts.count() == 0 })
	store.commitErr.Store(nil)
	if runs := b.count(id, hookDeactivate); runs != 1 {
		t.Fatalf("OnDeactivate ran %d times, want once", runs)
	}
	if got := storedBalance(t, store.Store, manualKind, id); got != 7 {
		t.Fatalf("stored balance %d, want the acknowledged 7, committed before the hook", got)
	}
	entries, _, err := store.Store.Load(context.Background(), storage.Key{Kind: manualKind, Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := entries[farewell]; ok {
		t.Fatal("the hook's change is stored, though every commit after the first committed nothing")
	}
	if logs[n.Name()].count("grain deactivation failed", "nothing was committed") != 1 {
		t.Error("the lost changes of the hook were not logged once")
	}
}

// TestDepositsRacePassivation runs deposits on FlushManual grains from
// many goroutines while sweeps, back to back on a clock that each moves on
// by the idle timeout, passivate the grains between the calls: every
// acknowledged deposit must reach the store, and each activation must run
// OnDeactivate exactly once.
func TestDepositsRacePassivation(t *testing.T) {
	t.Parallel()
	const grains, callers, deposits = 8, 8, 200
	store := hookedMemstore(t)
	sw := &sweeper{}
	nodes, banks := bankCluster(t, 1, store, time.Minute, sw.configure)
	n, b := nodes[0], banks[nodes[0].Name()]
	sweep := func() {
		sw.now.Add(int64(time.Minute))
		n.acts.passivate()
	}
	stop, swept := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(swept)
		for {
			select {
			case <-stop:
				return
			default:
				sweep()
				goruntime.Gosched()
			}
		}
	}()
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A client of its own: calls of one client overtaken by 64 of
			// its later ones are refused (see docs/state.md).
			client := fmt.Sprint("caller-", c)
			for i := range deposits {
				id := fmt.Sprint("racer-", (c+i)%grains)
				if _, err := n.Invoke(context.Background(), depositCall(manualKind, id, 1), WithCallID(client, uint64(i+1))); err != nil {
					t.Errorf("Deposit(%s): %v", id, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-swept
	waitFor(t, waitTimeout, "every grain to passivate", func() bool {
		sweep()
		return n.acts.count() == 0
	})
	activations := store.loads.Load() // one load per activation
	var total int64
	hooks := 0
	for g := range grains {
		id := fmt.Sprint("racer-", g)
		total += storedBalance(t, store.Store, manualKind, id)
		hooks += b.count(id, hookDeactivate)
	}
	if total != callers*deposits {
		t.Fatalf("stored balances sum to %d, want the %d acknowledged deposits", total, callers*deposits)
	}
	if int64(hooks) != activations {
		t.Fatalf("OnDeactivate ran %d times for %d activations, want once each", hooks, activations)
	}
	if activations < 4*grains {
		t.Logf("only %d activations of %d grains: the sweeps rarely passivated between calls", activations, grains)
	}
}

// deactivationsPending returns how many jobs of the deactivators
// (passivations asked, deactivations, stops) waitDeactivations counts.
func deactivationsPending(n *Node) int {
	n.acts.mu.Lock()
	defer n.acts.mu.Unlock()
	return n.acts.pending
}

// TestAGrainUsedAfterTheSweepThatAskedItToPassivateIsKept: a sweep asks an
// idle grain's actor to passivate it, and the actor is busy (a long
// one-way turn) past DeactivateTimeout: the request waits in the mailbox.
// The grain is then sent a message, and the next sweep notes that use.
// The grain, used a moment ago, must not be passivated when its actor
// reaches the old request: a grain lives IdleTimeout after its last use.
// The sweep that noted the use cleared usedFlag, which was all that
// grainActor.passivate and close(true) looked at: the grain was
// passivated, and the message, which reached the actor after its
// OnDeactivate, went to a new activation (a found it).
func TestAGrainUsedAfterTheSweepThatAskedItToPassivateIsKept(t *testing.T) {
	s := newSink()
	sw := &sweeper{}
	nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{newSinkKind(s)} }, func(cfg *Config) {
		sw.configure(cfg)
		cfg.DeactivateTimeout = 50 * time.Millisecond
	})
	t.Cleanup(s.releaseHeld) // before the node closes
	n := nodes[0]
	sw.n = n
	const id = "busy"
	key := actKey{sinkKind, id}
	holdGrain(t, n, s, id) // a long one-way turn
	a := n.acts.peek(key)
	sw.at(t, 0, 0)                  // notes the Hold
	sw.at(t, DefaultIdleTimeout, 1) // idle for IdleTimeout: asked, behind the turn
	waitFor(t, waitTimeout, "the passivation's request to be queued and its wait to end", func() bool {
		return deactivationsPending(n) == 0
	})
	if err := n.Send(context.Background(), holdCall(id, 1)); err != nil { // a use, after the sweep that asked
		t.Fatal(err)
	}
	sw.at(t, DefaultIdleTimeout+time.Second, 0) // the next sweep notes it
	s.releaseHeld()
	waitFor(t, waitTimeout, "the message to run", func() bool { return s.got.Load() == 1 })
	waitFor(t, waitTimeout, "the deactivations to end", func() bool { return deactivationsPending(n) == 0 })
	if now := n.acts.peek(key); now != a || a.calls.Load()&callsClosed != 0 {
		t.Fatalf("a grain sent a message after the sweep that asked it to passivate, one sweep before, was passivated " +
			"(its activation replaced or closed): the request that waited behind its turn passivated it anyway")
	}
}

// TestShutdownLogsACommitBeforeOnDeactivateOfUnknownOutcome: the commit
// that Shutdown tries before a grain's OnDeactivate fails with an outcome
// that is unknown (not storage.ErrNotCommitted): the acknowledged changes
// it held may be lost, and the commit after the hook, which finds the
// state broken, commits nothing. The log must say so, as it did when that
// commit came after the hook.
func TestShutdownLogsACommitBeforeOnDeactivateOfUnknownOutcome(t *testing.T) {
	store := hookedMemstore(t)
	logs := map[string]*logLines{}
	nodes, banks := bankCluster(t, 1, store, time.Hour, withLogs(logs, false, nil))
	n, b := nodes[0], banks[nodes[0].Name()]
	const id = "unsure"
	deposit(t, n, manualKind, id, 5) // acknowledged, buffered
	store.commitErr.Store(&errStoreDown)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if runs := b.count(id, hookDeactivate); runs != 1 {
		t.Fatalf("OnDeactivate ran %d times, want once", runs)
	}
	if got := storedBalance(t, store.Store, manualKind, id); got != 0 {
		t.Fatalf("stored balance %d, want 0: the store was down", got)
	}
	if logs[n.Name()].count(id, errStoreDown.Error()) == 0 {
		t.Fatalf("no log line says that the acknowledged changes of %s may be lost (%s): the failed commit was silent", id, errStoreDown)
	}
}
