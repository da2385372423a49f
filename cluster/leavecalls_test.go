package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// TestCallsSurviveALeave calls grains of two hosts without pause, from
// several goroutines of a node that hosts nothing, while one host leaves
// gracefully (Shutdown). Nobody fails, so no call may fail: those the
// leaver refuses, and those on a stream that said bye, are placed again.
func TestCallsSurviveALeave(t *testing.T) {
	t.Parallel()
	const grains, callers, afterLeave = 16, 4, 200
	nodes, _ := echoCluster(t, 3, -1, nil)
	b, c := nodes[1], nodes[2] // nodes[0] hosts the grains that stay
	ids := make([]string, grains)
	for i := range ids {
		ids[i] = fmt.Sprintf("leavecall-%d", i)
	}
	var left atomic.Bool
	var calls atomic.Int64
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			after := 0
			for i := w; after < afterLeave; i++ {
				if left.Load() {
					after++
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				_, err := c.Invoke(ctx, addCall(ids[i%grains], 1))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("call %d to %s: %w", i, ids[i%grains], err)
					return
				}
				calls.Add(1)
			}
		}()
	}
	waitFor(t, waitTimeout, "calls on their way", func() bool { return calls.Load() > 200 })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of the leaving node: %v", err)
	}
	left.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d calls", calls.Load())
}

// holdGossipLeave holds the gossip leave of the node cfg starts, as its
// Shutdown begins it, until the returned release is called or the test
// ends; holding is closed once a leave is held.
func holdGossipLeave(t *testing.T, cfg *Config) (holding <-chan struct{}, release func()) {
	held, released := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(released) }) }
	t.Cleanup(release)
	cfg.leavingGossip = func() {
		close(held)
		<-released
	}
	return held, release
}

// TestALeaversGrainsMoveBeforeItsGossipLeave: l holds deposits on a
// FlushManual grain that it acknowledged and has not committed, and shuts
// down; its gossip leave is held. s, which heard on its stream that l
// leaves, activates the grain, and the deposit through it returns with
// every deposit l acknowledged, while l's leave has yet to go round the
// gossip: l deactivated its grains and released them as soon as it said
// it leaves, not once the gossip had its leave (LeavePropagateDelay, 1 s
// in the LAN profile), which its grains' callers waited for.
func TestALeaversGrainsMoveBeforeItsGossipLeave(t *testing.T) {
	eachStore(t, func(t *testing.T, shared storage.Store) {
		sCfg := handoffConfig(t, "-s", shared)
		sCfg.leaverGrace = time.Hour // only l's release ends s's wait for it
		s := startNode(t, sCfg)
		lCfg := handoffConfig(t, "-l", shared)
		lCfg.Seeds = []string{s.GossipAddr()}
		leaveHeld, releaseLeave := holdGossipLeave(t, &lCfg)
		l := startNode(t, lCfg)
		waitConverged(t, []*Node{s, l}, 2)
		id := movingIdentity(manualKind, s.Name(), l.Name()) // l's while it is there, then s's

		const onL = 5
		for range onL {
			deposit(t, s, manualKind, id, 1) // acknowledged, buffered on l
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		left := make(chan error, 1)
		go func() { left <- l.Shutdown(ctx) }()
		receive(t, leaveHeld, "l's gossip leave to begin")
		waitFor(t, waitTimeout, "s to hear that l leaves", func() bool {
			st, _ := s.view.Load().status(l.Name())
			return st == StatusLeaving
		})

		if got := deposit(t, s, manualKind, id, 1); got != onL+1 {
			t.Errorf("the deposit during l's leave returned balance %d, want %d", got, onL+1)
		}
		if s.acts.peek(actKey{manualKind, id}) == nil {
			t.Error("the grain is not active on s during l's leave")
		}
		releaseLeave()
		if err := receive(t, left, "l's shutdown"); err != nil {
			t.Fatal(err)
		}
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if got, want := storedBalance(t, shared, manualKind, id), int64(onL+1); got != want {
			t.Errorf("stored balance %d, want the %d deposits acknowledged", got, want)
		}
	})
}

// TestALeaveThatFailsStillCommitsTheGrains: l holds deposits on a
// FlushManual grain that it acknowledged and has not committed, and shuts
// down; its gossip leave is held, and fails: the Shutdown's context ends,
// or a Close stops the gossip under it. l committed the deposits all the
// same, as it deactivated its grains without waiting for the leave, and
// the Shutdown returns the leave's error. Before, l deactivated nothing
// until the leave was over, and a leave that failed lost them.
func TestALeaveThatFailsStillCommitsTheGrains(t *testing.T) {
	for _, how := range []string{"context_ends", "close"} {
		t.Run(how, func(t *testing.T) {
			store := hookedMemstore(t)
			lCfg := handoffConfig(t, "-l", store)
			leaveHeld, releaseLeave := holdGossipLeave(t, &lCfg)
			l := startNode(t, lCfg)
			id := accountOwnedBy(t, l, manualKind, "failed-leave")
			const onL = 5
			for range onL {
				deposit(t, l, manualKind, id, 1) // acknowledged, buffered
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			left := make(chan error, 1)
			go func() { left <- l.Shutdown(ctx) }()
			receive(t, leaveHeld, "l's gossip leave to begin")
			waitFor(t, waitTimeout, "l to commit its grain", func() bool { return storedBalance(t, store, manualKind, id) == onL })

			want := context.Canceled
			if how == "close" {
				_ = l.Close()
				want = ErrNodeClosed
			} else {
				cancel()
			}
			releaseLeave()
			if err := receive(t, left, "l's shutdown"); !errors.Is(err, want) {
				t.Errorf("Shutdown returned %v, want %v", err, want)
			}
			receive(t, l.Done(), "l to stop")
		})
	}
}

// TestAMemberWithoutAStreamHearsOfALeaveBeforeTheGossip: s has no stream
// to l, which shuts down with its gossip leave held. l dials s to say that
// it leaves, as s hosts l's kinds and may own its grains next: s's view
// has l leaving while the gossip has yet to say so. Without it, s would
// answer "not owner" to the calls for l's grains that others, which heard
// of the leave on their streams, place on s, until the gossip told it.
func TestAMemberWithoutAStreamHearsOfALeaveBeforeTheGossip(t *testing.T) {
	kinds := func(name string) []*Kind {
		return []*Kind{newAccountKind(newBank(name), accountKind, FlushAfterCall, time.Hour)}
	}
	sCfg := testConfig(t)
	sCfg.NodeName += "-s"
	sCfg.Kinds = kinds(sCfg.NodeName)
	s := startNode(t, sCfg)
	lCfg := testConfig(t)
	lCfg.NodeName += "-l"
	lCfg.Kinds = kinds(lCfg.NodeName)
	lCfg.Seeds = []string{s.GossipAddr()}
	leaveHeld, _ := holdGossipLeave(t, &lCfg)
	l := startNode(t, lCfg)
	waitConverged(t, []*Node{s, l}, 2)
	for _, c := range s.transport.openConns() {
		t.Fatalf("s has a stream to %s before l leaves", c.peer)
	}

	go func() { _ = l.Shutdown(context.Background()) }() // ends with l's Close
	receive(t, leaveHeld, "l's gossip leave to begin")
	waitFor(t, waitTimeout, "s to hear that l leaves", func() bool {
		st, _ := s.view.Load().status(l.Name())
		return st == StatusLeaving
	})
}
