package cluster

import (
	"context"
	"fmt"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// manyGrains is many more grains than startDeactivations starts
// deactivators for (deactivatorsPerProc per GOMAXPROCS).
const manyGrains = 1024

// TestDeactivationsOverlap checks that deactivations that wait do not wait
// for each other: every grain's OnDeactivate waits until all of them are
// in theirs.
func TestDeactivationsOverlap(t *testing.T) {
	t.Parallel()
	const n = manyGrains
	var inside atomic.Int32
	all := make(chan struct{})
	release := sync.OnceFunc(func() { close(all) })
	node := gateNode(t, func(string) gateGrain {
		return gateGrain{enter: func() {
			if inside.Add(1) == n {
				release()
			}
		}, release: all}
	})
	t.Cleanup(release) // before the node closes, which waits for the grains
	activateGates(t, node, "g", n)
	deactivateAllWithin(t, node, func() string {
		return fmt.Sprintf("%d of %d grains in OnDeactivate at once", inside.Load(), n)
	})
}

// TestDeactivatingMoreGrainsThanDeactivators checks that every grain is
// deactivated, with its hook, when there are more of them than
// deactivators, and that a later deactivation starts deactivators again.
func TestDeactivatingMoreGrainsThanDeactivators(t *testing.T) {
	t.Parallel()
	var hooks atomic.Int32
	open := make(chan struct{})
	close(open)
	node := gateNode(t, func(string) gateGrain {
		return gateGrain{enter: func() { hooks.Add(1) }, release: open}
	})
	total := 0
	for round, n := range []int{2*manyGrains + 1, 3} {
		activateGates(t, node, fmt.Sprintf("r%d", round), n)
		total += n
		deactivateAllWithin(t, node, func() string { return fmt.Sprintf("%d grains", n) })
		if got := int(hooks.Load()); got != total {
			t.Fatalf("OnDeactivate ran %d times, want %d", got, total)
		}
	}
}

// TestDeactivationsDoNotWaitForTheQueue checks that grains whose
// OnDeactivate waits for grains queued behind them do not hold up the
// queue: more children than there are deactivators wait in OnDeactivate
// until every parent has run its own, and the parents stand in the queue
// wherever the table puts them, nearly always some behind the first grains
// the deactivators take.
func TestDeactivationsDoNotWaitForTheQueue(t *testing.T) {
	t.Parallel()
	const children, parents = manyGrains + 200, 32
	var parentsIn atomic.Int32
	allParents := make(chan struct{})
	release := sync.OnceFunc(func() { close(allParents) })
	open := make(chan struct{})
	close(open)
	node := gateNode(t, func(identity string) gateGrain {
		if strings.HasPrefix(identity, "parent") {
			return gateGrain{enter: func() {
				if parentsIn.Add(1) == parents {
					release()
				}
			}, release: open}
		}
		return gateGrain{enter: func() {}, release: allParents}
	})
	t.Cleanup(release) // before the node closes, which waits for the grains
	activateGates(t, node, "child", children)
	activateGates(t, node, "parent", parents)
	deactivateAllWithin(t, node, func() string {
		return fmt.Sprintf("%d of %d parents deactivated", parentsIn.Load(), parents)
	})
}

// TestHungDeactivationsDoNotStopLaterOnes checks that grains whose
// OnDeactivate never returns, more of them than startDeactivations starts
// deactivators for, do not keep grains deactivated after them from going.
func TestHungDeactivationsDoNotStopLaterOnes(t *testing.T) {
	t.Parallel()
	hung := 2 * deactivatorsPerProc * goruntime.GOMAXPROCS(0)
	var inside atomic.Int32
	allIn, never := make(chan struct{}), make(chan struct{})
	open := make(chan struct{})
	close(open)
	node := gateNode(t, func(identity string) gateGrain {
		if strings.HasPrefix(identity, "hung") {
			return gateGrain{enter: func() {
				if inside.Add(1) == int32(hung) {
					close(allIn)
				}
			}, release: never}
		}
		return gateGrain{enter: func() {}, release: open}
	})
	t.Cleanup(func() { close(never) }) // before the node closes, which waits for the grains
	activateGates(t, node, "hung", hung)
	node.acts.deactivateWhere(sweepAll, func(a *activation, _ time.Duration) bool {
		return strings.HasPrefix(a.identity, "hung")
	})
	receive(t, allIn, "every hung grain in OnDeactivate")
	// The hung deactivations' watches fire, with no victim waiting, before
	// the later ones come: the later ones find deactivators all the same.
	waitFor(t, waitTimeout, "every hung deactivation counted as slow", func() bool {
		node.acts.mu.Lock()
		defer node.acts.mu.Unlock()
		return node.acts.slow == hung
	})
	activateGates(t, node, "later", 10)
	node.acts.deactivateWhere(sweepAll, func(a *activation, _ time.Duration) bool {
		return strings.HasPrefix(a.identity, "later")
	})
	waitFor(t, waitTimeout, "the later grains deactivated", func() bool {
		return node.acts.count() == hung
	})
}

// gateGrain is a grain whose OnDeactivate calls enter and then waits until
// release is closed.
type gateGrain struct {
	enter   func()
	release <-chan struct{}
}

func (g gateGrain) OnDeactivate(GrainContext) error {
	g.enter()
	<-g.release
	return nil
}

// gateNode starts a node hosting gateKind, whose grains newGrain makes.
func gateNode(t testing.TB, newGrain func(identity string) gateGrain) *Node {
	cfg := testConfig(t)
	cfg.PassivationInterval = time.Hour // only the test deactivates
	cfg.Kinds = []*Kind{{
		Name:        gateKind,
		IdleTimeout: -1,
		New:         func(identity string) any { return newGrain(identity) },
		Methods: []Method{{
			Name:       methodAdd,
			NewRequest: newInt64,
			Handle:     func(_ any, _ GrainContext, req proto.Message) (proto.Message, error) { return req, nil },
		}},
	}}
	return startNode(t, cfg)
}

// gateKind is the kind of gateNode.
const gateKind = "test.Gate"

// activateGates activates the grains prefix-0 to prefix-(n-1) of gateKind
// on node.
func activateGates(t testing.TB, node *Node, prefix string, n int) {
	t.Helper()
	for i := range n {
		call := addCall(fmt.Sprintf("%s-%d", prefix, i), 1)
		call.Kind = gateKind
		if _, err := node.Invoke(context.Background(), call); err != nil {
			t.Fatal(err)
		}
	}
}

// deactivateAllWithin deactivates every grain of node, failing the test
// with what state says if that takes longer than waitTimeout or leaves a
// grain.
func deactivateAllWithin(t *testing.T, node *Node, state func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := node.acts.deactivateAll(ctx); err != nil {
		t.Fatalf("deactivateAll = %v with %s", err, state())
	}
	if left := node.acts.count(); left != 0 {
		t.Fatalf("%d activations left after deactivateAll, with %s", left, state())
	}
}

// TestClosingReturnsThoughAGrainIgnoresItsContext: Close, and a Shutdown
// whose context ends, wait at most DeactivateTimeout for a grain whose
// method ignores its context and never returns, and then return without
// it. They waited for it for good, so a process could not stop.
func TestClosingReturnsThoughAGrainIgnoresItsContext(t *testing.T) {
	for _, how := range []string{"Close", "Shutdown"} {
		t.Run(how, func(t *testing.T) {
			logs := map[string]*logLines{}
			nodes, hs := echoCluster(t, 1, 0, withLogs(logs, false, func(cfg *Config) { cfg.DeactivateTimeout = 100 * time.Millisecond }))
			n, h := nodes[0], hs[nodes[0].Name()]
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				_, _ = n.Invoke(ctx, stringCall(methodHold, "stuck", ""))
			}()
			receive(t, h.entered, "the grain's method to begin")
			closed := make(chan error, 1)
			go func() {
				if how == "Close" {
					closed <- n.Close()
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				closed <- n.Shutdown(ctx)
			}()
			err := receive(t, closed, how+" to return while the grain's method still runs")
			if how == "Close" && err != nil {
				t.Fatalf("Close: %v", err)
			}
			if logs[n.Name()].count("did not end their turn") != 1 {
				t.Fatalf("%s logged no line about the grain it left running", how)
			}
		})
	}
}

// TestShutdownAndCloseAtOnce: a Close while a Shutdown leaves the gossip
// (a signal handler's, say) waits for the leave. Serf let its Shutdown run
// under a Leave in progress, and memberlist then panicked ("leave after
// shutdown"), taking the process down. The race is narrow: the test
// closes the node at a different point of its Shutdown each time.
func TestShutdownAndCloseAtOnce(t *testing.T) {
	for i := range 100 {
		n := startNode(t, testConfig(t))
		shut := make(chan error, 1)
		go func() { shut <- n.Shutdown(context.Background()) }()
		for range i % 20 {
			goruntime.Gosched()
		}
		if err := n.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		receive(t, shut, "Shutdown to return")
	}
}
